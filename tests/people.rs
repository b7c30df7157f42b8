//! The per-person assessment (SPEC 14) end to end: the sales_reps scorecard
//! on the demo's people, the owner options of `kpi eval`, `kpi check`'s note on
//! KPIs no person can have, and the owner parameters of the API.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::cli::{Root, keys};
use crate::util::server::{ADMIN, Options, Server};

const AS_OF: &str = "2026-06-30T00:00:00+08:00";

fn reps(root: &Root, extra: &[&str]) -> Value {
    root.scorecard_json("sales_reps", "2026-Q1", AS_OF, extra)
}

#[test]
fn sales_reps_ranks_every_active_person_across_the_company_and_in_the_team() {
    let root = Root::demo();
    let r = reps(&root, &[]);
    assert_eq!(r["subjects"], "owners");
    assert!(r.get("teams").is_none(), "{r:#}");
    let people = r["owners"].as_array().unwrap();
    assert!(
        people.len() >= 20,
        "the demo has people in every team: {}",
        people.len()
    );
    let mut by_team: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for p in people {
        assert_eq!(
            keys(p),
            [
                "kpis",
                "name",
                "owner",
                "rank",
                "rank_in_team",
                "score",
                "team"
            ],
            "{p:#}"
        );
        assert!(p["owner"].as_str().unwrap().starts_with("u-"), "{p:#}");
        if let (Some(rank), Some(within)) = (p["rank"].as_u64(), p["rank_in_team"].as_u64()) {
            by_team
                .entry(p["team"].as_str().unwrap().to_string())
                .or_default()
                .push((rank, within));
        }
    }
    // Inside each team, rank_in_team follows the company rank, starting at 1.
    for (team, mut ranks) in by_team {
        ranks.sort();
        assert_eq!(ranks[0].1, 1, "{team}: {ranks:?}");
        assert!(
            ranks.windows(2).all(|w| w[0].1 <= w[1].1),
            "{team}: {ranks:?}"
        );
    }
}

#[test]
fn one_person_keeps_their_rank_and_an_unknown_person_gets_a_hint() {
    let root = Root::demo();
    let all = reps(&root, &[]);
    let p = &all["owners"][3];
    let id = p["owner"].as_str().unwrap();
    let one = reps(&root, &["--owner", id]);
    assert_eq!(one["owners"].as_array().unwrap().len(), 1, "{one:#}");
    assert_eq!(one["owners"][0]["rank"], p["rank"]);
    assert_eq!(one["owners"][0]["score"], p["score"]);
    let typo = format!("{id}x");
    let err = root
        .kpi(&["eval", "--scorecard", "sales_reps", "--owner", &typo])
        .fails(1);
    assert!(
        err.contains("--owner: unknown owner") && err.contains(&format!("did you mean '{id}'")),
        "{err}"
    );
}

#[test]
fn a_team_filter_shows_the_people_of_its_subtree() {
    let root = Root::demo();
    let r = reps(&root, &["--team", "east"]);
    let people = r["owners"].as_array().unwrap();
    assert!(!people.is_empty());
    let east = ["east", "shanghai", "hangzhou"];
    for p in people {
        assert!(east.contains(&p["team"].as_str().unwrap()), "{p:#}");
    }
}

#[test]
fn plain_kpis_for_every_person_have_no_score_rank_or_weight() {
    let root = Root::demo();
    let r = root
        .kpi(&[
            "eval",
            "--kpi",
            "revenue,nps",
            "--owners",
            "--period",
            "2026-Q1",
            "--as-of",
            AS_OF,
            "--format",
            "json",
        ])
        .json();
    assert_eq!(r["subjects"], "owners");
    let p = &r["owners"][0];
    assert_eq!(keys(p), ["kpis", "name", "owner", "team"], "{p:#}");
    assert_eq!(keys(&p["kpis"][0]), ["kpi", "status", "target", "value"]);
    // Surveys name no person: NPS is no data for everyone, revenue is a number.
    for p in r["owners"].as_array().unwrap() {
        assert!(p["kpis"][0]["value"].is_number(), "{p:#}");
        assert!(p["kpis"][1]["value"].is_null(), "{p:#}");
    }
}

