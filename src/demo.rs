//! The demo CRM: a deterministic generator of every entity of the default schema.
//!
//! `kpi demo` and `kpi serve --demo` fill a database with it, and the benchmark uses it at large
//! scale. It writes a small team tree (headquarters, three regions, six leaf teams) and eight
//! quarters of customers, deals with their stage history, activities, tickets, surveys, campaigns,
//! expenses, subscriptions, forecasts and web traffic, ending just before `until`.
//!
//! Each leaf team has a fixed quality profile ([`PROFILES`]): Shanghai and Shenzhen are strong,
//! Beijing solid, Hangzhou average, Guangzhou below average and Tianjin weak. The profile drives
//! win rates, deal sizes, cycle lengths, service times, survey scores, churn, renewals and campaign
//! efficiency, so that against sensible targets some teams meet them and some miss.
//!
//! Determinism: the same options and calendar give byte-identical records in the same order. Every
//! (team, quarter, entity) draws from its own ChaCha8 stream whose seed is derived from the demo
//! seed, the team and the quarter's start, so no stream depends on how much another one consumed.
//! Nothing iterates a hash map.
//!
//! Every field of an entity is always written, optional ones as `Value::Null`, so all records of
//! an entity have the same fields in the same order. No time is at or after `until`, with one
//! deliberate exception: a subscription's `ends_at` may lie in the future (a running contract).
//!
//! Memory stays small at any scale: only compact plans (customer creation and churn times,
//! campaign windows, per-quarter revenue) are kept; deals are planned per team and quarter into a
//! reused buffer, and planned again for the passes that need them (deals, then stage events).

use std::ops::Range;

use chrono::{DateTime, Datelike, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::period::{Calendar, Grain, Millis, PeriodId};
use crate::store::Value;

/// The scale `kpi demo` uses when none is given: about this many deals per team per quarter.
pub const DEFAULT_SCALE: u32 = 40;
/// The seed `kpi demo` uses when none is given.
pub const DEFAULT_SEED: u64 = 2026;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// About this many deals are created per leaf team per quarter.
    pub scale: u32,
    /// Same seed (and scale, until, calendar): same records.
    pub seed: u64,
    /// Exclusive end of the data: the eighth quarter is the one containing it.
    pub until: Millis,
}

/// Where generated records go (a database import, a file, a test vector).
pub trait RecordSink {
    type Error;
    fn write(&mut self, entity: &str, record: &[(&str, Value)]) -> Result<(), Self::Error>;
}

/// Writes the whole demo CRM through the sink, entity by entity, `teams` first. Returns counts per
/// entity, in the order written.
pub fn generate<S: RecordSink>(
    opts: &DemoOptions,
    cal: &Calendar,
    sink: &mut S,
) -> Result<Vec<(&'static str, u64)>, S::Error> {
    let mut world = World::new(opts, cal);
    let mut counts = Vec::with_capacity(12);
    counts.push(("teams", write_teams(sink)?));
    counts.push(("customers", world.customers(sink)?));
    world.plan_campaigns();
    world.tally_deals();
    counts.push(("campaigns", world.write_campaigns(sink)?));
    counts.push(("deals", world.deals(sink)?));
    counts.push(("stage_events", world.stage_events(sink)?));
    counts.push(("activities", world.activities(sink)?));
    counts.push(("tickets", world.tickets(sink)?));
    counts.push(("surveys", world.surveys(sink)?));
    counts.push(("expenses", world.expenses(sink)?));
    counts.push(("subscriptions", world.subscriptions(sink)?));
    counts.push(("forecasts", world.forecasts(sink)?));
    counts.push(("web_traffic", world.web_traffic(sink)?));
    Ok(counts)
}

/// The team tree: (id, name, parent). Records belong to the leaves only.
pub const TEAMS: [(&str, &str, Option<&str>); 10] = [
    ("hq", "总部 Headquarters", None),
    ("east", "华东大区 East", Some("hq")),
    ("north", "华北大区 North", Some("hq")),
    ("south", "华南大区 South", Some("hq")),
    ("shanghai", "上海一部 Shanghai", Some("east")),
    ("hangzhou", "杭州 Hangzhou", Some("east")),
    ("beijing", "北京 Beijing", Some("north")),
    ("tianjin", "天津 Tianjin", Some("north")),
    ("guangzhou", "广州 Guangzhou", Some("south")),
    ("shenzhen", "深圳 Shenzhen", Some("south")),
];

/// How a leaf team performs. Means and rates; the generator adds noise around them.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub team: &'static str,
    /// Sales reps (owners `u-<team>-01` …).
    pub reps: u32,
    /// Volume relative to the scale (deals, customers, activities, tickets, surveys).
    pub size: f64,
    /// Volume growth per quarter.
    pub growth: f64,
    /// Share of closed deals that are won.
    pub win: f64,
    /// Typical deal amount (log-normal around it, clamped to 20k–200k).
    pub amount: f64,
    /// Typical days from creation to close (clamped to 10–90).
    pub cycle_days: f64,
    /// Relative weight of losing a deal right after the demo (drives demo → quote).
    pub demo_drop: f64,
    /// Typical hours to a ticket's first response (clamped to 1–24).
    pub response_hours: f64,
    /// Typical hours to resolve a ticket (clamped to 4–120).
    pub resolution_hours: f64,
    /// Share of tickets never resolved.
    pub unresolved: f64,
    /// 0..1: drives NPS, CES, CSAT and ticket ratings.
    pub satisfaction: f64,
    /// Probability that a customer churns within a quarter.
    pub churn: f64,
    /// Probability that a subscription is renewed.
    pub renewal: f64,
    /// Typical campaign ROI, (revenue − cost) ÷ cost.
    pub roi: f64,
    /// Typical cost ÷ budget of a campaign.
    pub execution: f64,
    /// Campaign leads ÷ participants.
    pub lead_rate: f64,
    /// Web leads ÷ visits.
    pub traffic_conversion: f64,
    /// Typical web visits a day.
    pub visits: f64,
    /// Largest relative error of the team's quarterly forecast.
    pub forecast_error: f64,
    /// Marketing + sales spend per new customer.
    pub cac: f64,
    /// Service spend per active customer per quarter.
    pub service_cost: f64,
    /// Typical quarterly subscription fee.
    pub subscription: f64,
}

