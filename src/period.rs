//! Periods and time: period ids (`2026-Q3`, `2026-07`, `2026`), fiscal quarters,
//! the configured time zone, and reading and writing time values.
//!
//! Every instant is a UTC time in milliseconds since the Unix epoch ([`Millis`]).
//! Every period is the half-open interval `[start, end)` in the calendar's zone.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, SecondsFormat, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

/// A UTC instant in milliseconds since the Unix epoch.
pub type Millis = i64;

const PERIOD_ID_HINT: &str = "expected 2026-Q3, 2026-07 or 2026";
const TIME_HINT: &str =
    "expected RFC 3339 (2026-03-31T23:30:00+08:00), YYYY-MM-DD HH:MM:SS or YYYY-MM-DD";

/// Everything that can go wrong reading periods, zones and times.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeriodError {
    #[error("bad period id \"{0}\": {PERIOD_ID_HINT}")]
    BadPeriodId(String),
    #[error("bad period range \"{range}\": {reason}")]
    BadPeriodRange { range: String, reason: String },
    #[error("bad grain \"{0}\": expected quarter, month or year")]
    BadGrain(String),
    #[error("bad time \"{0}\": {TIME_HINT}")]
    BadTime(String),
    #[error("unknown time zone \"{0}\"")]
    UnknownTimeZone(String),
    #[error("fiscal_year_start_month must be 1..12, got {0}")]
    BadFiscalStartMonth(u32),
}

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    Quarter,
    Month,
    Year,
}

impl Grain {
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Quarter => "quarter",
            Grain::Month => "month",
            Grain::Year => "year",
        }
    }
}

impl FromStr for Grain {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quarter" => Ok(Grain::Quarter),
            "month" => Ok(Grain::Month),
            "year" => Ok(Grain::Year),
            _ => Err(PeriodError::BadGrain(s.to_string())),
        }
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A period id. `index` is the quarter (1..=4), the month (1..=12) or 0 for a year.
/// For quarters and years, `year` is the fiscal year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeriodId {
    pub grain: Grain,
    pub year: i32,
    pub index: u32,
}

impl PeriodId {
    /// Quarter `q` (1..=4) of fiscal year `year`.
    pub fn quarter(year: i32, q: u32) -> Self {
        assert!((1..=4).contains(&q), "quarter must be 1..4, got {q}");
        PeriodId {
            grain: Grain::Quarter,
            year,
            index: q,
        }
    }

    /// Calendar month `month` (1..=12) of `year`.
    pub fn month(year: i32, month: u32) -> Self {
        assert!(
            (1..=12).contains(&month),
            "month must be 1..12, got {month}"
        );
        PeriodId {
            grain: Grain::Month,
            year,
            index: month,
        }
    }

    /// Fiscal year `year`.
    pub fn year(year: i32) -> Self {
        PeriodId {
            grain: Grain::Year,
            year,
            index: 0,
        }
    }

    pub fn prev(self) -> Self {
        self.shift(-1)
    }

    pub fn next(self) -> Self {
        self.shift(1)
    }

    /// The period `n` steps later (earlier when `n` is negative) of the same grain.
    pub fn shift(self, n: i32) -> Self {
        let per_year = match self.grain {
            Grain::Quarter => 4,
            Grain::Month => 12,
            Grain::Year => return PeriodId::year(self.year + n),
        };
        let ordinal = i64::from(self.year) * per_year + i64::from(self.index) - 1 + i64::from(n);
        PeriodId {
            grain: self.grain,
            year: i32::try_from(ordinal.div_euclid(per_year)).expect("period year out of range"),
            index: ordinal.rem_euclid(per_year) as u32 + 1,
        }
    }

    /// "Q3" for a quarter, "07" for a month, None for a year: the recurring key used by targets and weights.
    pub fn recurring_key(self) -> Option<String> {
        match self.grain {
            Grain::Quarter => Some(format!("Q{}", self.index)),
            Grain::Month => Some(format!("{:02}", self.index)),
            Grain::Year => None,
        }
    }
}

impl FromStr for PeriodId {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_period_id(s).ok_or_else(|| PeriodError::BadPeriodId(s.to_string()))
    }
}

