//! The KPI matrix: one row per KPI of the scorecard, one column per team, each cell with its
//! value, target and status colour.

use std::fmt::Write as _;

use super::html::{esc, human_value};
use super::view::View;
use crate::config::{Direction, KpiDef};
use crate::eval::report::{KpiLine, TeamLine};
use crate::eval::scoring::Status;

impl View<'_> {
    /// The KPIs × teams table with its legend.
    pub(super) fn matrix(&self) -> String {
        let t = self.lang.t();
        let weights = self.card.weights_for(self.when.period).unwrap_or_default();
        let mut rows = String::new();
        for (kpi, weight) in weights {
            rows.push_str(&self.kpi_row(kpi, *weight));
        }
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{title}</h2><div class=\"legend\">{legend}</div></div>\
             <div class=\"scroll\"><table class=\"matrix\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></section>",
            title = t.by_team,
            legend = self.legend(),
            head = self.matrix_head(),
        )
    }

    /// The header row: KPI, weight, then each team with its rank and score.
    fn matrix_head(&self) -> String {
        let t = self.lang.t();
        let mut head = format!(
            "<th class=\"kpi\">{}</th><th class=\"w\">{}</th>",
            t.kpi, t.weight
        );
        let nav = self.nav();
        for team in self.shown() {
            let _ = write!(
                head,
                "<th class=\"teamcol\"><a class=\"name\" href=\"{}\">{}</a><div class=\"muted\">{} · {}</div></th>",
                esc(&nav.subject(&team.team, team.owner.as_deref())),
                esc(&team.name),
                team.rank.map_or("–".into(), |x| format!("#{x}")),
                team.score.map_or("–".into(), |s| format!("{s:.1}"))
            );
        }
        head
    }

    /// One KPI's row (nothing for a KPI the configuration does not define).
    fn kpi_row(&self, kpi: &str, weight: f64) -> String {
        let Some(k) = self.cfg().kpi(kpi) else {
            return String::new();
        };
        let def = &k.def;
        let mut row = format!(
            "<tr><th class=\"kpi\" title=\"{desc}\"><div class=\"name\">{label}</div><div class=\"id\">{id}</div></th><td class=\"w\">{weight}</td>",
            desc = esc(&def.description),
            label = esc(def.label(self.lang.code())),
            id = esc(&def.id),
            weight = fmt_weight(weight),
        );
        for team in self.shown() {
            match team.kpis.iter().find(|l| l.kpi == kpi) {
                Some(line) => row.push_str(&self.cell(def, team, line)),
                None => row.push_str("<td></td>"),
            }
        }
        row.push_str("</tr>");
        row
    }

    /// One team's value of one KPI: value, target, status colour and a tooltip.
    fn cell(&self, def: &KpiDef, team: &TeamLine, line: &KpiLine) -> String {
        let t = self.lang.t();
        let currency = self.cfg().settings.currency.as_str();
        let mark = match def.direction {
            Direction::Higher => "≥",
            Direction::Lower => "≤",
            Direction::Target => "≈",
        };
        let value = line
            .value
            .map_or("–".to_string(), |v| human_value(v, def.unit, currency));
        let target = line.target.map_or(String::new(), |v| {
            format!("{} {mark} {}", t.target, human_value(v, def.unit, currency))
        });
        let status = t.status(line.status);
        let mut tip = format!("{} · {} · {status}", def.label(self.lang.code()), team.name);
        if let Some(s) = line.score {
            let _ = write!(tip, " · {} {s:.1}", t.score);
        }
        if let Some(e) = &line.error {
            let _ = write!(tip, " · {e}");
        }
        let href = self.nav().value(&def.id, &team.team, team.owner.as_deref());
        format!(
            "<td class=\"cell {cls}\" title=\"{tip}\"><a href=\"{href}\"><div class=\"v\">{value}</div><div class=\"t\">{target}</div></a></td>",
            href = esc(&href),
            cls = line.status.name(),
            tip = esc(&tip),
            value = esc(&value),
            target = esc(&target),
        )
    }

    /// The status colours the matrix uses.
    fn legend(&self) -> String {
        let t = self.lang.t();
        [
            Status::Met,
            Status::OnTrack,
            Status::AtRisk,
            Status::Missed,
            Status::NoData,
        ]
        .iter()
        .map(|s| format!("<span class=\"key {}\">{}</span>", s.name(), t.status(*s)))
        .collect()
    }
}

/// A weight as written (`2`, `1.5`).
pub(super) fn fmt_weight(w: f64) -> String {
    if w.fract() == 0.0 {
        format!("{w:.0}")
    } else {
        format!("{w}")
    }
}
