//! HTML helpers of the dashboard: escaping text, encoding URL parameters, small attributes.

use std::fmt::Write as _;

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
