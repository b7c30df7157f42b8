//! The page of one value (`/kpis/{id}?team=|owner=&period=`): the KPI's formula, each query
//! it asked with its result, the target rule of targets.toml that applied, the score
//! arithmetic, and the first records behind each query (all of them as CSV at
//! `/kpis/{id}/records.csv`).

use std::fmt::Write as _;

use super::html::{esc, human_value, score_text};
use super::page::Page;
use crate::config::{Direction, Kpi, Target};
use crate::engine::Explained;
use crate::query::RecordPage;
use crate::store::Value;

/// Records shown on the page per query.
pub(super) const RECORDS_SHOWN: usize = 100;
/// Records a CSV download holds at most.
pub(super) const RECORDS_CSV: usize = 100_000;

/// One explained value.
pub(super) struct ExplainPage<'a> {
    pub(super) page: Page<'a>,
    pub(super) kpi: &'a Kpi,
    /// Whose value: the team's or person's name, and the parameter that names them.
    pub(super) subject_name: String,
    pub(super) subject_param: (&'static str, String),
    pub(super) explained: &'a Explained,
    /// The scorecard's weight and the sum of its weights, when the KPI is in it.
    pub(super) weight: Option<(f64, f64)>,
    pub(super) cap: f64,
    /// The records of the chosen query (`?records=N`, default the first).
    pub(super) records: Option<(usize, RecordPage)>,
}

