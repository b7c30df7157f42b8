//! `kpis/settings.toml`: time zone, fiscal year start, display currency, and
//! when periods close (SPEC 16: `close_after`, `freeze_grains`).

use super::toml_doc::{Reader, Source};
use crate::diag::Diagnostic;
use crate::period::{Calendar, Grain};

/// The grace after a period's end before it closes (SPEC 16), by default.
pub const DEFAULT_CLOSE_AFTER: std::time::Duration = std::time::Duration::from_secs(5 * 86_400);

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub timezone: String,
    pub fiscal_year_start_month: u32,
    pub currency: String,
    pub calendar: Calendar,
    /// The wall-clock budget of one formula value ("5s" by default).
    pub formula_time_budget: std::time::Duration,
    /// How long after its end a period of a frozen grain closes ("5d").
    pub close_after: std::time::Duration,
    /// The grains whose assessments are frozen when they close (default: quarters).
    pub freeze_grains: Vec<Grain>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timezone: "UTC".into(),
            fiscal_year_start_month: 1,
            currency: String::new(),
            calendar: Calendar::utc(),
            formula_time_budget: crate::formula::DEFAULT_TIME_BUDGET,
            close_after: DEFAULT_CLOSE_AFTER,
            freeze_grains: vec![Grain::Quarter],
        }
    }
}

impl Settings {
    pub fn from_source(src: &Source) -> Result<Settings, Vec<Diagnostic>> {
        let doc = src.parse().map_err(|e| vec![e])?;
        let mut r = Reader::new(src);
        r.deny_unknown(
            &doc,
            "settings.toml",
            &[
                "timezone",
                "fiscal_year_start_month",
                "currency",
                "formula_time_budget",
                "close_after",
                "freeze_grains",
            ],
        );
        let mut s = Settings::default();
        read_closing(&doc, &mut r, &mut s);
        if let Some(n) = doc.get("formula_time_budget")
            && let Some(text) = r.string(n, "formula_time_budget")
        {
            match super::alerts::parse_duration(&text) {
                Some(d) if d <= std::time::Duration::from_secs(3600) => s.formula_time_budget = d,
                _ => r.error(
                    &n.span,
                    format!("formula_time_budget must be a duration such as \"5s\" or \"1m\" (at most 1h), got \"{text}\""),
                ),
            }
        }
        if let Some(n) = doc.get("timezone")
            && let Some(tz) = r.string(n, "timezone")
        {
            s.timezone = tz;
        }
        if let Some(n) = doc.get("currency")
            && let Some(c) = r.string(n, "currency")
        {
            s.currency = c;
        }
        let month_node = doc.get("fiscal_year_start_month");
        if let Some(n) = month_node {
            match n.as_i64() {
                Some(m) if (1..=12).contains(&m) => s.fiscal_year_start_month = m as u32,
                _ => r.error(
                    &n.span,
                    "fiscal_year_start_month must be a whole number from 1 to 12",
                ),
            }
        }
        match Calendar::new(&s.timezone, s.fiscal_year_start_month) {
            Ok(c) => s.calendar = c,
            Err(e) => {
                let span = doc.get("timezone").map_or(0..0, |n| n.span.clone());
                r.error(
                    &span,
                    format!("{e} (use an IANA name such as \"Asia/Shanghai\" or \"UTC\")"),
                );
            }
        }
        if r.errors.is_empty() {
            Ok(s)
        } else {
            Err(r.errors)
        }
    }
}

/// `close_after` (a duration; "0d" closes a period at its end) and
/// `freeze_grains` (quarter, month, year; each at most once; may be empty).
fn read_closing(doc: &super::toml_doc::Node, r: &mut Reader<'_>, s: &mut Settings) {
    if let Some(n) = doc.get("close_after")
        && let Some(text) = r.string(n, "close_after")
    {
        let zero = matches!(text.trim(), "0" | "0s" | "0m" | "0h" | "0d");
        match super::alerts::parse_duration(&text) {
            _ if zero => s.close_after = std::time::Duration::ZERO,
            Some(d) if d <= std::time::Duration::from_secs(3_660 * 86_400) => s.close_after = d,
            _ => r.error(
                &n.span,
                format!("close_after must be a duration such as \"5d\", \"36h\" or \"0d\" (at most 3660d), got \"{text}\""),
            ),
        }
    }
    if let Some(n) = doc.get("freeze_grains")
        && let Some(names) = r.string_list(n, "freeze_grains")
    {
        let mut grains = Vec::new();
        for (name, item) in names.iter().zip(n.as_array().unwrap_or_default()) {
            match name.parse::<Grain>() {
                Ok(g) if grains.contains(&g) => {
                    r.error(&item.span, format!("freeze_grains names \"{name}\" twice"))
                }
                Ok(g) => grains.push(g),
                Err(_) => r.error(
                    &item.span,
                    format!("freeze_grains: unknown grain \"{name}\" (use quarter, month or year)"),
                ),
            }
        }
        s.freeze_grains = grains;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_settings_default_read_and_reject_with_positions() {
        let d = Settings::from_source(&Source::new("s", "")).unwrap();
        assert_eq!(d.close_after, DEFAULT_CLOSE_AFTER);
        assert_eq!(d.freeze_grains, [Grain::Quarter]);
        let ok = Settings::from_source(&Source::new(
            "s",
            "close_after = \"36h\"\nfreeze_grains = [\"month\", \"quarter\"]\n",
        ))
        .unwrap();
        assert_eq!(ok.close_after, std::time::Duration::from_secs(36 * 3600));
        assert_eq!(ok.freeze_grains, [Grain::Month, Grain::Quarter]);
        let none = Settings::from_source(&Source::new(
            "s",
            "close_after = \"0d\"\nfreeze_grains = []\n",
        ))
        .unwrap();
        assert_eq!(none.close_after, std::time::Duration::ZERO);
        assert!(none.freeze_grains.is_empty());
        let err = Settings::from_source(&Source::new(
            "s",
            "close_after = \"5 days\"\nfreeze_grains = [\"quarter\", \"week\", \"quarter\"]\n",
        ))
        .unwrap_err();
        let got: Vec<(usize, usize)> = err.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(got, [(1, 15), (2, 29), (2, 37)], "{err:?}");
        assert!(err[0].message.contains("close_after"), "{}", err[0]);
        assert!(err[1].message.contains("week"), "{}", err[1]);
        assert!(err[2].message.contains("twice"), "{}", err[2]);
    }

    #[test]
    fn reads_and_rejects() {
        let ok = Settings::from_source(&Source::new(
            "s",
            "timezone = \"Asia/Shanghai\"\nfiscal_year_start_month = 4\n",
        ))
        .unwrap();
        assert_eq!(ok.calendar.fiscal_year_start_month, 4);
        let err = Settings::from_source(&Source::new(
            "s",
            "timezone = \"Mars/Base\"\nfiscal_year_start_month = 13\n",
        ))
        .unwrap_err();
        assert_eq!(err.len(), 2);
        assert_eq!((err[0].line, err[1].line), (2, 1));
    }
}
