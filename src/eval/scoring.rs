//! Statuses and scores of one value against its target (SPEC 7).
//!
//! Pure functions: nothing here knows where values or targets come from.

use serde::Serialize;

use crate::config::{Direction, Target};
use crate::period::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Missed,
    OnTrack,
    AtRisk,
    NoTarget,
    NoData,
    Error,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "missed",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::NoTarget => "no_target",
            Status::NoData => "no_data",
            Status::Error => "error",
        }
    }

    /// The status a [`name`](Status::name) names (a frozen assessment read back).
    pub fn from_name(name: &str) -> Option<Status> {
        [
            Status::Met,
            Status::Missed,
            Status::OnTrack,
            Status::AtRisk,
            Status::NoTarget,
            Status::NoData,
            Status::Error,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// Is `value` worse than the target?
pub fn is_worse(value: f64, t: &Target, dir: Direction) -> bool {
    match dir {
        Direction::Higher => value < t.target,
        Direction::Lower => value > t.target,
        Direction::Target => (value - t.target).abs() > tolerance(t),
    }
}

/// How far from the target a `target` KPI may be: |threshold − target|, 10% of target by default.
fn tolerance(t: &Target) -> f64 {
    match t.threshold {
        Some(th) => (th - t.target).abs(),
        None => (t.target * 0.1).abs(),
    }
}

/// What a status is judged on, with the pace projection of a cumulative KPI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub status: Status,
    /// value ÷ elapsed for a cumulative KPI in an open period.
    pub projected: Option<f64>,
}

pub struct StatusInput<'a> {
    pub value: Option<f64>,
    pub error: bool,
    pub target: Option<&'a Target>,
    pub direction: Direction,
    pub cumulative: bool,
    pub period: &'a Period,
    pub as_of: i64,
    pub at_risk_after: f64,
}

pub fn judge(i: &StatusInput<'_>) -> Judgement {
    let plain = |status| Judgement {
        status,
        projected: None,
    };
    if i.error {
        return plain(Status::Error);
    }
    let Some(value) = i.value else {
        return plain(Status::NoData);
    };
    let Some(target) = i.target else {
        return plain(Status::NoTarget);
    };
    if !i.period.is_open(i.as_of) {
        return plain(if is_worse(value, target, i.direction) {
            Status::Missed
        } else {
            Status::Met
        });
    }
    let elapsed = i.period.elapsed(i.as_of);
    let projected = (i.cumulative && elapsed > 0.0).then(|| value / elapsed);
    if elapsed < i.at_risk_after {
        return Judgement {
            status: Status::OnTrack,
            projected,
        };
    }
    let judged = projected.unwrap_or(value);
    let status = if is_worse(judged, target, i.direction) {
        Status::AtRisk
    } else {
        Status::OnTrack
    };
    Judgement { status, projected }
}

/// Score of a value, 0 to 100 × cap.
pub fn score(value: f64, t: &Target, dir: Direction, cap: f64) -> f64 {
    let max = 100.0 * cap;
    let raw = if dir != Direction::Target && (t.threshold.is_some() || t.stretch.is_some()) {
        piecewise(value, t, cap)
    } else {
        match dir {
            Direction::Higher => 100.0 * value / t.target,
            Direction::Lower if value <= 0.0 => max,
            Direction::Lower => 100.0 * t.target / value,
            Direction::Target => 100.0 * (1.0 - (value - t.target).abs() / tolerance(t)).max(0.0),
        }
    };
    if raw.is_nan() {
        0.0
    } else {
        raw.clamp(0.0, max)
    }
}

