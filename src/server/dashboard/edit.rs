//! The editor of the scorecard page: the shown weight set and each KPI's default target as
//! inputs, previewed live through `POST /api/preview` (rank changes shown) and saved through
//! `PUT /api/scorecards/{id}/weights/{key}` and `PUT /api/targets/{kpi}` with the admin
//! token (entered once, kept in a cookie by the script). A rejected edit's errors are shown
//! next to its field. The section is hidden until the script runs: reading needs no script.

use std::fmt::Write as _;

use super::html::esc;
use super::matrix::fmt_weight;
use super::view::View;
use crate::config::Subjects;

impl View<'_> {
    pub(super) fn editor(&self) -> String {
        let t = self.lang.t();
        let cfg = self.cfg();
        let Some(weights) = self.card.weights_for(self.when.period) else {
            return String::new();
        };
        let key = self
            .card
            .weights_key_for(self.when.period)
            .unwrap_or("default");
        // A person's cumulative target is not the KPI's default: targets are edited for teams.
        let targets = self.card.subjects == Subjects::Teams;
        let mut rows = String::new();
        for (kpi, w) in weights {
            let Some(def) = cfg.kpi(kpi).map(|k| &k.def) else {
                continue;
            };
            // The key of the KPI's own (not a team's) targets that applies to the period.
            let keys = crate::config::targets::period_keys(self.when.period);
            let own = cfg.targets.kpis.get(kpi).map(|k| &k.by_key);
            let (tkey, target) = keys
                .iter()
                .find_map(|k| {
                    own.and_then(|m| m.get(k))
                        .map(|t| (k.as_str(), Some(t.target)))
                })
                .unwrap_or(("default", None));
            let target_input = if targets {
                format!(
                    "<input type=\"number\" step=\"any\" data-target=\"{k}\" data-key=\"{tk}\" value=\"{v}\" data-was=\"{v}\" aria-label=\"{l} {tw}\"> <span class=\"muted small\">{tk}</span>",
                    k = esc(kpi),
                    tk = esc(tkey),
                    v = target.map(|x| x.to_string()).unwrap_or_default(),
                    l = esc(def.label(self.lang.code())),
                    tw = esc(t.target),
                )
            } else {
                String::new()
            };
            let _ = write!(
                rows,
                "<tr><th class=\"kpi\">{label}</th>\
                 <td><input type=\"number\" step=\"any\" min=\"0\" data-weight=\"{k}\" value=\"{w}\" data-was=\"{w}\" aria-label=\"{label} {ww}\"></td>\
                 <td>{target_input}</td><td class=\"err\" data-err=\"{k}\"></td></tr>",
                label = esc(def.label(self.lang.code())),
                k = esc(kpi),
                w = fmt_weight(*w),
                ww = esc(t.weight),
            );
        }
        format!(
            "<section class=\"panel\" id=\"edit\" hidden data-scorecard=\"{card}\" data-period=\"{period}\" data-key=\"{key}\"{as_of}>\
             <div class=\"panel-head\"><h2>{title}</h2></div>\
             <div class=\"token pad\"><label>{token_l} <input type=\"password\" id=\"admin-token\" autocomplete=\"off\"></label>\
             <button type=\"button\" id=\"token-save\">{remember}</button><span id=\"token-state\" class=\"muted\"></span></div>\
             <p class=\"muted pad\">{hint}</p>\
             <div class=\"scroll\"><table class=\"edit\"><thead><tr><th class=\"kpi\">{kpi}</th><th>{weight} ({key})</th><th>{target}</th><th></th></tr></thead>\
             <tbody>{rows}</tbody></table></div>\
             <div class=\"pad\"><button type=\"button\" id=\"edit-save\" disabled>{save}</button> <span id=\"edit-state\" class=\"muted\"></span></div>\
             <div id=\"preview\" class=\"scroll\"></div></section>",
            card = esc(&self.card.id),
            period = self.when.period,
            key = esc(key),
            as_of = self
                .page
                .as_of
                .as_ref()
                .map_or(String::new(), |a| format!(" data-as-of=\"{}\"", esc(a))),
            title = t.edit,
            token_l = t.admin_token,
            remember = t.remember,
            hint = t.edit_hint,
            kpi = t.kpi,
            weight = t.weight,
            target = t.default_target,
            save = t.save,
        )
    }
}