impl ExplainPage<'_> {
    fn fmt(&self, v: Option<f64>) -> String {
        let cfg = self.page.cfg();
        v.map_or("–".into(), |v| {
            human_value(v, self.kpi.def.unit, &cfg.settings.currency)
        })
    }

    pub(super) fn render(&self) -> String {
        let t = self.page.t();
        let def = &self.kpi.def;
        let line = &self.explained.line;
        let nav = self.page.nav();
        let label = def.label(self.page.lang.code());
        let subject_href = match self.subject_param.0 {
            "owner" => nav.owner(&self.subject_param.1),
            _ => nav.team(&self.subject_param.1),
        };
        let period = self.page.period.map(|p| p.to_string()).unwrap_or_default();
        let mut body = format!(
            "<section class=\"heading\"><p class=\"crumbs\"><a href=\"{sh}\">{sn}</a> › {period}</p><h1>{label}</h1>\
             <p class=\"sub\">{desc}</p></section>\
             <section class=\"cards\">\
             <div class=\"card\"><div class=\"label\">{vl}</div><div class=\"big\">{v}</div></div>\
             <div class=\"card\"><div class=\"label\">{tl}</div><div class=\"big\">{tg}</div></div>\
             <div class=\"card {cls}\"><div class=\"label\">{stl}</div><div class=\"big\"><span class=\"chip {cls}\">{st}</span></div></div>\
             <div class=\"card\"><div class=\"label\">{scl}</div><div class=\"big\">{sc}</div></div></section>",
            sh = esc(&subject_href),
            sn = esc(&self.subject_name),
            label = esc(label),
            desc = esc(&def.description),
            vl = t.value,
            v = esc(&self.fmt(line.value)),
            tl = t.target_col,
            tg = esc(&self.fmt(line.target)),
            stl = t.state,
            cls = line.status.name(),
            st = t.status(line.status),
            scl = t.score,
            sc = score_text(line.score),
        );
        if let Some(e) = &line.error {
            let _ = write!(
                body,
                "<div class=\"banner\" role=\"alert\"><div class=\"banner-title\">{}</div><div>{}</div></div>",
                esc(t.value_error),
                esc(e)
            );
        }
        let _ = write!(
            body,
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{}</h2><span class=\"muted\">{}</span></div><pre class=\"formula\">{}</pre></section>",
            t.formula,
            esc(&def.origin.file),
            esc(&self.kpi.text)
        );
        body.push_str(&self.queries());
        body.push_str(&self.target_rule());
        body.push_str(&self.arithmetic());
        body.push_str(&self.records());
        self.page.render(label, &body)
    }

    /// Each query and KPI reference the formula used, with its result.
    fn queries(&self) -> String {
        let t = self.page.t();
        let lines = &self.explained.line.explanation;
        let items: String = if lines.is_empty() {
            format!("<li class=\"muted\">{}</li>", t.no_queries)
        } else {
            lines
                .iter()
                .map(|l| format!("<li><code>{}</code></li>", esc(l)))
                .collect()
        };
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{}</h2></div><ol class=\"queries\">{items}</ol></section>",
            t.queries
        )
    }

    /// The table and key of targets.toml that gave the target.
    fn target_rule(&self) -> String {
        let t = self.page.t();
        let text = match (&self.explained.target, &self.explained.rule) {
            (Some(target), Some(rule)) => {
                let mut s = format!(
                    "<code>{}</code> · <code>{}</code> → {} {}",
                    esc(&rule.table),
                    esc(&rule.key),
                    t.target,
                    esc(&self.fmt(Some(target.target)))
                );
                if let Some(th) = target.threshold {
                    let _ = write!(s, " · {} {}", t.threshold, esc(&self.fmt(Some(th))));
                }
                if let Some(st) = target.stretch {
                    let _ = write!(s, " · {} {}", t.stretch, esc(&self.fmt(Some(st))));
                }
                s
            }
            _ => esc(t.no_target_rule),
        };
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{}</h2></div><p class=\"prose\">{text}</p></section>",
            t.target_rule
        )
    }

    /// How the value and target became the score, and the score's share of the total.
    fn arithmetic(&self) -> String {
        let t = self.page.t();
        let line = &self.explained.line;
        let max = 100.0 * self.cap;
        let steps = match (line.value, &self.explained.target) {
            (Some(v), Some(target)) => score_steps(v, target, self.kpi.def.direction, max, &|x| {
                self.fmt(Some(x))
            }),
            _ => t.no_score_reason.to_string(),
        };
        let mut out = format!("<p class=\"prose\">{}</p>", esc(&steps));
        if let (Some(s), Some((w, total))) = (line.score, self.weight) {
            let _ = write!(
                out,
                "<p class=\"prose\">{}</p>",
                esc(&format!(
                    "{} {w} / {total} × {s:.1} = {:.2}",
                    t.weighted,
                    w / total * s
                ))
            );
        }
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{}</h2></div>{out}</section>",
            t.arithmetic
        )
    }

    /// The first records of one query, with links to the others and to the CSV.
    fn records(&self) -> String {
        let t = self.page.t();
        let nav = self.page.nav();
        let path = format!("/kpis/{}", super::html::url_encode(&self.kpi.def.id));
        let (sk, sv) = (&self.subject_param.0, self.subject_param.1.as_str());
        let chosen = self.records.as_ref().map_or(0, |(i, _)| *i);
        let tabs: String = (0..self.explained.asked.len())
            .map(|i| {
                let n = (i + 1).to_string();
                let a = &self.explained.asked[i];
                format!(
                    "<a href=\"{}\"{} title=\"{}\">{} {n}</a>",
                    esc(&nav.href(&path, &[(sk, sv), ("records", &i.to_string())])),
                    super::html::class_on(i == chosen),
                    esc(&format!("{}{}", a.query, a.agg)),
                    esc(t.query)
                )
            })
            .collect();
        let Some((i, page)) = &self.records else {
            return format!(
                "<section class=\"panel\" id=\"records\"><div class=\"panel-head\"><h2>{}</h2></div><p class=\"empty\">{}</p></section>",
                t.records, t.no_records
            );
        };
        let csv = nav.href(
            &format!("{path}/records.csv"),
            &[(sk, sv), ("records", &i.to_string())],
        );
        let cal = &self.page.cfg().settings.calendar;
        let head: String = page
            .fields
            .iter()
            .enumerate()
            .map(|(c, f)| {
                let cls = if c == 0 { " class=\"kpi\"" } else { "" };
                format!("<th{cls}>{}</th>", esc(f))
            })
            .collect();
        let rows: String = page
            .rows
            .iter()
            .map(|r| {
                let cells: String = r
                    .iter()
                    .enumerate()
                    .map(|(c, v)| {
                        let text = esc(&cell_text(v, &|ms| cal.format_human(ms)));
                        if c == 0 {
                            format!("<th class=\"kpi\">{text}</th>")
                        } else {
                            format!("<td>{text}</td>")
                        }
                    })
                    .collect();
                format!("<tr>{cells}</tr>")
            })
            .collect();
        format!(
            "<section class=\"panel\" id=\"records\"><div class=\"panel-head\"><h2>{title}</h2><a class=\"button\" href=\"{csv}\" download>CSV</a></div>\
             <nav class=\"levels tabs\">{tabs}</nav><p class=\"muted pad\">{shown}</p>\
             <div class=\"scroll\"><table class=\"records\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></section>",
            title = t.records,
            csv = esc(&csv),
            shown = esc(&t
                .records_shown
                .replace("{n}", &page.rows.len().to_string())
                .replace("{total}", &page.total.to_string())
                .replace("{entity}", &page.entity)),
        )
    }
}

