//! The open alerts panel: the firing alerts of the selected scorecard's KPIs.

use super::html::esc;
use super::view::View;
use crate::alerts::{AlertView, Kind};
use crate::eval::scoring::Status;
use crate::render::format_value;

/// Alerts listed on the page; the API has them all.
const MAX_ALERT_ROWS: usize = 30;

impl View<'_> {
    /// The firing alerts of the shown scorecard's KPIs, at most [`MAX_ALERT_ROWS`] of them.
    pub(super) fn alerts(&self) -> String {
        let t = self.lang.t();
        let kpis = self.card.all_kpis();
        let shown: Vec<&AlertView> = self
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
            .map(|a| self.alert_row(a))
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

    /// One alert: its kind, KPI, team, period, value, target and delivery state.
    fn alert_row(&self, a: &AlertView) -> String {
        let t = self.lang.t();
        let cfg = self.cfg();
        let (class, label) = match a.alert.kind {
            Kind::Missed => ("missed", t.status(Status::Missed)),
            Kind::AtRisk => ("at_risk", t.status(Status::AtRisk)),
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
    }
}
