//! `kpis/alerts.toml`: when alerts are evaluated and where they are delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::toml_doc::{Node, Reader, Source};
use crate::alerts::silence::{self, Silence, SilenceSpec, Weekly};
use crate::alerts::template::Template;
use crate::diag::Diagnostic;
use crate::period::{Calendar, Grain};

/// Where a webhook's messages go, and so their format (SPEC 9 and 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookKind {
    /// The SPEC 9 payload, as JSON.
    Json,
    Dingtalk,
    Wecom,
    Feishu,
    Slack,
}

impl WebhookKind {
    pub const ALL: [WebhookKind; 5] = [
        WebhookKind::Json,
        WebhookKind::Dingtalk,
        WebhookKind::Wecom,
        WebhookKind::Feishu,
        WebhookKind::Slack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Json => "json",
            WebhookKind::Dingtalk => "dingtalk",
            WebhookKind::Wecom => "wecom",
            WebhookKind::Feishu => "feishu",
            WebhookKind::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookKind> {
        WebhookKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Does the robot check a signature made with `secret`?
    pub fn signs(self) -> bool {
        matches!(self, WebhookKind::Dingtalk | WebhookKind::Feishu)
    }
}

/// What `group_by` can group a webhook's transitions by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Team,
    Kpi,
    Kind,
    Period,
}

impl GroupKey {
    pub fn parse(s: &str) -> Option<GroupKey> {
        match s {
            "team" => Some(GroupKey::Team),
            "kpi" => Some(GroupKey::Kpi),
            "kind" => Some(GroupKey::Kind),
            "period" => Some(GroupKey::Period),
            _ => None,
        }
    }
}

/// A message template and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateFile {
    /// Relative to kpis/, as written in alerts.toml.
    pub path: String,
    pub template: Arc<Template>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub kpis: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
    pub kind: WebhookKind,
    /// DingTalk and Feishu signing.
    pub secret: Option<String>,
    /// None: the built-in Chinese template (kpis/templates/alert_zh.md).
    pub template: Option<TemplateFile>,
    /// Empty: one message per transition.
    pub group_by: Vec<GroupKey>,
    /// Phone numbers or user ids to @-mention.
    pub mention: Vec<String>,
}

impl Webhook {
    /// A plain JSON webhook (SPEC 9).
    pub fn json(name: &str, url: &str) -> Webhook {
        Webhook {
            name: name.to_string(),
            url: url.to_string(),
            kpis: None,
            teams: None,
            kind: WebhookKind::Json,
            secret: None,
            template: None,
            group_by: Vec::new(),
            mention: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub evaluate_every: Duration,
    pub at_risk_after: f64,
    pub grain: Grain,
    pub max_attempts: u32,
    pub webhooks: Vec<Webhook>,
    /// A firing `missed` of a team holds back the same alert of its descendants.
    pub inhibit_children: bool,
    /// Delivered notifications older than this are pruned.
    pub keep_delivered: Duration,
    /// The dashboard's address as people reach it, for links in messages.
    pub dashboard_url: Option<String>,
    /// `[[silence]]` blocks.
    pub silences: Vec<Silence>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            evaluate_every: Duration::from_secs(300),
            at_risk_after: 0.25,
            grain: Grain::Quarter,
            max_attempts: 8,
            webhooks: Vec::new(),
            inhibit_children: false,
            keep_delivered: Duration::from_secs(30 * 86400),
            dashboard_url: None,
            silences: Vec::new(),
        }
    }
}

/// "30s", "5m", "1h", "1d".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..split].parse().ok()?;
    let unit = match &s[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    (n > 0).then(|| Duration::from_secs(n * unit))
}

const TOP_KEYS: &[&str] = &[
    "evaluate_every",
    "at_risk_after",
    "grain",
    "max_attempts",
    "inhibit_children",
    "keep_delivered",
    "dashboard_url",
    "webhook",
    "silence",
];

const WEBHOOK_KEYS: &[&str] = &[
    "name", "url", "kpis", "teams", "kind", "secret", "template", "group_by", "mention",
];

