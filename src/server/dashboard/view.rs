//! The dashboard page: what one page shows ([`View`]), the page's order of sections, and its
//! top sections (the pickers, the heading and the summary cards). The ranking, the KPI matrix and
//! the alerts each have their own file.

use super::html::{Nav, esc};
use super::i18n::Lang;
use super::page::Page;
use crate::config::{ConfigSnapshot, Scorecard};
use crate::engine::When;
use crate::eval::report::{Report, TeamLine};
use crate::eval::scoring::Status;
use crate::store::TeamTree;

/// Which teams a ranking lists (`?level=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    All,
    /// Teams with no child team (cities).
    Leaves,
    /// Teams with a parent and children (regions).
    Regions,
}

impl Level {
    pub(super) fn parse(s: Option<&str>) -> Result<Level, String> {
        match s.map(str::trim) {
            None | Some("" | "all") => Ok(Level::All),
            Some("leaves") => Ok(Level::Leaves),
            Some("regions") => Ok(Level::Regions),
            Some(other) => Err(format!(
                "level: expected all, leaves or regions, got {other:?}"
            )),
        }
    }

    pub(super) fn code(self) -> &'static str {
        match self {
            Level::All => "all",
            Level::Leaves => "leaves",
            Level::Regions => "regions",
        }
    }

    /// Whether team `id` is of this level.
    pub(super) fn holds(self, tree: &TeamTree, id: &str) -> bool {
        let Some(t) = tree.index(id) else {
            return self == Level::All;
        };
        let has_children = tree.parent.contains(&Some(t));
        match self {
            Level::All => true,
            Level::Leaves => !has_children,
            Level::Regions => has_children && tree.parent[t as usize].is_some(),
        }
    }
}

/// Everything the scorecard page shows.
pub(super) struct View<'a> {
    pub(super) page: Page<'a>,
    /// Firing alerts, newest state changes first as listed.
    pub(super) alerts: &'a [crate::alerts::AlertView],
    pub(super) card: &'a Scorecard,
    /// The last `TREND` periods, oldest first; the last one is the selected period.
    pub(super) reports: &'a [Report],
    pub(super) when: When,
    pub(super) lang: Lang,
    /// Which teams the ranking lists.
    pub(super) level: Level,
    pub(super) tree: &'a TeamTree,
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
        &self.page.served.config
    }

    pub(super) fn current(&self) -> &Report {
        self.reports.last().expect("at least one period")
    }

    pub(super) fn nav(&self) -> Nav {
        self.page.nav()
    }

    /// The lines the ranking and the matrix show: those of the chosen level.
    pub(super) fn shown(&self) -> Vec<&TeamLine> {
        self.current()
            .teams
            .iter()
            .filter(|l| l.owner.is_some() || self.level.holds(self.tree, &l.team))
            .collect()
    }

    /// The whole page.
    pub(super) fn render(&self) -> String {
        let title = format!(
            "{} · {}",
            self.card.label(self.lang.code()),
            self.when.period
        );
        let mut body = String::new();
        body.push_str(&self.heading());
        body.push_str(&self.summary());
        body.push_str(&self.ranking());
        body.push_str(&self.matrix());
        body.push_str(&self.editor());
        body.push_str(&self.alerts());
        self.page.render(&title, &body)
    }

    /// The scorecard's name, the period and whether it is open (or frozen).
    fn heading(&self) -> String {
        let t = self.lang.t();
        let cal = &self.cfg().settings.calendar;
        let r = self.current();
        let kpis = self
            .card
            .weights_for(self.when.period)
            .map_or(0, <[_]>::len);
        format!(
            "<section class=\"heading\"><div><h1>{name}</h1><p class=\"sub\">{period} {state} \
             <span class=\"muted\">· {n_teams} {teams} · {kpis} {kpi_word} · {as_of} {time}</span></p></div></section>",
            name = esc(self.card.label(self.lang.code())),
            period = self.when.period,
            state = self.page.period_state(r),
            n_teams = r.teams.len(),
            teams = self.subjects_word(),
            kpi_word = t.kpis,
            as_of = t.as_of,
            time = esc(&cal.format_human(r.as_of)),
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
