//! The dashboard at `/`: one server-rendered page, no CDN, no build step.
//!
//! It shows one scorecard for one period: the teams ranked with their score,
//! rank change and a trend of the last eight periods (inline SVG), every KPI's
//! value, target and status per team (missed red, at risk amber), the open
//! alerts and, while the files on disk do not check, the config error banner.
//! `?lang=zh` uses the Chinese labels of KPIs and scorecards. The page's
//! script (`dashboard/app.js`) submits the pickers on change and reloads the
//! page when /health reports a new config version or data generation.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::auth::TOKEN_COOKIE;
use super::cache::{self, cached_reports};
use super::error::{ApiError, ApiQuery};
use super::state::{AppState, Health, blocking};
use crate::config::{ConfigSnapshot, Direction, Scorecard};
use crate::engine::{Snapshot as Served, When};
use crate::eval::report::{Report, TeamLine};
use crate::eval::scoring::Status;
use crate::period::{Grain, PeriodId};
use crate::render::format_value;

const STYLE: &str = include_str!("dashboard/style.css");
const SCRIPT: &str = include_str!("dashboard/app.js");

/// Periods in the trend.
const TREND: u32 = 8;
/// Config errors listed in the banner (the rest are counted; /health lists all).
const BANNER_ERRORS: usize = 8;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub scorecard: Option<String>,
    pub period: Option<String>,
    pub as_of: Option<String>,
    pub lang: Option<String>,
    /// A read token to keep in a cookie (when KPI_READ_TOKEN is set).
    pub token: Option<String>,
}

/// `GET /?scorecard=&period=&as_of=&lang=`
pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    if let Some(token) = &q.token {
        return remember_token(&state, token, &q);
    }
    state.tokens.check_read(&headers)?;
    let served = state.served();
    let health = state.health();
    let lang = Lang::from(q.lang.as_deref());
    let cfg = served.config.clone();
    let Some(card) = (match q.scorecard.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => Some(served.scorecard(id)?.clone()),
        None => cfg.scorecards.first().cloned(),
    }) else {
        return Ok(Html(empty_page(&served, &health, lang)).into_response());
    };
    let when = cache::when(&served, q.as_of.as_deref(), q.period.as_deref())?;
    let st = state.clone();
    let sv = served.clone();
    let id = card.id.clone();
    let reports =
        blocking(move || Ok(cached_reports(&st, &sv, &id, when, TREND)?.reports.clone())).await?;
    let engine = state.engine.clone();
    // The page still renders if the alert list cannot be read.
    let alerts = blocking(move || {
        let conn = engine.connection()?;
        crate::alerts::list(&conn, Some("firing")).map_err(ApiError::internal)
    })
    .await
    .unwrap_or_default();
    let view = View {
        alerts: &alerts,
        served: &served,
        health: &health,
        card: &card,
        reports: &reports,
        when,
        lang,
        as_of_param: q.as_of.filter(|s| !s.trim().is_empty()),
    };
    Ok(Html(view.render()).into_response())
}

/// `/?token=…`: keep a valid read token in an HttpOnly cookie and drop it from the URL.
fn remember_token(state: &AppState, token: &str, q: &PageQuery) -> Result<Response, ApiError> {
    if !state.tokens.can_read(Some(token)) {
        return Err(ApiError::Unauthorized("wrong read token".into()));
    }
    let mut params = Vec::new();
    for (k, v) in [
        ("scorecard", &q.scorecard),
        ("period", &q.period),
        ("as_of", &q.as_of),
        ("lang", &q.lang),
    ] {
        if let Some(v) = v {
            params.push(format!("{k}={}", url_encode(v)));
        }
    }
    let location = if params.is_empty() {
        "/".to_string()
    } else {
        format!("/?{}", params.join("&"))
    };
    let cookie = format!(
        "{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        url_encode(token)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/")),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lang {
    En,
    Zh,
}

impl Lang {
    fn from(s: Option<&str>) -> Lang {
        match s {
            Some(l) if l.starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            Lang::En => None,
            Lang::Zh => Some("zh"),
        }
    }

