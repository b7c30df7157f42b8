//! The dashboard page: what one page shows ([`View`]), the page's order of sections, and its
//! top sections (the pickers, the heading and the summary cards). The ranking, the KPI matrix and
//! the alerts each have their own file.

use std::fmt::Write as _;

use super::html::{class_on, esc, selected, url_encode};
use super::i18n::Lang;
use super::layout::{banner, document, footer};
use crate::config::{ConfigSnapshot, Scorecard};
use crate::engine::{Snapshot as Served, When};
use crate::eval::report::Report;
use crate::eval::scoring::Status;
use crate::period::{Grain, PeriodId};
use crate::server::state::Health;

/// Everything one page shows.
pub(super) struct View<'a> {
    /// Firing alerts, newest state changes first as listed.
    pub(super) alerts: &'a [crate::alerts::AlertView],
    pub(super) served: &'a Served,
    pub(super) health: &'a Health,
    pub(super) card: &'a Scorecard,
    /// The last `TREND` periods, oldest first; the last one is the selected period.
    pub(super) reports: &'a [Report],
    pub(super) when: When,
    pub(super) lang: Lang,
    pub(super) as_of_param: Option<String>,
}

impl View<'_> {
    /// "teams", or "people" for an owner scorecard.
    fn subjects_word(&self) -> &'static str {
        let t = self.lang.t();
        match self.card.subjects {
            crate::config::Subjects::Owners => t.people,
            crate::config::Subjects::Teams => t.teams,
        }
    }

    pub(super) fn cfg(&self) -> &ConfigSnapshot {
        &self.served.config
    }

    pub(super) fn current(&self) -> &Report {
        self.reports.last().expect("at least one period")
    }

    /// The whole page.
    pub(super) fn render(&self) -> String {
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

    /// The top bar: the scorecard and period pickers and the language links.
    fn header(&self) -> String {
        let t = self.lang.t();
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
            cards = self.scorecard_options(),
            options = self.period_options(),
            hidden = self.hidden_inputs(),
            show = esc(t.show),
            en = esc(&self.link(None)),
            zh = esc(&self.link(Some("zh"))),
            en_on = class_on(self.lang == Lang::En),
            zh_on = class_on(self.lang == Lang::Zh),
        )
    }

    /// Every configured scorecard, the shown one selected.
    fn scorecard_options(&self) -> String {
        let mut cards = String::new();
        for c in &self.cfg().scorecards {
            let _ = write!(
                cards,
                "<option value=\"{}\"{}>{}</option>",
                esc(&c.id),
                selected(c.id == self.card.id),
                esc(c.label(self.lang.code()))
            );
        }
        cards
    }

    /// The last twelve quarters up to now, and the shown period if it is not one of them.
    fn period_options(&self) -> String {
        let cal = &self.cfg().settings.calendar;
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
        options
    }

    /// The parameters the pickers keep: the language and the as-of time.
    fn hidden_inputs(&self) -> String {
        [
            ("lang", self.lang.code().map(str::to_string)),
            ("as_of", self.as_of_param.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.map(|v| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(&v)))
        })
        .collect::<String>()
    }

    /// This page in another language (`None`: English).
    fn link(&self, lang: Option<&str>) -> String {
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
    }

    /// The scorecard's name, the period and whether it is open.
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
            teams = self.subjects_word(),
            kpi_word = t.kpis,
            as_of = t.as_of,
            time = esc(&cal.format_local(r.as_of)),
        )
    }

    /// The four cards: top team, average score, missed and at-risk values.
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
            teams = self.subjects_word(),
            missed_l = t.missed,
            missed = count(Status::Missed),
            risk_l = t.at_risk,
            risk = count(Status::AtRisk),
        )
    }
}
