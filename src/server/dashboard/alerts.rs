//! Alerts on the dashboard: the open alerts panel of the scorecard page (the firing alerts
//! of the shown scorecard's KPIs) and the `/alerts` page with its filters by state, kind and
//! team. Every row names its KPI and team and links to the value it is about.

use std::fmt::Write as _;

use super::html::{Nav, esc, human_value, selected};
use super::page::Page;
use super::view::View;
use crate::alerts::{AlertView, Kind};
use crate::config::ConfigSnapshot;
use crate::eval::scoring::Status;
use crate::store::TeamTree;

/// Alerts listed on the scorecard page; the alerts page has them all.
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
        let nav = self.nav();
        let rows = AlertRows {
            cfg: self.cfg(),
            tree: self.tree,
            nav: &nav,
            page: &self.page,
        };
        let body: String = shown
            .iter()
            .take(MAX_ALERT_ROWS)
            .map(|a| rows.row(a))
            .collect();
        let more = shown.len().saturating_sub(MAX_ALERT_ROWS);
        let all = nav.href("/alerts", &[("state", "firing")]);
        format!(
            "<section class=\"panel\" id=\"alerts\"><div class=\"panel-head\"><h2>{} ({})</h2><a href=\"{}\">{}</a></div>\
             <div class=\"scroll\"><table class=\"alerts\">{}<tbody>{body}</tbody></table></div>{}</section>",
            t.alerts,
            shown.len(),
            esc(&all),
            esc(t.all_alerts),
            rows.head(),
            if more > 0 {
                format!(
                    "<p class=\"empty\"><a href=\"{}\">+{more} {}</a></p>",
                    esc(&all),
                    esc(t.more_alerts)
                )
            } else {
                String::new()
            }
        )
    }
}

/// What the alerts page filters by (`?state=&kind=&team=`).
pub(super) struct AlertFilter {
    pub(super) state: String,
    pub(super) kind: Option<Kind>,
    pub(super) team: Option<String>,
}

impl AlertFilter {
    pub(super) fn parse(
        state: Option<&str>,
        kind: Option<&str>,
        team: Option<&str>,
    ) -> Result<AlertFilter, String> {
        let state = state.map(str::trim).filter(|s| !s.is_empty());
        crate::alerts::StateFilter::parse(state).map_err(|e| e.to_string())?;
        let kind = match kind.map(str::trim) {
            None | Some("" | "all") => None,
            Some("missed") => Some(Kind::Missed),
            Some("at_risk") => Some(Kind::AtRisk),
            Some(other) => return Err(format!("kind: expected missed or at_risk, got {other:?}")),
        };
        Ok(AlertFilter {
            state: state.unwrap_or("firing").to_string(),
            kind,
            team: team
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    fn keeps(&self, a: &AlertView, tree: &TeamTree) -> bool {
        let kind = self.kind.is_none_or(|k| a.alert.kind == k);
        // A team keeps the alerts of its whole subtree.
        let team =
            self.team
                .as_deref()
                .is_none_or(|t| match (tree.index(&a.alert.team), tree.index(t)) {
                    (Some(at), Some(ft)) => tree.up[at as usize].contains(&ft),
                    _ => a.alert.team == t,
                });
        kind && team
    }
}

/// The alerts page: the filter form and every alert that passes it.
pub(super) fn alerts_page(
    page: &Page<'_>,
    tree: &TeamTree,
    alerts: &[AlertView],
    filter: &AlertFilter,
) -> String {
    let t = page.t();
    let nav = page.nav();
    let rows = AlertRows {
        cfg: page.cfg(),
        tree,
        nav: &nav,
        page,
    };
    let kept: Vec<&AlertView> = alerts.iter().filter(|a| filter.keeps(a, tree)).collect();
    let body: String = kept.iter().map(|a| rows.row(a)).collect();
    let table = if kept.is_empty() {
        format!("<p class=\"empty\">{}</p>", t.no_matching_alerts)
    } else {
        format!(
            "<div class=\"scroll\"><table class=\"alerts\">{}<tbody>{body}</tbody></table></div>",
            rows.head()
        )
    };
    let body = format!(
        "<section class=\"heading\"><h1>{title}</h1></section>\
         <section class=\"panel\" id=\"alerts\"><div class=\"panel-head\"><h2>{title} ({n})</h2></div>{form}{table}</section>",
        title = esc(t.alerts_page),
        n = kept.len(),
        form = filter_form(page, tree, filter),
    );
    page.render(t.alerts_page, &body)
}

/// The state, kind and team selects (a plain GET form: it works without JavaScript).
fn filter_form(page: &Page<'_>, tree: &TeamTree, f: &AlertFilter) -> String {
    let t = page.t();
    let opt = |value: &str, label: &str, on: bool| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            esc(value),
            selected(on),
            esc(label)
        )
    };
    let states: String = [
        ("firing", t.firing),
        ("resolved", t.resolved),
        ("all", t.all),
    ]
    .iter()
    .map(|(v, l)| opt(v, l, f.state == *v))
    .collect();
    let kinds: String = [
        ("all", t.all, f.kind.is_none()),
        (
            "missed",
            t.status(Status::Missed),
            f.kind == Some(Kind::Missed),
        ),
        (
            "at_risk",
            t.status(Status::AtRisk),
            f.kind == Some(Kind::AtRisk),
        ),
    ]
    .iter()
    .map(|(v, l, on)| opt(v, l, *on))
    .collect();
    let mut teams = opt("", t.all, f.team.is_none());
    for i in tree.tree_order() {
        let id = &tree.ids[i as usize];
        let depth = tree.up[i as usize].len().saturating_sub(1);
        let label = format!("{}{}", "· ".repeat(depth), tree.names[i as usize]);
        teams.push_str(&opt(id, &label, f.team.as_deref() == Some(id)));
    }
    let mut hidden = String::new();
    if let Some(l) = page.lang.code() {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"lang\" value=\"{l}\">"
        );
    }
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/alerts\">\
         <label>{sl}<select name=\"state\" data-autosubmit>{states}</select></label>\
         <label>{kl}<select name=\"kind\" data-autosubmit>{kinds}</select></label>\
         <label>{tl}<select name=\"team\" data-autosubmit>{teams}</select></label>{hidden}\
         <noscript><button type=\"submit\">{show}</button></noscript></form>",
        sl = esc(t.state),
        kl = esc(t.kind),
        tl = esc(t.team),
        show = esc(t.show),
    )
}

