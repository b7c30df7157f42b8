//! The ranking panel: the teams in rank order with their score bar, rank change, a sparkline of
//! the trend periods and their met / missed / at-risk counts.

use std::fmt::Write as _;

use super::html::{esc, score_text};
use super::view::{Level, View};
use crate::eval::report::TeamLine;
use crate::eval::scoring::Status;
use crate::period::PeriodId;

impl View<'_> {
    /// The teams in rank order, of the chosen level.
    pub(super) fn ranking(&self) -> String {
        let t = self.lang.t();
        let max = self.card.cap * 100.0;
        let first = self.reports.first().map(|x| x.period);
        let shown = self.shown();
        let open = self.current().open;
        let rows: String = shown
            .iter()
            .enumerate()
            .map(|(i, team)| {
                self.ranking_row(team, max, (self.level != Level::All).then_some(i + 1), open)
            })
            .collect();
        let projected = if open {
            format!("<th class=\"num\">{}</th>", t.projected)
        } else {
            String::new()
        };
        format!(
            "<section class=\"panel\" id=\"ranking\"><div class=\"panel-head\"><h2>{title}</h2>{levels}\
             <span class=\"muted\">{trend} {from} – {to}</span></div>\
             <div class=\"scroll\"><table class=\"ranking\"><thead><tr><th class=\"rank\">{rank}</th><th>{team}</th><th>{score}</th>{projected}\
             <th>{change}</th><th>{trend}</th><th>{met} / {missed} / {risk}</th></tr></thead><tbody>{rows}</tbody></table></div></section>",
            title = t.ranking,
            levels = self.level_links(),
            trend = t.trend,
            from = first.map(|p| p.to_string()).unwrap_or_default(),
            to = self.when.period,
            rank = t.rank,
            team = t.team,
            score = t.score,
            change = t.change,
            met = t.status(Status::Met),
            missed = t.status(Status::Missed),
            risk = t.status(Status::AtRisk),
        )
    }

    /// The level filter (leaf teams / regions / all), for a team scorecard.
    fn level_links(&self) -> String {
        if self.card.subjects == crate::config::Subjects::Owners {
            return String::new();
        }
        let t = self.lang.t();
        let nav = self.nav();
        let links: String = [
            (Level::Leaves, t.level_leaves),
            (Level::Regions, t.level_regions),
            (Level::All, t.level_all),
        ]
        .iter()
        .map(|(l, word)| {
            format!(
                "<a href=\"{}\"{}>{}</a>",
                esc(&nav.href("/", &[("level", l.code())])),
                super::html::class_on(*l == self.level),
                esc(word)
            )
        })
        .collect();
        format!(
            "<nav class=\"levels\" aria-label=\"{}\">{links}</nav>",
            esc(t.level)
        )
    }

    /// One team: rank (within the level when filtered, the overall rank beside it), name,
    /// score bar (`max` is a full bar), projected score, rank change, trend and counts.
    fn ranking_row(
        &self,
        team: &TeamLine,
        max: f64,
        in_level: Option<usize>,
        open: bool,
    ) -> String {
        let t = self.lang.t();
        let score = team.score.map_or(
            format!("<span class=\"muted\">{}</span>", t.no_score),
            |s| format!("{s:.1}"),
        );
        let width = team
            .score
            .map_or(0.0, |s| (s / max * 100.0).clamp(0.0, 100.0));
        let overall = team.rank.map_or("–".to_string(), |x| x.to_string());
        let rank = match in_level {
            Some(i) => format!(
                "{i}<div class=\"muted small\" title=\"{}\">#{overall}</div>",
                esc(t.overall_rank)
            ),
            None => overall,
        };
        let projected = if open {
            format!(
                "<td class=\"num\">{}</td>",
                score_text(team.projected_score)
            )
        } else {
            String::new()
        };
        let nav = self.nav();
        format!(
            "<tr><td class=\"rank\">{rank}</td>\
             <td class=\"team\"><a class=\"name\" href=\"{href}\">{name}</a><div class=\"id\">{id}</div></td>\
             <td class=\"score\"><div class=\"scoreline\"><b>{score}</b><div class=\"bar\"><i class=\"{band}\" style=\"width:{width:.1}%\"></i></div></div></td>{projected}\
             <td class=\"delta\">{delta}</td><td class=\"trend\">{trend}</td><td class=\"counts\">{counts}</td></tr>",
            href = esc(&nav.subject(&team.team, team.owner.as_deref())),
            name = esc(&team.name),
            id = esc(team.key()),
            band = team.score.map_or("none", band),
            delta = self.rank_change(team),
            trend = self.sparkline(team.key(), max),
            counts = self.status_counts(team),
        )
    }

    /// How many of the team's KPIs are met, missed and at risk, as chips.
    fn status_counts(&self, team: &TeamLine) -> String {
        let t = self.lang.t();
        [Status::Met, Status::Missed, Status::AtRisk]
            .iter()
            .map(|s| {
                let n = team.kpis.iter().filter(|k| k.status == *s).count();
                format!(
                    "<span class=\"chip {}\" title=\"{}\">{n}</span>",
                    s.name(),
                    t.status(*s)
                )
            })
            .collect()
    }

    /// ▲/▼ against the previous period's rank.
    fn rank_change(&self, team: &TeamLine) -> String {
        let n = self.reports.len();
        let prev = (n >= 2)
            .then(|| {
                self.reports[n - 2]
                    .teams
                    .iter()
                    .find(|x| x.key() == team.key())
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
                let s = r.teams.iter().find(|x| x.key() == team)?.score?;
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
}

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