const SILENCE_KEYS: &[&str] = &["kpis", "teams", "from", "until", "weekly", "comment"];

/// A duration as `parse_duration` reads it back, or in milliseconds when shorter.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

impl AlertSettings {
    /// Reads alerts.toml; `files` are the root's files (templates are read
    /// from there), `calendar` reads the times of silences.
    pub fn from_source(
        src: &Source,
        calendar: &Calendar,
        files: &BTreeMap<String, String>,
    ) -> Result<AlertSettings, Vec<Diagnostic>> {
        let doc = src.parse().map_err(|e| vec![e])?;
        let mut r = Reader::new(src);
        r.deny_unknown(&doc, "alerts.toml", TOP_KEYS);
        let mut a = AlertSettings::default();
        read_settings(&doc, &mut r, &mut a);
        for w in doc
            .get("webhook")
            .and_then(Node::as_array)
            .unwrap_or_default()
        {
            if let Some(w) = read_webhook(w, &mut r, files) {
                a.webhooks.push(w);
            }
        }
        if let Some(n) = doc.get("webhook")
            && n.as_array().is_none()
        {
            r.error(
                &n.span,
                "webhook must be written [[webhook]] (an array of tables)",
            );
        }
        for s in doc
            .get("silence")
            .and_then(Node::as_array)
            .unwrap_or_default()
        {
            if let Some(s) = read_silence(s, &mut r, calendar) {
                a.silences.push(s);
            }
        }
        if r.errors.is_empty() {
            Ok(a)
        } else {
            Err(r.errors)
        }
    }
}

/// A duration key ("30s", "5m", "1h", "30d"), when present and valid.
fn read_duration(doc: &Node, r: &mut Reader<'_>, key: &str, examples: &str) -> Option<Duration> {
    let n = doc.get(key)?;
    let s = r.string(n, key)?;
    let d = parse_duration(&s);
    if d.is_none() {
        r.error(
            &n.span,
            format!("{key} must look like {examples}, got \"{s}\""),
        );
    }
    d
}

fn read_settings(doc: &Node, r: &mut Reader<'_>, a: &mut AlertSettings) {
    if let Some(d) = read_duration(doc, r, "evaluate_every", "\"30s\", \"5m\" or \"1h\"") {
        a.evaluate_every = d;
    }
    if let Some(d) = read_duration(doc, r, "keep_delivered", "\"30d\" or \"12h\"") {
        a.keep_delivered = d;
    }
    if let Some(n) = doc.get("at_risk_after") {
        match r.number(n, "at_risk_after") {
            Some(x) if (0.0..=1.0).contains(&x) => a.at_risk_after = x,
            Some(x) => r.error(
                &n.span,
                format!("at_risk_after is a share of the period, 0 to 1; got {x}"),
            ),
            None => {}
        }
    }
    if let Some(n) = doc.get("grain")
        && let Some(s) = r.string(n, "grain")
    {
        match s.parse::<Grain>() {
            Ok(g) => a.grain = g,
            Err(_) => r.error(
                &n.span,
                format!("grain must be quarter, month or year; got \"{s}\""),
            ),
        }
    }
    if let Some(n) = doc.get("max_attempts") {
        match n.as_i64() {
            Some(m) if (1..=100).contains(&m) => a.max_attempts = m as u32,
            _ => r.error(&n.span, "max_attempts must be a whole number from 1 to 100"),
        }
    }
    if let Some(n) = doc.get("inhibit_children")
        && let Some(b) = r.boolean(n, "inhibit_children")
    {
        a.inhibit_children = b;
    }
    if let Some(n) = doc.get("dashboard_url")
        && let Some(u) = r.string(n, "dashboard_url")
    {
        if u.starts_with("http://") || u.starts_with("https://") {
            a.dashboard_url = Some(u.trim_end_matches('/').to_string());
        } else {
            r.error(
                &n.span,
                format!("dashboard_url must start with http:// or https://, got \"{u}\""),
            );
        }
    }
}