/// The six leaf teams, strongest first.
pub const PROFILES: [Profile; 6] = [
    Profile {
        team: "shanghai",
        reps: 8,
        size: 1.08,
        growth: 0.03,
        win: 0.42,
        amount: 115_000.0,
        cycle_days: 32.0,
        demo_drop: 0.08,
        response_hours: 2.5,
        resolution_hours: 16.0,
        unresolved: 0.03,
        satisfaction: 0.85,
        churn: 0.02,
        renewal: 0.88,
        roi: 2.2,
        execution: 0.98,
        lead_rate: 0.32,
        traffic_conversion: 0.038,
        visits: 130.0,
        forecast_error: 0.06,
        cac: 9_000.0,
        service_cost: 600.0,
        subscription: 12_000.0,
    },
    Profile {
        team: "shenzhen",
        reps: 7,
        size: 1.04,
        growth: 0.03,
        win: 0.39,
        amount: 98_000.0,
        cycle_days: 36.0,
        demo_drop: 0.10,
        response_hours: 3.5,
        resolution_hours: 20.0,
        unresolved: 0.04,
        satisfaction: 0.80,
        churn: 0.025,
        renewal: 0.85,
        roi: 1.8,
        execution: 1.00,
        lead_rate: 0.30,
        traffic_conversion: 0.035,
        visits: 125.0,
        forecast_error: 0.08,
        cac: 10_000.0,
        service_cost: 650.0,
        subscription: 11_000.0,
    },
    Profile {
        team: "beijing",
        reps: 7,
        size: 1.00,
        growth: 0.02,
        win: 0.33,
        amount: 88_000.0,
        cycle_days: 45.0,
        demo_drop: 0.16,
        response_hours: 6.0,
        resolution_hours: 30.0,
        unresolved: 0.06,
        satisfaction: 0.65,
        churn: 0.035,
        renewal: 0.78,
        roi: 1.1,
        execution: 0.95,
        lead_rate: 0.24,
        traffic_conversion: 0.030,
        visits: 115.0,
        forecast_error: 0.12,
        cac: 12_000.0,
        service_cost: 750.0,
        subscription: 10_000.0,
    },
    Profile {
        team: "hangzhou",
        reps: 5,
        size: 0.96,
        growth: 0.02,
        win: 0.29,
        amount: 70_000.0,
        cycle_days: 50.0,
        demo_drop: 0.22,
        response_hours: 8.0,
        resolution_hours: 40.0,
        unresolved: 0.08,
        satisfaction: 0.58,
        churn: 0.045,
        renewal: 0.72,
        roi: 0.7,
        execution: 1.06,
        lead_rate: 0.21,
        traffic_conversion: 0.027,
        visits: 105.0,
        forecast_error: 0.15,
        cac: 13_500.0,
        service_cost: 800.0,
        subscription: 8_500.0,
    },
    Profile {
        team: "guangzhou",
        reps: 6,
        size: 0.94,
        growth: 0.01,
        win: 0.25,
        amount: 62_000.0,
        cycle_days: 58.0,
        demo_drop: 0.30,
        response_hours: 11.0,
        resolution_hours: 55.0,
        unresolved: 0.10,
        satisfaction: 0.48,
        churn: 0.055,
        renewal: 0.66,
        roi: 0.35,
        execution: 1.10,
        lead_rate: 0.18,
        traffic_conversion: 0.024,
        visits: 100.0,
        forecast_error: 0.18,
        cac: 15_000.0,
        service_cost: 900.0,
        subscription: 7_500.0,
    },
    Profile {
        team: "tianjin",
        reps: 5,
        size: 0.90,
        growth: -0.01,
        win: 0.18,
        amount: 48_000.0,
        cycle_days: 68.0,
        demo_drop: 0.40,
        response_hours: 15.0,
        resolution_hours: 75.0,
        unresolved: 0.14,
        satisfaction: 0.33,
        churn: 0.075,
        renewal: 0.58,
        roi: -0.15,
        execution: 0.82,
        lead_rate: 0.14,
        traffic_conversion: 0.021,
        visits: 90.0,
        forecast_error: 0.25,
        cac: 17_000.0,
        service_cost: 1_000.0,
        subscription: 6_500.0,
    },
];

const QUARTERS: usize = 8;
const SECOND: Millis = 1_000;
const HOUR: Millis = 3_600 * SECOND;
const DAY: Millis = 24 * HOUR;
/// An average quarter, for rates given per quarter.
const QUARTER_MS: f64 = 91.31 * DAY as f64;

/// The progression every deal follows until it is won, lost or still open.
const PROGRESSION: [&str; 5] = ["lead", "qualified", "demo", "quote", "negotiation"];

const SOURCES: [(&str, f64); 6] = [
    ("web", 0.30),
    ("event", 0.15),
    ("partner", 0.15),
    ("phone", 0.10),
    ("referral", 0.20),
    ("other", 0.10),
];
const SEGMENTS: [(&str, f64); 3] = [("smb", 0.60), ("mid", 0.30), ("enterprise", 0.10)];
const CHANNELS: [(&str, f64); 5] = [
    ("phone", 0.30),
    ("email", 0.30),
    ("social", 0.10),
    ("meeting", 0.15),
    ("visit", 0.15),
];
const TRAFFIC_SOURCES: [(&str, f64); 4] = [
    ("web", 0.35),
    ("search", 0.35),
    ("social", 0.20),
    ("referral", 0.10),
];
const CAMPAIGN_CHANNELS: [&str; 5] = ["event", "webinar", "social", "email", "search"];
const CAMPAIGN_THEMES: [&str; 8] = [
    "新品发布会 Product Launch",
    "行业峰会 Industry Summit",
    "客户答谢会 Customer Day",
    "线上研讨会 Webinar Series",
    "春季促销 Spring Promotion",
    "年中大促 Mid-year Sale",
    "合作伙伴大会 Partner Forum",
    "年终冲刺 Year-end Push",
];
const CN_PREFIXES: [&str; 20] = [
    "华信", "东方", "金桥", "瑞丰", "恒通", "天启", "新元", "博达", "中科", "汇通", "星河", "云帆",
    "宏远", "盛世", "永泰", "智联", "鼎盛", "长城", "海纳", "蓝海",
];
const CN_SUFFIXES: [&str; 12] = [
    "科技", "贸易", "制造", "物流", "医疗", "软件", "咨询", "能源", "食品", "传媒", "电子", "集团",
];
const EN_PREFIXES: [&str; 16] = [
    "Acme",
    "Blue River",
    "Northwind",
    "Summit",
    "Nova",
    "Apex",
    "Golden Gate",
    "Pacific",
    "Orion",
    "Silverline",
    "Redwood",
    "Harbor",
    "Evergreen",
    "Lumen",
    "Vertex",
    "Cobalt",
];
const EN_SUFFIXES: [&str; 10] = [
    "Tech",
    "Trading",
    "Logistics",
    "Systems",
    "Labs",
    "Foods",
    "Consulting",
    "Energy",
    "Media",
    "Health",
];

/// The independent random streams of one (team, quarter).
#[derive(Clone, Copy)]
enum Stream {
    Volume = 1,
    Customers,
    CampaignPlan,
    CampaignCost,
    Deals,
    DealOwners,
    Activities,
    Tickets,
    Surveys,
    Expenses,
    Subscriptions,
    Forecasts,
    Traffic,
}

fn write_teams<S: RecordSink>(sink: &mut S) -> Result<u64, S::Error> {
    for (id, name, parent) in TEAMS {
        sink.write(
            "teams",
            &[
                ("id", text(id)),
                ("name", text(name)),
                ("parent", parent.map_or(Value::Null, text)),
            ],
        )?;
    }
    Ok(TEAMS.len() as u64)
}

/// A stretch of time records may fall in: [start, end) clipped to `stop` (≤ end, ≤ until), with
/// the local days that start within [start, stop).
#[derive(Debug, Clone)]
struct Span {
    start: Millis,
    end: Millis,
    stop: Millis,
    days: Range<usize>,
}

