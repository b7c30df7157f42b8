//! The dashboard's pages (SPEC 19) through `server::app` with `oneshot`, over a copy of the
//! library with the demo data: the team, person, value, alerts and history pages, the links
//! between them, the level filter, the period picker, the records CSV, and HTML error pages
//! for browsers while API clients keep the JSON errors.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use kpi_engine::server::{AppState, app};

use crate::router::{ADMIN, call, put, state};

struct Got {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    text: String,
}

/// GET `path`, as a browser (`Accept: text/html`) or as an API client.
async fn fetch(state: &Arc<AppState>, path: &str, browser: bool) -> Got {
    let mut r = Request::get(path);
    if browser {
        r = r.header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    }
    let res = app(state.clone())
        .oneshot(r.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Got {
        status,
        content_type,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// A page that must render: 200 and HTML.
async fn page(state: &Arc<AppState>, path: &str) -> String {
    let g = fetch(state, path, true).await;
    assert_eq!(g.status, 200, "{path}: {}", g.text);
    assert!(g.content_type.starts_with("text/html"), "{path}");
    for attr in ["src=\"http", "href=\"http", "url(http"] {
        assert!(!g.text.contains(attr), "{path}: no CDN ({attr})");
    }
    g.text
}

/// Every `href="…"` of a page.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].replace("&amp;", "&"))
        .collect()
}

#[tokio::test]
async fn every_team_person_kpi_cell_and_alert_links_to_its_page() {
    let (_dir, st) = state();
    let home = page(&st, "/?scorecard=sales&period=2026-Q3").await;
    let all = links(&home);
    for id in ["beijing", "north", "hq"] {
        assert!(
            all.iter().any(|l| l.starts_with(&format!("/teams/{id}?"))),
            "the ranking links to team {id}"
        );
    }
    assert!(
        all.iter()
            .any(|l| l.starts_with("/kpis/revenue?team=beijing")),
        "a matrix cell links to its value"
    );
    assert!(
        all.iter().all(|l| !l.contains("/api/")),
        "no raw API path on the page"
    );

    // The team page: its KPIs (each linked), charts with axes and the target line, its people.
    let team = page(&st, "/teams/beijing?scorecard=sales&period=2026-Q3").await;
    assert!(team.contains("<h1>北京 Beijing</h1>"));
    assert!(team.contains("class=\"axis\"") && team.contains("class=\"target\""));
    let tl = links(&team);
    assert!(
        tl.iter()
            .any(|l| l.starts_with("/kpis/win_rate?team=beijing"))
    );
    let person = tl
        .iter()
        .find(|l| l.starts_with("/owners/"))
        .expect("the team page links to its people")
        .clone();
    // A region lists its child teams.
    let north = page(&st, "/teams/north?scorecard=sales&period=2026-Q3").await;
    assert!(
        links(&north)
            .iter()
            .any(|l| l.starts_with("/teams/beijing?"))
    );

    // The person's page, reached from a team scorecard: the owner scorecard is used.
    let owner = page(&st, &person).await;
    assert!(
        owner.contains("Salesperson quarterly assessment"),
        "the owner scorecard"
    );
    assert!(
        links(&owner)
            .iter()
            .any(|l| l.starts_with("/kpis/") && l.contains("owner="))
    );

    // The value page of a person.
    let pv = links(&owner)
        .into_iter()
        .find(|l| l.starts_with("/kpis/") && l.contains("owner="))
        .unwrap();
    page(&st, &pv).await;
}

#[tokio::test]
async fn a_value_is_explained_with_its_queries_target_rule_arithmetic_and_records() {
    let (_dir, st) = state();
    let html = page(
        &st,
        "/kpis/revenue?team=beijing&period=2026-Q3&scorecard=sales",
    )
    .await;
    assert!(
        html.contains("<pre class=\"formula\">records(&quot;deals&quot;)"),
        "the formula"
    );
    assert!(
        html.contains(".sum(&quot;amount&quot;) [beijing, 2026-Q3] = "),
        "each query with its result"
    );
    assert!(
        html.contains("<code>[revenue.teams.beijing]</code> · <code>default</code>"),
        "the target rule"
    );
    assert!(html.contains("100 × ¥"), "the score arithmetic");
    assert!(
        html.contains("Weighted share of the total: 15 / 100 ×"),
        "the weight's share"
    );
    assert!(html.contains("<table class=\"records\">"));
    let rows = html.matches("<tr><th class=\"kpi\">d-beijing-").count();
    assert!(
        rows > 0 && rows <= 100,
        "the first records behind it: {rows}"
    );

    // The CSV holds every record of that query, and the page counted as many.
    let csv = fetch(
        &st,
        "/kpis/revenue/records.csv?team=beijing&period=2026-Q3",
        false,
    )
    .await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"));
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("revenue-2026-Q3.csv")
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("id,team,owner,"), "{}", lines[0]);
    let shown = &html[html.find("id=\"records\"").unwrap()..];
    let shown = &shown[shown.find("<p class=\"muted pad\">").unwrap() + 22..];
    let total: usize = shown
        .split(" of ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the page says how many records there are");
    assert_eq!(lines.len() - 1, total);
    // The sum of the CSV's amounts is the value the query answered.
    let amount = lines[0].split(',').position(|f| f == "amount").unwrap();
    let sum: f64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(amount).unwrap().parse::<f64>().unwrap())
        .sum();
    let answered = html.split("[beijing, 2026-Q3] = ").nth(1).unwrap();
    let answered: f64 = answered[..answered.find('<').unwrap()].parse().unwrap();
    assert!((sum - answered).abs() < 1e-6, "{sum} vs {answered}");

    // Missing or unknown subjects are refused.
    assert_eq!(fetch(&st, "/kpis/revenue", false).await.status, 400);
    assert_eq!(
        fetch(&st, "/kpis/revenue?team=nowhere", false).await.status,
        404
    );
    assert_eq!(
        fetch(&st, "/kpis/nope?team=beijing", false).await.status,
        404
    );
}

