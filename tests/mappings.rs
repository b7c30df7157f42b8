//! End-to-end tests of mappings (SPEC 15): the shipped vendor profiles import their sample
//! exports (tests/fixtures/salesforce|hubspot|odoo/) through `kpi import … --mapping`, and the
//! KPI values are checked against values computed by hand. Also: `--dry-run`, errors naming the
//! source column, one transaction for several entities, an endless `expr`, `kpi check` of a
//! broken mapping, and `kpi init`.
//!
//! Teams: tests/fixtures/teams.csv (east = shanghai + hangzhou; west). Periods in Asia/Shanghai.

use crate::util::cli as common;

use common::{Root, fixture, value};
use serde_json::Value;

const AS_OF: &str = "2026-04-02T00:00:00Z";

/// A root with the fixture teams and the vendor's sample files copied in (under their names).
fn root_with(vendor: &str) -> Root {
    let root = Root::new();
    root.fixture("teams.csv");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    let dir = fixture(vendor);
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), root.path().join(e.file_name())).unwrap();
    }
    root
}

fn import(root: &Root, entity: &str, file: &str, mapping: &str) -> String {
    root.kpi(&["import", entity, file, "--mapping", mapping])
        .ok()
}

fn eval(root: &Root, kpis: &str) -> Value {
    root.kpi(&[
        "eval", "--kpi", kpis, "--period", "2026-Q1", "--as-of", AS_OF, "--format", "json",
    ])
    .json()
}

fn near(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
}

#[test]
fn salesforce_exports_import_and_give_the_hand_computed_kpis() {
    let root = root_with("salesforce");
    let out = import(&root, "owners", "User.csv", "salesforce_user");
    assert!(out.contains("imported 2 owners records"), "{out}");
    import(&root, "customers", "Account.csv", "salesforce_account");
    let out = import(
        &root,
        "deals",
        "Opportunities.csv",
        "salesforce_opportunity",
    );
    assert!(out.contains("imported 4 deals records"), "{out}");
    assert!(out.contains("skipped 4 of 8 rows"), "{out}");
    import(
        &root,
        "stage_events",
        "OpportunityHistory.csv",
        "salesforce_opportunity_history",
    );
    import(&root, "tickets", "Case.csv", "salesforce_case");
    let r = eval(
        &root,
        "revenue,deals_won,win_rate,lead_to_won,new_customers,resolution_hours",
    );
    // shanghai: 0061 won 125,000.00 (2/14), 0062 lost; hangzhou: 0064 won 2,500.50 (3/31,
    // local midnight: in Q1); 0063 is open: its planned close date 11/14/2026 is not kept.
    assert!(near(value(&r, "shanghai", "revenue"), 125_000.0), "{r}");
    assert!(near(value(&r, "hangzhou", "revenue"), 2_500.5), "{r}");
    assert!(near(value(&r, "east", "revenue"), 127_500.5), "{r}");
    assert!(near(value(&r, "east", "win_rate"), 2.0 / 3.0), "{r}");
    // lead_to_won: shanghai 0061 won, 0062 lost → 1/2; hangzhou 0064 → 1.
    assert!(near(value(&r, "shanghai", "lead_to_won"), 0.5), "{r}");
    assert!(near(value(&r, "hangzhou", "lead_to_won"), 1.0), "{r}");
    // Accounts: 0011 created 2026-01-03 (shanghai), 0012 in 2025.
    assert!(near(value(&r, "shanghai", "new_customers"), 1.0), "{r}");
    assert!(near(value(&r, "hangzhou", "new_customers"), 0.0), "{r}");
    // Cases resolved in Q1 (shanghai): 4 h and 24 h; hangzhou's case is open.
    assert!(near(value(&r, "shanghai", "resolution_hours"), 14.0), "{r}");
    assert_eq!(value(&r, "hangzhou", "resolution_hours"), None, "{r}");
}