fn parse_period_id(s: &str) -> Option<PeriodId> {
    let (year, rest) = match s.split_once('-') {
        Some((year, rest)) => (year, Some(rest)),
        None => (s, None),
    };
    let year = parse_digits(year, 4)? as i32;
    let Some(rest) = rest else {
        return Some(PeriodId::year(year));
    };
    if let Some(q) = rest.strip_prefix('Q') {
        let q = parse_digits(q, 1)?;
        return (1..=4).contains(&q).then(|| PeriodId::quarter(year, q));
    }
    let month = parse_digits(rest, 2)?;
    (1..=12)
        .contains(&month)
        .then(|| PeriodId::month(year, month))
}

/// Reads exactly `len` ASCII digits.
fn parse_digits(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for PeriodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.grain {
            Grain::Quarter => write!(f, "{:04}-Q{}", self.year, self.index),
            Grain::Month => write!(f, "{:04}-{:02}", self.year, self.index),
            Grain::Year => write!(f, "{:04}", self.year),
        }
    }
}

/// Parse "2025-Q1..2026-Q4" (inclusive, same grain on both sides, start <= end) or a single id into the list of ids.
pub fn parse_period_range(s: &str) -> Result<Vec<PeriodId>, PeriodError> {
    let Some((first, last)) = s.split_once("..") else {
        return Ok(vec![s.trim().parse()?]);
    };
    let first: PeriodId = first.trim().parse()?;
    let last: PeriodId = last.trim().parse()?;
    let range_error = |reason: String| PeriodError::BadPeriodRange {
        range: s.to_string(),
        reason,
    };
    if first.grain != last.grain {
        return Err(range_error(format!(
            "both ends must have the same grain, got a {} and a {}",
            first.grain, last.grain
        )));
    }
    if first > last {
        return Err(range_error(format!("start {first} is after end {last}")));
    }
    let ids = std::iter::successors(Some(first), |id| Some(id.next()))
        .take_while(|id| *id <= last)
        .collect();
    Ok(ids)
}

/// A resolved period: `[start, end)` as UTC instants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub id: PeriodId,
    pub start: Millis,
    pub end: Millis,
}

impl Period {
    /// Whether the period has not ended yet at `as_of` (future periods count as open).
    pub fn is_open(&self, as_of: Millis) -> bool {
        as_of < self.end
    }

    /// The fraction of the period that has passed at `as_of`, clamped to 0..1.
    pub fn elapsed(&self, as_of: Millis) -> f64 {
        let length = (self.end - self.start) as f64;
        ((as_of - self.start) as f64 / length).clamp(0.0, 1.0)
    }

    pub fn contains(&self, t: Millis) -> bool {
        self.start <= t && t < self.end
    }
}

/// The time zone and fiscal year that turn period ids into instants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calendar {
    pub tz: Tz,
    pub fiscal_year_start_month: u32,
}

impl Calendar {
    pub fn new(tz_name: &str, fiscal_year_start_month: u32) -> Result<Calendar, PeriodError> {
        let tz = tz_name
            .parse::<Tz>()
            .map_err(|_| PeriodError::UnknownTimeZone(tz_name.to_string()))?;
        if !(1..=12).contains(&fiscal_year_start_month) {
            return Err(PeriodError::BadFiscalStartMonth(fiscal_year_start_month));
        }
        Ok(Calendar {
            tz,
            fiscal_year_start_month,
        })
    }

    /// UTC with fiscal years equal to calendar years.
    pub fn utc() -> Calendar {
        Calendar {
            tz: Tz::UTC,
            fiscal_year_start_month: 1,
        }
    }

    pub fn period(&self, id: PeriodId) -> Period {
        Period {
            id,
            start: self.period_start(id),
            end: self.period_start(id.next()),
        }
    }

    fn period_start(&self, id: PeriodId) -> Millis {
        let (year, month) = match id.grain {
            Grain::Month => (id.year, id.index),
            Grain::Quarter => self.fiscal_month(id.year, 3 * (id.index - 1)),
            Grain::Year => self.fiscal_month(id.year, 0),
        };
        let date = NaiveDate::from_ymd_opt(year, month, 1).expect("period year out of range");
        self.local_midnight(date)
    }

    /// The calendar (year, month) that is `offset` months into fiscal year `fiscal_year`.
    fn fiscal_month(&self, fiscal_year: i32, offset: u32) -> (i32, u32) {
        let zero_based = self.fiscal_year_start_month - 1 + offset;
        (fiscal_year + (zero_based / 12) as i32, zero_based % 12 + 1)
    }