#[tokio::test]
async fn the_level_filter_ranks_leaf_teams_or_regions() {
    let (_dir, st) = state();
    let ranking = |html: &str| -> Vec<String> {
        let table = &html[html.find("<table class=\"ranking\">").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        table
            .split("<div class=\"id\">")
            .skip(1)
            .map(|s| s[..s.find('<').unwrap()].to_string())
            .collect()
    };
    let all = ranking(&page(&st, "/?scorecard=sales&period=2026-Q3").await);
    let leaves = ranking(&page(&st, "/?scorecard=sales&period=2026-Q3&level=leaves").await);
    let regions = ranking(&page(&st, "/?scorecard=sales&period=2026-Q3&level=regions").await);
    assert!(all.contains(&"hq".to_string()));
    assert!(
        leaves.contains(&"beijing".to_string())
            && !leaves.contains(&"north".to_string())
            && !leaves.contains(&"hq".to_string())
    );
    assert_eq!(regions.len(), 3, "{regions:?}");
    assert!(
        regions
            .iter()
            .all(|r| ["east", "north", "south"].contains(&r.as_str()))
    );
    // The order within a level is the overall order.
    let order: Vec<&String> = all.iter().filter(|t| leaves.contains(t)).collect();
    assert_eq!(order, leaves.iter().collect::<Vec<_>>());
    assert_eq!(fetch(&st, "/?level=cities", false).await.status, 400);
}

#[tokio::test]
async fn the_period_picker_offers_only_periods_with_data() {
    let (_dir, st) = state();
    let html = page(&st, "/?scorecard=sales").await;
    let picker = &html[html.find("name=\"period\"").unwrap()..];
    let picker = &picker[..picker.find("</select>").unwrap()];
    let offered = picker.matches("<option").count();
    assert!(offered >= 2, "{picker}");
    // The demo starts in 2025: the quarters of 2024 and before have no data.
    assert!(!picker.contains("2024-Q"), "{picker}");
    assert!(picker.contains("2025-Q1"));
}

/// The picker offers exactly the periods whose whole scorecard report has a value other than
/// none or 0, for teams and for people (it stops at the first such value of each period).
#[tokio::test]
async fn the_period_picker_offers_what_the_reports_show() {
    let (_dir, st) = state();
    for card in ["sales", "sales_reps"] {
        let html = page(&st, &format!("/?scorecard={card}")).await;
        let picker = &html[html.find("name=\"period\"").unwrap()..];
        let picker = &picker[..picker.find("</select>").unwrap()];
        let offered: Vec<&str> = picker
            .split("<option value=\"")
            .skip(1)
            .filter_map(|o| o.split('"').next())
            .collect();
        assert!(offered.len() >= 2, "{card}: {picker}");
        let has_value = async |period: &str| {
            let g = fetch(
                &st,
                &format!("/api/scorecards/{card}?period={period}"),
                false,
            )
            .await;
            assert_eq!(g.status, 200, "{}", g.text);
            let v: serde_json::Value = serde_json::from_str(&g.text).unwrap();
            let lines = if card == "sales" { "teams" } else { "owners" };
            v[lines].as_array().unwrap().iter().any(|l| {
                l["kpis"].as_array().unwrap().iter().any(|k| {
                    k["value"]
                        .as_f64()
                        .is_some_and(|x| x.is_finite() && x != 0.0)
                })
            })
        };
        for p in &offered {
            assert!(has_value(p).await, "{card} {p} is offered without a value");
        }
        assert!(!offered.contains(&"2024-Q4"));
        assert!(!has_value("2024-Q4").await, "{card}: 2024-Q4 has a value");
    }
}

/// The alerts page needs the alert scheduler: the real server.
#[test]
fn alerts_page_names_filters_and_links() {
    let s = crate::util::server::Server::start();
    s.wait_for("alerts", std::time::Duration::from_secs(30), || {
        s.json("/api/alerts?state=all")
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let html = s.get("/alerts?state=all").text;
    assert!(
        html.contains("name=\"state\"")
            && html.contains("name=\"kind\"")
            && html.contains("name=\"team\"")
    );
    let rows = html.matches("<tr><td><span class=\"chip").count();
    assert_eq!(
        rows,
        s.json("/api/alerts?state=all").as_array().unwrap().len()
    );
    assert!(
        links(&html)
            .iter()
            .any(|l| l.starts_with("/kpis/") && l.contains("team="))
    );
    assert!(!html.contains(">none<"), "no raw delivery state");
    let at_risk = s.get("/alerts?state=all&kind=at_risk").text;
    assert!(!at_risk.contains("chip missed\">"), "only at-risk alerts");
    let beijing = s.get("/alerts?state=all&team=beijing").text;
    let rows_b = beijing.matches("<tr><td><span class=\"chip").count();
    assert!(rows_b < rows && beijing.matches("北京 Beijing</a>").count() >= rows_b);
    // The scorecard page's panel links to the alerts page, not to the API.
    let home = s.get("/?scorecard=sales").text;
    assert!(
        links(&home)
            .iter()
            .any(|l| l.starts_with("/alerts?state=firing"))
    );
    s.get("/alerts?kind=loud").expect(400);
    s.get("/alerts?team=nowhere").expect(404);
}

#[tokio::test]
async fn history_page_lists_the_versions_in_local_time() {
    let (_dir, st) = state();
    let html = page(&st, "/history?lang=zh").await;
    assert!(html.contains("配置历史"));
    assert!(html.contains("<th class=\"kpi\">v1"));
    // Times are shown in the settings zone to the minute, never as raw RFC 3339.
    let row = &html[html.find("<th class=\"kpi\">v1").unwrap()..];
    let cell = &row[row.find("<td>").unwrap() + 4..];
    let cell = &cell[..cell.find('<').unwrap()];
    assert_eq!(cell.len(), 16, "YYYY-MM-DD HH:MM: {cell}");
    assert!(!cell.contains('T') && !cell.contains('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_page_names_the_writer_shows_the_diff_and_offers_a_rollback() {
    let (_dir, st) = state();
    let body = r#"{"key": "default", "target": 0.4}"#;
    let (status, v) = call(&st, put("/api/targets/win_rate", Some(ADMIN), body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let html = page(&st, "/history").await;
    let row = &html[html.find("<th class=\"kpi\">v2").expect("version 2 listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("<td>admin</td>"), "the writer is named: {row}");
    assert!(row.contains("<code>kpis/targets.toml</code>"), "{row}");
    // The diff is on the page (no script needed): the new target added, the old one removed.
    assert!(row.contains("<details class=\"diff\">"), "{row}");
    assert!(
        row.contains("<span class=\"add\">+") && row.contains("<span class=\"del\">-"),
        "{row}"
    );
    assert!(row.contains("0.4"), "{row}");
    assert!(row.contains("data-rollback=\"2\""), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_period_is_marked_on_the_pages() {
    let (_dir, st) = state();
    let open = page(&st, "/?scorecard=sales&period=2026-Q2").await;
    assert!(!open.contains("pill frozen"));
    let close = Request::post("/api/periods/2026-Q2/close")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (status, v) = call(&st, close).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for path in [
        "/?scorecard=sales&period=2026-Q2",
        "/teams/beijing?scorecard=sales&period=2026-Q2",
    ] {
        let html = page(&st, path).await;
        assert!(
            html.contains("pill frozen"),
            "{path} marks the frozen period"
        );
    }
    assert!(
        !page(&st, "/?scorecard=sales&period=2026-Q1")
            .await
            .contains("pill frozen")
    );
}

#[tokio::test]
async fn browsers_get_html_error_pages_and_api_clients_json() {
    let (_dir, st) = state();
    let html = fetch(&st, "/?scorecard=foo", true).await;
    assert_eq!(html.status, 404);
    assert!(html.content_type.starts_with("text/html"));
    assert!(
        html.text.contains("unknown scorecard") || html.text.contains("foo"),
        "{}",
        html.text
    );
    assert!(!html.text.trim_start().starts_with('{'));
    let zh = fetch(&st, "/teams/nowhere?lang=zh", true).await;
    assert_eq!(zh.status, 404);
    assert!(zh.text.contains("返回看板"));
    // The same errors as JSON for an API client, and API routes stay JSON even for a browser.
    let json = fetch(&st, "/?scorecard=foo", false).await;
    assert_eq!(json.status, 404);
    let v: serde_json::Value = serde_json::from_str(&json.text).unwrap();
    assert!(v["error"].is_string() && v["details"].is_array());
    let api = fetch(&st, "/api/scorecards/foo", true).await;
    assert!(api.content_type.starts_with("application/json"));
    let period = fetch(&st, "/teams/beijing?period=2026-Q9", true).await;
    assert_eq!(period.status, 400);
    assert!(period.content_type.starts_with("text/html"));
}

#[tokio::test]
async fn the_editor_is_on_the_page_with_the_weight_and_target_keys() {
    let (_dir, st) = state();
    let html = page(&st, "/?scorecard=sales&period=2026-Q4").await;
    let edit = &html[html.find("id=\"edit\"").expect("the editor")..];
    assert!(
        edit.contains("data-key=\"Q4\""),
        "Q4's weight set is edited"
    );
    assert!(edit.contains("data-weight=\"revenue\" value=\"25\""));
    // revenue has a 2026-Q4 key of its own: that is the target edited for the period.
    assert!(
        edit.contains("data-target=\"revenue\" data-key=\"2026-Q4\" value=\"1200000\""),
        "{edit:.2000}"
    );
    // Reading needs no script: the editor is hidden until the script shows it.
    assert!(html.contains("id=\"edit\" hidden"));
}

#[tokio::test]
async fn open_periods_show_the_projected_score() {
    let (_dir, st) = state();
    let open = page(&st, "/?scorecard=sales").await;
    assert!(
        open.contains("<th class=\"num\">Projected</th>"),
        "the current quarter is open"
    );
    let closed = page(&st, "/?scorecard=sales&period=2026-Q1").await;
    assert!(!closed.contains("<th class=\"num\">Projected</th>"));
    let team = page(&st, "/teams/beijing?scorecard=sales").await;
    assert!(team.contains("if the period ends as it runs now"));
}

/// The records behind a count are as many as the count: for the whole tree (hq), a region, and
/// a person (whose records are read by owner).
#[tokio::test]
async fn the_records_behind_a_count_are_as_many_as_it_counts() {
    let (_dir, st) = state();
    let owners = fetch(&st, "/api/scorecards/sales_reps?period=2026-Q3", false).await;
    let owners: serde_json::Value = serde_json::from_str(&owners.text).unwrap();
    let person = owners["owners"][0]["owner"].as_str().unwrap().to_string();
    for who in ["team=hq", "team=north", &format!("owner={person}")] {
        let csv = fetch(
            &st,
            &format!("/kpis/deals_won/records.csv?{who}&period=2026-Q3"),
            false,
        )
        .await;
        assert_eq!(csv.status, 200, "{who}: {}", csv.text);
        let rows = csv.text.lines().count() - 1;
        let value = fetch(
            &st,
            &format!("/api/values?kpi=deals_won&{who}&period=2026-Q3"),
            false,
        )
        .await;
        let value: serde_json::Value = serde_json::from_str(&value.text).unwrap();
        assert_eq!(rows as f64, value["value"].as_f64().unwrap(), "{who}");
        assert!(rows > 0, "{who} won deals in 2026-Q3");
    }
}