/// The score arithmetic of `value` against `target`, in words and numbers.
fn score_steps(
    value: f64,
    target: &Target,
    dir: Direction,
    max: f64,
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let score = crate::eval::scoring::score(value, target, dir, max / 100.0);
    let (v, tg) = (fmt(value), fmt(target.target));
    let formula =
        if dir != Direction::Target && (target.threshold.is_some() || target.stretch.is_some()) {
            let mut pts = Vec::new();
            if let Some(th) = target.threshold {
                pts.push(format!("{} → 0", fmt(th)));
            }
            pts.push(format!("{tg} → 100"));
            if let Some(st) = target.stretch {
                pts.push(format!("{} → {max:.0}", fmt(st)));
            }
            format!("linear through {}: {v}", pts.join(", "))
        } else {
            match dir {
                Direction::Higher => format!("100 × {v} / {tg}"),
                Direction::Lower if value <= 0.0 => format!("{v} ≤ 0"),
                Direction::Lower => format!("100 × {tg} / {v}"),
                Direction::Target => format!("100 × (1 − |{v} − {tg}| / tolerance)"),
            }
        };
    format!("{formula} = {score:.1} (0 … {max:.0})")
}

/// A cell as text: times in the settings zone, to the minute.
fn cell_text(v: &Value, time: &dyn Fn(i64) -> String) -> String {
    match v {
        Value::Null => String::new(),
        Value::Text(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Time(ms) => time(*ms),
    }
}

/// The records as CSV: a header of field names, times in RFC 3339 in the settings zone.
pub(super) fn records_csv(page: &RecordPage, time: &dyn Fn(i64) -> String) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = page
        .fields
        .iter()
        .map(|f| quote(f))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in &page.rows {
        let cells: Vec<String> = r.iter().map(|v| quote(&cell_text(v, time))).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let page = RecordPage {
            entity: "x".into(),
            fields: vec!["id".into(), "note".into()],
            rows: vec![vec![
                Value::Text("a".into()),
                Value::Text("x, \"y\"".into()),
            ]],
            total: 1,
        };
        assert_eq!(
            records_csv(&page, &|_| String::new()),
            "id,note\na,\"x, \"\"y\"\"\"\n"
        );
    }

    #[test]
    fn score_steps_show_the_arithmetic() {
        let t = Target {
            target: 200.0,
            threshold: None,
            stretch: None,
        };
        let s = score_steps(150.0, &t, Direction::Higher, 120.0, &|v| format!("{v}"));
        assert_eq!(s, "100 × 150 / 200 = 75.0 (0 … 120)");
    }
}
