//! The demo's calendar: the eight quarters before `until`, their months and local days, and
//! random instants within them.
//!
//! Everything is in the configured calendar's local time, so weekends, office hours and month
//! ends fall where the users see them; a span is cut at `until` so that no record lies after it.

use std::ops::Range;

use chrono::{DateTime, Datelike, Weekday};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::period::{Calendar, Grain, Millis, PeriodId};

/// The demo covers this many quarters, the last one containing `until`.
pub(super) const QUARTERS: usize = 8;
pub(super) const SECOND: Millis = 1_000;
pub(super) const HOUR: Millis = 3_600 * SECOND;
pub(super) const DAY: Millis = 24 * HOUR;
/// An average quarter, for rates given per quarter.
pub(super) const QUARTER_MS: f64 = 91.31 * DAY as f64;

/// The quarters, months and days records may fall in.
pub(super) struct Clock<'a> {
    pub(super) cal: &'a Calendar,
    /// Exclusive end of the data.
    pub(super) until: Millis,
    /// The local days from the first quarter's start to `until`.
    pub(super) days: Vec<Day>,
    /// Oldest first.
    pub(super) quarters: Vec<Quarter>,
}

/// A stretch of time records may fall in: [start, end) clipped to `stop` (≤ end, ≤ until), with
/// the local days that start within [start, stop).
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub(super) start: Millis,
    pub(super) end: Millis,
    pub(super) stop: Millis,
    pub(super) days: Range<usize>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Day {
    pub(super) start: Millis,
    pub(super) weekend: bool,
}

pub(super) struct Quarter {
    pub(super) id: PeriodId,
    pub(super) span: Span,
    /// Its months, for expenses.
    pub(super) months: Vec<Span>,
}

impl<'a> Clock<'a> {
    pub(super) fn new(cal: &'a Calendar, until: Millis) -> Clock<'a> {
        let last = cal.containing(Grain::Quarter, until);
        let first = cal.period(last.shift(-(QUARTERS as i32 - 1))).start;
        let mut clock = Clock {
            cal,
            until,
            days: local_days(cal, first, until),
            quarters: Vec::with_capacity(QUARTERS),
        };
        clock.quarters = (0..QUARTERS)
            .map(|i| clock.quarter(last.shift(i as i32 - (QUARTERS as i32 - 1))))
            .collect();
        clock
    }

    fn quarter(&self, id: PeriodId) -> Quarter {
        let p = self.cal.period(id);
        let month = self.cal.containing(Grain::Month, p.start);
        let months = (0..3)
            .map(|k| self.cal.period(month.shift(k)))
            .filter(|m| m.start < p.end)
            .map(|m| self.span(m.start, m.end.min(p.end)))
            .collect();
        Quarter {
            id,
            span: self.span(p.start, p.end),
            months,
        }
    }

    fn span(&self, start: Millis, end: Millis) -> Span {
        let stop = end.min(self.until).max(start);
        let lo = self.days.partition_point(|d| d.start < start);
        let hi = self.days.partition_point(|d| d.start < stop);
        Span {
            start,
            end,
            stop,
            days: lo..hi.max(lo),
        }
    }

    /// The index of the quarter containing `t`, if any.
    pub(super) fn quarter_of(&self, t: Millis) -> Option<usize> {
        let i = self.quarters.partition_point(|q| q.span.end <= t);
        (i < QUARTERS && self.quarters[i].span.start <= t).then_some(i)
    }

    /// The same local day and time `months` later (the last moment of a shorter month).
    pub(super) fn add_months(&self, t: Millis, months: i32) -> Millis {
        let from = self.cal.containing(Grain::Month, t);
        let here = self.cal.period(from);
        let there = self.cal.period(from.shift(months));
        (there.start + (t - here.start)).min(there.end - SECOND)
    }

    /// A random instant within the span: weekdays and office hours are more likely.
    pub(super) fn instant(&self, rng: &mut ChaCha8Rng, span: &Span) -> Millis {
        let days = &self.days[span.days.clone()];
        let mut i = rng.random_range(0..days.len());
        if days[i].weekend && rng.random_bool(0.6) {
            i = rng.random_range(0..days.len());
        }
        let hour: i64 = if rng.random_bool(0.85) {
            rng.random_range(9..19)
        } else {
            rng.random_range(0..24)
        };
        let day = days[i].start;
        let t = day + hour * HOUR + rng.random_range(0..3_600) * SECOND;
        if t < span.stop {
            t
        } else {
            let t = day + (t - day) % (span.stop - day);
            t - (t - day) % SECOND
        }
    }

    /// Sorted random instants in quarter `qi`, `base` per full quarter.
    pub(super) fn instants(
        &self,
        rng: &mut ChaCha8Rng,
        base: f64,
        qi: usize,
        out: &mut Vec<Millis>,
    ) {
        out.clear();
        let span = &self.quarters[qi].span;
        let n = span.count(rng, base);
        out.extend((0..n).map(|_| self.instant(rng, span)));
        out.sort_unstable();
    }
}

impl Span {
    /// The share of the span before `until`.
    pub(super) fn frac(&self) -> f64 {
        if self.end <= self.start {
            0.0
        } else {
            (self.stop - self.start) as f64 / (self.end - self.start) as f64
        }
    }

    /// How many records of a kind with `base` per full span fall in it (at least one when the
    /// span is not empty and base is positive).
    pub(super) fn count(&self, rng: &mut ChaCha8Rng, base: f64) -> usize {
        if self.days.is_empty() || base <= 0.0 {
            return 0;
        }
        let n = base * self.frac() * rng.random_range(0.95..1.05);
        (n.round() as usize).max(1)
    }
}

/// Whole seconds, as milliseconds.
pub(super) fn seconds(s: f64) -> Millis {
    (s as i64).saturating_mul(SECOND)
}

/// The local days whose midnight falls in [start, until), in order.
fn local_days(cal: &Calendar, start: Millis, until: Millis) -> Vec<Day> {
    let mut date = first_local_date(cal, start);
    let mut days = Vec::new();
    loop {
        let midnight = cal.local_midnight(date).max(start);
        if midnight >= until {
            break;
        }
        if days.last().is_none_or(|d: &Day| d.start < midnight) {
            days.push(Day {
                start: midnight,
                weekend: matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
            });
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    days
}

/// The local date of `start`, a local midnight: the latest of the UTC date and its neighbours
/// whose midnight is not after it.
fn first_local_date(cal: &Calendar, start: Millis) -> chrono::NaiveDate {
    let utc = DateTime::from_timestamp_millis(start)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    let mut date = utc;
    for d in [utc.pred_opt(), Some(utc), utc.succ_opt()]
        .into_iter()
        .flatten()
    {
        if cal.local_midnight(d) <= start {
            date = d;
        }
    }
    date
}
