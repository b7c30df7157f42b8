//! The `/history` page: the applied configuration versions, newest first, with their time in
//! the settings zone, origin, actor (SPEC 17) and changed files; the per-file unified diff of
//! each of the newest versions, readable without JavaScript; and a rollback button per version
//! for admins (the page's script posts `POST /api/config/rollback/{version}` with the token kept
//! in the cookie).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::esc;
use super::page::Page;
use crate::config::diff::FileDiff;
use crate::store::config_history::HistoryEntry;

/// How many of the newest versions show their diffs on the page (older ones: the API).
pub(super) const DIFFS_SHOWN: usize = 50;

/// A version's diffs as collapsed blocks, one per file, lines coloured by kind.
fn diffs_html(diffs: &[FileDiff], label: &str) -> String {
    if diffs.is_empty() {
        return String::new();
    }
    let mut body = String::new();
    for d in diffs {
        let _ = write!(
            body,
            "<div class=\"diff-file\"><code>{}</code><pre>",
            esc(&d.path)
        );
        for line in d.diff.lines() {
            let class = match line.as_bytes().first() {
                Some(b'+') if !line.starts_with("+++") => "add",
                Some(b'-') if !line.starts_with("---") => "del",
                Some(b'@') => "hunk",
                _ => "ctx",
            };
            let _ = writeln!(body, "<span class=\"{class}\">{}</span>", esc(line));
        }
        body.push_str("</pre></div>");
    }
    format!("<details class=\"diff\"><summary>{label}</summary>{body}</details>")
}

/// The page.
pub(super) fn history_page(
    page: &Page<'_>,
    entries: &[HistoryEntry],
    diffs: &BTreeMap<u64, Vec<FileDiff>>,
) -> String {
    let t = page.t();
    let cal = &page.cfg().settings.calendar;
    let mut rows = String::new();
    for e in entries.iter().rev() {
        let files = if e.files_changed.is_empty() {
            "–".to_string()
        } else {
            e.files_changed
                .iter()
                .map(|f| format!("<code>{}</code>", esc(f)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let diff = diffs
            .get(&e.version)
            .map(|d| diffs_html(d, t.diff))
            .unwrap_or_default();
        let actions = format!(
            "<button type=\"button\" hidden data-rollback=\"{v}\" data-confirm=\"{rollback} v{v}?\">{rollback}</button>\
             <span class=\"err\" data-rollback-state=\"{v}\"></span>",
            v = e.version,
            rollback = t.rollback
        );
        let _ = write!(
            rows,
            "<tr><th class=\"kpi\">v{v}{current}</th><td>{when}</td><td>{origin}</td><td>{actor}</td><td class=\"files\">{files}{diff}</td><td>{actions}</td></tr>",
            v = e.version,
            current = if e.version == page.served.version {
                format!(" <span class=\"pill open\">{}</span>", t.served)
            } else {
                String::new()
            },
            when = esc(&cal.humanize(&e.applied_at)),
            origin = esc(t.origin_word(&e.origin)),
            actor = esc(e.actor.as_deref().unwrap_or("–")),
        );
    }
    let body = format!(
        "<section class=\"heading\"><h1>{title}</h1></section>\
         <section class=\"panel\" id=\"history\"><div class=\"scroll\"><table class=\"history\">\
         <thead><tr><th class=\"kpi\">{version}</th><th>{applied}</th><th>{origin}</th><th>{actor}</th><th>{files}</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table></div></section>",
        title = t.history,
        version = t.version,
        applied = t.applied,
        origin = t.origin,
        actor = t.actor,
        files = t.files,
    );
    page.render(t.history, &body)
}
