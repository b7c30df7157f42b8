//! The `/history` page: the applied configuration versions, newest first, with their time in
//! the settings zone, origin and changed files.
//!
//! SPEC 17's actor, per-file diff and rollback are built on another branch
//! (`src/server/history.rs`: `GET /api/config/history/{version}`, `POST
//! /api/config/rollback/{version}`). The page already has their places: [`actor`] names who
//! made a version, and while [`DETAILS_SERVED`] is false the diff and rollback controls are not
//! rendered. Wiring them is these two items.

use std::fmt::Write as _;

use super::html::esc;
use super::page::Page;
use crate::store::config_history::HistoryEntry;

/// Whether the server has SPEC 17's `GET /api/config/history/{version}` (per-file diffs) and
/// `POST /api/config/rollback/{version}`. The page's script fetches the diff and posts the
/// rollback with the admin token when it is true.
pub(super) const DETAILS_SERVED: bool = false;

/// Who made a version (SPEC 17's `actor`): not recorded yet on this branch.
fn actor(_entry: &HistoryEntry) -> Option<&str> {
    None
}

/// The page.
pub(super) fn history_page(page: &Page<'_>, entries: &[HistoryEntry]) -> String {
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
        let actions = if DETAILS_SERVED {
            format!(
                "<button type=\"button\" data-diff=\"{v}\">{diff}</button> \
                 <button type=\"button\" class=\"admin-only\" data-rollback=\"{v}\">{rollback}</button>",
                v = e.version,
                diff = t.diff,
                rollback = t.rollback
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><th class=\"kpi\">v{v}{current}</th><td>{when}</td><td>{origin}</td><td>{actor}</td><td class=\"files\">{files}</td><td>{actions}</td></tr>\
             <tr class=\"diff\" hidden data-diff-of=\"{v}\"><td colspan=\"6\"><pre></pre></td></tr>",
            v = e.version,
            current = if e.version == page.served.version {
                format!(" <span class=\"pill open\">{}</span>", t.served)
            } else {
                String::new()
            },
            when = esc(&cal.humanize(&e.applied_at)),
            origin = esc(t.origin_word(&e.origin)),
            actor = esc(actor(e).unwrap_or("–")),
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