    fn t(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

/// The page's own words in one language.
struct Text {
    html_lang: &'static str,
    app: &'static str,
    scorecard: &'static str,
    period: &'static str,
    show: &'static str,
    open: &'static str,
    elapsed: &'static str,
    closed: &'static str,
    as_of: &'static str,
    teams: &'static str,
    kpis: &'static str,
    top_team: &'static str,
    average: &'static str,
    missed: &'static str,
    at_risk: &'static str,
    cells: &'static str,
    ranking: &'static str,
    rank: &'static str,
    team: &'static str,
    score: &'static str,
    change: &'static str,
    trend: &'static str,
    by_team: &'static str,
    kpi: &'static str,
    weight: &'static str,
    target: &'static str,
    no_score: &'static str,
    alerts: &'static str,
    no_alerts: &'static str,
    errors_title: &'static str,
    errors_hint: &'static str,
    config: &'static str,
    data: &'static str,
    no_scorecards: &'static str,
    statuses: [&'static str; 7],
}

static EN: Text = Text {
    html_lang: "en",
    app: "KPI Engine",
    scorecard: "Scorecard",
    period: "Period",
    show: "Show",
    open: "open",
    elapsed: "elapsed",
    closed: "closed",
    as_of: "as of",
    teams: "teams",
    kpis: "KPIs",
    top_team: "Top team",
    average: "Average score",
    missed: "Missed",
    at_risk: "At risk",
    cells: "of {n} KPI values",
    ranking: "Ranking",
    rank: "#",
    team: "Team",
    score: "Score",
    change: "vs prev.",
    trend: "Trend",
    by_team: "KPIs by team",
    kpi: "KPI",
    weight: "Weight",
    target: "target",
    no_score: "no score",
    alerts: "Open alerts",
    no_alerts: "No open alerts.",
    errors_title: "The configuration on disk has errors",
    errors_hint: "Still serving configuration version {v}. Fix the files and save; this banner goes away when they check.",
    config: "config",
    data: "data",
    no_scorecards: "No scorecards are configured (kpis/scorecards.toml).",
    statuses: [
        "met",
        "missed",
        "on track",
        "at risk",
        "no target",
        "no data",
        "error",
    ],
};

static ZH: Text = Text {
    html_lang: "zh-CN",
    app: "KPI 引擎",
    scorecard: "考核表",
    period: "期间",
    show: "显示",
    open: "进行中",
    elapsed: "已过",
    closed: "已结束",
    as_of: "截至",
    teams: "个团队",
    kpis: "项指标",
    top_team: "排名第一",
    average: "平均得分",
    missed: "未达成",
    at_risk: "有风险",
    cells: "共 {n} 个指标值",
    ranking: "团队排名",
    rank: "名次",
    team: "团队",
    score: "得分",
    change: "较上期",
    trend: "趋势",
    by_team: "各团队指标",
    kpi: "指标",
    weight: "权重",
    target: "目标",
    no_score: "无得分",
    alerts: "未关闭的告警",
    no_alerts: "暂无告警。",
    errors_title: "磁盘上的配置有错误",
    errors_hint: "仍在使用配置版本 {v}。修正文件并保存后，此提示会自动消失。",
    config: "配置",
    data: "数据",
    no_scorecards: "尚未配置考核表（kpis/scorecards.toml）。",
    statuses: [
        "达成",
        "未达成",
        "进展正常",
        "有风险",
        "无目标",
        "无数据",
        "错误",
    ],
};

fn status_index(s: Status) -> usize {
    match s {
        Status::Met => 0,
        Status::Missed => 1,
        Status::OnTrack => 2,
        Status::AtRisk => 3,
        Status::NoTarget => 4,
        Status::NoData => 5,
        Status::Error => 6,
    }
}

/// Everything one page shows.
struct View<'a> {
    /// Firing alerts, newest state changes first as listed.
    alerts: &'a [crate::alerts::AlertView],
    served: &'a Served,
    health: &'a Health,
    card: &'a Scorecard,
    /// The last [`TREND`] periods, oldest first; the last one is the selected period.
    reports: &'a [Report],
    when: When,
    lang: Lang,
    as_of_param: Option<String>,
}

impl View<'_> {
    fn cfg(&self) -> &ConfigSnapshot {
        &self.served.config
    }

    fn current(&self) -> &Report {
        self.reports.last().expect("at least one period")
    }

    fn render(&self) -> String {
        let t = self.lang.t();
        let title = format!(
            "{} · {} · {}",
            self.card.label(self.lang.code()),
            self.when.period,
            t.app
        );
        let mut body = String::new();
        body.push_str(&self.header());
        body.push_str(&banner(self.health, self.served, self.lang));
        body.push_str("<main>");
        body.push_str(&self.heading());
        body.push_str(&self.summary());
        body.push_str(&self.ranking());
        body.push_str(&self.matrix());
        body.push_str(&self.alerts());
        body.push_str("</main>");
        body.push_str(&footer(self.served, self.lang));
        document(t.html_lang, &title, self.served, self.health, &body)
    }

    fn header(&self) -> String {
        let t = self.lang.t();
        let cfg = self.cfg();
        let mut cards = String::new();
        for c in &cfg.scorecards {
            let _ = write!(
                cards,
                "<option value=\"{}\"{}>{}</option>",
                esc(&c.id),
                selected(c.id == self.card.id),
                esc(c.label(self.lang.code()))
            );
        }
        let cal = &cfg.settings.calendar;
        let now = cal.containing(Grain::Quarter, crate::engine::now());
        let mut periods: Vec<PeriodId> = (0..12).map(|i| now.shift(-i)).collect();
        if !periods.contains(&self.when.period) {
            periods.push(self.when.period);
            periods.sort_by(|a, b| b.cmp(a));
        }
        let mut options = String::new();
        for p in periods {
            let _ = write!(
                options,
                "<option value=\"{p}\"{}>{p}</option>",
                selected(p == self.when.period)
            );
        }
        let hidden = [
            ("lang", self.lang.code().map(str::to_string)),
            ("as_of", self.as_of_param.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.map(|v| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(&v)))
        })
        .collect::<String>();
        let link = |lang: Option<&str>| {
            let mut q = vec![
                format!("scorecard={}", url_encode(&self.card.id)),
                format!("period={}", self.when.period),
            ];
            if let Some(a) = &self.as_of_param {
                q.push(format!("as_of={}", url_encode(a)));
            }
            if let Some(l) = lang {
                q.push(format!("lang={l}"));
            }
            format!("/?{}", q.join("&"))
        };
        format!(
            "<header class=\"top\"><div class=\"brand\"><span class=\"logo\">K</span>{app}</div>\
             <form class=\"pickers\" method=\"get\" action=\"/\">\
             <label>{sc}<select name=\"scorecard\" data-autosubmit>{cards}</select></label>\
             <label>{pe}<select name=\"period\" data-autosubmit>{options}</select></label>{hidden}\
             <noscript><button type=\"submit\">{show}</button></noscript></form>\
             <nav class=\"langs\"><a href=\"{en}\"{en_on}>English</a><a href=\"{zh}\"{zh_on}>中文</a></nav></header>",
            app = esc(t.app),
            sc = esc(t.scorecard),
            pe = esc(t.period),
            show = esc(t.show),
            en = esc(&link(None)),
            zh = esc(&link(Some("zh"))),
            en_on = if self.lang == Lang::En {
                " class=\"on\""
            } else {
                ""
            },
            zh_on = if self.lang == Lang::Zh {
                " class=\"on\""
            } else {
                ""
            },
        )
    }