    /// The period of `grain` that contains `instant`.
    pub fn containing(&self, grain: Grain, instant: Millis) -> PeriodId {
        let date = to_utc(instant).with_timezone(&self.tz).date_naive();
        let mut id = self.id_of_date(grain, date);
        // Deriving the id from the local date agrees with the period bounds by
        // construction; stepping keeps that true even for odd zone histories.
        while instant < self.period_start(id) {
            id = id.prev();
        }
        while instant >= self.period_start(id.next()) {
            id = id.next();
        }
        id
    }

    fn id_of_date(&self, grain: Grain, date: NaiveDate) -> PeriodId {
        let months_into_fiscal = i64::from(date.year()) * 12 + i64::from(date.month0())
            - i64::from(self.fiscal_year_start_month - 1);
        let fiscal_year = months_into_fiscal.div_euclid(12) as i32;
        match grain {
            Grain::Month => PeriodId::month(date.year(), date.month()),
            Grain::Quarter => PeriodId::quarter(
                fiscal_year,
                (months_into_fiscal.rem_euclid(12) / 3) as u32 + 1,
            ),
            Grain::Year => PeriodId::year(fiscal_year),
        }
    }

    /// Parse a time value: RFC 3339 with an offset, or `YYYY-MM-DD HH:MM:SS`,
    /// `YYYY-MM-DDTHH:MM:SS` (fractional seconds allowed) or `YYYY-MM-DD`,
    /// the last three read in this calendar's zone.
    pub fn parse_time(&self, s: &str) -> Result<Millis, PeriodError> {
        let text = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(t.timestamp_millis());
        }
        if let Some(dt) = parse_local_date_time(text) {
            return Ok(self.local_to_instant(dt));
        }
        if let Some(date) = parse_local_date(text) {
            return Ok(self.local_midnight(date));
        }
        Err(PeriodError::BadTime(s.to_string()))
    }

    /// Local midnight of a date (gap rule applied).
    pub fn local_midnight(&self, date: NaiveDate) -> Millis {
        self.local_to_instant(date.and_time(chrono::NaiveTime::MIN))
    }

    /// Local date-time to instant: a time in a daylight-saving gap moves forward
    /// by the length of the gap, a time in an overlap takes the earlier instant.
    pub fn local_to_instant(&self, dt: NaiveDateTime) -> Millis {
        match self.tz.from_local_datetime(&dt).earliest() {
            Some(t) => t.timestamp_millis(),
            None => self.skip_gap(dt),
        }
    }

    fn skip_gap(&self, dt: NaiveDateTime) -> Millis {
        // Reading the wall-clock time with the offset in force before the gap moves
        // it forward by exactly the gap's length. Gaps are shorter than a day, so
        // the offset a day earlier is the one from before the gap.
        let day_before = dt.checked_sub_signed(TimeDelta::days(1)).unwrap_or(dt);
        let offset = self.tz.offset_from_utc_datetime(&day_before).fix();
        let utc = dt - TimeDelta::seconds(i64::from(offset.local_minus_utc()));
        utc.and_utc().timestamp_millis()
    }

    /// An instant as people read it in this zone, to the minute: "2026-04-01 08:30".
    pub fn format_human(&self, t: Millis) -> String {
        to_utc(t)
            .with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    /// RFC 3339 text (as the API writes times) as people read it in this zone; text that is
    /// not RFC 3339 is returned as it is.
    pub fn humanize(&self, rfc3339: &str) -> String {
        DateTime::parse_from_rfc3339(rfc3339).map_or_else(
            |_| rfc3339.to_string(),
            |t| self.format_human(t.timestamp_millis()),
        )
    }

    /// RFC 3339 text of an instant in this zone, seconds precision, e.g. "2026-04-01T00:00:00+08:00".
    pub fn format_local(&self, t: Millis) -> String {
        to_utc(t)
            .with_timezone(&self.tz)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    }
}

