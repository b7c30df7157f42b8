//! HTML helpers of the dashboard: escaping text, encoding URL parameters, small attributes.

use std::fmt::Write as _;

use crate::config::Unit;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a URL query value (everything but RFC 3986's unreserved characters).
pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A value as the pages show it: a score unit (NPS, CES) without the command line's two
/// decimals (an integer from 10 up, one decimal below), everything else as `kpi eval` prints it.
pub(super) fn human_value(v: f64, unit: Unit, currency: &str) -> String {
    match unit {
        Unit::Score if v.abs() >= 10.0 => format!("{v:.0}"),
        Unit::Score => format!("{v:.1}"),
        _ => crate::render::format_value(v, unit, currency),
    }
}

/// A score (0–100 × cap) with one decimal, or "–".
pub(super) fn score_text(s: Option<f64>) -> String {
    s.map_or("–".to_string(), |s| format!("{s:.1}"))
}

/// The links between the pages: every link keeps the scorecard, period, as-of and language.
#[derive(Debug, Clone)]
pub(super) struct Nav {
    pub(super) card: Option<String>,
    pub(super) period: Option<String>,
    pub(super) as_of: Option<String>,
    pub(super) lang: Option<&'static str>,
}

impl Nav {
    /// `path` with the kept parameters and `extra` ones (empty values left out).
    pub(super) fn href(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let mut q: Vec<String> = extra
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        for (k, v) in [
            ("scorecard", self.card.as_deref()),
            ("period", self.period.as_deref()),
            ("as_of", self.as_of.as_deref()),
            ("lang", self.lang),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty())
                && !extra.iter().any(|(e, _)| *e == k)
            {
                q.push(format!("{k}={}", url_encode(v)));
            }
        }
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", q.join("&"))
        }
    }

    pub(super) fn team(&self, id: &str) -> String {
        self.href(&format!("/teams/{}", url_encode(id)), &[])
    }

    pub(super) fn owner(&self, id: &str) -> String {
        self.href(&format!("/owners/{}", url_encode(id)), &[])
    }

    /// The explain page of one value: of a team, or of a person when `owner` is set.
    pub(super) fn value(&self, kpi: &str, team: &str, owner: Option<&str>) -> String {
        let path = format!("/kpis/{}", url_encode(kpi));
        match owner {
            Some(o) => self.href(&path, &[("owner", o)]),
            None => self.href(&path, &[("team", team)]),
        }
    }

    /// A subject's page: a person's, or a team's.
    pub(super) fn subject(&self, team: &str, owner: Option<&str>) -> String {
        owner.map_or_else(|| self.team(team), |o| self.owner(o))
    }
}

/// The `selected` attribute of an `<option>`, when `on`.
pub(super) fn selected(on: bool) -> &'static str {
    if on { " selected" } else { "" }
}

/// The `class="on"` attribute of the current language's link, when `on`.
pub(super) fn class_on(on: bool) -> &'static str {
    if on { " class=\"on\"" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_encode("2026-Q1 x/é"), "2026-Q1%20x%2F%C3%A9");
    }
}
