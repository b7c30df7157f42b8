//! `kpis/alerts.toml`: when alerts are evaluated and where they are delivered.

use std::time::Duration;

use super::toml_doc::{Reader, Source};
use crate::diag::Diagnostic;
use crate::period::Grain;

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub kpis: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub evaluate_every: Duration,
    pub at_risk_after: f64,
    pub grain: Grain,
    pub max_attempts: u32,
    pub webhooks: Vec<Webhook>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            evaluate_every: Duration::from_secs(300),
            at_risk_after: 0.25,
            grain: Grain::Quarter,
            max_attempts: 8,
            webhooks: Vec::new(),
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
    pub fn from_source(src: &Source) -> Result<AlertSettings, Vec<Diagnostic>> {
        let doc = src.parse().map_err(|e| vec![e])?;
        let mut r = Reader::new(src);
        r.deny_unknown(
            &doc,
            "alerts.toml",
            &[
                "evaluate_every",
                "at_risk_after",
                "grain",
                "max_attempts",
                "webhook",
            ],
        );
        let mut a = AlertSettings::default();
        if let Some(n) = doc.get("evaluate_every")
            && let Some(s) = r.string(n, "evaluate_every")
        {
            match parse_duration(&s) {
                Some(d) => a.evaluate_every = d,
                None => r.error(
                    &n.span,
                    format!("evaluate_every must look like \"30s\", \"5m\" or \"1h\", got \"{s}\""),
                ),
            }
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
        if let Some(n) = doc.get("webhook") {
            for w in n.as_array().unwrap_or_default() {
                if r.table(w, "[[webhook]]").is_none() {
                    continue;
                }
                r.deny_unknown(w, "[[webhook]]", &["name", "url", "kpis", "teams"]);
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
                        continue;
                    }
                    None => {
                        r.error(&w.span, "[[webhook]] needs url = \"http://…\"");
                        continue;
                    }
                };
                let kpis = w.get("kpis").and_then(|x| r.string_list(x, "kpis"));
                let teams = w.get("teams").and_then(|x| r.string_list(x, "teams"));
                a.webhooks.push(Webhook {
                    name,
                    url,
                    kpis,
                    teams,
                });
            }
        }
        if r.errors.is_empty() {
            Ok(a)
        } else {
            Err(r.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_and_webhooks() {
        let a = AlertSettings::from_source(&Source::new(
            "a",
            "evaluate_every = \"5m\"\nat_risk_after = 0.3\ngrain = \"month\"\n[[webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/h\"\nkpis = [\"revenue\"]\n",
        ))
        .unwrap();
        assert_eq!(a.evaluate_every, Duration::from_secs(300));
        assert_eq!(a.grain, Grain::Month);
        assert_eq!(a.webhooks[0].kpis.as_deref().unwrap(), ["revenue"]);
        let e = AlertSettings::from_source(&Source::new("a", "evaluate_every = \"soon\"\n"))
            .unwrap_err();
        assert!(e[0].message.contains("evaluate_every"));
    }
}
