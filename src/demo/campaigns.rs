//! Campaigns: two per team and quarter, one early and one mid-quarter, with a budget, a cost,
//! participants and leads.
//!
//! A campaign's cost is set from the revenue its deals won (as marketing_roi counts it) and the
//! team's typical ROI, so ROI tracks the team's efficiency; hence campaigns are planned before
//! deals (deals name them) and written after the deals were tallied.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::{DAY, HOUR, QUARTERS, SECOND, Span};
use super::deals::{DealPlan, Outcome};
use super::random::{Stream, one_of};
use super::teams::{PROFILES, Profile};
use super::world::{World, text};
use crate::period::Millis;
use crate::store::Value;

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

/// When one campaign runs, and in which quarter (index) it started.
#[derive(Debug, Clone, Copy)]
pub(super) struct CampaignPlan {
    pub(super) quarter: usize,
    pub(super) start: Millis,
    pub(super) end: Millis,
}

impl World<'_> {
    /// Two campaigns per team and quarter: one early, one mid-quarter; a campaign that would not
    /// have ended before the quarter's end and `until` is left out.
    pub(super) fn plan_campaigns(&mut self) {
        self.campaigns = (0..PROFILES.len())
            .map(|ti| self.team_campaigns(ti))
            .collect();
    }

    fn team_campaigns(&self, ti: usize) -> Vec<CampaignPlan> {
        let mut plans = Vec::new();
        for qi in 0..QUARTERS {
            let span = &self.clock.quarters[qi].span;
            let mut rng = self.rng(ti, qi, Stream::CampaignPlan);
            let len_days = ((span.end - span.start) / DAY).max(30);
            for (from, to) in [
                (2, len_days * 30 / 100),
                (len_days * 45 / 100, len_days * 60 / 100),
            ] {
                let (start, end) = window(&mut rng, span, from, to);
                if end < span.end && end < self.until() {
                    plans.push(CampaignPlan {
                        quarter: qi,
                        start,
                        end,
                    });
                }
            }
        }
        plans
    }

    /// The campaign a deal came from, if any: one of the team's campaigns that started in the 60
    /// days before it. About 30% of deals have one; deals won before the end of the campaign's
    /// quarter (the revenue marketing_roi counts) are likelier to, so that ROI reflects the team's
    /// efficiency rather than noise even at small scales.
    pub(super) fn pick_campaign(
        &self,
        rng: &mut ChaCha8Rng,
        team: usize,
        d: &DealPlan,
    ) -> Option<u32> {
        let c = &self.campaigns[team];
        let hi = c.partition_point(|x| x.start <= d.created);
        let lo = c.partition_point(|x| x.start < d.created - 60 * DAY);
        if lo >= hi {
            return None;
        }
        let i = rng.random_range(lo..hi);
        let counts = d.outcome == Outcome::Won && d.closed < self.quarter_end(c[i].quarter);
        rng.random_bool(if counts { 0.6 } else { 0.27 })
            .then_some(i as u32)
    }

    /// Writes the planned campaigns, each with the spend its attributed revenue implies.
    pub(super) fn write_campaigns<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for ti in 0..PROFILES.len() {
            let plans = &self.campaigns[ti];
            let mut next = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::CampaignCost);
                while next < plans.len() && plans[next].quarter == qi {
                    self.campaign(&mut rng, ti, next, sink)?;
                    next += 1;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    /// The team's campaign number `index + 1`.
    fn campaign<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        index: usize,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let p = &PROFILES[ti];
        let plan = self.campaigns[ti][index];
        let vol = self.volume[ti][plan.quarter];
        // Without attributed revenue yet, spend what the team usually spends.
        let revenue = match self.attributed[ti][index] {
            r if r > 0.0 => r,
            _ => self.scale * vol * 0.15 * p.win * p.amount * 0.5,
        };
        let (budget, cost) = spend(rng, p, revenue);
        let (participants, leads) = reach(rng, p, self.scale * 1.5 * vol);
        let theme = one_of(rng, &CAMPAIGN_THEMES);
        let channel = if rng.random_bool(0.9) {
            text(one_of(rng, &CAMPAIGN_CHANNELS))
        } else {
            Value::Null
        };
        let name = format!("{} {theme}", self.clock.quarters[plan.quarter].id);
        sink.write(
            "campaigns",
            &[
                ("id", self.id("cp", ti, index + 1)),
                ("team", self.team(ti)),
                ("name", Value::Text(name)),
                ("channel", channel),
                ("budget", Value::Real(budget)),
                ("cost", Value::Real(cost)),
                ("participants", Value::Int(participants)),
                ("leads", Value::Int(leads)),
                ("started_at", Value::Time(plan.start)),
                ("ended_at", Value::Time(plan.end)),
            ],
        )
    }
}

/// A campaign window starting between `from` and `to` days into the span, in the morning, and
/// running two to five weeks.
fn window(rng: &mut ChaCha8Rng, span: &Span, from: i64, to: i64) -> (Millis, Millis) {
    let start = span.start
        + rng.random_range(from..to) * DAY
        + rng.random_range(9..12) * HOUR
        + rng.random_range(0..60) * 60 * SECOND;
    let end = start + rng.random_range(14..36) * DAY + rng.random_range(0..8) * HOUR;
    (start, end)
}

/// (budget, cost) for a campaign that brought `revenue`: the cost gives about the team's ROI,
/// the budget is the cost over the team's typical execution, in thousands.
fn spend(rng: &mut ChaCha8Rng, p: &Profile, revenue: f64) -> (f64, f64) {
    let roi = p.roi + rng.random_range(-0.25..0.25);
    let execution = (p.execution + rng.random_range(-0.05..0.05)).clamp(0.75, 1.15);
    let cost = revenue / (1.0 + roi);
    let budget = ((cost / execution / 1000.0).round() * 1000.0).max(1000.0);
    let cost = (budget * execution * 100.0).round() / 100.0;
    (budget, cost)
}

/// (participants, leads) around `typical` participants, at least ten.
fn reach(rng: &mut ChaCha8Rng, p: &Profile, typical: f64) -> (i64, i64) {
    let participants = (typical * rng.random_range(0.8..1.2)).round().max(10.0) as i64;
    let leads = ((participants as f64 * p.lead_rate * rng.random_range(0.85..1.15)).round() as i64)
        .min(participants);
    (participants, leads)
}