#[test]
fn hubspot_exports_import_with_stage_events_from_date_entered_columns() {
    let root = root_with("hubspot");
    root.kpi(&["import", "owners", "owners.csv"]).ok();
    let out = import(&root, "deals", "deals.csv", "hubspot_deals");
    assert!(out.contains("imported 4 deals records"), "{out}");
    // 101: lead, quote, won; 102: lead, lost; 103: lead, quote; 104: lead, won.
    assert!(out.contains("imported 9 stage_events records"), "{out}");
    import(&root, "customers", "companies.csv", "hubspot_companies");
    import(&root, "tickets", "tickets.csv", "hubspot_tickets");
    let r = eval(
        &root,
        "revenue,win_rate,lead_to_won,new_customers,first_response_hours,resolution_hours",
    );
    assert!(near(value(&r, "shanghai", "revenue"), 50_000.0), "{r}");
    assert!(near(value(&r, "west", "revenue"), 1_200.75), "{r}");
    assert!(near(value(&r, "shanghai", "win_rate"), 0.5), "{r}");
    assert!(near(value(&r, "west", "win_rate"), 1.0), "{r}");
    assert!(near(value(&r, "shanghai", "lead_to_won"), 0.5), "{r}");
    assert!(near(value(&r, "west", "lead_to_won"), 0.5), "{r}");
    assert!(near(value(&r, "shanghai", "new_customers"), 1.0), "{r}");
    assert!(near(value(&r, "west", "new_customers"), 1.0), "{r}");
    // Tickets: replies after 2 h and 4 h (milliseconds durations); one resolved after 8 h.
    assert!(
        near(value(&r, "shanghai", "first_response_hours"), 3.0),
        "{r}"
    );
    assert!(near(value(&r, "shanghai", "resolution_hours"), 8.0), "{r}");
}

#[test]
fn odoo_exports_import_with_utc_times_and_archived_leads_lost() {
    let root = root_with("odoo");
    let out = import(&root, "deals", "crm.lead.csv", "odoo_crm_lead");
    assert!(out.contains("imported 4 deals records"), "{out}");
    let out = import(&root, "customers", "res.partner.csv", "odoo_res_partner");
    assert!(
        out.contains("imported 2 customers records") && out.contains("skipped 1 of 3 rows"),
        "{out}"
    );
    import(
        &root,
        "tickets",
        "helpdesk.ticket.csv",
        "odoo_helpdesk_ticket",
    );
    let r = eval(
        &root,
        "revenue,deals_won,win_rate,new_customers,resolution_hours,service_rating",
    );
    // Lead 1 won (Feb); lead 3 archived = lost (Mar); lead 4 closed 2026-03-31 17:00 UTC, which
    // is 2026-04-01 01:00 in Shanghai: Q2, not Q1.
    assert!(near(value(&r, "shanghai", "revenue"), 30_000.0), "{r}");
    assert!(near(value(&r, "hangzhou", "deals_won"), 0.0), "{r}");
    assert!(near(value(&r, "hangzhou", "win_rate"), 0.0), "{r}");
    assert!(near(value(&r, "east", "win_rate"), 0.5), "{r}");
    assert!(near(value(&r, "shanghai", "new_customers"), 1.0), "{r}");
    // Tickets resolved after 6 h and 24 h; one rated 5, one not rated (0.0).
    assert!(near(value(&r, "shanghai", "resolution_hours"), 15.0), "{r}");
    assert!(near(value(&r, "shanghai", "service_rating"), 5.0), "{r}");
}

/// A mapping written into the root's kpis/mappings/.
fn mapping(root: &Root, name: &str, text: &str) {
    root.write(&format!("kpis/mappings/{name}.toml"), text);
}

const FOLD: &str = r#"
[mapping]
entity = "tickets"
time_formats = ["%d/%m/%Y %H:%M"]
decimal = ","
delimiter = ";"
encoding = "gb18030"
null_values = ["N/A"]

[mapping.fields]
id                = "编号"
team              = { column = "组", lookup = "groups" }
opened_at         = { column = "时间", keep = "first" }
first_response_at = { column = "时间", keep = "first", when = 'row["状态"] != "新建"' }
resolved_at       = { column = "时间", when = 'row["状态"] == "已解决"' }
rating            = { column = "评分", when = 'row["评分"] != ""' }

[mapping.lookup.groups]
file = "groups.csv"
key = "name"
value = "team"
delimiter = ","
encoding = "utf-8"
"#;

