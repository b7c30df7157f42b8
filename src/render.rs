//! Showing reports to people: aligned tables with formatted units and marked
//! statuses, in English or Chinese (`--lang zh`), and CSV for spreadsheets.
//!
//! The language picks the tables' own words (headers, statuses, the title line); KPI and
//! scorecard names come from their `labels` in the configuration. CSV is for machines and stays
//! in English.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr;

use crate::config::{ConfigSnapshot, Unit};
use crate::eval::report::{Report, TeamLine, direction_mark};
use crate::eval::scoring::Status;

/// Colors are used only on a terminal, and never with NO_COLOR set.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// The languages of the tables (`--lang`): anything else is a usage error.
pub const LANGS: [&str; 2] = ["en", "zh"];

/// The tables' own words in one language.
struct Words {
    /// `{p}`: the share of the period elapsed.
    open: &'static str,
    closed: &'static str,
    as_of: &'static str,
    /// The title of a report without a scorecard.
    kpis: &'static str,
    rank: &'static str,
    team: &'static str,
    score: &'static str,
    /// `{s}`: the team's score, `{r}`: its rank.
    scored: &'static str,
    no_score: &'static str,
    kpi: &'static str,
    value: &'static str,
    target: &'static str,
    weight: &'static str,
    status: &'static str,
    /// `{v}`: the projected value.
    pace: &'static str,
    /// `{t}`: when a period was frozen, `{v}`: the configuration version.
    frozen: &'static str,
    /// In the order of [`STATUS_ORDER`].
    statuses: [&'static str; 7],
}

static EN: Words = Words {
    open: "open, {p}% elapsed",
    closed: "closed",
    as_of: "as of",
    kpis: "KPIs",
    rank: "#",
    team: "team",
    score: "score",
    scored: "score {s}, rank {r}",
    no_score: "no score",
    kpi: "KPI",
    value: "value",
    target: "target",
    weight: "weight",
    status: "status",
    pace: "pace {v}",
    frozen: "frozen {t}, config version {v}",
    statuses: [
        "met",
        "missed",
        "at risk",
        "on track",
        "no data",
        "no target",
        "error",
    ],
};

static ZH: Words = Words {
    open: "进行中，已过 {p}%",
    closed: "已结束",
    as_of: "截至",
    kpis: "指标",
    rank: "名次",
    team: "团队",
    score: "得分",
    scored: "得分 {s}，第 {r} 名",
    no_score: "无得分",
    kpi: "指标",
    value: "数值",
    target: "目标",
    weight: "权重",
    status: "状态",
    pace: "按进度 {v}",
    frozen: "已冻结于 {t}，配置版本 {v}",
    statuses: [
        "达成",
        "未达成",
        "有风险",
        "进展正常",
        "无数据",
        "无目标",
        "错误",
    ],
};

/// The statuses in the order of [`Words::statuses`].
const STATUS_ORDER: [Status; 7] = [
    Status::Met,
    Status::Missed,
    Status::AtRisk,
    Status::OnTrack,
    Status::NoData,
    Status::NoTarget,
    Status::Error,
];

/// The words of a language code: Chinese for `zh…`, else English.
fn words(lang: Option<&str>) -> &'static Words {
    match lang {
        Some(l) if l.starts_with("zh") => &ZH,
        _ => &EN,
    }
}

/// A status in words (`met`, `达成`), for a language code as [`report_table`] takes it.
pub fn status_word(s: Status, lang: Option<&str>) -> &'static str {
    let i = STATUS_ORDER.iter().position(|x| *x == s).unwrap_or(0);
    words(lang).statuses[i]
}

/// A value in its unit: 27.0% for ratios, ¥1,234,567 for currency, 12.5 d for days.
pub fn format_value(v: f64, unit: Unit, currency: &str) -> String {
    format_digits(v, unit, currency, 0)
}