fn read_webhook(w: &Node, r: &mut Reader<'_>, files: &BTreeMap<String, String>) -> Option<Webhook> {
    r.table(w, "[[webhook]]")?;
    r.deny_unknown(w, "[[webhook]]", WEBHOOK_KEYS);
    let name = w
        .get("name")
        .and_then(|x| r.string(x, "name"))
        .unwrap_or_default();
    let url = match w.get("url").and_then(|x| r.string(x, "url")) {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => u,
        Some(u) => {
            r.error(
                &w.span,
                format!("webhook url must start with http:// or https://, got \"{u}\""),
            );
            return None;
        }
        None => {
            r.error(&w.span, "[[webhook]] needs url = \"http://…\"");
            return None;
        }
    };
    let mut hook = Webhook::json(&name, &url);
    hook.kpis = w.get("kpis").and_then(|x| r.string_list(x, "kpis"));
    hook.teams = w.get("teams").and_then(|x| r.string_list(x, "teams"));
    if let Some(n) = w.get("kind")
        && let Some(s) = r.string(n, "kind")
    {
        match WebhookKind::parse(&s) {
            Some(k) => hook.kind = k,
            None => r.error(
                &n.span,
                format!(
                    "kind must be json, dingtalk, wecom, feishu or slack; got \"{s}\"{}",
                    crate::diag::hint(&s, WebhookKind::ALL.map(WebhookKind::as_str))
                ),
            ),
        }
    }
    if let Some(n) = w.get("secret")
        && let Some(s) = r.string(n, "secret")
    {
        if hook.kind.signs() {
            hook.secret = Some(s);
        } else {
            r.error(
                &n.span,
                format!(
                    "secret signs dingtalk and feishu messages; a {} webhook has none",
                    hook.kind.as_str()
                ),
            );
        }
    }
    if let Some(n) = w.get("group_by")
        && let Some(keys) = r.string_list(n, "group_by")
    {
        for k in keys {
            match GroupKey::parse(&k) {
                Some(g) if !hook.group_by.contains(&g) => hook.group_by.push(g),
                Some(_) => {}
                None => r.error(
                    &n.span,
                    format!("group_by takes team, kpi, kind or period; got \"{k}\""),
                ),
            }
        }
    }
    if let Some(n) = w.get("mention")
        && let Some(m) = r.string_list(n, "mention")
    {
        hook.mention = m;
    }
    if let Some(n) = w.get("template")
        && let Some(path) = r.string(n, "template")
    {
        if hook.kind == WebhookKind::Json {
            r.error(
                &n.span,
                "a json webhook sends the SPEC 9 payload; template is for dingtalk, wecom, feishu and slack",
            );
        } else {
            hook.template = read_template(&path, n, r, files);
        }
    }
    Some(hook)
}

/// Reads and checks kpis/PATH; its errors are reported in that file.
fn read_template(
    path: &str,
    node: &Node,
    r: &mut Reader<'_>,
    files: &BTreeMap<String, String>,
) -> Option<TemplateFile> {
    let full = format!("kpis/{path}");
    if path.contains("..") || path.starts_with('/') {
        r.error(
            &node.span,
            format!("template must be a path under kpis/, got \"{path}\""),
        );
        return None;
    }
    let Some(text) = files.get(&full) else {
        r.error(
            &node.span,
            format!("template file {full} not found (templates live under kpis/templates/, as .md or .txt)"),
        );
        return None;
    };
    match Template::parse(text) {
        Ok(t) => Some(TemplateFile {
            path: path.to_string(),
            template: Arc::new(t),
        }),
        Err(errors) => {
            for e in errors {
                r.errors
                    .push(Diagnostic::new(&full, e.line, e.col, e.message));
            }
            None
        }
    }
}

