//! What every dashboard page shares: the served state and language it is rendered with
//! ([`Page`]), the top bar (site navigation, scorecard and period pickers, languages) and the
//! frame around a page's sections.

use std::fmt::Write as _;

use super::html::{Nav, class_on, esc, selected};
use super::i18n::{Lang, Text};
use super::layout::{banner, document, footer};
use crate::config::{ConfigSnapshot, Scorecard};
use crate::engine::Snapshot as Served;
use crate::eval::report::Report;
use crate::period::PeriodId;
use crate::server::state::Health;

/// The served state one page is rendered from, and where its pickers point.
pub(super) struct Page<'a> {
    pub(super) served: &'a Served,
    pub(super) health: &'a Health,
    pub(super) lang: Lang,
    /// The shown scorecard, if the page has one.
    pub(super) card: Option<&'a Scorecard>,
    /// The shown period, if the page has one.
    pub(super) period: Option<PeriodId>,
    /// The periods the picker offers (those with data), newest first.
    pub(super) periods: Vec<PeriodId>,
    pub(super) as_of: Option<String>,
    /// The path the pickers submit to, and the page's own parameters they keep (team=…).
    pub(super) path: String,
    pub(super) keep: Vec<(&'static str, String)>,
}

impl Page<'_> {
    pub(super) fn t(&self) -> &'static Text {
        self.lang.t()
    }

    pub(super) fn cfg(&self) -> &ConfigSnapshot {
        &self.served.config
    }

    /// Links that keep this page's scorecard, period, as-of and language.
    pub(super) fn nav(&self) -> Nav {
        Nav {
            card: self.card.map(|c| c.id.clone()),
            period: self.period.map(|p| p.to_string()),
            as_of: self.as_of.clone(),
            lang: self.lang.code(),
        }
    }

    /// The whole document: top bar, config error banner, `body` and footer.
    pub(super) fn render(&self, title: &str, body: &str) -> String {
        let t = self.t();
        let mut html = self.header();
        html.push_str(&banner(self.health, self.served, self.lang));
        let _ = write!(html, "<main>{body}</main>");
        html.push_str(&footer(self.served, self.lang));
        document(
            t.html_lang,
            &format!("{title} · {}", t.app),
            self.served,
            self.health,
            &html,
        )
    }

    /// The top bar.
    fn header(&self) -> String {
        let t = self.t();
        let nav = self.nav();
        let here = |p: &str| class_on(self.path == p);
        let mut pickers = String::new();
        if let Some(card) = self.card {
            let _ = write!(
                pickers,
                "<label>{}<select name=\"scorecard\" data-autosubmit>{}</select></label>",
                esc(t.scorecard),
                self.scorecard_options(card)
            );
        }
        if let Some(period) = self.period {
            let _ = write!(
                pickers,
                "<label>{}<select name=\"period\" data-autosubmit>{}</select></label>",
                esc(t.period),
                self.period_options(period)
            );
        }
        let form = if pickers.is_empty() {
            String::new()
        } else {
            format!(
                "<form class=\"pickers\" method=\"get\" action=\"{}\">{pickers}{}\
                 <noscript><button type=\"submit\">{}</button></noscript></form>",
                esc(&self.path),
                self.hidden_inputs(),
                esc(t.show)
            )
        };
        format!(
            "<header class=\"top\"><a class=\"brand\" href=\"{home}\"><span class=\"logo\">K</span>{app}</a>\
             <nav class=\"site\"><a href=\"{home}\"{h}>{ranking}</a><a href=\"{alerts}\"{a}>{alerts_w}</a>\
             <a href=\"{history}\"{hi}>{history_w}</a></nav>{form}\
             <nav class=\"langs\"><a href=\"{en}\"{en_on}>English</a><a href=\"{zh}\"{zh_on}>中文</a></nav></header>",
            app = esc(t.app),
            home = esc(&nav.href("/", &[])),
            alerts = esc(&nav.href("/alerts", &[])),
            history = esc(&nav.href("/history", &[])),
            h = here("/"),
            a = here("/alerts"),
            hi = here("/history"),
            ranking = esc(t.ranking),
            alerts_w = esc(t.alerts_page),
            history_w = esc(t.history),
            en = esc(&self.in_lang(None)),
            zh = esc(&self.in_lang(Some("zh"))),
            en_on = class_on(self.lang == Lang::En),
            zh_on = class_on(self.lang == Lang::Zh),
        )
    }

    fn scorecard_options(&self, shown: &Scorecard) -> String {
        let mut cards = String::new();
        for c in &self.cfg().scorecards {
            let _ = write!(
                cards,
                "<option value=\"{}\"{}>{}</option>",
                esc(&c.id),
                selected(c.id == shown.id),
                esc(c.label(self.lang.code()))
            );
        }
        cards
    }

    /// The periods with data, and the shown period if it is not one of them.
    fn period_options(&self, shown: PeriodId) -> String {
        let mut periods = self.periods.clone();
        if !periods.contains(&shown) {
            periods.push(shown);
            periods.sort_by(|a, b| b.cmp(a));
        }
        let mut options = String::new();
        for p in periods {
            let _ = write!(
                options,
                "<option value=\"{p}\"{}>{p}</option>",
                selected(p == shown)
            );
        }
        options
    }

    /// The parameters the pickers keep: the page's own, the language and the as-of time.
    fn hidden_inputs(&self) -> String {
        let mut kept: Vec<(&str, String)> =
            self.keep.iter().map(|(k, v)| (*k, v.clone())).collect();
        if let Some(l) = self.lang.code() {
            kept.push(("lang", l.to_string()));
        }
        if let Some(a) = &self.as_of {
            kept.push(("as_of", a.clone()));
        }
        kept.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(&v)))
            .collect()
    }

    /// This page in another language (`None`: English).
    fn in_lang(&self, lang: Option<&'static str>) -> String {
        let mut nav = self.nav();
        nav.lang = lang;
        let keep: Vec<(&str, &str)> = self.keep.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nav.href(&self.path, &keep)
    }

    /// "open · 40% elapsed" or "closed" (and "frozen" for a frozen assessment) for `report`.
    pub(super) fn period_state(&self, report: &Report) -> String {
        let t = self.t();
        let cal = &self.cfg().settings.calendar;
        let p = cal.period(report.period);
        let mut out = if p.is_open(report.as_of) {
            format!(
                "<span class=\"pill open\">{} · {:.0}% {}</span>",
                t.open,
                p.elapsed(report.as_of) * 100.0,
                t.elapsed
            )
        } else {
            format!("<span class=\"pill\">{}</span>", t.closed)
        };
        if let Some(f) = frozen(report) {
            let _ = write!(
                out,
                "<span class=\"pill frozen\" title=\"{}\">{} · {} · {} v{}</span>",
                esc(&f.frozen_at),
                t.frozen,
                esc(&cal.humanize(&f.frozen_at)),
                t.config,
                f.config_version
            );
        }
        out
    }
}

/// A frozen assessment's mark (SPEC 16 closing).
pub(super) struct Frozen {
    /// RFC 3339.
    pub(super) frozen_at: String,
    pub(super) config_version: u64,
}

/// Whether `report` is a frozen assessment (served with `"frozen": true`), and when and under
/// which configuration it was frozen. Every page marks frozen periods through this.
pub(super) fn frozen(report: &Report) -> Option<Frozen> {
    report.frozen.as_ref().map(|f| Frozen {
        frozen_at: crate::period::format_utc(f.frozen_at),
        config_version: f.config_version,
    })
}