/// A value and its target, with as many more digits than usual as it takes
/// to show that they differ (a value of 69.96% against 70.0% must not print
/// as "70.0%  70.0%  missed").
pub fn format_pair(
    value: Option<f64>,
    target: Option<f64>,
    unit: Unit,
    currency: &str,
) -> (String, String) {
    let fmt = |v: Option<f64>, extra| {
        v.map_or("–".to_string(), |x| {
            format_digits(x, unit, currency, extra)
        })
    };
    let differ = matches!((value, target), (Some(a), Some(b)) if a != b);
    let extra = (0..=6)
        .find(|&e| !differ || fmt(value, e) != fmt(target, e))
        .unwrap_or(6);
    (fmt(value, extra), fmt(target, extra))
}

/// [`format_value`] with `extra` more decimals.
fn format_digits(v: f64, unit: Unit, currency: &str, extra: usize) -> String {
    match unit {
        Unit::Ratio => format!("{:.*}%", 1 + extra, v * 100.0),
        Unit::Currency => {
            let symbol = match currency {
                "CNY" | "RMB" | "JPY" => "¥",
                "USD" => "$",
                "EUR" => "€",
                "GBP" => "£",
                "" => "",
                other => other,
            };
            let sep = if symbol.len() > 1 && symbol.is_ascii() {
                " "
            } else {
                ""
            };
            let digits = extra + if v.abs() >= 1000.0 { 0 } else { 2 };
            let sign = if v < 0.0 { "-" } else { "" };
            format!("{sign}{symbol}{sep}{}", group(v.abs(), digits))
        }
        Unit::Count => group(v, extra + usize::from(v.fract() != 0.0)),
        Unit::Days => format!("{:.*} d", 1 + extra, v),
        Unit::Hours => format!("{:.*} h", 1 + extra, v),
        Unit::Score => format!("{:.*}", 2 + extra, v),
    }
}

/// Thousands separators.
fn group(v: f64, digits: usize) -> String {
    let s = format!("{:.*}", digits, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(a, b)| (a, b));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{out}")
    } else {
        format!("{sign}{out}.{frac}")
    }
}

/// A status with its mark, coloured on a terminal: `✔ met`.
fn status_text(s: Status, lang: Option<&str>, style: Style) -> String {
    let (code, mark) = match s {
        Status::Met => ("32", "✔"),
        Status::Missed => ("31;1", "✘"),
        Status::AtRisk => ("33", "▲"),
        Status::OnTrack => ("36", "•"),
        Status::NoData => ("2", "–"),
        Status::NoTarget => ("2", "·"),
        Status::Error => ("31", "!"),
    };
    style.paint(code, &format!("{mark} {}", status_word(s, lang)))
}

/// Pads to a display width (Chinese characters take two columns).
fn pad(s: &str, width: usize, right: bool) -> String {
    let plain = strip_ansi(s);
    let fill = " ".repeat(width.saturating_sub(plain.width()));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (false, c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// Lays out rows as columns by display width; `right` marks right-aligned columns.
pub fn columns(rows: &[Vec<String>], right: &[bool], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| strip_ansi(s).width())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| pad(s, widths[i], right.get(i).copied().unwrap_or(false)))
            .collect();
        let _ = writeln!(out, "{indent}{}", cells.join("  ").trim_end());
    }
    out
}