impl Span {
    /// The share of the span before `until`.
    fn frac(&self) -> f64 {
        if self.end <= self.start {
            0.0
        } else {
            (self.stop - self.start) as f64 / (self.end - self.start) as f64
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Day {
    start: Millis,
    weekend: bool,
}

struct Quarter {
    id: PeriodId,
    span: Span,
    /// Its months, for expenses.
    months: Vec<Span>,
}

/// Customers of one team, in creation order (index = id number − 1).
#[derive(Default)]
struct Customers {
    created: Vec<Millis>,
    /// `Millis::MAX` when the customer has not churned before `until`.
    churned: Vec<Millis>,
    /// The churn times that are set, ascending.
    churned_sorted: Vec<Millis>,
}

impl Customers {
    fn active_at(&self, t: Millis) -> usize {
        self.created.partition_point(|&c| c < t) - self.churned_sorted.partition_point(|&c| c < t)
    }
}

#[derive(Debug, Clone, Copy)]
struct CampaignPlan {
    quarter: usize,
    start: Millis,
    end: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Outcome {
    #[default]
    Open,
    Won,
    Lost,
}

/// Everything about one deal, before it is turned into records.
#[derive(Debug, Clone, Copy, Default)]
struct DealPlan {
    created: Millis,
    /// Entered-at times of PROGRESSION[..reached]; times[0] = created.
    times: [Millis; 5],
    reached: usize,
    outcome: Outcome,
    /// Set when the outcome is Won or Lost.
    closed: Millis,
    amount: f64,
    customer: Option<u32>,
    campaign: Option<u32>,
}

impl DealPlan {
    fn stage(&self) -> &'static str {
        match self.outcome {
            Outcome::Won => "won",
            Outcome::Lost => "lost",
            Outcome::Open => PROGRESSION[self.reached - 1],
        }
    }
}

struct World<'a> {
    cal: &'a Calendar,
    scale: f64,
    seed: u64,
    until: Millis,
    days: Vec<Day>,
    quarters: Vec<Quarter>,
    /// Leaf team ids, as in PROFILES.
    team_ids: Vec<String>,
    owners: Vec<Vec<String>>,
    /// Volume factor per team and quarter.
    volume: Vec<[f64; QUARTERS]>,
    customers: Vec<Customers>,
    campaigns: Vec<Vec<CampaignPlan>>,
    /// Won revenue closed in each quarter, per team.
    revenue: Vec<[f64; QUARTERS]>,
    /// Won revenue attributed to each campaign the way marketing_roi counts it.
    attributed: Vec<Vec<f64>>,
}

impl<'a> World<'a> {
    fn new(opts: &DemoOptions, cal: &'a Calendar) -> World<'a> {
        let until = opts.until;
        let last = cal.containing(Grain::Quarter, until);
        let first = cal.period(last.shift(-(QUARTERS as i32 - 1))).start;
        let days = local_days(cal, first, until);
        let span = |start: Millis, end: Millis| {
            let stop = end.min(until).max(start);
            let lo = days.partition_point(|d| d.start < start);
            let hi = days.partition_point(|d| d.start < stop);
            Span {
                start,
                end,
                stop,
                days: lo..hi.max(lo),
            }
        };
        let quarters: Vec<Quarter> = (0..QUARTERS)
            .map(|i| {
                let id = last.shift(i as i32 - (QUARTERS as i32 - 1));
                let p = cal.period(id);
                let month = cal.containing(Grain::Month, p.start);
                let months = (0..3)
                    .map(|k| cal.period(month.shift(k)))
                    .filter(|m| m.start < p.end)
                    .map(|m| span(m.start, m.end.min(p.end)))
                    .collect();
                Quarter {
                    id,
                    span: span(p.start, p.end),
                    months,
                }
            })
            .collect();
        let team_ids = PROFILES.iter().map(|p| p.team.to_owned()).collect();
        let owners = PROFILES
            .iter()
            .map(|p| {
                (1..=p.reps)
                    .map(|r| format!("u-{}-{r:02}", p.team))
                    .collect()
            })
            .collect();
        let mut world = World {
            cal,
            scale: f64::from(opts.scale),
            seed: opts.seed,
            until,
            days,
            quarters,
            team_ids,
            owners,
            volume: Vec::new(),
            customers: Vec::new(),
            campaigns: Vec::new(),
            revenue: vec![[0.0; QUARTERS]; PROFILES.len()],
            attributed: Vec::new(),
        };
        world.volume = (0..PROFILES.len())
            .map(|ti| {
                let p = &PROFILES[ti];
                let mut v = [0.0; QUARTERS];
                for (qi, slot) in v.iter_mut().enumerate() {
                    let mut rng = world.rng(ti, qi, Stream::Volume);
                    let trend = (1.0 + p.growth).powf(qi as f64 - 3.5);
                    let noise = rng.random_range(0.95..1.05);
                    *slot = (p.size * trend * noise).clamp(0.8, 1.2);
                }
                v
            })
            .collect();
        world
    }

    /// The stream of one (team, quarter, purpose). Keyed by the quarter's start, not its index.
    fn rng(&self, team: usize, quarter: usize, stream: Stream) -> ChaCha8Rng {
        let mut h = splitmix(self.seed ^ 0x6b70_692d_6465_6d6f);
        h = splitmix(h ^ team as u64);
        h = splitmix(h ^ self.quarters[quarter].span.start as u64);
        h = splitmix(h ^ stream as u64);
        ChaCha8Rng::seed_from_u64(h)
    }

    /// How many records of a kind with `base` per quarter fall in `span` (at least one when the
    /// span is not empty and base is positive).
    fn count(&self, rng: &mut ChaCha8Rng, base: f64, span: &Span) -> usize {
        if span.days.is_empty() || base <= 0.0 {
            return 0;
        }
        let n = base * span.frac() * rng.random_range(0.95..1.05);
        (n.round() as usize).max(1)
    }

    /// A random instant within the span: weekdays and office hours are more likely.
    fn instant(&self, rng: &mut ChaCha8Rng, span: &Span) -> Millis {
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

    fn owner(&self, rng: &mut ChaCha8Rng, team: usize) -> Value {
        if rng.random_bool(0.95) {
            let owners = &self.owners[team];
            Value::Text(owners[rng.random_range(0..owners.len())].clone())
        } else {
            Value::Null
        }
    }

    fn team(&self, team: usize) -> Value {
        Value::Text(self.team_ids[team].clone())
    }

    fn customer_ref(&self, team: usize, customer: Option<u32>) -> Value {
        match customer {
            Some(c) => Value::Text(format!("c-{}-{:06}", self.team_ids[team], c + 1)),
            None => Value::Null,
        }
    }

    /// A customer of the team created before `t` and not churned by then, with probability `p`.
    /// Half the picks favour recent customers.
    fn pick_customer(&self, rng: &mut ChaCha8Rng, team: usize, t: Millis, p: f64) -> Option<u32> {
        if !rng.random_bool(p) {
            return None;
        }
        let c = &self.customers[team];
        let k = c.created.partition_point(|&x| x < t);
        if k == 0 {
            return None;
        }
        let recent = c.created.partition_point(|&x| x < t - 120 * DAY);
        for _ in 0..3 {
            let i = if recent < k && rng.random_bool(0.5) {
                rng.random_range(recent..k)
            } else {
                rng.random_range(0..k)
            };
            if c.churned[i] > t {
                return Some(i as u32);
            }
        }
        None
    }

    fn customers<S: RecordSink>(&mut self, sink: &mut S) -> Result<u64, S::Error> {
        let mut all = Vec::with_capacity(PROFILES.len());
        let mut times = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut plan = Customers::default();
            // Exponential lifetimes with the team's quarterly churn probability.
            let hazard = -(1.0 - p.churn).ln() / QUARTER_MS;
            for qi in 0..QUARTERS {
                let span = &self.quarters[qi].span;
                let mut rng = self.rng(ti, qi, Stream::Customers);
                let n = self.count(&mut rng, self.scale / 2.0 * self.volume[ti][qi], span);
                times.clear();
                times.extend((0..n).map(|_| self.instant(&mut rng, span)));
                times.sort_unstable();
                for &created in &times {
                    let number = plan.created.len() + 1;
                    let name = if rng.random_bool(0.55) {
                        let a = CN_PREFIXES[rng.random_range(0..CN_PREFIXES.len())];
                        let b = CN_SUFFIXES[rng.random_range(0..CN_SUFFIXES.len())];
                        format!("{a}{b}")
                    } else {
                        let a = EN_PREFIXES[rng.random_range(0..EN_PREFIXES.len())];
                        let b = EN_SUFFIXES[rng.random_range(0..EN_SUFFIXES.len())];
                        format!("{a} {b}")
                    };
                    let source = if rng.random_bool(0.9) {
                        text(pick(&mut rng, &SOURCES))
                    } else {
                        Value::Null
                    };
                    let segment = if rng.random_bool(0.95) {
                        text(pick(&mut rng, &SEGMENTS))
                    } else {
                        Value::Null
                    };
                    let owner = self.owner(&mut rng, ti);
                    let life = -(1.0 - rng.random::<f64>()).ln() / hazard;
                    let churned = created.saturating_add(seconds(life / 1000.0).max(DAY));
                    let churned = if churned < self.until {
                        plan.churned_sorted.push(churned);
                        churned
                    } else {
                        Millis::MAX
                    };
                    plan.created.push(created);
                    plan.churned.push(churned);
                    sink.write(
                        "customers",
                        &[
                            ("id", Value::Text(format!("c-{}-{number:06}", p.team))),
                            ("team", self.team(ti)),
                            ("owner", owner),
                            ("name", Value::Text(name)),
                            ("source", source),
                            ("segment", segment),
                            ("created_at", Value::Time(created)),
                            ("churned_at", opt_time(churned)),
                        ],
                    )?;
                    written += 1;
                }
            }
            plan.churned_sorted.sort_unstable();
            all.push(plan);
        }
        self.customers = all;
        Ok(written)
    }

    /// Two campaigns per team and quarter: one early, one mid-quarter; a campaign that would not
    /// have ended before the quarter's end and `until` is left out.
    fn plan_campaigns(&mut self) {
        self.campaigns = (0..PROFILES.len())
            .map(|ti| {
                let mut plans = Vec::new();
                for qi in 0..QUARTERS {
                    let span = &self.quarters[qi].span;
                    let mut rng = self.rng(ti, qi, Stream::CampaignPlan);
                    let len_days = ((span.end - span.start) / DAY).max(30);
                    for (from, to) in [
                        (2, len_days * 30 / 100),
                        (len_days * 45 / 100, len_days * 60 / 100),
                    ] {
                        let start = span.start
                            + rng.random_range(from..to) * DAY
                            + rng.random_range(9..12) * HOUR
                            + rng.random_range(0..60) * 60 * SECOND;
                        let end =
                            start + rng.random_range(14..36) * DAY + rng.random_range(0..8) * HOUR;
                        if end < span.end && end < self.until {
                            plans.push(CampaignPlan {
                                quarter: qi,
                                start,
                                end,
                            });
                        }
                    }
                }
                plans
            })
            .collect();
    }

    /// The campaign a deal came from, if any: one of the team's campaigns that started in the 60
    /// days before it. About 30% of deals have one; deals won before the end of the campaign's
    /// quarter (the revenue marketing_roi counts) are likelier to, so that ROI reflects the team's
    /// efficiency rather than noise even at small scales.
    fn pick_campaign(&self, rng: &mut ChaCha8Rng, team: usize, d: &DealPlan) -> Option<u32> {
        let c = &self.campaigns[team];
        let hi = c.partition_point(|x| x.start <= d.created);
        let lo = c.partition_point(|x| x.start < d.created - 60 * DAY);
        if lo >= hi {
            return None;
        }
        let i = rng.random_range(lo..hi);
        let counts = d.outcome == Outcome::Won && d.closed < self.quarters[c[i].quarter].span.end;
        rng.random_bool(if counts { 0.6 } else { 0.27 })
            .then_some(i as u32)
    }

    /// Plans the deals one team created in one quarter, in creation order. Pure: planning the
    /// same (team, quarter) again gives the same deals.
    fn plan_deals(&self, ti: usize, qi: usize, out: &mut Vec<DealPlan>) {
        out.clear();
        let p = &PROFILES[ti];
        let span = &self.quarters[qi].span;
        let mut rng = self.rng(ti, qi, Stream::Deals);
        let n = self.count(&mut rng, self.scale * self.volume[ti][qi], span);
        for _ in 0..n {
            let created = self.instant(&mut rng, span);
            out.push(DealPlan {
                created,
                ..DealPlan::default()
            });
        }
        out.sort_unstable_by_key(|d| d.created);
        let drop_weights = [(1, 0.26), (2, 0.24), (3, p.demo_drop), (4, 0.16), (5, 0.12)];
        for d in out.iter_mut() {
            d.amount = ((p.amount * (0.45 * gauss(&mut rng)).exp()).clamp(20_000.0, 200_000.0)
                / 100.0)
                .round()
                * 100.0;
            let won = rng.random_bool(p.win);
            let stalled = rng.random_bool(0.03);
            let dest: usize = if stalled {
                rng.random_range(1..=4)
            } else if won {
                5
            } else {
                pick(&mut rng, &drop_weights)
            };
            let cycle_days = (p.cycle_days * (0.35 * gauss(&mut rng)).exp()).clamp(10.0, 90.0);
            let cycle = seconds(cycle_days * 86_400.0);
            // Split the cycle into `dest` segments: dest − 1 stage changes, then the close.
            let mut weights = [0.0; 5];
            for w in weights.iter_mut().take(dest) {
                *w = rng.random_range(0.5..1.5);
            }
            let total: f64 = weights.iter().sum();
            d.times[0] = d.created;
            let mut acc = 0.0;
            for i in 1..dest {
                acc += weights[i - 1];
                d.times[i] = d.created + seconds(cycle as f64 / 1000.0 * acc / total);
            }
            d.reached = d.times[..dest]
                .iter()
                .take_while(|&&t| t < self.until)
                .count();
            let closed = d.created + cycle;
            if !stalled && closed < self.until {
                d.outcome = if won { Outcome::Won } else { Outcome::Lost };
                d.closed = closed;
            }
            d.customer = self.pick_customer(&mut rng, ti, d.created, 0.9);
            d.campaign = self.pick_campaign(&mut rng, ti, d);
        }
    }

    /// Plans every deal once to learn the revenue per quarter and per campaign, which forecasts
    /// and campaign costs are built from.
    fn tally_deals(&mut self) {
        let mut buf = Vec::new();
        let mut revenue = vec![[0.0; QUARTERS]; PROFILES.len()];
        let mut attributed: Vec<Vec<f64>> =
            self.campaigns.iter().map(|c| vec![0.0; c.len()]).collect();
        for ti in 0..PROFILES.len() {
            for qi in 0..QUARTERS {
                self.plan_deals(ti, qi, &mut buf);
                for d in buf.iter().filter(|d| d.outcome == Outcome::Won) {
                    if let Some(cq) = self.quarter_of(d.closed) {
                        revenue[ti][cq] += d.amount;
                    }
                    if let Some(c) = d.campaign {
                        let plan = &self.campaigns[ti][c as usize];
                        if d.closed < self.quarters[plan.quarter].span.end {
                            attributed[ti][c as usize] += d.amount;
                        }
                    }
                }
            }
        }
        self.revenue = revenue;
        self.attributed = attributed;
    }

    fn quarter_of(&self, t: Millis) -> Option<usize> {
        let i = self.quarters.partition_point(|q| q.span.end <= t);
        (i < QUARTERS && self.quarters[i].span.start <= t).then_some(i)
    }

    fn write_campaigns<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let plans = &self.campaigns[ti];
            let mut next = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::CampaignCost);
                while next < plans.len() && plans[next].quarter == qi {
                    let plan = plans[next];
                    let vol = self.volume[ti][qi];
                    let roi = p.roi + rng.random_range(-0.25..0.25);
                    let revenue = self.attributed[ti][next];
                    // Without attributed revenue yet, spend what the team usually spends.
                    let revenue = if revenue > 0.0 {
                        revenue
                    } else {
                        self.scale * vol * 0.15 * p.win * p.amount * 0.5
                    };
                    let execution = (p.execution + rng.random_range(-0.05..0.05)).clamp(0.75, 1.15);
                    let cost = revenue / (1.0 + roi);
                    let budget = ((cost / execution / 1000.0).round() * 1000.0).max(1000.0);
                    let cost = (budget * execution * 100.0).round() / 100.0;
                    let participants = (self.scale * 1.5 * vol * rng.random_range(0.8..1.2))
                        .round()
                        .max(10.0) as i64;
                    let leads = ((participants as f64 * p.lead_rate * rng.random_range(0.85..1.15))
                        .round() as i64)
                        .min(participants);
                    let theme = CAMPAIGN_THEMES[rng.random_range(0..CAMPAIGN_THEMES.len())];
                    let channel = if rng.random_bool(0.9) {
                        text(CAMPAIGN_CHANNELS[rng.random_range(0..CAMPAIGN_CHANNELS.len())])
                    } else {
                        Value::Null
                    };
                    next += 1;
                    sink.write(
                        "campaigns",
                        &[
                            ("id", Value::Text(format!("cp-{}-{next:06}", p.team))),
                            ("team", self.team(ti)),
                            (
                                "name",
                                Value::Text(format!("{} {theme}", self.quarters[qi].id)),
                            ),
                            ("channel", channel),
                            ("budget", Value::Real(budget)),
                            ("cost", Value::Real(cost)),
                            ("participants", Value::Int(participants)),
                            ("leads", Value::Int(leads)),
                            ("started_at", Value::Time(plan.start)),
                            ("ended_at", Value::Time(plan.end)),
                        ],
                    )?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    fn deals<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut buf = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                self.plan_deals(ti, qi, &mut buf);
                let mut rng = self.rng(ti, qi, Stream::DealOwners);
                for d in &buf {
                    number += 1;
                    let closed = match d.outcome {
                        Outcome::Open => Value::Null,
                        _ => Value::Time(d.closed),
                    };
                    let campaign = match d.campaign {
                        Some(c) => Value::Text(format!("cp-{}-{:06}", p.team, c + 1)),
                        None => Value::Null,
                    };
                    sink.write(
                        "deals",
                        &[
                            ("id", Value::Text(format!("d-{}-{number:06}", p.team))),
                            ("team", self.team(ti)),
                            ("owner", self.owner(&mut rng, ti)),
                            ("customer", self.customer_ref(ti, d.customer)),
                            ("stage", text(d.stage())),
                            ("amount", Value::Real(d.amount)),
                            ("created_at", Value::Time(d.created)),
                            ("closed_at", closed),
                            ("campaign", campaign),
                        ],
                    )?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    fn stage_events<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut buf = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut deal = 0;
            let mut number = 0;
            for qi in 0..QUARTERS {
                self.plan_deals(ti, qi, &mut buf);
                for d in &buf {
                    deal += 1;
                    let progression = PROGRESSION.into_iter().zip(d.times).take(d.reached);
                    let close = match d.outcome {
                        Outcome::Open => None,
                        _ => Some((d.stage(), d.closed)),
                    };
                    for (stage, at) in progression.chain(close) {
                        number += 1;
                        sink.write(
                            "stage_events",
                            &[
                                ("id", Value::Text(format!("ev-{}-{number:06}", p.team))),
                                ("team", self.team(ti)),
                                ("deal", Value::Text(format!("d-{}-{deal:06}", p.team))),
                                ("stage", text(stage)),
                                ("entered_at", Value::Time(at)),
                            ],
                        )?;
                        written += 1;
                    }
                }
            }
        }
        Ok(written)
    }

    /// Sorted random instants in a quarter, `base` per full quarter.
    fn instants(&self, rng: &mut ChaCha8Rng, base: f64, qi: usize, out: &mut Vec<Millis>) {
        out.clear();
        let span = &self.quarters[qi].span;
        let n = self.count(rng, base, span);
        out.extend((0..n).map(|_| self.instant(rng, span)));
        out.sort_unstable();
    }

    fn activities<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut times = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Activities);
                self.instants(
                    &mut rng,
                    2.0 * self.scale * self.volume[ti][qi],
                    qi,
                    &mut times,
                );
                for &at in &times {
                    number += 1;
                    let customer = self.pick_customer(&mut rng, ti, at, 0.85);
                    sink.write(
                        "activities",
                        &[
                            ("id", Value::Text(format!("a-{}-{number:06}", p.team))),
                            ("team", self.team(ti)),
                            ("owner", self.owner(&mut rng, ti)),
                            ("customer", self.customer_ref(ti, customer)),
                            ("channel", text(pick(&mut rng, &CHANNELS))),
                            ("occurred_at", Value::Time(at)),
                        ],
                    )?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    fn tickets<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut times = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Tickets);
                self.instants(
                    &mut rng,
                    self.scale / 2.0 * self.volume[ti][qi],
                    qi,
                    &mut times,
                );
                for &opened in &times {
                    number += 1;
                    let customer = self.pick_customer(&mut rng, ti, opened, 0.9);
                    let responded = rng.random_bool(0.96);
                    let response_h =
                        (p.response_hours * (0.6 * gauss(&mut rng)).exp()).clamp(1.0, 24.0);
                    let resolved = !rng.random_bool(p.unresolved);
                    let resolution_h = (p.resolution_hours * (0.6 * gauss(&mut rng)).exp())
                        .clamp(4.0, 120.0)
                        .max(response_h + 0.25);
                    let rated = rng.random_bool(0.6);
                    let rating = score(&mut rng, 2.3 + 2.5 * p.satisfaction, 0.9, 1, 5);
                    let first_response = opened + seconds(response_h * 3_600.0);
                    let first_response =
                        (responded && first_response < self.until).then_some(first_response);
                    let resolved_at = opened + seconds(resolution_h * 3_600.0);
                    let resolved_at = (resolved && resolved_at < self.until).then_some(resolved_at);
                    let rating = if rated && resolved_at.is_some() {
                        Value::Int(rating)
                    } else {
                        Value::Null
                    };
                    sink.write(
                        "tickets",
                        &[
                            ("id", Value::Text(format!("t-{}-{number:06}", p.team))),
                            ("team", self.team(ti)),
                            ("owner", self.owner(&mut rng, ti)),
                            ("customer", self.customer_ref(ti, customer)),
                            ("opened_at", Value::Time(opened)),
                            (
                                "first_response_at",
                                first_response.map_or(Value::Null, Value::Time),
                            ),
                            ("resolved_at", resolved_at.map_or(Value::Null, Value::Time)),
                            ("rating", rating),
                        ],
                    )?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    fn surveys<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut times = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let s = p.satisfaction;
            // (kind, mean, spread, lowest, highest)
            let kinds = [
                ("nps", 5.0 + 4.5 * s, 1.8, 0, 10),
                ("ces", 3.0 + 3.5 * s, 1.1, 1, 7),
                ("csat", 2.4 + 2.4 * s, 0.8, 1, 5),
            ];
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Surveys);
                for (kind, mean, spread, lo, hi) in kinds {
                    self.instants(
                        &mut rng,
                        self.scale / 3.0 * self.volume[ti][qi],
                        qi,
                        &mut times,
                    );
                    for &at in &times {
                        number += 1;
                        let customer = self.pick_customer(&mut rng, ti, at, 0.8);
                        sink.write(
                            "surveys",
                            &[
                                ("id", Value::Text(format!("s-{}-{number:06}", p.team))),
                                ("team", self.team(ti)),
                                ("customer", self.customer_ref(ti, customer)),
                                ("kind", text(kind)),
                                ("score", Value::Int(score(&mut rng, mean, spread, lo, hi))),
                                ("answered_at", Value::Time(at)),
                            ],
                        )?;
                        written += 1;
                    }
                }
            }
        }
        Ok(written)
    }

    /// A few expenses per category per month. Marketing and sales spend follow the team's
    /// acquisition cost, service spend its active customers.
    fn expenses<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Expenses);
                let vol = self.volume[ti][qi];
                let acquisition = p.cac * self.scale / 2.0 * vol / 3.0;
                for month in &self.quarters[qi].months {
                    if month.days.is_empty() {
                        continue;
                    }
                    let active = self.customers[ti].active_at(month.start) as f64;
                    let totals = [
                        ("marketing", 0.45 * acquisition),
                        ("sales", 0.55 * acquisition),
                        (
                            "service",
                            p.service_cost / 3.0 * active.max(self.scale / 4.0),
                        ),
                        ("other", 250.0 * self.scale * vol / 3.0),
                    ];
                    for (category, total) in totals {
                        let total = total * month.frac() * rng.random_range(0.9..1.1);
                        let k: usize = rng.random_range(2..=4);
                        let mut shares = [0.0; 4];
                        for s in shares.iter_mut().take(k) {
                            *s = rng.random_range(0.5..1.5);
                        }
                        let sum: f64 = shares.iter().sum();
                        for share in &shares[..k] {
                            number += 1;
                            let amount = (total * share / sum * 100.0).round() / 100.0;
                            sink.write(
                                "expenses",
                                &[
                                    ("id", Value::Text(format!("ex-{}-{number:06}", p.team))),
                                    ("team", self.team(ti)),
                                    ("category", text(category)),
                                    ("amount", Value::Real(amount)),
                                    ("spent_at", Value::Time(self.instant(&mut rng, month))),
                                ],
                            )?;
                            written += 1;
                        }
                    }
                }
            }
        }
        Ok(written)
    }

    /// About N/4 new subscriptions per team and quarter, for a quarter or a year.
    fn subscriptions<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut times = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Subscriptions);
                self.instants(
                    &mut rng,
                    self.scale / 4.0 * self.volume[ti][qi],
                    qi,
                    &mut times,
                );
                for &starts in &times {
                    number += 1;
                    let customer = self.pick_customer(&mut rng, ti, starts, 0.9);
                    let yearly = rng.random_bool(0.4);
                    let months = if yearly { 12 } else { 3 };
                    let fee = p.subscription * rng.random_range(0.6..1.4);
                    let amount = if yearly { fee * 4.0 * 0.9 } else { fee };
                    let amount = (amount / 10.0).round() * 10.0;
                    let ends = self.add_months(starts, months);
                    let renewed = rng.random_bool(p.renewal) && ends < self.until;
                    sink.write(
                        "subscriptions",
                        &[
                            ("id", Value::Text(format!("sb-{}-{number:06}", p.team))),
                            ("team", self.team(ti)),
                            ("customer", self.customer_ref(ti, customer)),
                            ("amount", Value::Real(amount)),
                            ("starts_at", Value::Time(starts)),
                            ("ends_at", Value::Time(ends)),
                            ("renewed", Value::Bool(renewed)),
                        ],
                    )?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    /// The same local day and time `months` later (the last moment of a shorter month).
    fn add_months(&self, t: Millis, months: i32) -> Millis {
        let from = self.cal.containing(Grain::Month, t);
        let here = self.cal.period(from);
        let there = self.cal.period(from.shift(months));
        (there.start + (t - here.start)).min(there.end - SECOND)
    }

    /// One forecast per team and quarter: the quarter's actual revenue off by up to the team's
    /// forecast error; for the open quarter, the recent run rate.
    fn forecasts<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            for qi in 0..QUARTERS {
                let q = &self.quarters[qi];
                let mut rng = self.rng(ti, qi, Stream::Forecasts);
                let model = self.scale * self.volume[ti][qi] * p.win * p.amount * 0.9;
                let basis = if q.span.end <= self.until {
                    self.revenue[ti][qi]
                } else if qi >= 2 {
                    (self.revenue[ti][qi - 1] + self.revenue[ti][qi - 2]) / 2.0 * (1.0 + p.growth)
                } else {
                    model
                };
                let basis = if basis > 0.0 { basis } else { model };
                let error = p.forecast_error * rng.random_range(0.3..1.0);
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                let amount = (basis * (1.0 + sign * error) / 1000.0).round() * 1000.0;
                let period = q.id.to_string();
                sink.write(
                    "forecasts",
                    &[
                        ("id", Value::Text(format!("f-{}-{period}", p.team))),
                        ("team", self.team(ti)),
                        ("period", Value::Text(period)),
                        ("amount", Value::Real(amount)),
                    ],
                )?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// One row per team per local day before `until`.
    fn web_traffic<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Traffic);
                let trend = (1.0 + p.growth).powf(qi as f64 - 3.5);
                for day in &self.days[self.quarters[qi].span.days.clone()] {
                    number += 1;
                    let weekday = if day.weekend { 0.75 } else { 1.0 };
                    let visits = (p.visits * weekday * trend * rng.random_range(0.85..1.15))
                        .round()
                        .max(1.0);
                    let leads =
                        (visits * p.traffic_conversion * rng.random_range(0.7..1.3)).round();
                    let source = if rng.random_bool(0.9) {
                        text(pick(&mut rng, &TRAFFIC_SOURCES))
                    } else {
                        Value::Null
                    };
                    sink.write(
                        "web_traffic",
                        &[
                            ("id", Value::Text(format!("w-{}-{number:06}", p.team))),
                            ("team", self.team(ti)),
                            ("day", Value::Time(day.start)),
                            ("source", source),
                            ("visits", Value::Int(visits as i64)),
                            ("leads", Value::Int(leads as i64)),
                        ],
                    )?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }
}