    fn heading(&self) -> String {
        let t = self.lang.t();
        let cal = &self.cfg().settings.calendar;
        let p = cal.period(self.when.period);
        let r = self.current();
        let state = if p.is_open(r.as_of) {
            format!(
                "<span class=\"pill open\">{} · {:.0}% {}</span>",
                t.open,
                p.elapsed(r.as_of) * 100.0,
                t.elapsed
            )
        } else {
            format!("<span class=\"pill\">{}</span>", t.closed)
        };
        let kpis = self
            .card
            .weights_for(self.when.period)
            .map_or(0, <[_]>::len);
        format!(
            "<section class=\"heading\"><div><h1>{name}</h1><p class=\"sub\">{period} {state} \
             <span class=\"muted\">· {n_teams} {teams} · {kpis} {kpi_word} · {as_of} {time}</span></p></div></section>",
            name = esc(self.card.label(self.lang.code())),
            period = self.when.period,
            n_teams = r.teams.len(),
            teams = t.teams,
            kpi_word = t.kpis,
            as_of = t.as_of,
            time = esc(&cal.format_local(r.as_of)),
        )
    }

    fn summary(&self) -> String {
        let t = self.lang.t();
        let r = self.current();
        let scores: Vec<f64> = r.teams.iter().filter_map(|x| x.score).collect();
        let avg = if scores.is_empty() {
            "–".to_string()
        } else {
            format!("{:.1}", scores.iter().sum::<f64>() / scores.len() as f64)
        };
        let top = r.teams.iter().find(|x| x.rank == Some(1)).map_or(
            ("–".to_string(), String::new()),
            |x| {
                (
                    x.name.clone(),
                    x.score.map_or(String::new(), |s| format!("{s:.1}")),
                )
            },
        );
        let cells: Vec<Status> = r
            .teams
            .iter()
            .flat_map(|x| x.kpis.iter().map(|k| k.status))
            .collect();
        let count = |s: Status| cells.iter().filter(|c| **c == s).count();
        let of = t.cells.replace("{n}", &cells.len().to_string());
        format!(
            "<section class=\"cards\">\
             <div class=\"card\"><div class=\"label\">{top_l}</div><div class=\"big\">{top}</div><div class=\"muted\">{top_s}</div></div>\
             <div class=\"card\"><div class=\"label\">{avg_l}</div><div class=\"big\">{avg}</div><div class=\"muted\">{n} {teams}</div></div>\
             <div class=\"card bad\"><div class=\"label\">{missed_l}</div><div class=\"big\">{missed}</div><div class=\"muted\">{of}</div></div>\
             <div class=\"card warn\"><div class=\"label\">{risk_l}</div><div class=\"big\">{risk}</div><div class=\"muted\">{of}</div></div>\
             </section>",
            top_l = t.top_team,
            top = esc(&top.0),
            top_s = top.1,
            avg_l = t.average,
            n = r.teams.len(),
            teams = t.teams,
            missed_l = t.missed,
            missed = count(Status::Missed),
            risk_l = t.at_risk,
            risk = count(Status::AtRisk),
        )
    }