#[test]
fn check_says_which_kpis_of_an_owner_scorecard_never_have_a_value() {
    let root = Root::new();
    let cards = root.read("kpis/scorecards.toml");
    root.write(
        "kpis/scorecards.toml",
        &format!(
            "{cards}\n[scorecard.reps_service]\nsubjects = \"owners\"\n[scorecard.reps_service.weights]\ndefault = {{ nps = 50, resolution_rate = 50 }}\n"
        ),
    );
    let out = root.kpi(&["check"]);
    let stderr = out.stderr.clone();
    out.ok();
    assert!(
        stderr.contains("warning: scorecard reps_service: KPI 'nps' reads only surveys"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("'resolution_rate'"),
        "tickets name their owner: {stderr}"
    );
}

#[test]
fn the_api_answers_for_a_person_and_sets_a_persons_target() {
    let s = Server::start_with(Options {
        demo: true,
        ..Options::default()
    });
    let r = s.json("/api/scorecards/sales_reps?period=2026-Q1");
    assert_eq!(r["subjects"], "owners");
    let id = r["owners"][0]["owner"].as_str().unwrap().to_string();
    let v = s.json(&format!(
        "/api/values?kpi=revenue&owner={id}&period=2026-Q1"
    ));
    assert_eq!(v["owner"], id.as_str());
    assert!(v["value"].is_number(), "{v:#}");
    assert_eq!(v["target"], 150000.0, "the per_owner default: {v:#}");
    s.get(&format!("/api/values?kpi=revenue&owner={id}x"))
        .expect(404);
    let body = format!(r#"{{"owner": "{id}", "key": "default", "target": 99000}}"#);
    s.admin("PUT", "/api/targets/revenue", &body).expect(200);
    let v = s.json(&format!(
        "/api/values?kpi=revenue&owner={id}&period=2026-Q1"
    ));
    assert_eq!(v["target"], 99000.0, "{v:#}");
    // The team's target did not move.
    let team = s.json("/api/values?kpi=revenue&team=shanghai&period=2026-Q1");
    assert_ne!(team["target"], 99000.0);
    let both = format!(r#"{{"owner": "{id}", "team": "east", "key": "default", "target": 1}}"#);
    s.admin("PUT", "/api/targets/revenue", &both).expect(400);
    let _ = ADMIN;
}

#[test]
fn an_unknown_owner_is_a_bad_row_only_once_people_are_imported() {
    let root = Root::new();
    root.write("teams.csv", "id,name,parent\nhq,HQ,\n");
    root.kpi(&["import", "teams", "teams.csv"]).ok();
    let deal = "id,team,owner,stage,amount,created_at\nd1,hq,ghost,lead,10,2026-01-05\n";
    root.write("deals.csv", deal);
    // CRMs often export deals before users: no people yet, nothing to check against.
    root.kpi(&["import", "deals", "deals.csv"]).ok();
    root.write("owners.csv", "id,name,team\nann,Ann,hq\nbob,Bob,nowhere\n");
    let err = root.kpi(&["import", "owners", "owners.csv"]).fails(1);
    assert!(
        err.contains("owners.csv:3: field 'team': unknown team \"nowhere\""),
        "{err}"
    );
    root.write("owners.csv", "id,name,team\nann,Ann,hq\n");
    root.kpi(&["import", "owners", "owners.csv"]).ok();
    root.write("deals.csv", &deal.replace("d1,", "d2,"));
    let err = root.kpi(&["import", "deals", "deals.csv"]).fails(1);
    assert!(
        err.contains("deals.csv:2: field 'owner': unknown owner \"ghost\""),
        "{err}"
    );
    root.write(
        "deals.csv",
        &deal.replace("d1,", "d2,").replace("ghost", "ann"),
    );
    root.kpi(&["import", "deals", "deals.csv"]).ok();
}