/// The local days whose midnight falls in [start, until), in order.
fn local_days(cal: &Calendar, start: Millis, until: Millis) -> Vec<Day> {
    // The quarter starts at a local midnight; find its date among the UTC date and its neighbours.
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

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn opt_time(t: Millis) -> Value {
    if t == Millis::MAX {
        Value::Null
    } else {
        Value::Time(t)
    }
}

/// Whole seconds, as milliseconds.
fn seconds(s: f64) -> Millis {
    (s as i64).saturating_mul(SECOND)
}

/// Roughly standard normal (Irwin–Hall with four terms).
fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let sum: f64 = (0..4).map(|_| rng.random::<f64>()).sum();
    (sum - 2.0) * 3f64.sqrt()
}

/// An integer score around `mean`, clamped to [lo, hi].
fn score(rng: &mut ChaCha8Rng, mean: f64, spread: f64, lo: i64, hi: i64) -> i64 {
    ((mean + spread * gauss(rng)).round() as i64).clamp(lo, hi)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Record = Vec<(String, Value)>;

    #[derive(Default)]
    struct VecSink(Vec<(String, Record)>);

    impl RecordSink for VecSink {
        type Error = std::convert::Infallible;
        fn write(&mut self, entity: &str, record: &[(&str, Value)]) -> Result<(), Self::Error> {
            let record = record
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            self.0.push((entity.to_owned(), record));
            Ok(())
        }
    }

    fn calendar() -> Calendar {
        Calendar::new("Asia/Shanghai", 1).unwrap()
    }

    /// 2026-08-15 10:00 in Shanghai: the eighth quarter is 2026-Q3, half gone.
    fn until(cal: &Calendar) -> Millis {
        cal.parse_time("2026-08-15 10:00:00").unwrap()
    }

    fn run(scale: u32, seed: u64) -> (VecSink, Vec<(&'static str, u64)>) {
        let cal = calendar();
        let opts = DemoOptions {
            scale,
            seed,
            until: until(&cal),
        };
        let mut sink = VecSink::default();
        let counts = generate(&opts, &cal, &mut sink).unwrap();
        (sink, counts)
    }

    fn get<'r>(record: &'r Record, field: &str) -> &'r Value {
        &record.iter().find(|(k, _)| k == field).unwrap().1
    }

    fn time(record: &Record, field: &str) -> Option<Millis> {
        match get(record, field) {
            Value::Time(t) => Some(*t),
            Value::Null => None,
            other => panic!("{field} is not a time: {other:?}"),
        }
    }

    fn text_of<'r>(record: &'r Record, field: &str) -> &'r str {
        match get(record, field) {
            Value::Text(s) => s,
            other => panic!("{field} is not text: {other:?}"),
        }
    }

    fn of<'s>(sink: &'s VecSink, entity: &'s str) -> impl Iterator<Item = &'s Record> + 's {
        sink.0
            .iter()
            .filter(move |(e, _)| e == entity)
            .map(|(_, r)| r)
    }

    #[test]
    fn same_options_give_identical_records() {
        let (a, ca) = run(12, 7);
        let (b, cb) = run(12, 7);
        assert_eq!(ca, cb);
        assert_eq!(a.0.len(), b.0.len());
        assert!(a.0 == b.0);
        let (c, _) = run(12, 8);
        assert!(a.0 != c.0, "another seed gives other data");
    }

    #[test]
    fn counts_match_records_and_teams_come_first() {
        let (sink, counts) = run(10, 1);
        assert_eq!(sink.0[0].0, "teams");
        assert_eq!(counts[0], ("teams", 10));
        for (entity, n) in &counts {
            assert_eq!(of(&sink, entity).count() as u64, *n, "{entity}");
            assert!(*n > 0, "{entity} is empty");
        }
        let total: u64 = counts.iter().map(|c| c.1).sum();
        assert_eq!(total, sink.0.len() as u64);
    }

    #[test]
    fn ids_are_unique_and_fields_uniform() {
        let (sink, counts) = run(10, 3);
        for (entity, _) in &counts {
            let mut ids: Vec<&str> = of(&sink, entity).map(|r| text_of(r, "id")).collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "{entity} ids repeat");
            let first: Vec<&String> = of(&sink, entity)
                .next()
                .unwrap()
                .iter()
                .map(|f| &f.0)
                .collect();
            for r in of(&sink, entity) {
                let fields: Vec<&String> = r.iter().map(|f| &f.0).collect();
                assert_eq!(fields, first, "{entity}");
            }
        }
    }

    #[test]
    fn no_time_at_or_after_until() {
        let cal = calendar();
        let until = until(&cal);
        let (sink, _) = run(10, 5);
        let first = cal
            .period(cal.containing(Grain::Quarter, until).shift(-7))
            .start;
        for (entity, record) in &sink.0 {
            for (field, value) in record {
                if let Value::Time(t) = value {
                    if entity == "subscriptions" && field == "ends_at" {
                        continue;
                    }
                    assert!(
                        *t < until,
                        "{entity}.{field} at {}",
                        crate::period::format_utc(*t)
                    );
                    assert!(*t >= first, "{entity}.{field} before the first quarter");
                }
            }
        }
    }

    #[test]
    fn deals_close_after_creation_and_stage_events_are_ordered() {
        let (sink, _) = run(20, 11);
        let mut deals = std::collections::BTreeMap::new();
        for d in of(&sink, "deals") {
            let created = time(d, "created_at").unwrap();
            let closed = time(d, "closed_at");
            let stage = text_of(d, "stage");
            assert_eq!(closed.is_some(), stage == "won" || stage == "lost", "{d:?}");
            if let Some(c) = closed {
                assert!(c >= created);
                let days = (c - created) as f64 / DAY as f64;
                assert!((10.0..=90.01).contains(&days), "cycle {days}");
            }
            let amount = match get(d, "amount") {
                Value::Real(a) => *a,
                _ => panic!(),
            };
            assert!((20_000.0..=200_000.0).contains(&amount));
            deals.insert(
                text_of(d, "id").to_owned(),
                (created, closed, stage.to_owned()),
            );
        }
        let mut events: std::collections::BTreeMap<String, Vec<(String, Millis)>> =
            Default::default();
        for e in of(&sink, "stage_events") {
            events
                .entry(text_of(e, "deal").to_owned())
                .or_default()
                .push((
                    text_of(e, "stage").to_owned(),
                    time(e, "entered_at").unwrap(),
                ));
        }
        assert_eq!(events.len(), deals.len(), "every deal has events");
        let order = ["lead", "qualified", "demo", "quote", "negotiation"];
        for (id, evs) in &events {
            let (created, closed, stage) = &deals[id];
            assert_eq!(evs[0], ("lead".to_owned(), *created));
            assert!(evs.windows(2).all(|w| w[0].1 < w[1].1), "{id}: {evs:?}");
            let last = evs.last().unwrap();
            assert_eq!(&last.0, stage);
            if let Some(c) = closed {
                assert_eq!(last.1, *c);
            }
            let progression: Vec<&str> = evs
                .iter()
                .map(|e| e.0.as_str())
                .filter(|s| *s != "won" && *s != "lost")
                .collect();
            assert_eq!(progression, order[..progression.len()]);
            if stage == "won" {
                assert_eq!(progression.len(), 5);
            }
        }
    }

    #[test]
    fn volumes_scale_with_n() {
        let (_, small) = run(10, 2);
        let (_, large) = run(40, 2);
        for ((entity, a), (_, b)) in small.iter().zip(&large) {
            let ratio = *b as f64 / *a as f64;
            match *entity {
                "deals" | "customers" | "activities" | "tickets" | "surveys" | "stage_events"
                | "subscriptions" => {
                    assert!((3.4..4.6).contains(&ratio), "{entity}: {a} → {b}")
                }
                _ => assert_eq!(a, b, "{entity} does not depend on the scale"),
            }
        }
        let deals = large.iter().find(|c| c.0 == "deals").unwrap().1 as f64;
        // 6 teams × 7.5 quarters × 40, give or take the volume factors.
        assert!(
            (6.0 * 7.5 * 40.0 * 0.85..6.0 * 7.5 * 40.0 * 1.15).contains(&deals),
            "{deals}"
        );
    }

    #[test]
    fn every_leaf_team_has_records_in_every_quarter() {
        let cal = calendar();
        let (sink, _) = run(4, 9);
        let last = cal.containing(Grain::Quarter, until(&cal));
        let quarters: Vec<_> = (0..8).map(|i| cal.period(last.shift(i - 7))).collect();
        for entity in [
            ("deals", "created_at"),
            ("customers", "created_at"),
            ("activities", "occurred_at"),
            ("tickets", "opened_at"),
            ("surveys", "answered_at"),
            ("subscriptions", "starts_at"),
            ("expenses", "spent_at"),
            ("web_traffic", "day"),
        ] {
            for p in &PROFILES {
                for q in &quarters {
                    let n = of(&sink, entity.0)
                        .filter(|r| text_of(r, "team") == p.team)
                        .filter(|r| q.contains(time(r, entity.1).unwrap()))
                        .count();
                    assert!(n > 0, "{} of {} in {}", entity.0, p.team, q.id);
                }
            }
        }
        for p in &PROFILES {
            let n = of(&sink, "forecasts")
                .filter(|r| text_of(r, "team") == p.team)
                .count();
            assert_eq!(n, 8);
        }
    }

    #[test]
    fn references_point_to_earlier_records_of_the_same_team() {
        let (sink, _) = run(10, 4);
        let customers: std::collections::BTreeMap<&str, (&str, Millis)> = of(&sink, "customers")
            .map(|c| {
                (
                    text_of(c, "id"),
                    (text_of(c, "team"), time(c, "created_at").unwrap()),
                )
            })
            .collect();
        let campaigns: std::collections::BTreeMap<&str, &str> = of(&sink, "campaigns")
            .map(|c| (text_of(c, "id"), text_of(c, "team")))
            .collect();
        let mut with_campaign = 0;
        let deals: Vec<&Record> = of(&sink, "deals").collect();
        for d in &deals {
            if let Value::Text(c) = get(d, "customer") {
                let (team, created) = customers[c.as_str()];
                assert_eq!(team, text_of(d, "team"));
                assert!(created < time(d, "created_at").unwrap());
            }
            if let Value::Text(c) = get(d, "campaign") {
                assert_eq!(campaigns[c.as_str()], text_of(d, "team"));
                with_campaign += 1;
            }
        }
        let share = with_campaign as f64 / deals.len() as f64;
        assert!((0.2..0.35).contains(&share), "{share}");
        for c in of(&sink, "campaigns") {
            let (budget, cost) = match (get(c, "budget"), get(c, "cost")) {
                (Value::Real(b), Value::Real(c)) => (*b, *c),
                _ => panic!(),
            };
            assert!(cost >= 0.74 * budget && cost <= 1.16 * budget);
            assert!(time(c, "started_at") < time(c, "ended_at"));
            match (get(c, "participants"), get(c, "leads")) {
                (Value::Int(p), Value::Int(l)) => assert!(l <= p),
                _ => panic!(),
            }
        }
    }

    #[test]
    fn strong_teams_beat_weak_ones() {
        let (sink, _) = run(40, 6);
        let win_rate = |team: &str| {
            let (mut won, mut lost) = (0.0, 0.0);
            for d in of(&sink, "deals").filter(|d| text_of(d, "team") == team) {
                match text_of(d, "stage") {
                    "won" => won += 1.0,
                    "lost" => lost += 1.0,
                    _ => {}
                }
            }
            won / (won + lost)
        };
        assert!(win_rate("shanghai") > 0.35, "{}", win_rate("shanghai"));
        assert!(win_rate("tianjin") < 0.25, "{}", win_rate("tianjin"));
        let nps = |team: &str| {
            let scores: Vec<i64> = of(&sink, "surveys")
                .filter(|s| text_of(s, "team") == team && text_of(s, "kind") == "nps")
                .map(|s| match get(s, "score") {
                    Value::Int(v) => *v,
                    _ => panic!(),
                })
                .collect();
            let promoters = scores.iter().filter(|&&s| s >= 9).count() as f64;
            let detractors = scores.iter().filter(|&&s| s <= 6).count() as f64;
            100.0 * (promoters - detractors) / scores.len() as f64
        };
        assert!(nps("shanghai") > 20.0, "{}", nps("shanghai"));
        assert!(nps("tianjin") < 0.0, "{}", nps("tianjin"));
    }
}