/// Reads `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`, with optional fractional seconds.
fn parse_local_date_time(s: &str) -> Option<NaiveDateTime> {
    if s.len() < 19 || !has_date_shape(s) {
        return None;
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
}

fn parse_local_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 || !has_date_shape(s) {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Whether `s` starts with `DDDD-DD-DD`; chrono alone would also take "2026-3-1" or "+2026-03-01".
fn has_date_shape(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// The instant as a chrono date-time. Millisecond counts beyond chrono's range
/// (about ±262,000 years) saturate rather than panic.
fn to_utc(t: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap_or(if t < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// RFC 3339 UTC text, e.g. "2026-03-31T15:30:00Z" (millis shown only when non-zero).
pub fn format_utc(t: Millis) -> String {
    to_utc(t).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(tz: &str, fiscal_start: u32) -> Calendar {
        Calendar::new(tz, fiscal_start).unwrap()
    }

    fn utc(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn id(s: &str) -> PeriodId {
        s.parse().unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn same_instant_falls_in_different_quarters_by_zone() {
        let t = Calendar::utc()
            .parse_time("2026-04-01T00:30:00+08:00")
            .unwrap();
        assert_eq!(t, utc("2026-03-31T16:30:00Z"));
        let shanghai = cal("Asia/Shanghai", 1);
        assert_eq!(shanghai.containing(Grain::Quarter, t), id("2026-Q2"));
        assert_eq!(Calendar::utc().containing(Grain::Quarter, t), id("2026-Q1"));
    }

    #[test]
    fn fiscal_year_starting_in_april() {
        let c = cal("UTC", 4);
        let q1 = c.period(id("2026-Q1"));
        assert_eq!(
            (q1.start, q1.end),
            (utc("2026-04-01T00:00:00Z"), utc("2026-07-01T00:00:00Z"))
        );
        let q4 = c.period(id("2026-Q4"));
        assert_eq!(
            (q4.start, q4.end),
            (utc("2027-01-01T00:00:00Z"), utc("2027-04-01T00:00:00Z"))
        );
        let year = c.period(id("2026"));
        assert_eq!(
            (year.start, year.end),
            (utc("2026-04-01T00:00:00Z"), utc("2027-04-01T00:00:00Z"))
        );
        let month = c.period(id("2026-02"));
        assert_eq!(month.start, utc("2026-02-01T00:00:00Z"));
    }

    #[test]
    fn containing_near_fiscal_boundaries() {
        let c = cal("UTC", 4);
        let before = utc("2026-03-31T23:59:59.999Z");
        let at = utc("2026-04-01T00:00:00Z");
        assert_eq!(c.containing(Grain::Quarter, before), id("2025-Q4"));
        assert_eq!(c.containing(Grain::Year, before), id("2025"));
        assert_eq!(c.containing(Grain::Month, before), id("2026-03"));
        assert_eq!(c.containing(Grain::Quarter, at), id("2026-Q1"));
        assert_eq!(c.containing(Grain::Year, at), id("2026"));
        assert_eq!(c.containing(Grain::Month, at), id("2026-04"));
        assert_eq!(
            c.containing(Grain::Quarter, utc("2026-12-31T23:59:59Z")),
            id("2026-Q3")
        );
        assert_eq!(
            c.containing(Grain::Quarter, utc("2027-01-01T00:00:00Z")),
            id("2026-Q4")
        );
        assert_eq!(
            c.containing(Grain::Year, utc("2027-03-31T23:59:59Z")),
            id("2026")
        );
    }

    #[test]
    fn fiscal_year_in_another_zone() {
        let c = cal("Asia/Shanghai", 4);
        assert_eq!(c.period(id("2026-Q1")).start, utc("2026-03-31T16:00:00Z"));
        assert_eq!(
            c.containing(Grain::Year, utc("2026-03-31T16:00:00Z")),
            id("2026")
        );
        assert_eq!(
            c.containing(Grain::Year, utc("2026-03-31T15:59:59Z")),
            id("2025")
        );
    }

    #[test]
    fn fiscal_quarters_wrap_into_next_calendar_year() {
        let c = cal("UTC", 10);
        assert_eq!(c.period(id("2026-Q1")).start, utc("2026-10-01T00:00:00Z"));
        assert_eq!(c.period(id("2026-Q2")).start, utc("2027-01-01T00:00:00Z"));
        assert_eq!(
            c.containing(Grain::Quarter, utc("2027-02-15T00:00:00Z")),
            id("2026-Q2")
        );
        assert_eq!(
            c.containing(Grain::Quarter, utc("2026-09-30T00:00:00Z")),
            id("2025-Q4")
        );
    }

    #[test]
    fn prev_and_next_cross_year_boundaries() {
        assert_eq!(id("2026-Q1").prev(), id("2025-Q4"));
        assert_eq!(id("2025-Q4").next(), id("2026-Q1"));
        assert_eq!(id("2026-01").prev(), id("2025-12"));
        assert_eq!(id("2025-12").next(), id("2026-01"));
        assert_eq!(id("2026").prev(), id("2025"));
        assert_eq!(id("2026").next(), id("2027"));
        assert_eq!(id("2026-Q1").shift(-5), id("2024-Q4"));
        assert_eq!(id("2026-12").shift(13), id("2028-01"));
        assert_eq!(id("2026-07").shift(0), id("2026-07"));
    }

    #[test]
    fn period_ids_round_trip() {
        for text in ["2026-Q3", "2026-07", "2026", "0999-Q1", "2026-12"] {
            assert_eq!(id(text).to_string(), text);
        }
        assert_eq!(id("2026-Q3"), PeriodId::quarter(2026, 3));
        assert_eq!(id("2026-07"), PeriodId::month(2026, 7));
        assert_eq!(id("2026"), PeriodId::year(2026));
    }

    #[test]
    fn bad_period_ids_are_rejected() {
        let err = "2026-Q5".parse::<PeriodId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad period id \"2026-Q5\": expected 2026-Q3, 2026-07 or 2026"
        );
        for text in [
            "", "2026-Q0", "2026-Q", "2026Q1", "2026-q1", "2026-13", "2026-00", "2026-7", "26",
            "20266", "2026-",
        ] {
            assert_eq!(
                text.parse::<PeriodId>(),
                Err(PeriodError::BadPeriodId(text.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn recurring_keys() {
        assert_eq!(id("2026-Q3").recurring_key().as_deref(), Some("Q3"));
        assert_eq!(id("2026-07").recurring_key().as_deref(), Some("07"));
        assert_eq!(id("2026").recurring_key(), None);
    }

    #[test]
    fn grains_parse_and_display() {
        for grain in [Grain::Quarter, Grain::Month, Grain::Year] {
            assert_eq!(grain.to_string().parse::<Grain>(), Ok(grain));
        }
        assert_eq!(
            "week".parse::<Grain>().unwrap_err().to_string(),
            "bad grain \"week\": expected quarter, month or year"
        );
    }

    #[test]
    fn ranges_expand_inclusively() {
        let ids = parse_period_range("2025-Q3..2026-Q2").unwrap();
        let expected: Vec<_> = ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"].map(id).into();
        assert_eq!(ids, expected);
        assert_eq!(parse_period_range("2025-11 .. 2026-01").unwrap().len(), 3);
        assert_eq!(parse_period_range("2026..2026").unwrap(), vec![id("2026")]);
        assert_eq!(parse_period_range("2026-07").unwrap(), vec![id("2026-07")]);
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert_eq!(
            parse_period_range("2026-Q1..2026-07")
                .unwrap_err()
                .to_string(),
            "bad period range \"2026-Q1..2026-07\": both ends must have the same grain, \
             got a quarter and a month"
        );
        assert_eq!(
            parse_period_range("2026-Q4..2026-Q1")
                .unwrap_err()
                .to_string(),
            "bad period range \"2026-Q4..2026-Q1\": start 2026-Q4 is after end 2026-Q1"
        );
        assert_eq!(
            parse_period_range("2026-Q1..2026-Q9"),
            Err(PeriodError::BadPeriodId("2026-Q9".into()))
        );
        assert!(parse_period_range("2026-Q1..").is_err());
        assert!(parse_period_range("").is_err());
    }

    #[test]
    fn elapsed_is_clamped_and_period_closes_at_end() {
        let p = Calendar::utc().period(id("2026-04"));
        let mid = p.start + (p.end - p.start) / 2;
        assert_eq!(p.elapsed(p.start - 1), 0.0);
        assert_eq!(p.elapsed(p.start), 0.0);
        assert_eq!(p.elapsed(mid), 0.5);
        assert_eq!(p.elapsed(p.end), 1.0);
        assert_eq!(p.elapsed(p.end + 86_400_000), 1.0);
        assert!(p.is_open(p.start - 1));
        assert!(p.is_open(p.end - 1));
        assert!(!p.is_open(p.end));
        assert!(p.contains(p.start) && !p.contains(p.end));
    }

    #[test]
    fn dst_gap_moves_forward_by_gap_length() {
        let ny = cal("America/New_York", 1);
        let t = ny.parse_time("2026-03-08 02:30:00").unwrap();
        assert_eq!(t, utc("2026-03-08T07:30:00Z"));
        assert_eq!(ny.format_local(t), "2026-03-08T03:30:00-04:00");
    }

    #[test]
    fn dst_overlap_takes_earlier_instant() {
        let ny = cal("America/New_York", 1);
        assert_eq!(
            ny.parse_time("2026-11-01T01:30:00").unwrap(),
            utc("2026-11-01T05:30:00Z")
        );
        // An explicit offset picks the later reading.
        assert_eq!(
            ny.parse_time("2026-11-01T01:30:00-05:00").unwrap(),
            utc("2026-11-01T06:30:00Z")
        );
    }

    #[test]
    fn day_starting_in_a_gap_starts_after_the_gap() {
        // Chile moves clocks from 00:00 -04 to 01:00 -03 on 2026-09-06.
        let santiago = cal("America/Santiago", 1);
        let start = santiago.local_midnight(date(2026, 9, 6));
        assert_eq!(start, utc("2026-09-06T04:00:00Z"));
        assert_eq!(santiago.format_local(start), "2026-09-06T01:00:00-03:00");
        assert_eq!(santiago.parse_time("2026-09-06").unwrap(), start);
        assert_eq!(
            santiago.local_midnight(date(2026, 9, 5)),
            utc("2026-09-05T04:00:00Z")
        );
    }

    #[test]
    fn period_starting_in_a_gap() {
        // Paraguay moved clocks from 00:00 -04 to 01:00 -03 on 2023-10-01.
        let asuncion = cal("America/Asuncion", 1);
        let october = asuncion.period(id("2023-10"));
        assert_eq!(october.start, utc("2023-10-01T04:00:00Z"));
        assert_eq!(asuncion.period(id("2023-09")).end, october.start);
        assert_eq!(asuncion.period(id("2023-Q4")).start, october.start);
        assert_eq!(
            asuncion.containing(Grain::Month, october.start - 1),
            id("2023-09")
        );
        assert_eq!(
            asuncion.containing(Grain::Month, october.start),
            id("2023-10")
        );
    }

    #[test]
    fn time_formats() {
        let shanghai = cal("Asia/Shanghai", 1);
        let expected = utc("2026-03-31T15:30:00Z");
        for text in [
            "2026-03-31T23:30:00+08:00",
            "2026-03-31T15:30:00Z",
            "2026-03-31 23:30:00",
            "2026-03-31T23:30:00",
            " 2026-03-31 23:30:00 ",
        ] {
            assert_eq!(shanghai.parse_time(text), Ok(expected), "{text}");
        }
        assert_eq!(
            shanghai.parse_time("2026-03-31T15:30:00.250Z"),
            Ok(expected + 250)
        );
        assert_eq!(
            shanghai.parse_time("2026-03-31 23:30:00.5"),
            Ok(expected + 500)
        );
        assert_eq!(
            shanghai.parse_time("2026-03-31"),
            Ok(utc("2026-03-30T16:00:00Z"))
        );
    }

    #[test]
    fn bad_times_are_rejected() {
        let c = Calendar::utc();
        assert_eq!(
            c.parse_time("2026-13-01").unwrap_err().to_string(),
            "bad time \"2026-13-01\": expected RFC 3339 (2026-03-31T23:30:00+08:00), \
             YYYY-MM-DD HH:MM:SS or YYYY-MM-DD"
        );
        for text in [
            "",
            "yesterday",
            "2026-02-30",
            "2026-3-1",
            "2026-03-31 25:00:00",
            "2026-03-31 23:30",
        ] {
            assert_eq!(
                c.parse_time(text),
                Err(PeriodError::BadTime(text.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_calendar_settings_are_rejected() {
        assert_eq!(
            Calendar::new("Asia/Shangai", 1).unwrap_err().to_string(),
            "unknown time zone \"Asia/Shangai\""
        );
        assert_eq!(
            Calendar::new("UTC", 13).unwrap_err().to_string(),
            "fiscal_year_start_month must be 1..12, got 13"
        );
        assert_eq!(
            Calendar::new("UTC", 0),
            Err(PeriodError::BadFiscalStartMonth(0))
        );
        assert_eq!(Calendar::new("UTC", 1), Ok(Calendar::utc()));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_utc(utc("2026-03-31T15:30:00Z")),
            "2026-03-31T15:30:00Z"
        );
        assert_eq!(
            format_utc(utc("2026-03-31T15:30:00Z") + 250),
            "2026-03-31T15:30:00.250Z"
        );
        let shanghai = cal("Asia/Shanghai", 1);
        assert_eq!(
            shanghai.format_local(utc("2026-03-31T16:00:00Z")),
            "2026-04-01T00:00:00+08:00"
        );
        assert_eq!(format_utc(i64::MAX), format_utc(i64::MAX - 1));
    }
}