/// Renders alert rows with names, human values and times, and links.
struct AlertRows<'a> {
    cfg: &'a ConfigSnapshot,
    tree: &'a TeamTree,
    nav: &'a Nav,
    page: &'a Page<'a>,
}

impl AlertRows<'_> {
    fn head(&self) -> String {
        let t = self.page.t();
        format!(
            "<thead><tr><th>{}</th><th class=\"kpi\">{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th>\
             <th class=\"num\">{}</th><th>{}</th><th>{}</th></tr></thead>",
            t.kind, t.kpi, t.team, t.period, t.value, t.target_col, t.since, t.delivery
        )
    }

    /// One alert: its kind, KPI, team, period, value, target, since when and its delivery.
    fn row(&self, a: &AlertView) -> String {
        let t = self.page.t();
        let cfg = self.cfg;
        let lang = self.page.lang;
        let (class, label) = match a.alert.kind {
            Kind::Missed => ("missed", t.status(Status::Missed)),
            Kind::AtRisk => ("at_risk", t.status(Status::AtRisk)),
        };
        let def = cfg.kpi(&a.alert.kpi).map(|k| &k.def);
        let name = def.map_or(a.alert.kpi_name.as_str(), |d| d.label(lang.code()));
        let fmt = |v: Option<f64>| match (v, def) {
            (Some(x), Some(d)) => human_value(x, d.unit, &cfg.settings.currency),
            (Some(x), None) => format!("{x}"),
            _ => "–".to_string(),
        };
        let team_name = self
            .tree
            .index(&a.alert.team)
            .map_or(a.alert.team.as_str(), |i| {
                self.tree.names[i as usize].as_str()
            });
        let mut nav = self.nav.clone();
        nav.period = Some(a.alert.period.clone());
        let cal = &cfg.settings.calendar;
        let since = match &a.alert.resolved_at {
            Some(r) => format!("{} → {}", cal.humanize(&a.alert.fired_at), cal.humanize(r)),
            None => cal.humanize(&a.alert.fired_at),
        };
        let delivery = match a.delivery.as_str() {
            "none" => String::new(),
            d => {
                let word = t.delivery_word(d);
                match &a.muted {
                    Some(m) => format!("<span title=\"{}\">{}</span>", esc(m), esc(word)),
                    None => esc(word),
                }
            }
        };
        format!(
            "<tr><td><span class=\"chip {class}\">{label}</span></td><td class=\"kpi\"><a href=\"{value}\">{name}</a></td>\
             <td><a href=\"{team}\">{team_name}</a></td><td>{period}</td><td class=\"num\">{v}</td><td class=\"num\">{tg}</td>\
             <td>{since}</td><td>{delivery}</td></tr>",
            value = esc(&nav.value(&a.alert.kpi, &a.alert.team, None)),
            name = esc(name),
            team = esc(&nav.team(&a.alert.team)),
            team_name = esc(team_name),
            period = esc(&a.alert.period),
            v = fmt(a.alert.value),
            tg = fmt(a.alert.target),
            since = esc(&since),
        )
    }
}
