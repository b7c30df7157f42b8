//! What one notification says: the SPEC 9 JSON payload (or a digest of
//! them) for `json` webhooks, and a message rendered from a template for
//! chat robots, with values in their KPI's unit and teams by name.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::AlertState;
use super::Kind;
use super::robots::Message;
use super::state::Payload;
use super::template::{Scope, Template};
use crate::config::ConfigSnapshot;
use crate::config::alerts::{GroupKey, Webhook};
use crate::render::format_value;
use crate::store::TeamTree;

/// The Chinese default template, also shipped as kpis/templates/alert_zh.md.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../kpis/templates/alert_zh.md");

/// The parsed default template.
pub fn default_template() -> Arc<Template> {
    static T: OnceLock<Arc<Template>> = OnceLock::new();
    T.get_or_init(|| {
        Arc::new(Template::parse(DEFAULT_TEMPLATE).expect("the default template checks"))
    })
    .clone()
}

/// One transition as a notification tells it, with the alerts of
/// descendant teams that `inhibit_children` held back behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub payload: Payload,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Payload>,
}

/// Names and units for messages.
pub struct Names<'a> {
    pub cfg: &'a ConfigSnapshot,
    pub teams: &'a TeamTree,
}

impl Names<'_> {
    pub fn team(&self, id: &str) -> String {
        self.teams
            .index(id)
            .map(|i| self.teams.names[i as usize].clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| id.to_string())
    }

    /// A value in its KPI's unit ("¥1,200", "21.0%"); "无数据" for no data.
    pub fn value(&self, kpi: &str, v: Option<f64>) -> String {
        match (v, self.cfg.kpi(kpi)) {
            (None, _) => "无数据".to_string(),
            (Some(x), Some(k)) => format_value(x, k.def.unit, &self.cfg.settings.currency),
            (Some(x), None) => format!("{x}"),
        }
    }

    fn kpi_label(&self, p: &Payload) -> String {
        self.cfg
            .kpi(&p.kpi)
            .map(|k| k.def.label(Some("zh")).to_string())
            .unwrap_or_else(|| p.kpi_name.clone())
    }

    /// A local time "2026-10-01 08:00" in settings.timezone.
    fn local_time(&self, rfc3339: &str) -> String {
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
            return rfc3339.to_string();
        };
        t.with_timezone(&self.cfg.settings.calendar.tz)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }
}

/// The body of a `json` webhook: exactly the SPEC 9 payload for one
/// transition (with `children` only when inhibit_children held some back),
/// or `{"group": {…}, "alerts": [payload, …]}` for a `group_by` digest.
pub fn json_body(hook: &Webhook, entries: &[Entry]) -> String {
    if hook.group_by.is_empty() && entries.len() == 1 {
        return serde_json::to_string(&entries[0]).expect("a payload serialises");
    }
    let group: serde_json::Map<String, serde_json::Value> = hook
        .group_by
        .iter()
        .map(|k| {
            (
                key_name(*k).to_string(),
                group_value(*k, &entries[0].payload).into(),
            )
        })
        .collect();
    serde_json::json!({"group": group, "alerts": entries}).to_string()
}

fn key_name(k: GroupKey) -> &'static str {
    match k {
        GroupKey::Team => "team",
        GroupKey::Kpi => "kpi",
        GroupKey::Kind => "kind",
        GroupKey::Period => "period",
    }
}

/// The value a transition has for a `group_by` key.
pub fn group_value(k: GroupKey, p: &Payload) -> String {
    match k {
        GroupKey::Team => p.team.clone(),
        GroupKey::Kpi => p.kpi.clone(),
        GroupKey::Kind => p.kind.as_str().to_string(),
        GroupKey::Period => p.period.clone(),
    }
}

/// Renders the webhook's template (or the default) over `entries`.
pub fn chat_message(names: &Names<'_>, hook: &Webhook, entries: &[Entry]) -> Message {
    let template = hook
        .template
        .as_ref()
        .map_or_else(default_template, |t| t.template.clone());
    let items: Vec<AlertScope<'_>> = entries
        .iter()
        .map(|entry| AlertScope { entry, names })
        .collect();
    let scope = MessageScope {
        items: &items,
        group: group_text(names, hook, entries),
        digest: !hook.group_by.is_empty(),
        dashboard: names.cfg.alerts.dashboard_url.clone().unwrap_or_default(),
    };
    let markdown = template.render(&scope);
    let markdown = markdown.trim().to_string();
    Message {
        title: title_of(&markdown),
        markdown,
    }
}

