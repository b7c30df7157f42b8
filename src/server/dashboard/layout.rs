//! The frame of every dashboard page: the HTML document with the embedded CSS and script, the
//! config error banner, the footer, and the page shown when no scorecard is configured.

use super::html::esc;
use super::i18n::Lang;
use crate::engine::Snapshot as Served;
use crate::server::state::Health;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");

/// Config errors listed in the banner (the rest are counted; /health lists all).
const BANNER_ERRORS: usize = 8;

/// The whole HTML document around `body`. The body's data attributes are what the script
/// compares with /health to reload the page.
pub(super) fn document(
    lang: &str,
    title: &str,
    served: &Served,
    health: &Health,
    body: &str,
) -> String {
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body data-version=\"{v}\" data-generation=\"{g}\" data-status=\"{s}\">{body}<script>{SCRIPT}</script></body></html>",
        title = esc(title),
        v = served.version,
        g = served.data_generation,
        s = if health.errors.is_empty() {
            "ok"
        } else {
            "degraded"
        },
    )
}

/// The config error banner, empty while the files on disk check.
pub(super) fn banner(health: &Health, served: &Served, lang: Lang) -> String {
    if health.errors.is_empty() {
        return String::new();
    }
    let t = lang.t();
    let items: String = health
        .errors
        .iter()
        .take(BANNER_ERRORS)
        .map(|d| {
            let at = match (d.line, d.col) {
                (0, _) => d.file.clone(),
                (l, 0) => format!("{}:{l}", d.file),
                (l, c) => format!("{}:{l}:{c}", d.file),
            };
            format!("<li><code>{}</code> {}</li>", esc(&at), esc(&d.message))
        })
        .collect();
    let more = health.errors.len().saturating_sub(BANNER_ERRORS);
    let more = if more > 0 {
        format!("<li>… +{more}</li>")
    } else {
        String::new()
    };
    format!(
        "<div class=\"banner\" role=\"alert\"><div class=\"banner-title\">{}</div><div class=\"banner-hint\">{}</div><ul>{items}{more}</ul></div>",
        t.errors_title,
        esc(&t.errors_hint.replace("{v}", &served.version.to_string()))
    )
}

/// The configuration version and data generation being served.
pub(super) fn footer(served: &Served, lang: Lang) -> String {
    let t = lang.t();
    format!(
        "<footer>kpi-engine · {} v{} ({}) · {} #{} · {}</footer>",
        t.config,
        served.version,
        esc(&served.config.settings.calendar.humanize(&served.loaded_at)),
        t.data,
        served.data_generation,
        esc(&served.content_hash)
    )
}

/// The page when no scorecard is configured.
pub(super) fn empty_page(served: &Served, health: &Health, lang: Lang) -> String {
    let t = lang.t();
    let body = format!(
        "<header class=\"top\"><div class=\"brand\"><span class=\"logo\">K</span>{}</div></header>{}<main><section class=\"panel\"><p class=\"empty\">{}</p></section></main>{}",
        t.app,
        banner(health, served, lang),
        t.no_scorecards,
        footer(served, lang)
    );
    document(t.html_lang, t.app, served, health, &body)
}

/// The page a browser gets for an error: the status, the message and its details, and a way
/// back. It stands alone (no served state is needed to render it).
pub(super) fn error_page(lang: Lang, status: u16, message: &str, details: &[String]) -> String {
    let t = lang.t();
    let items: String = details
        .iter()
        .map(|d| format!("<li><code>{}</code></li>", esc(d)))
        .collect();
    let home = match lang.code() {
        Some(l) => format!("/?lang={l}"),
        None => "/".to_string(),
    };
    format!(
        "<!doctype html><html lang=\"{hl}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{status} · {app}</title><style>{STYLE}</style></head><body>\
         <header class=\"top\"><a class=\"brand\" href=\"{home}\"><span class=\"logo\">K</span>{app}</a></header>\
         <main><section class=\"panel errorbox\"><h1>{status} · {title}</h1><p class=\"prose\">{msg}</p><ul>{items}</ul>\
         <p class=\"prose\"><a href=\"{home}\">{back}</a></p></section></main></body></html>",
        hl = t.html_lang,
        app = esc(t.app),
        title = esc(t.error_title),
        msg = esc(message),
        back = esc(t.back),
    )
}
