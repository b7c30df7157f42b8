//! End-to-end tests of the `kpi` command line (SPEC sections 2, 3.3, 4, 5, 11, 13).
//!
//! Every test runs the real binary against its own temp deployment root holding a copy of the
//! repository's kpis/ and scripts/ (settings: Asia/Shanghai, fiscal year from January).
//! Nothing reads the wall clock: demo data stops at `--until 2026-06-30` and every eval has
//! `--as-of`.
//!
//! tests/fixtures/teams.csv: east (华东区) is the parent of shanghai and hangzhou; west is alone.
//! tests/fixtures/deals.csv, by 2026-Q1 = [2026-01-01, 2026-04-01) Asia/Shanghai:
//!   d1 shanghai won  100000  closed 2026-02-01                      in Q1
//!   d2 shanghai lost  40000  closed 2026-02-02                      in Q1
//!   d3 hangzhou won   250.5  closed 2026-03-31 23:59:59 (local)     in Q1 (last second)
//!   d4 hangzhou won    7000  closed 2026-04-01T00:30:00+08:00       Q2, not Q1
//!   d5 west     won     999  closed 2026-03-10                      in Q1
//!   d6 hangzhou lost    300  closed 2026-03-15                      in Q1
//!   d7 shanghai negotiation 5000, not closed                        nowhere
//!   d8 shanghai won    1500  closed 2025-12-31T16:30:00Z            = 2026-01-01 00:30 local: Q1
//! So in 2026-Q1:
//!   shanghai: revenue 101500,   won 2, lost 1, win_rate 2/3
//!   hangzhou: revenue 250.5,    won 1, lost 1, win_rate 1/2
//!   east (= shanghai + hangzhou): revenue 101750.5, won 3, lost 2, win_rate 3/5
//!   west:     revenue 999,      won 1, lost 0, win_rate 1

use crate::util::cli as common;

use common::{Root, close, keys, kpi, team, value};
use serde_json::Value;

const Q1_AS_OF: &str = "2026-04-02T00:00:00Z";
const DEMO_AS_OF: &str = "2026-06-30T00:00:00+08:00";

/// A root with the fixture teams and deals imported.
fn imported() -> Root {
    let root = Root::new();
    root.fixture("teams.csv");
    root.fixture("deals.csv");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    root.kpi(&["import", "deals", "deals.csv"]).ok();
    root
}

/// `eval --kpi KPIS --period P --as-of Q1_AS_OF --format json`.
fn eval_kpis(root: &Root, kpis: &str, period: &str) -> Value {
    root.kpi(&[
        "eval", "--kpi", kpis, "--period", period, "--as-of", Q1_AS_OF, "--format", "json",
    ])
    .json()
}

/// `eval --scorecard sales --period P --as-of DEMO_AS_OF --format F` (plus `extra`).
fn eval_sales(root: &Root, period: &str, format: &str, extra: &[&str]) -> common::Output {
    let mut args = vec![
        "eval",
        "--scorecard",
        "sales",
        "--period",
        period,
        "--as-of",
        DEMO_AS_OF,
        "--format",
        format,
    ];
    args.extend_from_slice(extra);
    root.kpi(&args)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The `N` of a last line `N passed, M failed`, checking M.
fn passed_count(stdout: &str, failed: usize) -> usize {
    let last = stdout.lines().last().unwrap_or_default();
    let (n, rest) = last
        .split_once(" passed, ")
        .unwrap_or_else(|| panic!("last line is not 'N passed, M failed': {last:?}"));
    assert_eq!(rest, format!("{failed} failed"), "last line: {last:?}");
    n.parse()
        .unwrap_or_else(|_| panic!("not a count: {n:?} in {last:?}"))
}

// ------------------------------------------------------------------------------------ check

#[test]
fn check_accepts_the_standard_library() {
    let out = Root::new().kpi(&["check"]).ok();
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("KPIs"), "{out}");
}

#[test]
fn check_reports_broken_toml_with_line_and_column() {
    let root = Root::new();
    root.write("kpis/broken.toml", "[kpi.x\nname = 1\n");
    let err = root.kpi(&["check"]).fails(1);
    let line = err
        .lines()
        .find(|l| l.starts_with("kpis/broken.toml:"))
        .unwrap_or_else(|| panic!("no kpis/broken.toml:LINE:COL line in:\n{err}"));
    let mut parts = line.splitn(4, ':');
    parts.next();
    let l: usize = parts.next().unwrap().parse().expect("a line number");
    let c: usize = parts.next().unwrap().parse().expect("a column number");
    assert_eq!(l, 1, "the unclosed table header is on line 1: {line}");
    assert!(c >= 1, "{line}");
    assert!(parts.next().unwrap().starts_with(" error:"), "{line}");
}