/// "北区", "北区 · 营收": the group's values, by name.
fn group_text(names: &Names<'_>, hook: &Webhook, entries: &[Entry]) -> String {
    let Some(first) = entries.first() else {
        return String::new();
    };
    let p = &first.payload;
    hook.group_by
        .iter()
        .map(|k| match k {
            GroupKey::Team => names.team(&p.team),
            GroupKey::Kpi => names.kpi_label(p),
            GroupKey::Kind => kind_label(p.kind).to_string(),
            GroupKey::Period => p.period.clone(),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The first line of text, without Markdown marks: the robot's title.
fn title_of(markdown: &str) -> String {
    let line = markdown
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches(['#', '>', '-', '*', ' '])
                .replace("**", "")
                .trim()
                .to_string()
        })
        .find(|l| !l.is_empty());
    let title: String = line.unwrap_or_else(|| "KPI 告警".into());
    title.chars().take(100).collect()
}

fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Missed => "未达标",
        Kind::AtRisk => "有风险",
    }
}

struct AlertScope<'a> {
    entry: &'a Entry,
    names: &'a Names<'a>,
}

impl Scope for AlertScope<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let p = &self.entry.payload;
        let n = self.names;
        let firing = p.state == AlertState::Firing;
        let raw = |v: Option<f64>| v.map(|x| x.to_string());
        let text = match name {
            "id" => p.id.clone(),
            "kind" => p.kind.as_str().to_string(),
            "state" => p.state.as_str().to_string(),
            "kpi" => p.kpi.clone(),
            "kpi_name" => p.kpi_name.clone(),
            "kpi_label" => n.kpi_label(p),
            "team" => p.team.clone(),
            "team_name" => n.team(&p.team),
            "period" => p.period.clone(),
            "value" => n.value(&p.kpi, p.value),
            "target" => p.target.map(|t| n.value(&p.kpi, Some(t)))?,
            "projected" => p.projected.map(|t| n.value(&p.kpi, Some(t)))?,
            "value_raw" => raw(p.value)?,
            "target_raw" => raw(p.target)?,
            "projected_raw" => raw(p.projected)?,
            "direction" => p.direction.clone(),
            "fired_at" => p.fired_at.clone(),
            "resolved_at" => p.resolved_at.clone()?,
            "kind_label" => kind_label(p.kind).to_string(),
            "state_label" => if firing { "告警" } else { "已恢复" }.to_string(),
            "icon" => match (firing, p.kind) {
                (false, _) => "✅",
                (true, Kind::Missed) => "🔴",
                (true, Kind::AtRisk) => "🟠",
            }
            .to_string(),
            "time" => n.local_time(p.resolved_at.as_deref().unwrap_or(&p.fired_at)),
            "link" => {
                let base = n.cfg.alerts.dashboard_url.as_deref()?;
                format!("{base}/?period={}", p.period)
            }
            "children" => self
                .entry
                .children
                .iter()
                .map(|c| format!("{} {}", n.team(&c.team), n.value(&c.kpi, c.value)))
                .collect::<Vec<_>>()
                .join("、"),
            "firing" => if firing { "yes" } else { "" }.to_string(),
            "resolved" => if firing { "" } else { "yes" }.to_string(),
            _ => return None,
        };
        Some(text)
    }

    fn items(&self) -> Vec<&dyn Scope> {
        Vec::new()
    }
}

struct MessageScope<'a> {
    items: &'a [AlertScope<'a>],
    group: String,
    digest: bool,
    dashboard: String,
}

impl Scope for MessageScope<'_> {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.items.len().to_string()),
            "group" => Some(self.group.clone()),
            "digest" => Some(if self.digest { "yes" } else { "" }.to_string()),
            "dashboard" => Some(self.dashboard.clone()),
            other => self.items.first().and_then(|i| i.var(other)),
        }
    }

    fn items(&self) -> Vec<&dyn Scope> {
        self.items.iter().map(|i| i as &dyn Scope).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_checks() {
        let _ = default_template();
        assert!(title_of("\n### 🔴 **北区** · 营收\n- x").starts_with("🔴 北区 · 营收"));
    }
}
