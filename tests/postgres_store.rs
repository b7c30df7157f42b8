//! The PostgreSQL record store (SPEC 20) against a real PostgreSQL
//! (`util::pg`): the same records give the same values, statuses, scores
//! and ranks as the embedded store, for every KPI and scorecard of the
//! library; imports are all or nothing with the SQLite import's messages;
//! destructive schema changes are refused with the same messages.

use serde_json::Value;

use crate::util::cli::Root;
use crate::util::pg;

/// Numbers whose last bits may differ with the order floating-point sums are
/// added in (PostgreSQL's aggregate vs the embedded pass): relative 1e-9.
fn same_number(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Every difference between two reports, as `path: a vs b`. Scores, ranks,
/// statuses, ids and every non-numeric field must be equal exactly.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    const EXACT: [&str; 4] = ["score", "rank", "rank_in_team", "weight"];
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if k == "loaded_at" {
                    continue;
                }
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let exact = EXACT.iter().any(|k| path.ends_with(&format!(".{k}")));
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (exact && x != y) || !same_number(x, y) {
                out.push(format!("{path}: {x} vs {y}"));
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

fn kpi_ids(root: &Root) -> Vec<String> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(root.path().join("kpis")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("[kpi.")
                && let Some(id) = rest.strip_suffix(']')
                && !id.contains('.')
            {
                ids.push(id.to_string());
            }
        }
    }
    ids.sort();
    ids
}