#[test]
fn check_finds_a_misspelt_field_in_a_formula() {
    let root = Root::new();
    root.write(
        "kpis/extra.toml",
        "# A KPI with a misspelt field name.\n\
         [kpi.typo]\n\
         name = \"Typo\"\n\
         unit = \"currency\"\n\
         direction = \"higher\"\n\
         formula = '''\n\
         records(\"deals\").sum(\"amout\")\n\
         '''\n",
    );
    let err = root.kpi(&["check"]).fails(1);
    assert!(err.contains("kpis/extra.toml:7:"), "{err}");
    assert!(err.contains("did you mean 'amount'"), "{err}");
    assert!(err.contains("amout"), "{err}");
}

#[test]
fn check_refuses_a_kpi_cycle() {
    let root = Root::new();
    root.write(
        "kpis/cycle.toml",
        "[kpi.a]\nname = \"A\"\nunit = \"count\"\ndirection = \"higher\"\nformula = 'kpi(\"b\")'\n\
         [kpi.b]\nname = \"B\"\nunit = \"count\"\ndirection = \"higher\"\nformula = 'kpi(\"a\") + 1'\n",
    );
    let err = root.kpi(&["check"]).fails(1);
    assert!(err.contains("cycle"), "{err}");
    assert!(err.contains("kpis/cycle.toml:"), "{err}");
}

#[test]
fn check_refuses_a_weight_for_an_unknown_kpi() {
    let root = Root::new();
    let mut cards = root.read("kpis/scorecards.toml");
    if !cards.ends_with('\n') {
        cards.push('\n');
    }
    let line = cards.lines().count() + 5; // after a blank line and three others
    cards.push_str(
        "\n[scorecard.extra]\nname = \"Extra\"\n[scorecard.extra.weights]\n\
         default = { revenue = 10, no_such_kpi = 5 }\n",
    );
    root.write("kpis/scorecards.toml", &cards);
    let err = root.kpi(&["check"]).fails(1);
    assert!(
        err.contains(&format!("kpis/scorecards.toml:{line}:")),
        "{err}"
    );
    assert!(err.contains("no_such_kpi"), "{err}");
}

#[test]
fn bad_usage_exits_2() {
    let root = Root::new();
    let err = root.kpi(&["eval", "--format", "xml"]).fails(2);
    assert!(err.contains("xml"), "{err}");
    root.kpi(&["no-such-command"]).fails(2);
    root.kpi(&["import", "deals"]).fails(2);
}

// ------------------------------------------------------------------------------ main flow