fn read_silence(s: &Node, r: &mut Reader<'_>, calendar: &Calendar) -> Option<Silence> {
    r.table(s, "[[silence]]")?;
    r.deny_unknown(s, "[[silence]]", SILENCE_KEYS);
    let text = |r: &mut Reader<'_>, key: &str| s.get(key).and_then(|n| r.string(n, key));
    let mut spec = SilenceSpec {
        kpis: s.get("kpis").and_then(|x| r.string_list(x, "kpis")),
        teams: s.get("teams").and_then(|x| r.string_list(x, "teams")),
        from: text(r, "from"),
        until: text(r, "until"),
        comment: text(r, "comment"),
        weekly: None,
    };
    if let Some(n) = s.get("weekly") {
        match n.get("days").and_then(|d| r.string_list(d, "weekly days")) {
            Some(days) => spec.weekly = Some(Weekly { days }),
            None => r.error(&n.span, "weekly must be { days = [\"sat\", \"sun\"] }"),
        }
    }
    let (line, _) = r.src.line_col(s.span.start);
    match silence::build(calendar, &spec, format!("alerts.toml:{line}")) {
        Ok(silence) => Some(silence),
        Err(e) => {
            r.error(&s.span, format!("[[silence]]: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_and_webhooks() {
        let files = BTreeMap::new();
        let cal = Calendar::utc();
        let a = AlertSettings::from_source(&Source::new(
            "a",
            "evaluate_every = \"5m\"\nat_risk_after = 0.3\ngrain = \"month\"\n[[webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/h\"\nkpis = [\"revenue\"]\n",
        ), &cal, &files)
        .unwrap();
        assert_eq!(a.evaluate_every, Duration::from_secs(300));
        assert_eq!(a.grain, Grain::Month);
        assert_eq!(a.webhooks[0].kpis.as_deref().unwrap(), ["revenue"]);
        let e = AlertSettings::from_source(
            &Source::new("a", "evaluate_every = \"soon\"\n"),
            &cal,
            &files,
        )
        .unwrap_err();
        assert!(e[0].message.contains("evaluate_every"));
    }

    #[test]
    fn reads_robots_silences_and_reports_bad_keys_where_they_are() {
        let mut files = BTreeMap::new();
        files.insert(
            "kpis/templates/t.md".to_string(),
            "{{team_name}}\n".to_string(),
        );
        let cal = Calendar::utc();
        let text = "inhibit_children = true\nkeep_delivered = \"7d\"\n\
            [[webhook]]\nname = \"群\"\nkind = \"feishu\"\nurl = \"http://h/x\"\nsecret = \"S\"\n\
            template = \"templates/t.md\"\ngroup_by = [\"team\", \"kind\"]\nmention = [\"all\"]\n\
            [[silence]]\nteams = [\"north\"]\nuntil = \"2027-01-01\"\n";
        let a = AlertSettings::from_source(&Source::new("kpis/alerts.toml", text), &cal, &files)
            .unwrap();
        assert!(a.inhibit_children);
        assert_eq!(a.keep_delivered, Duration::from_secs(7 * 86400));
        let w = &a.webhooks[0];
        assert_eq!(w.kind, WebhookKind::Feishu);
        assert_eq!(w.secret.as_deref(), Some("S"));
        assert_eq!(w.group_by, [GroupKey::Team, GroupKey::Kind]);
        assert_eq!(w.template.as_ref().unwrap().path, "templates/t.md");
        assert_eq!(a.silences[0].teams.as_deref().unwrap(), ["north"]);

        let bad = "[[webhook]]\nurl = \"http://h/x\"\nkind = \"dingding\"\n\
            [[webhook]]\nurl = \"http://h/y\"\nkind = \"slack\"\nsecret = \"S\"\ngroup_by = [\"owner\"]\n\
            [[silence]]\ncomment = \"never ends\"\n";
        let e = AlertSettings::from_source(&Source::new("kpis/alerts.toml", bad), &cal, &files)
            .unwrap_err();
        let text: Vec<String> = e.iter().map(|d| d.to_string()).collect();
        assert!(
            text[0].contains("kpis/alerts.toml:3:8: error: kind must be json, dingtalk"),
            "{text:?}"
        );
        assert!(
            text[1].contains("secret signs dingtalk and feishu"),
            "{text:?}"
        );
        assert!(text[2].contains("group_by takes team"), "{text:?}");
        assert!(text[3].contains("it would never end"), "{text:?}");
    }
}