    fn ranking(&self) -> String {
        let t = self.lang.t();
        let r = self.current();
        let max = self.card.cap * 100.0;
        let first = self.reports.first().map(|x| x.period);
        let mut rows = String::new();
        for team in &r.teams {
            let score = team.score.map_or(
                format!("<span class=\"muted\">{}</span>", t.no_score),
                |s| format!("{s:.1}"),
            );
            let width = team
                .score
                .map_or(0.0, |s| (s / max * 100.0).clamp(0.0, 100.0));
            let band = team.score.map_or("none", band);
            let counts = [Status::Met, Status::Missed, Status::AtRisk]
                .iter()
                .map(|s| {
                    let n = team.kpis.iter().filter(|k| k.status == *s).count();
                    format!(
                        "<span class=\"chip {}\" title=\"{}\">{n}</span>",
                        s.name(),
                        t.statuses[status_index(*s)]
                    )
                })
                .collect::<String>();
            let _ = write!(
                rows,
                "<tr><td class=\"rank\">{rank}</td>\
                 <td class=\"team\"><div class=\"name\">{name}</div><div class=\"id\">{id}</div></td>\
                 <td class=\"score\"><div class=\"scoreline\"><b>{score}</b><div class=\"bar\"><i class=\"{band}\" style=\"width:{width:.1}%\"></i></div></div></td>\
                 <td class=\"delta\">{delta}</td><td class=\"trend\">{trend}</td><td class=\"counts\">{counts}</td></tr>",
                rank = team.rank.map_or("–".to_string(), |x| x.to_string()),
                name = esc(&team.name),
                id = esc(&team.team),
                delta = self.rank_change(team),
                trend = self.sparkline(&team.team, max),
            );
        }
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{title}</h2>\
             <span class=\"muted\">{trend} {from} – {to}</span></div>\
             <table class=\"ranking\"><thead><tr><th class=\"rank\">{rank}</th><th>{team}</th><th>{score}</th>\
             <th>{change}</th><th>{trend}</th><th>{met} / {missed} / {risk}</th></tr></thead><tbody>{rows}</tbody></table></section>",
            title = t.ranking,
            trend = t.trend,
            from = first.map(|p| p.to_string()).unwrap_or_default(),
            to = self.when.period,
            rank = t.rank,
            team = t.team,
            score = t.score,
            change = t.change,
            met = t.statuses[0],
            missed = t.statuses[1],
            risk = t.statuses[3],
        )
    }

    /// ▲/▼ against the previous period's rank.
    fn rank_change(&self, team: &TeamLine) -> String {
        let n = self.reports.len();
        let prev = (n >= 2)
            .then(|| {
                self.reports[n - 2]
                    .teams
                    .iter()
                    .find(|x| x.team == team.team)
            })
            .flatten()
            .and_then(|x| x.rank);
        match (prev, team.rank) {
            (Some(a), Some(b)) if a > b => format!("<span class=\"up\">▲ {}</span>", a - b),
            (Some(a), Some(b)) if a < b => format!("<span class=\"down\">▼ {}</span>", b - a),
            (Some(_), Some(_)) => "<span class=\"muted\">=</span>".into(),
            _ => "<span class=\"muted\">–</span>".into(),
        }
    }

    /// The team's score over the trend periods, as an inline SVG.
    fn sparkline(&self, team: &str, max: f64) -> String {
        let (w, h, pad) = (168.0, 34.0, 4.0);
        let n = self.reports.len().max(2) as f64;
        let points: Vec<(f64, f64, PeriodId, f64)> = self
            .reports
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let s = r.teams.iter().find(|x| x.team == team)?.score?;
                let x = pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
                let y = h - pad - (h - 2.0 * pad) * (s / max).clamp(0.0, 1.0);
                Some((x, y, r.period, s))
            })
            .collect();
        let mut svg = format!(
            "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{team}\">"
        );
        // The 100-point line: the target level of every KPI.
        let y100 = h - pad - (h - 2.0 * pad) * (100.0 / max).min(1.0);
        let _ = write!(
            svg,
            "<line x1=\"{pad}\" x2=\"{}\" y1=\"{y100:.1}\" y2=\"{y100:.1}\" class=\"ref\"/>",
            w - pad
        );
        if points.len() > 1 {
            let path: Vec<String> = points
                .iter()
                .map(|(x, y, _, _)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = write!(
                svg,
                "<polyline points=\"{}\" class=\"line\"/>",
                path.join(" ")
            );
        }
        for (i, (x, y, p, s)) in points.iter().enumerate() {
            let last = i + 1 == points.len() && *p == self.when.period;
            let _ = write!(
                svg,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{}\" class=\"{}\"><title>{p}: {s:.1}</title></circle>",
                if last { 3.2 } else { 2.0 },
                if last { "dot last" } else { "dot" }
            );
        }
        svg.push_str("</svg>");
        svg
    }

    fn matrix(&self) -> String {
        let t = self.lang.t();
        let cfg = self.cfg();
        let currency = cfg.settings.currency.as_str();
        let r = self.current();
        let weights = self.card.weights_for(self.when.period).unwrap_or_default();
        let mut head = format!(
            "<th class=\"kpi\">{}</th><th class=\"w\">{}</th>",
            t.kpi, t.weight
        );
        for team in &r.teams {
            let _ = write!(
                head,
                "<th class=\"teamcol\"><div class=\"name\">{}</div><div class=\"muted\">{} · {}</div></th>",
                esc(&team.name),
                team.rank.map_or("–".into(), |x| format!("#{x}")),
                team.score.map_or("–".into(), |s| format!("{s:.1}"))
            );
        }
        let mut rows = String::new();
        for (kpi, weight) in weights {
            let Some(k) = cfg.kpi(kpi) else { continue };
            let def = &k.def;
            let mark = match def.direction {
                Direction::Higher => "≥",
                Direction::Lower => "≤",
                Direction::Target => "≈",
            };
            let _ = write!(
                rows,
                "<tr><th class=\"kpi\" title=\"{desc}\"><div class=\"name\">{label}</div><div class=\"id\">{id}</div></th><td class=\"w\">{weight}</td>",
                desc = esc(&def.description),
                label = esc(def.label(self.lang.code())),
                id = esc(&def.id),
                weight = fmt_weight(*weight),
            );
            for team in &r.teams {
                let Some(line) = team.kpis.iter().find(|l| l.kpi == *kpi) else {
                    rows.push_str("<td></td>");
                    continue;
                };
                let value = line
                    .value
                    .map_or("–".to_string(), |v| format_value(v, def.unit, currency));
                let target = line.target.map_or(String::new(), |v| {
                    format!(
                        "{} {mark} {}",
                        t.target,
                        format_value(v, def.unit, currency)
                    )
                });
                let status = t.statuses[status_index(line.status)];
                let mut tip = format!("{} · {} · {status}", def.label(self.lang.code()), team.name);
                if let Some(s) = line.score {
                    let _ = write!(tip, " · {} {s:.1}", t.score);
                }
                if let Some(e) = &line.error {
                    let _ = write!(tip, " · {e}");
                }
                let _ = write!(
                    rows,
                    "<td class=\"cell {cls}\" title=\"{tip}\"><div class=\"v\">{value}</div><div class=\"t\">{target}</div></td>",
                    cls = line.status.name(),
                    tip = esc(&tip),
                    value = esc(&value),
                    target = esc(&target),
                );
            }
            rows.push_str("</tr>");
        }
        let legend = [
            Status::Met,
            Status::OnTrack,
            Status::AtRisk,
            Status::Missed,
            Status::NoData,
        ]
        .iter()
        .map(|s| {
            format!(
                "<span class=\"key {}\">{}</span>",
                s.name(),
                t.statuses[status_index(*s)]
            )
        })
        .collect::<String>();
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{title}</h2><div class=\"legend\">{legend}</div></div>\
             <div class=\"scroll\"><table class=\"matrix\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></section>",
            title = t.by_team
        )
    }

    fn alerts(&self) -> String {
        let t = self.lang.t();
        let cfg = self.cfg();
        if self.alerts.is_empty() {
            return format!(
                "<section class=\"panel\" id=\"alerts\"><div class=\"panel-head\"><h2>{}</h2></div><p class=\"empty\">{}</p></section>",
                t.alerts, t.no_alerts
            );
        }
        // The selected scorecard's KPIs only, at most MAX_ALERT_ROWS of them.
        let kpis = self.card.all_kpis();
        let shown: Vec<&crate::alerts::AlertView> = self
            .alerts
            .iter()
            .filter(|a| kpis.contains(&a.alert.kpi.as_str()))
            .collect();
        if shown.is_empty() {
            return format!(
                "<section class=\"panel\" id=\"alerts\"><div class=\"panel-head\"><h2>{}</h2></div><p class=\"empty\">{}</p></section>",
                t.alerts, t.no_alerts
            );
        }
        let more = shown.len().saturating_sub(MAX_ALERT_ROWS);
        let rows: String = shown
            .iter()
            .take(MAX_ALERT_ROWS)
            .map(|a| {
                let (class, label) = match a.alert.kind {
                    crate::alerts::Kind::Missed => ("missed", t.statuses[status_index(Status::Missed)]),
                    crate::alerts::Kind::AtRisk => ("at_risk", t.statuses[status_index(Status::AtRisk)]),
                };
                let def = cfg.kpi(&a.alert.kpi).map(|k| &k.def);
                let name = def.map_or(a.alert.kpi_name.as_str(), |d| d.label(self.lang.code()));
                let fmt = |v: Option<f64>| match (v, def) {
                    (Some(x), Some(d)) => format_value(x, d.unit, &cfg.settings.currency),
                    (Some(x), None) => format!("{x}"),
                    _ => "–".to_string(),
                };
                format!(
                    "<tr><td><span class=\"chip {class}\">{label}</span></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(name),
                    esc(&a.alert.team),
                    esc(&a.alert.period),
                    fmt(a.alert.value),
                    fmt(a.alert.target),
                    esc(&a.delivery)
                )
            })
            .collect();
        format!(
            "<section class=\"panel\" id=\"alerts\"><div class=\"panel-head\"><h2>{} ({})</h2></div>\
             <div class=\"scroll\"><table class=\"alerts\"><tbody>{rows}</tbody></table></div>{}</section>",
            t.alerts,
            shown.len(),
            if more > 0 {
                format!("<p class=\"empty\">+{more} … /api/alerts?state=firing</p>")
            } else {
                String::new()
            }
        )
    }
}