#[test]
fn an_event_log_in_gb18030_folds_into_one_ticket_per_id() {
    let root = root_with("salesforce");
    mapping(&root, "incident_log", FOLD);
    root.write("groups.csv", "name,team\n上海组,shanghai\n");
    // Three rows of one incident: opened, answered, resolved (unpadded day/month/hour).
    let log = "编号;组;状态;时间;评分\nINC1;上海组;新建;1/2/2026 9:00;\nINC1;上海组;处理中;1/2/2026 11:30;N/A\nINC1;上海组;已解决;2/2/2026 9:00;4\n";
    let (bytes, _, _) = encoding_rs::GB18030.encode(log);
    std::fs::write(root.path().join("log.csv"), &bytes).unwrap();
    let out = import(&root, "tickets", "log.csv", "incident_log");
    assert!(out.contains("imported 1 tickets records"), "{out}");
    let r = eval(
        &root,
        "first_response_hours,resolution_hours,service_rating",
    );
    assert!(
        near(value(&r, "shanghai", "first_response_hours"), 2.5),
        "{r}"
    );
    assert!(near(value(&r, "shanghai", "resolution_hours"), 24.0), "{r}");
    assert!(near(value(&r, "shanghai", "service_rating"), 4.0), "{r}");
}

#[test]
fn errors_name_the_file_line_and_source_column_and_nothing_is_written() {
    let root = root_with("salesforce");
    import(&root, "owners", "User.csv", "salesforce_user");
    let bad = "\"Opportunity ID\",\"Account ID\",\"Opportunity Owner\",\"Stage\",\"Amount\",\"Close Date\",\"Created Date\"\n\
        0061,0011,Ann Lee,Closed Won,\"125,000.00\",2/14/2026,1/5/2026\n\
        0062,0011,Ann Lee,Closed Won,1,31/02/2026,1/5/2026\n\
        0063,0011,Nobody,Closed Won,1,2/14/2026,1/5/2026\n";
    root.write("Opportunities.csv", bad);
    let err = root
        .kpi(&[
            "import",
            "deals",
            "Opportunities.csv",
            "--mapping",
            "salesforce_opportunity",
        ])
        .fails(1);
    assert!(
        err.contains("Opportunities.csv:3: field 'closed_at' (expr): \"31/02/2026\" matches none of the time formats (%m/%d/%Y, %m/%d/%Y %I:%M %p, RFC 3339"),
        "{err}"
    );
    assert!(
        err.contains("Opportunities.csv:4: column 'Opportunity Owner': \"Nobody\" is not a key of lookup 'owner_team'"),
        "{err}"
    );
    assert!(
        err.contains("2 bad row(s)") && err.contains("nothing was imported"),
        "{err}"
    );
    // --dry-run: the same errors, exit 1; on a good file the first records, nothing written.
    let err = root
        .kpi(&[
            "import",
            "deals",
            "Opportunities.csv",
            "--mapping",
            "salesforce_opportunity",
            "--dry-run",
        ])
        .fails(1);
    assert!(err.contains("Opportunities.csv:3:"), "{err}");
    let good: String = bad.lines().take(2).map(|l| format!("{l}\n")).collect();
    root.write("good.csv", &good);
    let out = root
        .kpi(&[
            "import",
            "deals",
            "good.csv",
            "--mapping",
            "salesforce_opportunity",
            "--dry-run",
        ])
        .ok();
    assert!(out.starts_with("deals {"), "{out}");
    for part in [
        r#""id":"0061""#,
        r#""team":"shanghai""#,
        r#""owner":"005A1""#,
        r#""stage":"won""#,
    ] {
        assert!(out.contains(part), "{part} in {out}");
    }
    assert!(out.contains(r#""amount":125000.0"#), "{out}");
    assert!(
        out.contains("would import 1 deals records from good.csv"),
        "{out}"
    );
    let r = eval(&root, "deals_won");
    // The dry run wrote nothing: no deal at all, so no data.
    assert_eq!(value(&r, "shanghai", "deals_won"), None, "{r}");
}

#[test]
fn one_import_of_two_entities_is_one_transaction() {
    let root = root_with("hubspot");
    root.kpi(&["import", "owners", "owners.csv"]).ok();
    // Deal 102's closedlost date is not a time: neither its deal nor any stage event is written.
    let text = std::fs::read_to_string(root.path().join("deals.csv"))
        .unwrap()
        .replace("2026-02-15T02:00:00.000Z\n", "yesterday\n");
    root.write("deals.csv", &text);
    let err = root
        .kpi(&["import", "deals", "deals.csv", "--mapping", "hubspot_deals"])
        .fails(1);
    assert!(
        err.contains("deals.csv:3: field 'entered_at' (expr): ") && err.contains("yesterday"),
        "{err}"
    );
    let r = eval(&root, "deals_won,lead_to_won");
    assert_eq!(
        value(&r, "shanghai", "deals_won"),
        None,
        "no deal written: {r}"
    );
    assert_eq!(
        value(&r, "shanghai", "lead_to_won"),
        None,
        "no stage event written: {r}"
    );
}

#[test]
fn an_endless_expr_fails_the_import_and_writes_nothing() {
    let root = root_with("salesforce");
    mapping(
        &root,
        "endless",
        "[mapping]\nentity = \"owners\"\n[mapping.fields]\nid = \"Id\"\nname = { expr = 'loop { }' }\nteam = { expr = 'slug(row[\"Department\"])' }\n",
    );
    let err = root
        .kpi(&["import", "owners", "User.csv", "--mapping", "endless"])
        .fails(1);
    assert!(
        err.contains("User.csv:2: field 'name' (expr)") && err.contains("operations"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
}

#[test]
fn check_reports_mapping_errors_with_line_and_column() {
    let root = Root::new();
    mapping(
        &root,
        "broken",
        "[mapping]\nentity = \"deals\"\ndelimiter = \";;\"\n[mapping.fields]\nid = \"Id\"\nstagee = \"Stage\"\namount = { expr = 'row[\"A\"] +' }\n",
    );
    let err = root.kpi(&["check"]).fails(1);
    assert!(
        err.contains(
            "kpis/mappings/broken.toml:3:13: error: delimiter must be one ASCII character"
        ),
        "{err}"
    );
    assert!(err.contains("kpis/mappings/broken.toml:6:1: error: deals has no field 'stagee'; did you mean 'stage'?"), "{err}");
    assert!(err.contains("kpis/mappings/broken.toml:7:"), "{err}");
    assert!(
        err.contains("field 'team' is required by deals but not mapped"),
        "{err}"
    );
    // An unknown mapping names the ones there are.
    let root = root_with("salesforce");
    let err = root
        .kpi(&[
            "import",
            "owners",
            "User.csv",
            "--mapping",
            "salesforce_users",
        ])
        .fails(1);
    assert!(
        err.contains("unknown mapping 'salesforce_users'; did you mean 'salesforce_user'?"),
        "{err}"
    );
}

#[test]
fn init_writes_a_clean_deployment_whose_kpis_have_no_data() {
    let dir = tempfile::TempDir::new().unwrap();
    let target = dir.path().join("acme");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("init")
        .arg(&target)
        .env_remove("KPI_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let targets = std::fs::read_to_string(target.join("kpis/targets.toml")).unwrap();
    assert!(
        !targets
            .lines()
            .any(|l| l.starts_with('[') && l.contains(".teams.")),
        "no demo team targets: {targets}"
    );
    assert!(target.join("crm.db").is_file());
    assert!(
        target
            .join("kpis/mappings/salesforce_opportunity.toml")
            .is_file()
    );
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("init")
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "a second init refuses");
    let kpi = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
            .arg("--root")
            .arg(&target)
            .args(args)
            .env_remove("KPI_DB")
            .output()
            .unwrap()
    };
    assert!(kpi(&["check"]).status.success());
    let teams = "id,name\nnorth,North\n";
    std::fs::write(target.join("teams.csv"), teams).unwrap();
    assert!(
        kpi(&[
            "import",
            "teams",
            target.join("teams.csv").to_str().unwrap()
        ])
        .status
        .success()
    );
    let out = kpi(&[
        "eval",
        "--kpi",
        "revenue,nps",
        "--period",
        "2026-Q1",
        "--as-of",
        AS_OF,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // No deal and no survey at all: the CRM does not track them yet, so no data (not 0).
    assert_eq!(value(&r, "north", "revenue"), None, "{r}");
    assert_eq!(value(&r, "north", "nps"), None, "{r}");
}

#[test]
fn plain_import_reads_other_delimiters_and_counts_repeated_ids() {
    let root = Root::new();
    root.write("teams.tsv", "id\tname\nnorth\tNorth\n");
    let out = root.kpi(&["import", "teams", "teams.tsv"]).ok();
    assert!(out.contains("imported 1 teams records"), "{out}");
    root.write(
        "deals.csv",
        "id;team;stage;amount;created_at;closed_at\nd1;north;won;1;2026-01-05;2026-02-01\nd1;north;won;2;2026-01-05;2026-02-01\nd2;north;lost;3;2026-01-05;2026-02-01\n",
    );
    let out = root
        .kpi(&["import", "deals", "deals.csv", "--delimiter", ";"])
        .ok();
    assert_eq!(
        out.trim(),
        "imported 2 deals records (1 row(s) repeated an id: the last of each was kept) from deals.csv"
    );
    let r = eval(&root, "revenue");
    assert!(
        near(value(&r, "north", "revenue"), 2.0),
        "the last row of d1 won: {r}"
    );
    root.write("twice.csv", "id,name,name\nsouth,South,Süd\n");
    let err = root.kpi(&["import", "teams", "twice.csv"]).fails(1);
    assert!(
        err.contains("twice.csv:1: column 'name' appears twice (columns 2 and 3)"),
        "{err}"
    );
}

#[test]
fn utf16_exports_repeated_headers_and_lookup_files_with_key_expr() {
    let root = root_with("salesforce");
    mapping(
        &root,
        "people",
        r#"
[mapping]
entity = "owners"
encoding = "utf-16"
delimiter = "\t"

[mapping.fields]
id    = "Id"
name  = { expr = 'row["Name"] + " / " + row["Name#2"]' }
team  = { column = "Dept", lookup = "dept" }

[mapping.lookup.dept]
file = "depts.csv"
encoding = "utf-8"
delimiter = ","
key = "department"
value = "team"
key_expr = 'upper(row["department"])'
"#,
    );
    root.write(
        "depts.csv",
        "department,team\nshanghai,shanghai\nHangzhou,hangzhou\n",
    );
    let text = "Id\tName\tName\tDept\n1\t李\t雷\tSHANGHAI\n2\tBob\tWu\tHANGZHOU\n";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(root.path().join("people.txt"), bytes).unwrap();
    let out = import(&root, "owners", "people.txt", "people");
    assert!(out.contains("imported 2 owners records"), "{out}");
    // A lookup key repeated with another value is an error naming both lines.
    root.write(
        "depts.csv",
        "department,team\nshanghai,shanghai\nSHANGHAI,hangzhou\n",
    );
    let err = root
        .kpi(&["import", "owners", "people.txt", "--mapping", "people"])
        .fails(1);
    assert!(
        err.contains("depts.csv:3: lookup 'dept': key \"SHANGHAI\" is \"hangzhou\" here but \"shanghai\" at line 2"),
        "{err}"
    );
}

#[test]
fn order_by_sorts_the_rows_of_an_id_before_folding() {
    let root = root_with("salesforce");
    mapping(
        &root,
        "snow",
        r#"
[mapping]
entity = "tickets"
order_by = 'parse_int(row["sys_mod_count"])'

[mapping.fields]
id          = "number"
team        = "team"
opened_at   = { column = "sys_updated_on", keep = "first" }
resolved_at = { column = "sys_updated_on", when = 'row["state"] == "Resolved"' }
"#,
    );
    // The log is not in order: mod count 2 (resolved) comes first in the file.
    root.write(
        "incidents.csv",
        "number,team,state,sys_mod_count,sys_updated_on\nINC1,shanghai,Resolved,2,2026-02-02 10:00:00\nINC1,shanghai,New,0,2026-02-01 10:00:00\nINC1,shanghai,In Progress,1,2026-02-01 12:00:00\n",
    );
    import(&root, "tickets", "incidents.csv", "snow");
    let r = eval(&root, "resolution_hours");
    assert!(near(value(&r, "shanghai", "resolution_hours"), 24.0), "{r}");
}

#[test]
fn an_ndjson_export_is_mapped_too() {
    let root = root_with("salesforce");
    mapping(
        &root,
        "api_users",
        "[mapping]\nentity = \"owners\"\nformat = \"ndjson\"\n[mapping.fields]\nid = \"Id\"\nname = \"Name\"\nactive = \"IsActive\"\nteam = { expr = 'slug(row[\"Department\"])' }\n",
    );
    root.write(
        "users.ndjson",
        "{\"Id\": \"005X\", \"Name\": \"Li Lei\", \"IsActive\": true, \"Department\": \"Shanghai\"}\n\n{\"Id\": \"005Y\", \"Name\": \"Han Mei\", \"IsActive\": false, \"Department\": \"West\", \"Extra\": 1}\n",
    );
    let out = import(&root, "owners", "users.ndjson", "api_users");
    assert!(out.contains("imported 2 owners records"), "{out}");
    root.write(
        "bad.ndjson",
        "{\"Id\": \"005Z\", \"Name\": \"X\", \"Department\": \"Nowhere\"}\n",
    );
    let err = root
        .kpi(&["import", "owners", "bad.ndjson", "--mapping", "api_users"])
        .fails(1);
    assert!(
        err.contains("bad.ndjson:1: field 'team': unknown team \"nowhere\""),
        "{err}"
    );
}
