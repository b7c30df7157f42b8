//! Customers: created through every quarter with a company name, a source and a segment, and
//! lost after an exponential lifetime set by the team's churn rate.
//!
//! The creation and churn times are kept as a plan ([`Customers`]), so that deals, activities,
//! tickets, surveys and subscriptions can name a customer who exists at their time, and expenses
//! can follow the number of active customers.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::{DAY, QUARTER_MS, QUARTERS, seconds};
use super::random::{Stream, maybe_pick, one_of};
use super::teams::PROFILES;
use super::world::{World, opt_time};
use crate::period::Millis;
use crate::store::Value;

const SOURCES: [(&str, f64); 6] = [
    ("web", 0.30),
    ("event", 0.15),
    ("partner", 0.15),
    ("phone", 0.10),
    ("referral", 0.20),
    ("other", 0.10),
];
const SEGMENTS: [(&str, f64); 3] = [("smb", 0.60), ("mid", 0.30), ("enterprise", 0.10)];
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

/// Customers of one team, in creation order (index = id number − 1).
#[derive(Default)]
pub(super) struct Customers {
    created: Vec<Millis>,
    /// `Millis::MAX` when the customer has not churned before `until`.
    churned: Vec<Millis>,
    /// The churn times that are set, ascending.
    churned_sorted: Vec<Millis>,
}

impl Customers {
    /// How many customers exist and have not churned at `t`.
    pub(super) fn active_at(&self, t: Millis) -> usize {
        self.created.partition_point(|&c| c < t) - self.churned_sorted.partition_point(|&c| c < t)
    }
}

impl World<'_> {
    /// Writes every team's customers and keeps their plans.
    pub(super) fn customers<S: RecordSink>(&mut self, sink: &mut S) -> Result<u64, S::Error> {
        let mut all = Vec::with_capacity(PROFILES.len());
        let mut written = 0;
        for ti in 0..PROFILES.len() {
            let plan = self.team_customers(ti, sink)?;
            written += plan.created.len() as u64;
            all.push(plan);
        }
        self.customers = all;
        Ok(written)
    }

    fn team_customers<S: RecordSink>(
        &self,
        ti: usize,
        sink: &mut S,
    ) -> Result<Customers, S::Error> {
        let p = &PROFILES[ti];
        let mut plan = Customers::default();
        let mut times = Vec::new();
        // Exponential lifetimes with the team's quarterly churn probability.
        let hazard = -(1.0 - p.churn).ln() / QUARTER_MS;
        for qi in 0..QUARTERS {
            let mut rng = self.rng(ti, qi, Stream::Customers);
            let base = self.scale / 2.0 * self.volume[ti][qi];
            self.clock.instants(&mut rng, base, qi, &mut times);
            for &created in &times {
                self.customer(&mut rng, ti, hazard, created, &mut plan, sink)?;
            }
        }
        plan.churned_sorted.sort_unstable();
        Ok(plan)
    }

    /// One customer created at `created`, written and added to the plan.
    fn customer<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        hazard: f64,
        created: Millis,
        plan: &mut Customers,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let number = plan.created.len() + 1;
        let name = company_name(rng);
        let source = maybe_pick(rng, 0.9, &SOURCES);
        let segment = maybe_pick(rng, 0.95, &SEGMENTS);
        let owner = self.owner(rng, ti, created);
        let life = -(1.0 - rng.random::<f64>()).ln() / hazard;
        let churned = created.saturating_add(seconds(life / 1000.0).max(DAY));
        let churned = if churned < self.until() {
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
                ("id", self.id("c", ti, number)),
                ("team", self.team(ti)),
                ("owner", owner),
                ("name", Value::Text(name)),
                ("source", source),
                ("segment", segment),
                ("created_at", Value::Time(created)),
                ("churned_at", opt_time(churned)),
            ],
        )
    }

    /// The id of one of the team's customers (index = id number − 1), or NULL.
    pub(super) fn customer_ref(&self, team: usize, customer: Option<u32>) -> Value {
        match customer {
            Some(c) => self.id("c", team, c as usize + 1),
            None => Value::Null,
        }
    }

    /// A customer of the team created before `t` and not churned by then, with probability `p`.
    /// Half the picks favour recent customers.
    pub(super) fn pick_customer(
        &self,
        rng: &mut ChaCha8Rng,
        team: usize,
        t: Millis,
        p: f64,
    ) -> Option<u32> {
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
}

/// A Chinese or an English company name.
fn company_name(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.55) {
        let a = one_of(rng, &CN_PREFIXES);
        let b = one_of(rng, &CN_SUFFIXES);
        format!("{a}{b}")
    } else {
        let a = one_of(rng, &EN_PREFIXES);
        let b = one_of(rng, &EN_SUFFIXES);
        format!("{a} {b}")
    }
}
