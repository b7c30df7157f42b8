//! Deals and their stage history: each deal is planned (amount, outcome, how far it got, when
//! it entered each stage, its customer and campaign), then written as a deal and as the
//! stage_events of its progression.
//!
//! Planning is pure per (team, quarter), so the plans are made again for each pass that needs
//! them (the revenue tally, the deals, the stage events) instead of being kept.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::{QUARTERS, seconds};
use super::random::{Stream, around, pick};
use super::teams::{PROFILES, Profile};
use super::world::{World, text};
use crate::period::Millis;
use crate::store::Value;

/// The progression every deal follows until it is won, lost or still open.
const PROGRESSION: [&str; 5] = ["lead", "qualified", "demo", "quote", "negotiation"];

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) enum Outcome {
    #[default]
    Open,
    Won,
    Lost,
}

/// Everything about one deal, before it is turned into records.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DealPlan {
    pub(super) created: Millis,
    /// Entered-at times of PROGRESSION[..reached]; times[0] = created.
    times: [Millis; 5],
    reached: usize,
    pub(super) outcome: Outcome,
    /// Set when the outcome is Won or Lost.
    pub(super) closed: Millis,
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

    /// (stage, entered at) for each stage the deal entered, the close included.
    fn events(&self) -> impl Iterator<Item = (&'static str, Millis)> {
        let progression = PROGRESSION.into_iter().zip(self.times).take(self.reached);
        let close = match self.outcome {
            Outcome::Open => None,
            _ => Some((self.stage(), self.closed)),
        };
        progression.chain(close)
    }
}

impl World<'_> {
    /// Plans the deals one team created in one quarter, in creation order. Pure: planning the
    /// same (team, quarter) again gives the same deals.
    pub(super) fn plan_deals(&self, ti: usize, qi: usize, out: &mut Vec<DealPlan>) {
        out.clear();
        let p = &PROFILES[ti];
        let span = &self.clock.quarters[qi].span;
        let mut rng = self.rng(ti, qi, Stream::Deals);
        let n = span.count(&mut rng, self.scale * self.volume[ti][qi]);
        for _ in 0..n {
            let created = self.clock.instant(&mut rng, span);
            out.push(DealPlan {
                created,
                ..DealPlan::default()
            });
        }
        out.sort_unstable_by_key(|d| d.created);
        for d in out.iter_mut() {
            self.plan_deal(&mut rng, ti, p, d);
        }
    }

    /// Fills in a deal created at `d.created`.
    fn plan_deal(&self, rng: &mut ChaCha8Rng, ti: usize, p: &Profile, d: &mut DealPlan) {
        let drop_weights = [(1, 0.26), (2, 0.24), (3, p.demo_drop), (4, 0.16), (5, 0.12)];
        d.amount = (around(rng, p.amount, 0.45).clamp(20_000.0, 200_000.0) / 100.0).round() * 100.0;
        let won = rng.random_bool(p.win);
        let stalled = rng.random_bool(0.03);
        let dest: usize = if stalled {
            rng.random_range(1..=4)
        } else if won {
            5
        } else {
            pick(rng, &drop_weights)
        };
        let cycle_days = around(rng, p.cycle_days, 0.35).clamp(10.0, 90.0);
        let cycle = seconds(cycle_days * 86_400.0);
        self.plan_stages(rng, d, dest, cycle);
        let closed = d.created + cycle;
        if !stalled && closed < self.until() {
            d.outcome = if won { Outcome::Won } else { Outcome::Lost };
            d.closed = closed;
        }
        d.customer = self.pick_customer(rng, ti, d.created, 0.9);
        d.campaign = self.pick_campaign(rng, ti, d);
    }

    /// Splits the cycle into `dest` segments of random length: dest − 1 stage changes, then the
    /// close; the deal reaches the stages entered before `until`.
    fn plan_stages(&self, rng: &mut ChaCha8Rng, d: &mut DealPlan, dest: usize, cycle: Millis) {
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
            .take_while(|&&t| t < self.until())
            .count();
    }

    /// Plans every deal once to learn the revenue per quarter and per campaign, which forecasts
    /// and campaign costs are built from.
    pub(super) fn tally_deals(&mut self) {
        let mut buf = Vec::new();
        let mut revenue = vec![[0.0; QUARTERS]; PROFILES.len()];
        let mut attributed: Vec<Vec<f64>> =
            self.campaigns.iter().map(|c| vec![0.0; c.len()]).collect();
        for ti in 0..PROFILES.len() {
            for qi in 0..QUARTERS {
                self.plan_deals(ti, qi, &mut buf);
                for d in buf.iter().filter(|d| d.outcome == Outcome::Won) {
                    if let Some(cq) = self.clock.quarter_of(d.closed) {
                        revenue[ti][cq] += d.amount;
                    }
                    if let Some(c) = d.campaign {
                        let plan = &self.campaigns[ti][c as usize];
                        if d.closed < self.quarter_end(plan.quarter) {
                            attributed[ti][c as usize] += d.amount;
                        }
                    }
                }
            }
        }
        self.revenue = revenue;
        self.attributed = attributed;
    }

    pub(super) fn deals<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut buf = Vec::new();
        let mut written = 0;
        for ti in 0..PROFILES.len() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                self.plan_deals(ti, qi, &mut buf);
                let mut rng = self.rng(ti, qi, Stream::DealOwners);
                for d in &buf {
                    number += 1;
                    self.deal(&mut rng, ti, number, d, sink)?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    /// The team's deal number `number`, its owner drawn from `rng`.
    fn deal<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        number: usize,
        d: &DealPlan,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let closed = match d.outcome {
            Outcome::Open => Value::Null,
            _ => Value::Time(d.closed),
        };
        let campaign = match d.campaign {
            Some(c) => self.id("cp", ti, c as usize + 1),
            None => Value::Null,
        };
        sink.write(
            "deals",
            &[
                ("id", self.id("d", ti, number)),
                ("team", self.team(ti)),
                ("owner", self.deal_owner(rng, ti, d.created)),
                ("customer", self.customer_ref(ti, d.customer)),
                ("stage", text(d.stage())),
                ("amount", Value::Real(d.amount)),
                ("created_at", Value::Time(d.created)),
                ("closed_at", closed),
                ("campaign", campaign),
            ],
        )
    }

    /// One event each time a deal entered a stage, deals in the order of their ids.
    pub(super) fn stage_events<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut buf = Vec::new();
        let mut written = 0;
        for ti in 0..PROFILES.len() {
            let mut deal = 0;
            let mut number = 0;
            for qi in 0..QUARTERS {
                self.plan_deals(ti, qi, &mut buf);
                for d in &buf {
                    deal += 1;
                    for (stage, at) in d.events() {
                        number += 1;
                        sink.write(
                            "stage_events",
                            &[
                                ("id", self.id("ev", ti, number)),
                                ("team", self.team(ti)),
                                ("deal", self.id("d", ti, deal)),
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
}