/// Alerts listed on the page; the API has them all.
const MAX_ALERT_ROWS: usize = 30;

/// A score's colour band.
fn band(score: f64) -> &'static str {
    if score >= 100.0 {
        "good"
    } else if score >= 80.0 {
        "fair"
    } else {
        "poor"
    }
}

fn fmt_weight(w: f64) -> String {
    if w.fract() == 0.0 {
        format!("{w:.0}")
    } else {
        format!("{w}")
    }
}

fn banner(health: &Health, served: &Served, lang: Lang) -> String {
    if health.errors.is_empty() {
        return String::new();
    }
    let t = lang.t();
    let items: String = health
        .errors
        .iter()
        .take(BANNER_ERRORS)
        .map(|d| {
            let at = match (d.line, d.col) {
                (0, _) => d.file.clone(),
                (l, 0) => format!("{}:{l}", d.file),
                (l, c) => format!("{}:{l}:{c}", d.file),
            };
            format!("<li><code>{}</code> {}</li>", esc(&at), esc(&d.message))
        })
        .collect();
    let more = health.errors.len().saturating_sub(BANNER_ERRORS);
    let more = if more > 0 {
        format!("<li>… +{more}</li>")
    } else {
        String::new()
    };
    format!(
        "<div class=\"banner\" role=\"alert\"><div class=\"banner-title\">{}</div><div class=\"banner-hint\">{}</div><ul>{items}{more}</ul></div>",
        t.errors_title,
        esc(&t.errors_hint.replace("{v}", &served.version.to_string()))
    )
}