/// The human-readable report.
pub fn report_table(
    cfg: &ConfigSnapshot,
    r: &Report,
    lang: Option<&str>,
    explain: bool,
    style: Style,
) -> String {
    let w = words(lang);
    let cal = &cfg.settings.calendar;
    let period = cal.period(r.period);
    let state = if period.is_open(r.as_of) {
        let elapsed = format!("{:.0}", period.elapsed(r.as_of) * 100.0);
        w.open.replace("{p}", &elapsed)
    } else {
        w.closed.into()
    };
    let title = match r.scorecard.as_deref().and_then(|s| cfg.scorecard(s)) {
        Some(card) => format!("{} ({})", card.label(lang), card.id),
        None => w.kpis.to_string(),
    };
    let frozen = match &r.frozen {
        Some(f) => format!(
            " · {}",
            w.frozen
                .replace("{t}", &cal.format_local(f.frozen_at))
                .replace("{v}", &f.config_version.to_string())
        ),
        None => String::new(),
    };
    let mut out = format!(
        "{} · {} ({state}) · {} {}{frozen}\n\n",
        style.paint("1", &title),
        r.period,
        w.as_of,
        cal.format_local(r.as_of)
    );
    if r.scorecard.is_some() {
        let mut rows = vec![vec![w.rank.into(), w.team.into(), w.score.into()]];
        for t in &r.teams {
            rows.push(vec![
                t.rank.map_or("-".into(), |x| x.to_string()),
                who(t),
                match (t.score, t.projected_score.filter(|_| r.open)) {
                    (None, _) => "–".into(),
                    (Some(s), None) => format!("{s:.1}"),
                    // An open period: the score so far, and the one its projections give.
                    (Some(s), Some(p)) => format!("{s:.1} → {p:.1}"),
                },
            ]);
        }
        out.push_str(&columns(&rows, &[true, false, true], ""));
        out.push('\n');
    }
    for t in &r.teams {
        let head = match (t.rank, t.score) {
            (Some(rank), Some(score)) => {
                let scored = w
                    .scored
                    .replace("{s}", &format!("{score:.1}"))
                    .replace("{r}", &rank.to_string());
                format!("{} — {scored}", who(t))
            }
            _ if r.scorecard.is_some() => format!("{} — {}", who(t), w.no_score),
            _ => who(t),
        };
        out.push_str(&style.paint("1", &head));
        out.push('\n');
        out.push_str(&team_rows(
            cfg,
            t,
            r.scorecard.is_some(),
            lang,
            explain,
            style,
        ));
        out.push('\n');
    }
    out
}

fn team_rows(
    cfg: &ConfigSnapshot,
    t: &TeamLine,
    scored: bool,
    lang: Option<&str>,
    explain: bool,
    style: Style,
) -> String {
    let w = words(lang);
    let mut header = vec![w.kpi.to_string(), w.value.into(), w.target.into()];
    if scored {
        header.extend([w.weight.into(), w.score.into()]);
    }
    header.push(w.status.into());
    let mut rows = vec![header];
    // Lines printed under a KPI's row: its error, and its explanation.
    let mut extras: Vec<Vec<String>> = vec![vec![]];
    for k in &t.kpis {
        let Some(kpi) = cfg.kpi(&k.kpi) else { continue };
        let d = &kpi.def;
        let fmt = |v: Option<f64>| {
            v.map_or("–".to_string(), |x| {
                format_value(x, d.unit, &cfg.settings.currency)
            })
        };
        let (value, target) = format_pair(k.value, k.target, d.unit, &cfg.settings.currency);
        let mut row = vec![
            format!("{} {} {}", d.id, direction_mark(d.direction), d.label(lang)),
            value,
            target,
        ];
        if scored {
            row.push(k.weight.map_or(String::new(), |w| format!("{w}")));
            row.push(k.score.map_or("–".into(), |s| format!("{s:.1}")));
        }
        let mut status = status_text(k.status, lang, style);
        if let Some(p) = k
            .projected
            .filter(|_| matches!(k.status, Status::AtRisk | Status::OnTrack))
        {
            let _ = write!(status, " ({})", w.pace.replace("{v}", &fmt(Some(p))));
        }
        row.push(status);
        rows.push(row);
        let mut extra: Vec<String> = k.error.iter().map(|e| style.paint("31", e)).collect();
        if explain {
            extra.extend(k.explanation.iter().map(|l| style.paint("2", l)));
        }
        extras.push(extra);
    }
    let right: Vec<bool> = (0..rows[0].len())
        .map(|i| i > 0 && i + 1 < rows[0].len())
        .collect();
    let mut out = String::new();
    for (line, extra) in columns(&rows, &right, "  ").lines().zip(&extras) {
        let _ = writeln!(out, "{line}");
        for e in extra {
            let _ = writeln!(out, "      {e}");
        }
    }
    out
}