#[test]
fn import_then_eval_gives_hand_computed_values() {
    let root = Root::new();
    root.fixture("teams.csv");
    root.fixture("deals.csv");
    root.kpi(&["check"]).ok();
    let out = root.kpi(&["import", "teams", "teams.csv"]).ok();
    assert!(out.contains('4'), "{out}");
    let out = root.kpi(&["import", "deals", "deals.csv"]).ok();
    assert!(out.contains('8'), "{out}");

    let r = eval_kpis(&root, "revenue,win_rate,deals_won", "2026-Q1");
    assert_eq!(
        keys(&r),
        ["as_of", "period", "scorecard", "subjects", "teams"],
        "{r:#}"
    );
    assert!(r["scorecard"].is_null(), "{r:#}");
    assert_eq!(r["period"], "2026-Q1");
    assert_eq!(r["as_of"], Q1_AS_OF);
    let mut ids: Vec<&str> = r["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["team"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["east", "hangzhou", "shanghai", "west"]);

    let expect = [
        ("shanghai", 101500.0, 2.0, 2.0 / 3.0),
        ("hangzhou", 250.5, 1.0, 0.5),
        ("east", 101750.5, 3.0, 0.6),
        ("west", 999.0, 1.0, 1.0),
    ];
    for (t, revenue, won, win_rate) in expect {
        let got = |k| value(&r, t, k).unwrap_or_else(|| panic!("{t} {k} has no value"));
        assert!(
            close(got("revenue"), revenue),
            "{t} revenue {}",
            got("revenue")
        );
        assert!(
            close(got("deals_won"), won),
            "{t} deals_won {}",
            got("deals_won")
        );
        assert!(
            close(got("win_rate"), win_rate),
            "{t} win_rate {}",
            got("win_rate")
        );
    }
    // The parent is exactly the sum of its two children.
    for k in ["revenue", "deals_won"] {
        let sum = value(&r, "shanghai", k).unwrap() + value(&r, "hangzhou", k).unwrap();
        assert!(close(value(&r, "east", k).unwrap(), sum), "east {k}");
    }

    // No scorecard: no score, rank or weight anywhere; Q1 is closed as of 2026-04-02.
    for t in r["teams"].as_array().unwrap() {
        assert_eq!(keys(t), ["kpis", "team"], "{t:#}");
        let lines = t["kpis"].as_array().unwrap();
        let order: Vec<&str> = lines.iter().map(|k| k["kpi"].as_str().unwrap()).collect();
        assert_eq!(order, ["revenue", "win_rate", "deals_won"]);
        for k in lines {
            assert_eq!(keys(k), ["kpi", "status", "target", "value"], "{k:#}");
            let status = k["status"].as_str().unwrap();
            if k["target"].is_null() {
                assert_eq!(status, "no_target", "{k:#}");
            } else {
                // All three KPIs are `higher`.
                let met = num(&k["value"]) >= num(&k["target"]);
                assert_eq!(status, if met { "met" } else { "missed" }, "{k:#}");
            }
        }
    }

    // d4 (2026-04-01 00:30 Shanghai) is in Q2, not lost.
    let q2 = eval_kpis(&root, "revenue", "2026-Q2");
    assert!(close(value(&q2, "hangzhou", "revenue").unwrap(), 7000.0));
    assert!(close(value(&q2, "east", "revenue").unwrap(), 7000.0));

    // UTF-8 team names reach the table.
    let table = root
        .kpi(&[
            "eval", "--kpi", "revenue", "--period", "2026-Q1", "--as-of", Q1_AS_OF,
        ])
        .ok();
    assert!(table.contains("华东区"), "{table}");
}

// --------------------------------------------------------------------------------- import

#[test]
fn import_with_bad_rows_reports_each_and_writes_nothing() {
    let root = Root::new();
    root.fixture("teams.csv");
    root.fixture("deals_bad.csv");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    let err = root.kpi(&["import", "deals", "deals_bad.csv"]).fails(1);
    assert!(
        err.contains(r#"deals_bad.csv:3: field 'amount': expected a real number, got "abc""#),
        "{err}"
    );
    let team_line = err
        .lines()
        .find(|l| l.starts_with("deals_bad.csv:4:"))
        .unwrap_or_else(|| panic!("no deals_bad.csv:4: line in:\n{err}"));
    assert!(team_line.contains("nowhere"), "{team_line}");
    assert!(!err.contains("deals_bad.csv:2:"), "row 2 is good: {err}");

    // Row 2 (x1, won 100 in shanghai) was good but nothing of the import was written: deals
    // hold no record at all, so the deal KPIs have no data (SPEC 15), not 0.
    let r = eval_kpis(&root, "revenue,deals_won", "2026-Q1");
    assert_eq!(value(&r, "shanghai", "revenue"), None);
    assert_eq!(value(&r, "shanghai", "deals_won"), None);
    assert_eq!(value(&r, "east", "deals_won"), None);

    // And the database is still usable.
    root.fixture("deals.csv");
    root.kpi(&["import", "deals", "deals.csv"]).ok();
    let r = eval_kpis(&root, "deals_won", "2026-Q1");
    assert_eq!(value(&r, "east", "deals_won"), Some(3.0));
}

#[test]
fn ndjson_import_upserts_by_id() {
    let root = imported();
    root.write(
        "more.ndjson",
        concat!(
            r#"{"id":"n1","team":"west","stage":"won","amount":10,"created_at":"2026-01-05","closed_at":"2026-02-01"}"#,
            "\n",
            r#"{"id":"n2","team":"west","stage":"won","amount":20.5,"created_at":"2026-01-05","closed_at":"2026-02-01T10:00:00+08:00","owner":null}"#,
            "\n",
        ),
    );
    let out = root.kpi(&["import", "deals", "more.ndjson"]).ok();
    assert!(out.contains('2'), "{out}");
    let r = eval_kpis(&root, "revenue,deals_won", "2026-Q1");
    assert!(close(
        value(&r, "west", "revenue").unwrap(),
        999.0 + 10.0 + 20.5
    ));
    assert_eq!(value(&r, "west", "deals_won"), Some(3.0));

    // The same id again with another amount replaces the record (.jsonl is NDJSON too).
    root.write(
        "again.jsonl",
        "{\"id\":\"n1\",\"team\":\"west\",\"stage\":\"won\",\"amount\":110,\"created_at\":\"2026-01-05\",\"closed_at\":\"2026-02-01\"}\n",
    );
    root.kpi(&["import", "deals", "again.jsonl"]).ok();
    let r = eval_kpis(&root, "revenue,deals_won", "2026-Q1");
    assert!(close(
        value(&r, "west", "revenue").unwrap(),
        999.0 + 110.0 + 20.5
    ));
    assert_eq!(value(&r, "west", "deals_won"), Some(3.0));
    assert_eq!(value(&r, "shanghai", "deals_won"), Some(2.0));
}

#[test]
fn import_refuses_an_unknown_column_with_a_hint() {
    let root = Root::new();
    root.fixture("teams.csv");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    root.write(
        "typo.csv",
        "id,team,stage,amout,created_at\nx1,shanghai,won,100,2026-01-05\n",
    );
    let err = root.kpi(&["import", "deals", "typo.csv"]).fails(1);
    assert!(err.contains("typo.csv:"), "{err}");
    assert!(err.contains("'amout'"), "{err}");
    assert!(err.contains("did you mean 'amount'"), "{err}");
    // Nothing written: no deal at all, so no data (SPEC 15).
    let r = eval_kpis(&root, "deals_won", "2026-Q1");
    assert_eq!(value(&r, "east", "deals_won"), None);
}

#[test]
fn import_format_flag_overrides_the_extension() {
    let root = Root::new();
    root.fixture("teams.csv");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    root.write(
        "deals.txt",
        "{\"id\":\"t1\",\"team\":\"hangzhou\",\"stage\":\"won\",\"amount\":42,\"created_at\":\"2026-01-05\",\"closed_at\":\"2026-03-01\"}\n",
    );
    let err = root.kpi(&["import", "deals", "deals.txt"]).fails(1);
    assert!(err.contains("--format"), "{err}");
    root.kpi(&["import", "deals", "deals.txt", "--format", "ndjson"])
        .ok();
    root.write(
        "deals2.data",
        "id,team,stage,amount,created_at,closed_at\nt2,hangzhou,won,8,2026-01-05,2026-03-02\n",
    );
    root.kpi(&["import", "deals", "deals2.data", "--format", "csv"])
        .ok();
    let r = eval_kpis(&root, "revenue", "2026-Q1");
    assert!(close(value(&r, "hangzhou", "revenue").unwrap(), 50.0));
    assert!(close(value(&r, "east", "revenue").unwrap(), 50.0));
}

// ------------------------------------------------------------------------ demo + scorecard

#[test]
fn scorecard_json_scores_and_ranks_every_team() {
    let root = Root::demo();
    let r = eval_sales(&root, "2026-Q1", "json", &[]).json();
    assert_eq!(
        keys(&r),
        ["as_of", "period", "scorecard", "subjects", "teams"]
    );
    assert_eq!(r["scorecard"], "sales");
    assert_eq!(r["period"], "2026-Q1");
    assert_eq!(r["as_of"], "2026-06-29T16:00:00Z");
    let teams = r["teams"].as_array().unwrap();
    assert!(teams.len() >= 4, "the demo has several teams: {r:#}");

    let mut ranked: Vec<(u64, f64)> = Vec::new();
    for t in teams {
        assert_eq!(keys(t), ["kpis", "rank", "score", "team"], "{t:#}");
        let (mut sum_ws, mut sum_w) = (0.0, 0.0);
        for k in t["kpis"].as_array().unwrap() {
            assert_eq!(
                keys(k),
                ["kpi", "score", "status", "target", "value", "weight"],
                "{k:#}"
            );
            let status = k["status"].as_str().unwrap();
            assert!(num(&k["weight"]) > 0.0, "{k:#}");
            match (k["value"].is_null(), k["target"].is_null()) {
                (true, _) => assert_eq!(status, "no_data", "{k:#}"),
                (false, true) => assert_eq!(status, "no_target", "{k:#}"),
                (false, false) => {
                    // 2026-Q1 is closed as of 2026-06-30.
                    assert!(status == "met" || status == "missed", "{k:#}");
                    let s = num(&k["score"]);
                    assert!((0.0..=120.0 + 1e-9).contains(&s), "cap 1.2: {k:#}");
                    sum_ws += num(&k["weight"]) * s;
                    sum_w += num(&k["weight"]);
                }
            }
            if ["revenue", "win_rate", "deals_won"].contains(&k["kpi"].as_str().unwrap())
                && !k["value"].is_null()
                && !k["target"].is_null()
            {
                let met = num(&k["value"]) >= num(&k["target"]);
                assert_eq!(status, if met { "met" } else { "missed" }, "{k:#}");
            }
        }
        let score = num(&t["score"]);
        assert!(sum_w > 0.0, "{t:#}");
        assert!(
            (score - sum_ws / sum_w).abs() < 0.01,
            "team score {score} != Σ w·s / Σ w = {}",
            sum_ws / sum_w
        );
        ranked.push((t["rank"].as_u64().expect("rank is an integer"), score));
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    let ranks: Vec<u64> = ranked.iter().map(|(r, _)| *r).collect();
    assert_eq!(ranks, (1..=teams.len() as u64).collect::<Vec<_>>());
    for w in ranked.windows(2) {
        assert!(
            w[0].1 >= w[1].1,
            "rank {} scores below rank {}",
            w[0].0,
            w[1].0
        );
    }
}

#[test]
fn scorecard_period_range_is_an_array_in_order() {
    let root = Root::demo();
    let r = eval_sales(&root, "2025-Q3..2026-Q1", "json", &[]).json();
    let items = r
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {r:#}"));
    let periods: Vec<&str> = items
        .iter()
        .map(|p| p["period"].as_str().unwrap())
        .collect();
    assert_eq!(periods, ["2025-Q3", "2025-Q4", "2026-Q1"]);
    for p in items {
        assert_eq!(p["scorecard"], "sales");
        assert!(!p["teams"].as_array().unwrap().is_empty());
        assert!(p["teams"][0]["rank"].is_u64(), "{p:#}");
    }
    // The last element is what the single period gives.
    let single = eval_sales(&root, "2026-Q1", "json", &[]).json();
    assert_eq!(items[2], single);
}

#[test]
fn scorecard_csv_has_one_row_per_team_and_kpi() {
    let root = Root::demo();
    let json = eval_sales(&root, "2026-Q1", "json", &[]).json();
    let out = eval_sales(&root, "2026-Q1", "csv", &[]).ok();
    let mut rdr = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (c_team, c_kpi, c_value, c_status) = (col("team"), col("kpi"), col("value"), col("status"));
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let expected: usize = json["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kpis"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows.len(), expected, "{out}");
    let mut seen = std::collections::BTreeSet::new();
    for row in &rows {
        let line = kpi(team(&json, &row[c_team]), &row[c_kpi]);
        assert!(seen.insert((row[c_team].to_string(), row[c_kpi].to_string())));
        assert_eq!(row[c_status], *line["status"].as_str().unwrap(), "{row:?}");
        if line["value"].is_null() {
            assert_eq!(&row[c_value], "", "{row:?}");
        } else {
            let v: f64 = row[c_value].parse().expect("a number");
            assert!(close(v, num(&line["value"])), "{row:?} vs {line}");
        }
    }
}

#[test]
fn scorecard_table_and_explain() {
    let root = Root::demo();
    let json = eval_sales(&root, "2026-Q1", "json", &["--team", "shanghai"]).json();
    let table = eval_sales(&root, "2026-Q1", "table", &["--team", "shanghai"]).ok();
    let cards: toml::Table = toml::from_str(&root.read("kpis/scorecards.toml")).unwrap();
    let name = cards["scorecard"]["sales"]["name"].as_str().unwrap();
    assert!(table.contains(name), "{table}");
    assert!(table.contains("shanghai"), "{table}");
    // Ratios are shown as percents.
    let win_rate = value(&json, "shanghai", "win_rate").expect("demo shanghai has a win rate");
    let percent = format!("{:.1}%", win_rate * 100.0);
    assert!(table.contains(&percent), "no {percent} in\n{table}");

    let explained = eval_sales(
        &root,
        "2026-Q1",
        "table",
        &["--team", "shanghai", "--explain"],
    )
    .ok();
    let query = explained
        .lines()
        .find(|l| l.contains("records(\"deals\")") && l.contains(" = "))
        .unwrap_or_else(|| panic!("no records(\"deals\") … = result line in\n{explained}"));
    assert!(query.contains("in_period(\"closed_at\")"), "{query}");
    assert!(
        !table.contains("records(\"deals\")"),
        "no explanation without --explain"
    );
}

#[test]
fn eval_rejects_bad_team_period_as_of_and_names() {
    let root = Root::new();
    root.fixture("teams.csv");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    let base = [
        "eval", "--kpi", "revenue", "--as-of", Q1_AS_OF, "--format", "json",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        root.kpi(&a)
    };
    let err = with(&["--team", "nope"]).fails(1);
    assert!(err.contains("'nope'"), "{err}");
    let err = with(&["--team", "hangzhuo"]).fails(1);
    assert!(err.contains("did you mean 'hangzhou'"), "{err}");
    let err = with(&["--period", "2026-Q5"]).fails(1);
    assert!(err.contains("2026-Q5"), "{err}");
    let err = with(&["--period", "2026-13"]).fails(1);
    assert!(err.contains("2026-13"), "{err}");
    let err = root
        .kpi(&["eval", "--kpi", "revenue", "--as-of", "garbage"])
        .fails(1);
    assert!(err.contains("garbage"), "{err}");
    let err = root
        .kpi(&["eval", "--kpi", "revenu", "--as-of", Q1_AS_OF])
        .fails(1);
    assert!(err.contains("did you mean 'revenue'"), "{err}");
    let err = root
        .kpi(&["eval", "--scorecard", "sale", "--as-of", Q1_AS_OF])
        .fails(1);
    assert!(err.contains("did you mean 'sales'"), "{err}");
}

#[test]
fn demo_with_the_same_seed_and_until_is_reproducible() {
    let args = ["demo", "--until", "2026-06-30", "--seed", "7"];
    let a = Root::new();
    a.kpi(&args).ok();
    let first = eval_sales(&a, "2026-Q1", "json", &[]).ok();
    a.kpi(&args).ok();
    let again = eval_sales(&a, "2026-Q1", "json", &[]).ok();
    let b = Root::new();
    b.kpi(&args).ok();
    let other_root = eval_sales(&b, "2026-Q1", "json", &[]).ok();
    assert_eq!(first, again, "demo run twice in one root");
    assert_eq!(first, other_root, "demo in two roots");
    assert!(first.contains("\"rank\""));
}

// ------------------------------------------------------------------ runtime failures, tests

#[test]
fn an_endless_loop_fails_only_its_own_value() {
    let root = imported();
    root.write(
        "kpis/looping.toml",
        "[kpi.looping]\nname = \"Looping\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"loop { }\"\n",
    );
    let out = root.kpi(&["check"]).ok();
    assert!(out.starts_with("ok: "), "{out}");
    let run = root.kpi(&[
        "eval",
        "--kpi",
        "looping,revenue",
        "--period",
        "2026-Q1",
        "--as-of",
        Q1_AS_OF,
        "--format",
        "json",
    ]);
    assert!(run.stderr.contains("looping"), "{}", run.stderr);
    let r = run.json();
    for t in r["teams"].as_array().unwrap() {
        let l = kpi(t, "looping");
        assert_eq!(l["status"], "error", "{t:#}");
        assert!(l["value"].is_null(), "{t:#}");
    }
    assert!(close(value(&r, "east", "revenue").unwrap(), 101750.5));
    assert!(close(value(&r, "west", "revenue").unwrap(), 999.0));
}

#[test]
fn formula_tests_of_the_standard_library_pass() {
    let out = Root::new().kpi(&["test"]).ok();
    let n = passed_count(&out, 0);
    assert!(n > 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_with_expected_and_got() {
    let root = Root::new();
    let baseline = passed_count(&root.kpi(&["test"]).ok(), 0);
    root.write(
        "kpis/tests/wrong.toml",
        r#"[[case]]
name = "a wrong expectation"
period = "2026-Q1"
team = "north"
[case.records]
teams = [{ id = "north", name = "North" }]
deals = [
  { id = "d1", team = "north", stage = "won", amount = 100.0, created_at = "2026-01-05", closed_at = "2026-02-01" },
]
[case.expect]
revenue = 999.0
deals_won = 1
"#,
    );
    let run = root.kpi(&["test"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = run.stdout;
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("no FAIL line in\n{out}"));
    assert!(fail.contains("kpis/tests/wrong.toml"), "{fail}");
    assert!(fail.contains("revenue"), "{fail}");
    assert!(fail.contains("expected 999"), "{fail}");
    assert!(fail.contains("got 100"), "{fail}");
    assert_eq!(out.matches("FAIL").count(), 1, "{out}");
    assert_eq!(passed_count(&out, 1), baseline + 1, "{out}");
}

// ------------------------------------------------------------------------- schema changes

/// A KPI counting the customers that have a segment (to see whether the data survived).
const SEGMENTED: &str = "[kpi.segmented]\nname = \"Segmented\"\nunit = \"count\"\n\
    direction = \"higher\"\nformula = 'records(\"customers\").not_null(\"segment\").count()'\n";

fn segmented(root: &Root) -> f64 {
    let r = root
        .kpi(&[
            "eval",
            "--kpi",
            "segmented",
            "--team",
            "hq",
            "--period",
            "2026-Q1",
            "--as-of",
            DEMO_AS_OF,
            "--format",
            "json",
        ])
        .json();
    value(&r, "hq", "segmented").unwrap()
}

#[test]
fn removing_a_field_that_holds_data_is_refused() {
    let root = Root::demo();
    root.write("kpis/segmented.toml", SEGMENTED);
    let before = segmented(&root);
    assert!(before > 0.0, "the demo fills customers.segment");

    let schema = root.read("kpis/schema.toml");
    let without: String = schema
        .lines()
        .filter(|l| !(l.trim_start().starts_with("segment") && l.contains('=')))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(schema, without, "schema.toml has a segment field");
    root.remove("kpis/segmented.toml");
    // The shipped Salesforce Account mapping names segment too (a mapping of a field that is
    // gone is an error of its own).
    root.remove("kpis/mappings/salesforce_account.toml");
    root.write("kpis/schema.toml", &without);

    let err = root.kpi(&["check"]).fails(1);
    assert!(err.contains("kpis/schema.toml"), "{err}");
    assert!(err.contains("segment"), "{err}");
    assert!(err.contains("holds data"), "{err}");
    // eval refuses too, instead of dropping the column.
    root.kpi(&[
        "eval", "--kpi", "revenue", "--period", "2026-Q1", "--as-of", DEMO_AS_OF,
    ])
    .fails(1);

    // Nothing was changed: put the field back and the data is still there.
    root.write("kpis/schema.toml", &schema);
    root.write("kpis/segmented.toml", SEGMENTED);
    root.kpi(&["check"]).ok();
    assert_eq!(segmented(&root), before);
}

#[test]
fn adding_an_optional_field_applies() {
    let root = Root::demo();
    let schema = root.read("kpis/schema.toml");
    let header = "[entity.deals.fields]";
    assert!(schema.contains(header));
    root.write(
        "kpis/schema.toml",
        &schema.replacen(header, &format!("{header}\npriority = \"integer?\""), 1),
    );
    let out = root.kpi(&["check"]).ok();
    assert!(out.starts_with("ok: "), "{out}");

    root.write(
        "kpis/priority.toml",
        "[kpi.prioritized]\nname = \"Prioritized deals\"\nunit = \"count\"\ndirection = \"higher\"\n\
         formula = 'records(\"deals\").not_null(\"priority\").count()'\n",
    );
    root.kpi(&["check"]).ok();
    let eval = |root: &Root| {
        root.kpi(&[
            "eval",
            "--kpi",
            "prioritized,revenue",
            "--team",
            "shanghai",
            "--period",
            "2026-Q1",
            "--as-of",
            DEMO_AS_OF,
            "--format",
            "json",
        ])
        .json()
    };
    let r = eval(&root);
    assert_eq!(value(&r, "shanghai", "prioritized"), Some(0.0));
    let revenue = value(&r, "shanghai", "revenue").unwrap();
    assert!(revenue > 0.0);

    root.write(
        "p.ndjson",
        "{\"id\":\"p1\",\"team\":\"shanghai\",\"stage\":\"lead\",\"amount\":1,\"created_at\":\"2026-02-01\",\"priority\":3}\n",
    );
    root.kpi(&["import", "deals", "p.ndjson"]).ok();
    let r = eval(&root);
    assert_eq!(value(&r, "shanghai", "prioritized"), Some(1.0));
    assert_eq!(value(&r, "shanghai", "revenue"), Some(revenue));
}

// ---------------------------------------------------------------------------------- faults

/// `kpi eval … | head` closes the pipe early: that is no reason for a panic and a backtrace.
#[cfg(unix)]
#[test]
fn eval_into_a_closed_pipe_does_not_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let root = Root::demo();
    let mut child = root
        .command(&[
            "eval",
            "--period",
            "2026-Q1",
            "--as-of",
            DEMO_AS_OF,
            "--format",
            "json",
            "--explain",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(status.code(), Some(101), "{stderr}");
}

#[test]
fn the_same_instant_falls_in_another_quarter_in_another_time_zone() {
    // 2026-04-01T00:30:00+08:00 is 2026-03-31T16:30:00Z: Q2 in Shanghai, Q1 in UTC.
    let case = |period: &str, revenue: f64| {
        format!(
            r#"[[case]]
name = "boundary in {period}"
period = "{period}"
team = "t"
[case.records]
teams = [{{ id = "t", name = "T" }}]
deals = [{{ id = "d", team = "t", stage = "won", amount = 10.0, created_at = "2026-03-01", closed_at = "2026-04-01T00:30:00+08:00" }}]
[case.expect]
revenue = {revenue}
"#
        )
    };
    let shanghai = Root::new();
    shanghai.write(
        "kpis/tests/tz.toml",
        &(case("2026-Q2", 10.0) + case("2026-Q1", 0.0).as_str()),
    );
    let out = shanghai.kpi(&["test"]).ok();
    assert!(
        out.trim_end().ends_with(" 0 failed") && !out.contains("boundary in"),
        "{out}"
    );
    let utc = Root::new();
    utc.write("kpis/settings.toml", "timezone = \"UTC\"\n");
    utc.write(
        "kpis/tests/tz.toml",
        &(case("2026-Q1", 10.0) + case("2026-Q2", 0.0).as_str()),
    );
    // The standard library's own cases assume Shanghai; only ours must pass here.
    let out = utc.kpi(&["test"]).stdout;
    assert!(
        out.contains(" passed, ") && !out.contains("boundary in"),
        "{out}"
    );
}

/// SPEC 16 in a zone with daylight saving time: `period.to_date()` and
/// `period.prev().same_span()` cut at elapsed time (start + (as-of − start)), so when the
/// evaluated quarter crosses the end of summer time the previous quarter's span is an hour
/// longer than the same local wall-clock date. Europe/Berlin, as of 2026-11-01 00:00 CET:
/// 2026-Q4 began 2026-10-01 00:00 CEST, so 31 days + 1 hour have elapsed (the clocks went back
/// on 2026-10-25), and 2026-Q3's span ends at 2026-08-01 01:00 CEST, not at midnight.
///   q3a 100 (2026-07-10) and q3b 300 (2026-08-01 00:30 CEST, inside only by elapsed time)
///   are in the span; q3c 600 (2026-08-01 01:00 CEST) is not.
///   q4a 500 (2026-10-25 02:30 CET, in the repeated hour) is to date; q4b 900 (2026-11-01
///   00:00 CET, at as-of) is not.
/// revenue_growth = 500 / (100 + 300) − 1 = 0.25. Closed, the whole
/// quarters compare: (500 + 900) / (100 + 300 + 600) − 1 = 0.4.
#[test]
fn like_for_like_spans_count_elapsed_time_across_a_dst_change() {
    let root = Root::new();
    root.write("kpis/settings.toml", "timezone = \"Europe/Berlin\"\n");
    for f in std::fs::read_dir(root.path().join("kpis/tests")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let records = r#"[case.records]
teams = [{ id = "t", name = "T" }]
deals = [
  { id = "q3a", team = "t", stage = "won", amount = 100.0, created_at = "2026-06-01", closed_at = "2026-07-10T12:00:00+02:00" },
  { id = "q3b", team = "t", stage = "won", amount = 300.0, created_at = "2026-06-01", closed_at = "2026-08-01T00:30:00+02:00" },
  { id = "q3c", team = "t", stage = "won", amount = 600.0, created_at = "2026-06-01", closed_at = "2026-08-01T01:00:00+02:00" },
  { id = "q4a", team = "t", stage = "won", amount = 500.0, created_at = "2026-09-01", closed_at = "2026-10-25T02:30:00+01:00" },
  { id = "q4b", team = "t", stage = "won", amount = 900.0, created_at = "2026-09-01", closed_at = "2026-11-01T00:00:00+01:00" },
]
"#;
    root.write(
        "kpis/tests/dst.toml",
        &format!(
            r#"[[case]]
name = "open quarter across the end of summer time"
period = "2026-Q4"
team = "t"
as_of = "2026-11-01T00:00:00+01:00"
{records}[case.expect]
revenue_growth = 0.25

[[case]]
name = "closed quarter across the end of summer time"
period = "2026-Q4"
team = "t"
{records}[case.expect]
revenue_growth = 0.4
"#
        ),
    );
    let out = root.kpi(&["test"]).ok();
    assert!(out.contains("2 passed, 0 failed"), "{out}");
}

/// A period to date answers the same alone and in a batch of periods (its cut queries are
/// asked for the open period and the one before it only). As of 2026-04-15 (Asia/Shanghai),
/// 2026-Q2 to date holds d4 (hangzhou 7000) and 2026-Q1's same span d8 (shanghai 1500):
/// east's revenue growth is 7000 / 1500 − 1, shanghai's −1, hangzhou's none (nothing before).
#[test]
fn a_period_to_date_is_the_same_alone_and_in_a_batch() {
    let root = imported();
    let eval = |period: &str| {
        root.kpi(&[
            "eval",
            "--kpi",
            "revenue_growth,revenue",
            "--period",
            period,
            "--as-of",
            "2026-04-15T00:00:00+08:00",
            "--format",
            "json",
        ])
        .json()
    };
    let alone = eval("2026-Q2");
    let batch = eval("2025-Q3..2026-Q2");
    let reports = |v: &Value| -> Vec<Value> {
        match v.as_array() {
            Some(a) => a.clone(),
            None => vec![v.clone()],
        }
    };
    let of_q2 = |v: &Value| {
        reports(v)
            .into_iter()
            .find(|r| r["period"] == "2026-Q2")
            .unwrap_or_else(|| panic!("no 2026-Q2 in {v:#}"))
    };
    let (alone, batch) = (of_q2(&alone), of_q2(&batch));
    assert_eq!(alone["teams"], batch["teams"]);
    let growth = |t: &str| value(&alone, t, "revenue_growth");
    assert!(
        close(growth("east").unwrap(), 7000.0 / 1500.0 - 1.0),
        "{alone:#}"
    );
    assert!(close(growth("shanghai").unwrap(), -1.0), "{alone:#}");
    assert_eq!(growth("hangzhou"), None);
}