#[test]
fn the_whole_library_gives_the_same_results_on_both_stores() {
    let url = pg::database();
    let root = Root::demo();
    root.kpi(&["--db", &url, "demo", "--until", "2026-06-30"])
        .ok();
    let kpis = kpi_ids(&root).join(",");
    assert!(kpis.split(',').count() >= 30, "the library's KPIs: {kpis}");
    let mut requests: Vec<Vec<String>> = Vec::new();
    for as_of in ["2026-06-15T12:00:00+08:00", "2026-07-01T00:00:00+08:00"] {
        for card in ["sales", "service", "marketing", "sales_reps"] {
            for period in ["2026-Q2", "2026-Q1", "2025-Q3"] {
                requests.push(
                    [
                        "eval",
                        "--scorecard",
                        card,
                        "--period",
                        period,
                        "--as-of",
                        as_of,
                    ]
                    .map(String::from)
                    .to_vec(),
                );
            }
        }
        for period in ["2026-05", "2025", "2026-Q2"] {
            for who in [None, Some("--owners")] {
                let mut r: Vec<String> =
                    ["eval", "--kpi", &kpis, "--period", period, "--as-of", as_of]
                        .map(String::from)
                        .to_vec();
                r.extend(who.map(String::from));
                requests.push(r);
            }
        }
    }
    let mut diffs = Vec::new();
    let mut values = 0usize;
    for r in &requests {
        let mut args: Vec<&str> = r.iter().map(String::as_str).collect();
        args.extend(["--format", "json"]);
        let embedded = root.kpi(&args).json();
        let mut on_pg = vec!["--db", url.as_str()];
        on_pg.extend(&args);
        let pushed = root.kpi(&on_pg).json();
        values += embedded.to_string().matches("\"value\"").count();
        differences(&r.join(" "), &embedded, &pushed, &mut diffs);
    }
    assert!(values > 5_000, "compared {values} values");
    assert!(
        diffs.is_empty(),
        "{} difference(s) between the stores:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn an_import_with_a_bad_row_writes_nothing_and_names_file_line_and_field() {
    let url = pg::database();
    let root = Root::new();
    root.write("teams.csv", "id,name,parent\nhq,HQ,\neast,East,hq\n");
    let out = root
        .kpi(&["--db", &url, "import", "teams", "teams.csv"])
        .ok();
    assert!(out.contains("2 teams records"), "{out}");
    root.write(
        "deals.csv",
        "id,team,owner,customer,stage,amount,created_at,closed_at,campaign\n\
         d1,east,,,won,100,2026-04-01,2026-04-02,\n\
         d2,east,,,won,abc,2026-04-01,,\n\
         d3,west,,,lost,5,2026-04-01,,\n",
    );
    let err = root
        .kpi(&["--db", &url, "import", "deals", "deals.csv"])
        .fails(1);
    assert!(
        err.contains("deals.csv:3: field 'amount': expected a real number, got \"abc\""),
        "{err}"
    );
    assert!(
        err.contains("deals.csv:4: field 'team': unknown team \"west\""),
        "{err}"
    );
    let mut c = pg::client(&url);
    let n: i64 = c
        .query_one("SELECT count(*) FROM deals", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing of the bad import was written");
    // The good rows alone go in, through COPY, typed: a time is a timestamptz.
    root.write(
        "deals.csv",
        "id,team,stage,amount,created_at,closed_at\nd1,east,won,100,2026-04-01,2026-04-02 10:00:00\nd1,east,won,150,2026-04-01,\n",
    );
    let out = root
        .kpi(&["--db", &url, "import", "deals", "deals.csv"])
        .ok();
    assert!(out.contains("1 deals records"), "{out}");
    let row = c
        .query_one(
            "SELECT amount, closed_at IS NULL, pg_typeof(created_at)::text FROM deals WHERE id = 'd1'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 150.0, "the last row of a repeated id");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "timestamp with time zone");
    let generation: i64 = c
        .query_one(
            "SELECT generation FROM _kpi_data WHERE entity = 'deals'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(generation, 1);
}

#[test]
fn schema_additions_apply_and_destructive_changes_are_refused_as_on_sqlite() {
    let url = pg::database();
    let root = Root::demo();
    root.kpi(&["--db", &url, "demo", "--until", "2026-03-31"])
        .ok();
    let schema = root.read("kpis/schema.toml");
    // An added field becomes a typed column.
    let added = schema.replacen(
        "[entity.deals.fields]\n",
        "[entity.deals.fields]\nprobability = \"real?\"\n",
        1,
    );
    root.write("kpis/schema.toml", &added);
    root.kpi(&["--db", &url, "check"]).ok();
    root.kpi(&[
        "--db",
        &url,
        "eval",
        "--scorecard",
        "sales",
        "--period",
        "2026-Q1",
    ])
    .ok();
    let ty: String = pg::client(&url)
        .query_one(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'deals' AND column_name = 'probability'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ty, "double precision");
    // Removing a field that holds data is refused, with the SQLite store's message,
    // by `kpi check` and by every command that would migrate.
    let removed = added.replacen("email  = \"text?\"\n", "", 1);
    assert_ne!(removed, added, "the schema names owners.email as expected");
    root.write("kpis/schema.toml", &removed);
    root.remove("kpis/mappings/salesforce_user.toml");
    for db in [url.as_str(), "crm.db"] {
        let err = root.kpi(&["--db", db, "check"]).fails(1);
        assert!(
            err.contains("owners.email holds data; removing the field is refused"),
            "{db}: {err}"
        );
    }
    let err = root
        .kpi(&[
            "--db",
            &url,
            "eval",
            "--scorecard",
            "sales",
            "--period",
            "2026-Q1",
        ])
        .fails(1);
    assert!(err.contains("owners.email holds data"), "{err}");
    let still: i64 = pg::client(&url)
        .query_one("SELECT count(email) FROM owners", &[])
        .unwrap()
        .get(0);
    assert!(still > 0, "nothing was changed");
}

#[test]
fn the_formula_tests_pass_on_both_stores() {
    let url = pg::database();
    let root = Root::new();
    let embedded = root.kpi(&["test"]).ok();
    let on_pg = root.kpi(&["--db", &url, "test"]).ok();
    let summary = |out: &str| out.lines().last().unwrap_or_default().to_string();
    assert!(
        summary(&embedded).ends_with(" passed, 0 failed"),
        "{embedded}"
    );
    assert_eq!(summary(&on_pg), summary(&embedded), "{on_pg}");
    // Every case's private schema is gone again.
    let left: i64 = pg::client(&url)
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'kpi_scratch%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// The corners of the query API (NULLs, text order, bools, semi-joins,
/// sorted values, time values, spans, all_teams, to_date cuts, owner_via)
/// give the same value on both stores, for teams and for people.
#[test]
fn the_corners_of_the_query_api_give_the_same_values_on_both_stores() {
    let url = pg::database();
    let root = Root::demo();
    root.write(
        "kpis/edge_queries.toml",
        &std::fs::read_to_string(crate::util::cli::fixture("postgres/edge_queries.toml")).unwrap(),
    );
    root.kpi(&["--db", &url, "demo", "--until", "2026-06-30"])
        .ok();
    let ids: Vec<String> = kpi_ids(&root)
        .into_iter()
        .filter(|k| k.starts_with("e_"))
        .collect();
    assert_eq!(ids.len(), 16, "{ids:?}");
    let ids = ids.join(",");
    let mut diffs = Vec::new();
    for period in ["2026-Q2", "2026-Q1"] {
        for who in [None, Some("--owners")] {
            let mut args = vec!["eval", "--kpi", &ids, "--period", period];
            args.extend(["--as-of", "2026-06-15T12:00:00+08:00", "--format", "json"]);
            args.extend(who);
            let embedded = root.kpi(&args).json();
            let text = embedded.to_string();
            assert!(!text.contains("\"error\""), "no formula fails: {text}");
            let mut on_pg = vec!["--db", url.as_str()];
            on_pg.extend(&args);
            differences(
                &args.join(" "),
                &embedded,
                &root.kpi(&on_pg).json(),
                &mut diffs,
            );
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `KPI_DB` takes a URL like `--db`; `kpi alerts` runs on PostgreSQL too, and a
/// database that is not there refuses clearly (exit 1) without showing the password.
#[test]
fn kpi_db_names_postgres_and_a_missing_database_refuses_clearly() {
    let url = pg::database();
    let with_password = url.replacen("postgres://kpi@", "postgres://kpi:hunter2@", 1);
    let root = Root::new();
    root.write("teams.csv", "id,name,parent\nhq,HQ,\n");
    let out = root
        .command(&["import", "teams", "teams.csv"])
        .env("KPI_DB", &with_password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: i64 = pg::client(&url)
        .query_one("SELECT count(*) FROM teams", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let listed = root.kpi(&["--db", with_password.as_str(), "alerts"]).ok();
    assert!(listed.contains("alerts as of"), "{listed}");
    let missing = format!("{with_password}_missing");
    for args in [vec!["serve", "--addr", "127.0.0.1:0"], vec!["alerts"]] {
        let mut all = vec!["--db", missing.as_str()];
        all.extend(&args);
        let err = root.kpi(&all).fails(1);
        assert!(err.contains("_missing"), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("kpi:***@"), "{err}");
    }
}

/// `args` after `--db url`.
fn on_db<'a>(url: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    [&["--db", url][..], args].concat()
}

/// The config history lives in PostgreSQL with the records: `kpi rollback` records the
/// files it starts with and its rollback there, `kpi history` and `kpi diff` read them
/// back, and the files on disk are the version's again, byte for byte.
#[test]
fn the_config_history_lives_in_postgres_and_a_rollback_restores_the_files() {
    let url = pg::database();
    let root = Root::new();
    let original = root.read("kpis/targets.toml");
    let with = |args: &[&'static str]| on_db(&url, args);
    // Recording the start: version 1, the files as they are; a rollback to it changes nothing.
    root.kpi(&with(&["rollback", "1"])).ok();
    let edited = format!("{original}\n# a note\n");
    root.write("kpis/targets.toml", &edited);
    // The edited files become version 2; rolling back to 1 writes the original back as 3.
    root.kpi_env(&with(&["rollback", "1"]), &[("USER", "carol")])
        .ok();
    assert_eq!(root.read("kpis/targets.toml"), original);
    let rows: Vec<(i64, String, Option<String>)> = pg::client(&url)
        .query(
            "SELECT version, origin, actor FROM _kpi_config_history ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "file".to_string(), Some("file".to_string())),
            (2, "file".to_string(), Some("file".to_string())),
            (3, "rollback".to_string(), Some("cli:carol".to_string())),
        ]
    );
    let list = root.kpi(&with(&["history"])).ok();
    assert!(
        list.contains("rollback") && list.contains("cli:carol"),
        "{list}"
    );
    let patch = root.kpi(&with(&["diff", "1", "2"])).ok();
    assert!(
        patch.contains("+# a note") && patch.contains("kpis/targets.toml"),
        "{patch}"
    );
    let err = root.kpi(&with(&["diff", "1", "9"])).fails(1);
    assert!(err.contains("versions 1 to 3"), "{err}");
}

/// Frozen assessments live in PostgreSQL with the records (SPEC 16 on SPEC 20): a closed
/// quarter keeps its result through a backdated deal, the restatement names what the
/// deal changed, and a reopen drops the freeze and is recorded in the history there.
#[test]
fn a_quarter_closes_reopens_and_restates_on_postgres() {
    let url = pg::database();
    let root = Root::new();
    let on = |args: &[&'static str]| on_db(&url, args);
    root.kpi(&on(&["demo", "--until", "2026-06-30"])).ok();
    let out = root.kpi(&on(&["close", "2026-Q1"])).ok();
    assert!(out.contains("froze 2026-Q1"), "{out}");
    let eval = |root: &Root| {
        root.kpi(&on(&["eval", "--period", "2026-Q1", "--format", "json"]))
            .json()
    };
    let frozen = eval(&root);
    assert!(
        frozen
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["frozen"] == true),
        "{frozen}"
    );
    root.write(
        "late.csv",
        "id,team,owner,customer,stage,amount,created_at,closed_at,campaign\nlate-1,shanghai,,,won,5000000,2026-01-20,2026-02-15,\n",
    );
    root.kpi(&on(&["import", "deals", "late.csv"])).ok();
    assert_eq!(eval(&root), frozen, "the frozen result is unchanged");
    let r = root
        .kpi(&on(&["restatement", "2026-Q1", "--format", "json"]))
        .json();
    let revenue = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scorecard"] == "sales" && c["subject"] == "shanghai" && c["kpi"] == "revenue")
        .unwrap_or_else(|| panic!("{r:#}"));
    let delta =
        revenue["live"]["value"].as_f64().unwrap() - revenue["frozen"]["value"].as_f64().unwrap();
    assert!((delta - 5_000_000.0).abs() < 1e-6, "{revenue}");
    let out = root.kpi(&on(&["reopen", "2026-Q1"])).ok();
    assert!(out.contains("reopened 2026-Q1"), "{out}");
    let err = root.kpi(&on(&["restatement", "2026-Q1"])).fails(1);
    assert!(err.contains("unknown frozen period '2026-Q1'"), "{err}");
    let mut client = pg::client(&url);
    let frozen_rows: i64 = client
        .query_one("SELECT count(*) FROM _kpi_frozen", &[])
        .unwrap()
        .get(0);
    assert_eq!(frozen_rows, 0);
    let origin: String = client
        .query_one(
            "SELECT origin FROM _kpi_config_history ORDER BY version DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(origin, "reopen");
}

/// Imports through a mapping (SPEC 15) write to PostgreSQL: the Salesforce sample exports,
/// lookups of records already there included, give the same KPI values on both stores.
#[test]
fn mapped_imports_write_to_postgres_and_give_the_embedded_stores_values() {
    let url = pg::database();
    let root = Root::new();
    root.fixture("teams.csv");
    let dir = crate::util::cli::fixture("salesforce");
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), root.path().join(e.file_name())).unwrap();
    }
    let steps: [&[&str]; 6] = [
        &["import", "teams", "teams.csv"],
        &[
            "import",
            "owners",
            "User.csv",
            "--mapping",
            "salesforce_user",
        ],
        &[
            "import",
            "customers",
            "Account.csv",
            "--mapping",
            "salesforce_account",
        ],
        &[
            "import",
            "deals",
            "Opportunities.csv",
            "--mapping",
            "salesforce_opportunity",
        ],
        &[
            "import",
            "stage_events",
            "OpportunityHistory.csv",
            "--mapping",
            "salesforce_opportunity_history",
        ],
        &[
            "import",
            "tickets",
            "Case.csv",
            "--mapping",
            "salesforce_case",
        ],
    ];
    for step in steps {
        let embedded = root.kpi(step).ok();
        let on_pg = root.kpi(&on_db(&url, step)).ok();
        assert_eq!(embedded, on_pg, "{step:?}");
    }
    let eval = [
        "eval",
        "--kpi",
        "revenue,deals_won,win_rate,lead_to_won,new_customers,resolution_hours",
        "--period",
        "2026-Q1",
        "--as-of",
        "2026-04-02T00:00:00Z",
        "--format",
        "json",
    ];
    let embedded = root.kpi(&eval).json();
    let on_pg = root.kpi(&on_db(&url, &eval)).json();
    let revenue = crate::util::cli::value(&on_pg, "shanghai", "revenue");
    assert!(
        revenue.is_some_and(|v| (v - 125_000.0).abs() < 1e-6),
        "{on_pg}"
    );
    let mut diffs = Vec::new();
    differences("", &embedded, &on_pg, &mut diffs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// A long-running engine on PostgreSQL (what `kpi serve` will be) sees what another process
/// wrote: `Engine::refresh` polls the record generations there, reads the written entity
/// again, and reloads the frozen periods another process closed.
#[test]
fn an_engine_on_postgres_sees_another_processs_import_and_close() {
    use kpi_engine::engine::{Engine, EngineOptions, EvalRequest};
    let url = pg::database();
    let root = Root::new();
    root.kpi(&on_db(&url, &["demo", "--until", "2026-06-30"]))
        .ok();
    let engine = Engine::open(&EngineOptions {
        root: root.path().to_path_buf(),
        db: url.clone().into(),
        serving: true,
    })
    .unwrap();
    assert!(
        engine.refresh().unwrap().is_none(),
        "nothing written since it opened"
    );
    let q1 = "2026-Q1".parse().unwrap();
    let sales = |engine: &Engine| {
        let req = EvalRequest {
            scorecards: vec!["sales".into()],
            periods: vec![q1],
            as_of: 1_782_000_000_000,
            ..EvalRequest::default()
        };
        serde_json::to_value(&engine.snapshot().evaluate(&req).unwrap()[0]).unwrap()
    };
    let revenue = |r: &Value| crate::util::cli::value(r, "shanghai", "revenue").unwrap();
    let before = sales(&engine);
    root.write(
        "late.csv",
        "id,team,owner,customer,stage,amount,created_at,closed_at,campaign\nlate-1,shanghai,,,won,5000000,2026-01-20,2026-02-15,\n",
    );
    root.kpi(&on_db(&url, &["import", "deals", "late.csv"]))
        .ok();
    let (changed, _) = engine.refresh().unwrap().expect("the import is seen");
    assert_eq!(changed, ["deals"]);
    let after = sales(&engine);
    assert!(
        (revenue(&after) - revenue(&before) - 5_000_000.0).abs() < 1e-6,
        "{before}\n{after}"
    );
    assert!(after.get("frozen").is_none());
    root.kpi(&on_db(&url, &["close", "2026-Q1"])).ok();
    engine.refresh().unwrap();
    let frozen = sales(&engine);
    assert_eq!(frozen["frozen"], true, "{frozen}");
    assert_eq!(frozen["teams"], after["teams"]);
}

/// The alert scheduler's lease on PostgreSQL: one holder at a time, and when the holder's
/// session ends (the process died) the next one to try takes it over.
#[test]
fn one_process_at_a_time_holds_the_scheduler_lease_and_another_takes_it_over() {
    use kpi_engine::store::pg::lease::Lease;
    let url = pg::database();
    let mut first = Lease::try_take(&url).unwrap().expect("nobody holds it yet");
    assert!(first.still_held());
    assert!(
        Lease::try_take(&url).unwrap().is_none(),
        "held by the first"
    );
    // The holder's session ends, as when its process is killed.
    let pid: i32 = pg::client(&url)
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 7340115202 % 4294967296 AND granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    pg::client(&url)
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    // The signal is asynchronous: the session ends soon after.
    let lost = (0..100).any(|_| {
        let held = first.still_held();
        if held {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        !held
    });
    assert!(lost, "the holder's connection is gone");
    let mut second = (0..100)
        .find_map(|_| {
            let lease = Lease::try_take(&url).unwrap();
            if lease.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            lease
        })
        .expect("the lock is freed with the session");
    assert!(second.still_held());
}

/// The silences family through the `Db` seam on PostgreSQL: stored with its lists, bounds
/// and days, listed back equal (ids from the sequence), and removed.
#[test]
fn silences_are_stored_listed_and_removed_on_postgres() {
    use kpi_engine::alerts::silence::{self, SilenceSpec, Weekly};
    use kpi_engine::store::engine_db::Db;
    let url = pg::database();
    let client = std::cell::RefCell::new(pg::client(&url));
    let db = Db::Postgres(&client);
    let cal = kpi_engine::period::Calendar::utc();
    let spec = SilenceSpec {
        kpis: Some(vec!["revenue".into()]),
        teams: Some(vec!["north".into(), "south".into()]),
        from: Some("2026-10-01T00:00:00Z".into()),
        until: Some("2026-12-31T00:00:00Z".into()),
        weekly: Some(Weekly {
            days: vec!["sat".into(), "sun".into()],
        }),
        comment: Some("quarter end".into()),
    };
    let built = silence::build(&cal, &spec, String::new()).unwrap();
    let first = silence::add(&db, &built, 1_780_000_000_000).unwrap();
    let second = silence::add(
        &db,
        &silence::build(
            &cal,
            &SilenceSpec {
                until: Some("2027-01-31T00:00:00Z".into()),
                ..SilenceSpec::default()
            },
            String::new(),
        )
        .unwrap(),
        1,
    )
    .unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(
        silence::stored(&db).unwrap(),
        [first.clone(), second.clone()]
    );
    assert!(silence::remove(&db, first.id.parse().unwrap()).unwrap());
    assert!(!silence::remove(&db, first.id.parse().unwrap()).unwrap());
    assert_eq!(silence::stored(&db).unwrap(), [second]);
}

/// Several processes appending config-history versions at once (servers sharing the
/// database, a `kpi rollback` beside them) each get a version of their own, in a
/// transaction or not: none fails on the version's primary key, none is lost.
#[test]
fn config_versions_appended_at_once_are_one_each_and_none_fails() {
    use kpi_engine::store::config_history::{self, NewVersion, Origin};
    use kpi_engine::store::engine_db::Db;
    let url = pg::database();
    // The tables exist before the race (made by the first server of a deployment).
    let first = std::cell::RefCell::new(pg::client(&url));
    config_history::list(&Db::Postgres(&first), 1).unwrap();
    let appenders: Vec<_> = (0..4)
        .map(|who| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = std::cell::RefCell::new(pg::client(&url));
                let db = Db::Postgres(&client);
                (0..12)
                    .map(|i| {
                        let files = std::collections::BTreeMap::from([(
                            "kpis/a.toml".to_string(),
                            format!("x = {who}{i}"),
                        )]);
                        let hash = format!("h{who}-{i}");
                        let new = NewVersion {
                            applied_at: "2026-12-02T00:00:00Z",
                            origin: Origin::Api,
                            actor: "race",
                            files_changed: &[],
                            content_hash: &hash,
                            files: &files,
                        };
                        if i % 2 == 0 {
                            config_history::append(&db, &new).unwrap()
                        } else {
                            db.in_transaction(|tx| config_history::append(tx, &new))
                                .unwrap()
                        }
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut got: Vec<u64> = appenders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (1..=48).collect::<Vec<u64>>());
}
