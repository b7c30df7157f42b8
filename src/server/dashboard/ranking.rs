//! The ranking panel: the teams in rank order with their score bar, rank change, a sparkline of
//! the trend periods and their met / missed / at-risk counts.

use std::fmt::Write as _;

use super::html::esc;
use super::view::View;
use crate::eval::report::TeamLine;
use crate::eval::scoring::Status;
use crate::period::PeriodId;

impl View<'_> {
    /// The teams in rank order.
    pub(super) fn ranking(&self) -> String {
        let t = self.lang.t();
        let max = self.card.cap * 100.0;
        let first = self.reports.first().map(|x| x.period);
        let rows: String = self
            .current()
            .teams
            .iter()
            .map(|team| self.ranking_row(team, max))
            .collect();
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
            met = t.status(Status::Met),
            missed = t.status(Status::Missed),
            risk = t.status(Status::AtRisk),
        )
    }

    /// One team: rank, name, score bar (`max` is a full bar), rank change, trend and counts.
    fn ranking_row(&self, team: &TeamLine, max: f64) -> String {
        let t = self.lang.t();
        let score = team.score.map_or(
            format!("<span class=\"muted\">{}</span>", t.no_score),
            |s| format!("{s:.1}"),
        );
        let width = team
            .score
            .map_or(0.0, |s| (s / max * 100.0).clamp(0.0, 100.0));
        format!(
            "<tr><td class=\"rank\">{rank}</td>\
             <td class=\"team\"><div class=\"name\">{name}</div><div class=\"id\">{id}</div></td>\
             <td class=\"score\"><div class=\"scoreline\"><b>{score}</b><div class=\"bar\"><i class=\"{band}\" style=\"width:{width:.1}%\"></i></div></div></td>\
             <td class=\"delta\">{delta}</td><td class=\"trend\">{trend}</td><td class=\"counts\">{counts}</td></tr>",
            rank = team.rank.map_or("–".to_string(), |x| x.to_string()),
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
