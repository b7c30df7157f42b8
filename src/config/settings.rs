//! `kpis/settings.toml`: time zone, fiscal year start and display currency.

use super::toml_doc::{Reader, Source};
use crate::diag::Diagnostic;
use crate::period::Calendar;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub timezone: String,
    pub fiscal_year_start_month: u32,
    pub currency: String,
    pub calendar: Calendar,
    /// The wall-clock budget of one formula value ("5s" by default).
    pub formula_time_budget: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timezone: "UTC".into(),
            fiscal_year_start_month: 1,
            currency: String::new(),
            calendar: Calendar::utc(),
            formula_time_budget: crate::formula::DEFAULT_TIME_BUDGET,
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
            ],
        );
        let mut s = Settings::default();
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

#[cfg(test)]
mod tests {
    use super::*;

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
