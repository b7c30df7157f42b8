//! Line charts as server-rendered SVG: a value per period with a y axis (ticks at round
//! numbers, labelled in the KPI's unit), the periods along the x axis, and the target as a
//! dashed line.
//!
//! SVG made on the server rather than a charting library in the browser: the page stays
//! readable without JavaScript, nothing is vendored or downloaded, a chart costs a few
//! microseconds to make, and tests read it as text.

use std::fmt::Write as _;

use super::html::esc;

/// One chart's data: a label per period (oldest first), the value and target of each.
pub(super) struct Chart<'a> {
    pub(super) labels: Vec<String>,
    pub(super) values: Vec<Option<f64>>,
    pub(super) targets: Vec<Option<f64>>,
    /// Formats a tick or a value in the KPI's unit.
    pub(super) format: &'a dyn Fn(f64) -> String,
    /// The chart's accessible name.
    pub(super) title: String,
    /// The target's name in the legend ("target").
    pub(super) target_word: &'a str,
}

const W: f64 = 340.0;
const H: f64 = 150.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 34.0;

impl Chart<'_> {
    /// The chart as an inline `<svg>`.
    pub(super) fn svg(&self) -> String {
        let known: Vec<f64> = self
            .values
            .iter()
            .chain(&self.targets)
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let mut svg = format!(
            "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
            esc(&self.title)
        );
        let (lo, hi, step) = axis(&known);
        let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
        let n = self.labels.len().max(1);
        let x = |i: usize| {
            if n == 1 {
                LEFT + (W - LEFT - RIGHT) / 2.0
            } else {
                LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64
            }
        };
        // The y axis: gridlines and tick labels.
        let mut tick = lo;
        while tick <= hi + step * 1e-9 {
            let ty = y(tick);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - RIGHT,
                LEFT - 6.0,
                ty + 3.5,
                esc(&(self.format)(tick))
            );
            tick += step;
        }
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{}\"/>\
             <line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\"/>",
            H - BOTTOM,
            W - RIGHT,
            b = H - BOTTOM
        );
        // The x axis: each period, the year only where it changes.
        let mut last_year = "";
        for (i, label) in self.labels.iter().enumerate() {
            let (year, part) = label.split_once('-').unwrap_or((label.as_str(), ""));
            let _ = write!(
                svg,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x(i),
                H - BOTTOM + 13.0,
                esc(if part.is_empty() { year } else { part })
            );
            if year != last_year && !part.is_empty() {
                let _ = write!(
                    svg,
                    "<text class=\"tick year\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    x(i),
                    H - BOTTOM + 25.0,
                    esc(year)
                );
                last_year = year;
            }
        }
        if !known.is_empty() {
            svg.push_str(&self.line(&self.targets, "target", &x, &y));
            svg.push_str(&self.line(&self.values, "value", &x, &y));
            for (i, v) in self.values.iter().enumerate() {
                if let Some(v) = v {
                    let _ = write!(
                        svg,
                        "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}: {}</title></circle>",
                        x(i),
                        y(*v),
                        esc(&self.labels[i]),
                        esc(&(self.format)(*v))
                    );
                }
            }
        }
        if self.targets.iter().any(Option::is_some) {
            let _ = write!(
                svg,
                "<line class=\"target\" x1=\"{}\" x2=\"{}\" y1=\"{TOP}\" y2=\"{TOP}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                W - RIGHT - 60.0,
                W - RIGHT - 44.0,
                W - RIGHT,
                TOP + 3.5,
                esc(self.target_word)
            );
        }
        svg.push_str("</svg>");
        svg
    }

    /// A polyline through the known points of `series` (gaps split it).
    fn line(
        &self,
        series: &[Option<f64>],
        class: &str,
        x: &dyn Fn(usize) -> f64,
        y: &dyn Fn(f64) -> f64,
    ) -> String {
        let mut out = String::new();
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, out: &mut String| {
            if run.len() > 1 {
                let _ = write!(
                    out,
                    "<polyline class=\"{class}\" points=\"{}\"/>",
                    run.join(" ")
                );
            }
            run.clear();
        };
        for (i, v) in series.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => run.push(format!("{:.1},{:.1}", x(i), y(*v))),
                _ => flush(&mut run, &mut out),
            }
        }
        flush(&mut run, &mut out);
        // A single target is still drawn, across the plot.
        if class == "target"
            && series.iter().flatten().count() == 1
            && let Some(t) = series.iter().flatten().next()
        {
            let _ = write!(
                out,
                "<line class=\"target\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>",
                W - RIGHT,
                ty = y(*t)
            );
        }
        out
    }
}

/// The y axis of `values`: from 0 (or below, for negative values) to a round number above
/// the largest, with its tick step.
fn axis(values: &[f64]) -> (f64, f64, f64) {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let min = values.iter().copied().fold(0.0_f64, f64::min);
    let span = if max - min > 0.0 { max - min } else { 1.0 };
    let step = nice_step(span / 4.0);
    let lo = (min / step).floor() * step;
    let hi = ((max / step).ceil() * step).max(lo + step);
    (lo, hi, step)
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(axis(&[0.0, 37.0, 80.0]), (0.0, 80.0, 20.0));
        assert_eq!(axis(&[1_234_567.0]), (0.0, 1_500_000.0, 500_000.0));
        let (lo, hi, _) = axis(&[-20.0, 45.0]);
        assert!(lo <= -20.0 && hi >= 45.0);
        assert_eq!(axis(&[]), (0.0, 0.25, 0.25));
    }

    #[test]
    fn a_chart_has_axes_labels_and_the_target_line() {
        let fmt = |v: f64| format!("{v:.0}");
        let c = Chart {
            labels: vec!["2026-Q1".into(), "2026-Q2".into(), "2026-Q3".into()],
            values: vec![Some(10.0), None, Some(30.0)],
            targets: vec![Some(20.0), Some(20.0), Some(25.0)],
            format: &fmt,
            title: "revenue".into(),
            target_word: "target",
        };
        let svg = c.svg();
        assert!(svg.contains("class=\"axis\""));
        assert!(svg.contains(">Q2</text>") && svg.contains(">2026</text>"));
        assert!(svg.contains("<polyline class=\"target\""));
        assert_eq!(svg.matches("<circle").count(), 2, "a gap has no dot");
        assert!(svg.contains("<title>2026-Q3: 30</title>"));
    }
}