/// Linear through (threshold → 0, target → 100, stretch → 100 × cap), flat
/// beyond the ends; the points' order on the axis gives the direction.
fn piecewise(value: f64, t: &Target, cap: f64) -> f64 {
    let mut points: Vec<(f64, f64)> = [
        t.threshold.map(|x| (x, 0.0)),
        Some((t.target, 100.0)),
        t.stretch.map(|x| (x, 100.0 * cap)),
    ]
    .into_iter()
    .flatten()
    .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (first, last) = (points[0], points[points.len() - 1]);
    if value <= first.0 {
        return first.1;
    }
    if value >= last.0 {
        return last.1;
    }
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if value >= x0 && value <= x1 {
            return y0 + (y1 - y0) * (value - x0) / (x1 - x0);
        }
    }
    last.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::{Calendar, PeriodId};

    fn t(target: f64, threshold: Option<f64>, stretch: Option<f64>) -> Target {
        Target {
            target,
            threshold,
            stretch,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn target_only_scores_in_all_three_directions() {
        close(
            score(0.30, &t(0.25, None, None), Direction::Higher, 1.2),
            120.0,
        );
        close(
            score(0.20, &t(0.25, None, None), Direction::Higher, 1.2),
            80.0,
        );
        close(
            score(0.50, &t(0.25, None, None), Direction::Higher, 1.2),
            120.0,
        );
        close(
            score(-1.0, &t(0.25, None, None), Direction::Higher, 1.2),
            0.0,
        );
        close(
            score(40.0, &t(30.0, None, None), Direction::Lower, 1.2),
            75.0,
        );
        close(
            score(0.0, &t(30.0, None, None), Direction::Lower, 1.5),
            150.0,
        );
        // target direction: default tolerance 10% of 1.0 = 0.1; 0.95 is halfway.
        close(
            score(0.95, &t(1.0, None, None), Direction::Target, 1.2),
            50.0,
        );
        close(score(1.2, &t(1.0, None, None), Direction::Target, 1.2), 0.0);
        close(
            score(1.05, &t(1.0, Some(0.8), None), Direction::Target, 1.2),
            75.0,
        );
    }

    #[test]
    fn threshold_and_stretch_are_piecewise_linear_and_flat_beyond() {
        let h = t(0.30, Some(0.20), Some(0.40));
        close(score(0.25, &h, Direction::Higher, 1.2), 50.0);
        close(score(0.35, &h, Direction::Higher, 1.2), 110.0);
        close(score(0.10, &h, Direction::Higher, 1.2), 0.0);
        close(score(0.90, &h, Direction::Higher, 1.2), 120.0);
        // lower: threshold 48 h, target 24 h, stretch 12 h.
        let l = t(24.0, Some(48.0), Some(12.0));
        close(score(36.0, &l, Direction::Lower, 1.2), 50.0);
        close(score(18.0, &l, Direction::Lower, 1.2), 110.0);
        // negative values: growth target 0, threshold -0.2, stretch 0.1.
        let g = t(0.0, Some(-0.2), Some(0.1));
        close(score(-0.1, &g, Direction::Higher, 1.2), 50.0);
        close(score(0.05, &g, Direction::Higher, 1.2), 110.0);
        // threshold only: flat at 100 above the target.
        close(
            score(0.9, &t(0.3, Some(0.2), None), Direction::Higher, 1.2),
            100.0,
        );
    }

    #[test]
    fn statuses_for_closed_and_open_periods() {
        let cal = Calendar::utc();
        let p = cal.period("2026-Q1".parse::<PeriodId>().unwrap());
        let target = t(100.0, None, None);
        let input = |value, as_of, cumulative| StatusInput {
            value,
            error: false,
            target: Some(&target),
            direction: Direction::Higher,
            cumulative,
            period: &p,
            as_of,
            at_risk_after: 0.25,
        };
        let mid = p.start + (p.end - p.start) / 2;
        assert_eq!(judge(&input(Some(100.0), p.end, true)).status, Status::Met);
        assert_eq!(
            judge(&input(Some(99.0), p.end, true)).status,
            Status::Missed
        );
        // Half way through, 60 projects to 120: on track; 40 projects to 80: at risk.
        let j = judge(&input(Some(60.0), mid, true));
        assert_eq!((j.status, j.projected), (Status::OnTrack, Some(120.0)));
        assert_eq!(judge(&input(Some(40.0), mid, true)).status, Status::AtRisk);
        // Non-cumulative KPIs are judged on their current value.
        assert_eq!(judge(&input(Some(60.0), mid, false)).status, Status::AtRisk);
        // Too early to tell.
        assert_eq!(
            judge(&input(Some(1.0), p.start + 1000, true)).status,
            Status::OnTrack
        );
        assert_eq!(judge(&input(None, p.end, true)).status, Status::NoData);
        assert_eq!(
            judge(&StatusInput {
                target: None,
                ..input(Some(1.0), p.end, true)
            })
            .status,
            Status::NoTarget
        );
        assert_eq!(
            judge(&StatusInput {
                error: true,
                ..input(Some(1.0), p.end, true)
            })
            .status,
            Status::Error
        );
    }
}