/// A line's subject for people: "north North", or "u-north-01 王磊 (north)".
fn who(t: &TeamLine) -> String {
    match &t.owner {
        Some(o) => format!("{o} {} ({})", t.name, t.team),
        None => format!("{} {}", t.team, t.name),
    }
}

/// CSV: one row per (team, KPI).
pub fn report_csv(reports: &[Report]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "scorecard",
        "period",
        "as_of",
        "team",
        "rank",
        "team_score",
        "kpi",
        "value",
        "target",
        "weight",
        "score",
        "status",
        "owner",
        "rank_in_team",
    ]);
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for r in reports {
        for t in &r.teams {
            for k in &t.kpis {
                let _ = w.write_record([
                    r.scorecard.clone().unwrap_or_default(),
                    r.period.to_string(),
                    crate::period::format_utc(r.as_of),
                    t.team.clone(),
                    t.rank.map_or(String::new(), |x| x.to_string()),
                    opt(t.score),
                    k.kpi.clone(),
                    opt(k.value),
                    opt(k.target),
                    opt(k.weight),
                    opt(k.score),
                    k.status.name().to_string(),
                    t.owner.clone().unwrap_or_default(),
                    t.rank_in_team.map_or(String::new(), |x| x.to_string()),
                ]);
            }
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_and_a_target_that_differ_never_print_the_same() {
        let pair = |v, t| format_pair(Some(v), Some(t), Unit::Ratio, "CNY");
        assert_eq!(pair(0.27, 0.25), ("27.0%".into(), "25.0%".into()));
        assert_eq!(pair(0.6996, 0.7), ("69.96%".into(), "70.00%".into()));
        assert_eq!(pair(0.7, 0.7), ("70.0%".into(), "70.0%".into()));
        let cur = format_pair(Some(99_999.6), Some(100_000.0), Unit::Currency, "CNY");
        assert_eq!(cur, ("¥99,999.6".into(), "¥100,000.0".into()));
        assert_eq!(
            format_pair(None, Some(3.0), Unit::Days, ""),
            ("–".into(), "3.0 d".into())
        );
    }

    #[test]
    fn formats_units_for_people() {
        assert_eq!(format_value(0.2712, Unit::Ratio, "CNY"), "27.1%");
        assert_eq!(format_value(1234567.4, Unit::Currency, "CNY"), "¥1,234,567");
        assert_eq!(format_value(-950.5, Unit::Currency, "USD"), "-$950.50");
        assert_eq!(format_value(12.0, Unit::Count, ""), "12");
        assert_eq!(format_value(27.25, Unit::Days, ""), "27.2 d");
        assert_eq!(format_value(1500.0, Unit::Currency, "SEK"), "SEK 1,500");
    }

    #[test]
    fn statuses_in_both_languages() {
        let plain = Style { color: false };
        assert_eq!(status_text(Status::Met, None, plain), "✔ met");
        assert_eq!(status_text(Status::AtRisk, Some("en"), plain), "▲ at risk");
        assert_eq!(status_text(Status::Missed, Some("zh"), plain), "✘ 未达成");
        assert_eq!(status_word(Status::NoTarget, Some("zh")), "无目标");
        for s in STATUS_ORDER {
            assert_ne!(status_word(s, None), status_word(s, Some("zh")));
        }
    }

    #[test]
    fn pads_by_display_width() {
        assert_eq!(pad("北京", 6, false), "北京  ");
        assert_eq!(pad("ab", 4, true), "  ab");
    }
}