fn footer(served: &Served, lang: Lang) -> String {
    let t = lang.t();
    format!(
        "<footer>kpi-engine · {} v{} ({}) · {} #{} · {}</footer>",
        t.config,
        served.version,
        esc(&served.loaded_at),
        t.data,
        served.data_generation,
        esc(&served.content_hash)
    )
}

fn empty_page(served: &Served, health: &Health, lang: Lang) -> String {
    let t = lang.t();
    let body = format!(
        "<header class=\"top\"><div class=\"brand\"><span class=\"logo\">K</span>{}</div></header>{}<main><section class=\"panel\"><p class=\"empty\">{}</p></section></main>{}",
        t.app,
        banner(health, served, lang),
        t.no_scorecards,
        footer(served, lang)
    );
    document(t.html_lang, t.app, served, health, &body)
}

fn document(lang: &str, title: &str, served: &Served, health: &Health, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body data-version=\"{v}\" data-generation=\"{g}\" data-status=\"{s}\">{body}<script>{SCRIPT}</script></body></html>",
        title = esc(title),
        v = served.version,
        g = served.data_generation,
        s = if health.errors.is_empty() {
            "ok"
        } else {
            "degraded"
        },
    )
}

fn selected(on: bool) -> &'static str {
    if on { " selected" } else { "" }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_encode("2026-Q1 x/é"), "2026-Q1%20x%2F%C3%A9");
    }
}
