//! The rough edges a new user hits on the command line: help texts, usage
//! errors, a team filter that keeps ranks, one error for one broken file.

use serde_json::Value;

use crate::util::cli::Root;

const AS_OF: &str = "2026-06-30T00:00:00+08:00";

fn sales_json(root: &Root, extra: &[&str]) -> Value {
    root.scorecard_json("sales", "2026-Q1", AS_OF, extra)
}

#[test]
fn a_team_filter_shows_the_teams_rank_among_all_teams() {
    let root = Root::demo();
    let all = sales_json(&root, &[]);
    let teams = all["teams"].as_array().unwrap();
    let last = teams.last().unwrap();
    let id = last["team"].as_str().unwrap();
    assert!(last["rank"].as_u64().unwrap() > 1, "{all:#}");
    let one = sales_json(&root, &["--team", id]);
    let shown = one["teams"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{one:#}");
    assert_eq!(shown[0]["rank"], last["rank"], "{one:#}");
    assert_eq!(shown[0]["score"], last["score"]);
}

#[test]
fn an_unknown_language_is_a_usage_error() {
    let root = Root::demo();
    let err = root.kpi(&["eval", "--lang", "fr"]).fails(2);
    assert!(err.contains("possible values: en, zh"), "{err}");
}

#[test]
fn a_period_range_is_capped_with_a_clear_error() {
    let root = Root::demo();
    let err = root.kpi(&["eval", "--period", "0001-Q1..9999-Q4"]).fails(1);
    assert!(
        err.contains("--period:") && err.contains("at most 100"),
        "{err}"
    );
}

#[test]
fn import_help_lists_the_entities_of_the_schema() {
    let root = Root::new();
    let help = root.kpi(&["import", "--help"]).ok();
    for entity in ["teams", "deals", "owners", "web_traffic"] {
        assert!(help.contains(&format!("\n  {entity} ")), "{entity}: {help}");
    }
    assert!(
        help.contains("closed_at?"),
        "optional fields are marked: {help}"
    );
}

#[test]
fn serve_help_names_the_tokens_and_every_command_has_examples() {
    let root = Root::new();
    let help = root.kpi(&["serve", "--help"]).ok();
    assert!(
        help.contains("KPI_ADMIN_TOKEN") && help.contains("KPI_READ_TOKEN"),
        "{help}"
    );
    for cmd in ["check", "import", "demo", "eval", "alerts", "test", "serve"] {
        let help = root.kpi(&[cmd, "--help"]).ok();
        assert!(
            help.contains("Example"),
            "kpi {cmd} --help has no example:\n{help}"
        );
    }
}

#[test]
fn one_broken_kpi_file_is_one_error_without_knock_on_hints() {
    let root = Root::new();
    let text = root.read("kpis/service.toml");
    let broken = text.replacen("name = \"", "name = ", 1);
    root.write("kpis/service.toml", &broken);
    let err = root.kpi(&["check"]).fails(1);
    assert!(err.contains("kpis/service.toml:"), "{err}");
    assert!(
        !err.contains("unknown KPI") && !err.contains("did you mean"),
        "no knock-on errors for the KPIs of the broken file:\n{err}"
    );
    assert!(err.contains("could not be read"), "{err}");
    assert!(!err.contains("nothing was done"), "{err}");
    assert!(err.lines().count() <= 4, "{err}");
}

#[test]
fn same_span_is_the_elapsed_time_exactly_across_a_daylight_saving_change() {
    // New York: 2026-Q1 starts 2026-01-01T00:00-05:00 (05:00Z); as of 2026-03-15T00:00-04:00
    // (04:00Z, after the March 8 change) 73 days less 1 hour have elapsed. The same span of
    // 2025-Q4 starts 2025-10-01T00:00-04:00 (04:00Z) and ends 73 d - 1 h later: 2025-12-13T03:00Z,
    // which is 2025-12-12 22:00 local (EST). d1 (21:30 local) is inside, d2 (22:30) is not.
    // growth = 500 / 200 - 1 = 1.5
    let root = Root::new();
    root.write("kpis/settings.toml", "timezone = \"America/New_York\"\n");
    root.write(
        "kpis/tests/dst.toml",
        r#"[[case]]
name = "same span across DST"
period = "2026-Q1"
team = "t"
as_of = "2026-03-15T00:00:00-04:00"
[case.records]
teams = [{ id = "t", name = "T" }]
deals = [
  { id = "d1", team = "t", stage = "won", amount = 200.0, created_at = "2025-09-01", closed_at = "2025-12-12 21:30:00" },
  { id = "d2", team = "t", stage = "won", amount = 700.0, created_at = "2025-09-01", closed_at = "2025-12-12 22:30:00" },
  { id = "d3", team = "t", stage = "won", amount = 500.0, created_at = "2025-12-01", closed_at = "2026-02-01" },
]
[case.expect]
revenue_growth = { value = 1.5, tolerance = 1e-12 }
"#,
    );
    // Only this file's cases: the library's tests assume Shanghai time.
    for f in std::fs::read_dir(root.path().join("kpis/tests")).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap() != "dst.toml" {
            std::fs::remove_file(p).unwrap();
        }
    }
    let out = root.kpi(&["test"]).ok();
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn an_open_period_shows_projections_and_a_projected_score() {
    let root = Root::demo();
    // 2026-Q2 is open on 2026-05-16 (Shanghai): 45 of its 91 days have elapsed.
    let open = root.scorecard_json("sales", "2026-Q2", "2026-05-16T00:00:00+08:00", &[]);
    let t = &open["teams"][0];
    assert!(t["projected_score"].is_number(), "{t:#}");
    let elapsed = 45.0 / 91.0;
    for k in t["kpis"].as_array().unwrap() {
        assert!(
            k.get("projected").is_some() && k.get("projected_score").is_some(),
            "{k:#}"
        );
        if k["kpi"] == "revenue" {
            let (v, p) = (
                k["value"].as_f64().unwrap(),
                k["projected"].as_f64().unwrap(),
            );
            assert!((p - v / elapsed).abs() < 1e-6 * p.max(1.0), "{k:#}");
        }
        if k["kpi"] == "win_rate" {
            assert_eq!(
                k["projected"], k["value"],
                "a rate is its own projection: {k:#}"
            );
        }
    }
    // Before at_risk_after (0.25) of the period, a cumulative KPI has no projection yet.
    let early = root.scorecard_json("sales", "2026-Q2", "2026-04-10T00:00:00+08:00", &[]);
    let revenue = early["teams"][0]["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kpi"] == "revenue")
        .unwrap()
        .clone();
    assert!(revenue["projected"].is_null(), "{revenue:#}");
    // A closed period has none of these fields.
    let closed = sales_json(&root, &[]);
    assert!(closed["teams"][0].get("projected_score").is_none());
    assert!(closed["teams"][0]["kpis"][0].get("projected").is_none());
}
