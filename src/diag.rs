//! Diagnostics: user-facing errors that point at a place (file, line, column).
//!
//! Every layer that reads something a user wrote (TOML, Rhai, CSV) reports
//! problems as [`Diagnostic`]s so the command line, the log and the HTTP API
//! can show them the same way: `file:line:col: error: message`.

use std::fmt;

/// One problem in one place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Path relative to the deployment root, e.g. `kpis/sales.toml`.
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub col: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<String>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem with a whole file (missing, unreadable).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic::new(file, 0, 0, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}: error: {}", self.file, self.message),
            (l, 0) => write!(f, "{}:{}: error: {}", self.file, l, self.message),
            (l, c) => write!(f, "{}:{}:{}: error: {}", self.file, l, c, self.message),
        }
    }
}

/// A list of diagnostics, as one error value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// "did you mean" hint: the closest candidate within a small edit distance.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `"; did you mean 'x'?"` or nothing.
pub fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(name, candidates) {
        Some(c) => format!("; did you mean '{c}'?"),
        None => String::new(),
    }
}

/// The message of a panic payload (a `String` or `&str`), or "" for another type.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_location() {
        let d = Diagnostic::new("kpis/a.toml", 3, 7, "bad");
        assert_eq!(d.to_string(), "kpis/a.toml:3:7: error: bad");
        assert_eq!(Diagnostic::file("x", "gone").to_string(), "x: error: gone");
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(did_you_mean("amout", ["amount", "team"]), Some("amount"));
        assert_eq!(did_you_mean("zzzzzz", ["amount", "team"]), None);
        assert_eq!(hint("stge", ["stage"]), "; did you mean 'stage'?");
    }
}
