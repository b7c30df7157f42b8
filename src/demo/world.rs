//! The state every generator shares: the options, the clock, the random streams, the volume of
//! each team and quarter, and the plans later entities are built from (customers, campaigns, the
//! revenue won per quarter and per campaign); and the helpers that make common field values.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::campaigns::CampaignPlan;
use super::clock::{Clock, QUARTERS};
use super::customers::Customers;
use super::people::People;
use super::random::{Stream, stream};
use super::teams::PROFILES;
use super::{DemoOptions, RecordSink};
use crate::period::{Calendar, Millis};
use crate::store::Value;

/// The demo being generated. Team indexes are indexes into [`PROFILES`].
pub(super) struct World<'a> {
    pub(super) clock: Clock<'a>,
    pub(super) scale: f64,
    seed: u64,
    /// Leaf team ids, as in PROFILES.
    team_ids: Vec<String>,
    /// Who held which seat of each team when.
    people: People,
    /// Volume factor per team and quarter.
    pub(super) volume: Vec<[f64; QUARTERS]>,
    /// Set by `customers`.
    pub(super) customers: Vec<Customers>,
    /// Set by `plan_campaigns`.
    pub(super) campaigns: Vec<Vec<CampaignPlan>>,
    /// Won revenue closed in each quarter, per team (set by `tally_deals`).
    pub(super) revenue: Vec<[f64; QUARTERS]>,
    /// Won revenue attributed to each campaign the way marketing_roi counts it (set by
    /// `tally_deals`).
    pub(super) attributed: Vec<Vec<f64>>,
}

impl<'a> World<'a> {
    pub(super) fn new(opts: &DemoOptions, cal: &'a Calendar) -> World<'a> {
        let clock = Clock::new(cal, opts.until);
        let mut world = World {
            people: People::new(&clock),
            clock,
            scale: f64::from(opts.scale),
            seed: opts.seed,
            team_ids: PROFILES.iter().map(|p| p.team.to_owned()).collect(),
            volume: Vec::new(),
            customers: Vec::new(),
            campaigns: Vec::new(),
            revenue: vec![[0.0; QUARTERS]; PROFILES.len()],
            attributed: Vec::new(),
        };
        world.volume = (0..PROFILES.len()).map(|ti| world.volumes(ti)).collect();
        world
    }

    /// The team's volume factor per quarter: its size, trend and some noise.
    fn volumes(&self, ti: usize) -> [f64; QUARTERS] {
        let p = &PROFILES[ti];
        let mut v = [0.0; QUARTERS];
        for (qi, slot) in v.iter_mut().enumerate() {
            let mut rng = self.rng(ti, qi, Stream::Volume);
            let noise = rng.random_range(0.95..1.05);
            *slot = (p.size * p.trend(qi) * noise).clamp(0.8, 1.2);
        }
        v
    }

    /// The stream of one (team, quarter, purpose). Keyed by the quarter's start, not its index.
    pub(super) fn rng(&self, team: usize, quarter: usize, purpose: Stream) -> ChaCha8Rng {
        stream(
            self.seed,
            team,
            self.clock.quarters[quarter].span.start,
            purpose,
        )
    }

    /// Exclusive end of the data.
    pub(super) fn until(&self) -> Millis {
        self.clock.until
    }

    /// The end of quarter `qi`.
    pub(super) fn quarter_end(&self, qi: usize) -> Millis {
        self.clock.quarters[qi].span.end
    }

    /// Writes one kind of record at sorted random instants for every team and quarter, about
    /// `base(team, quarter)` per full quarter, numbered per team from 1. `record(rng, team,
    /// number, at, sink)` writes one, drawing from the (team, quarter) stream after the instants.
    /// Returns how many were written.
    pub(super) fn at_instants<S: RecordSink>(
        &self,
        sink: &mut S,
        purpose: Stream,
        base: impl Fn(usize, usize) -> f64,
        mut record: impl FnMut(&mut ChaCha8Rng, usize, usize, Millis, &mut S) -> Result<(), S::Error>,
    ) -> Result<u64, S::Error> {
        let mut times = Vec::new();
        let mut written = 0;
        for ti in 0..PROFILES.len() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, purpose);
                self.clock.instants(&mut rng, base(ti, qi), qi, &mut times);
                for &at in &times {
                    number += 1;
                    record(&mut rng, ti, number, at, sink)?;
                }
                written += times.len() as u64;
            }
        }
        Ok(written)
    }

    /// The owner of a record of the team made at `at`: one of the people holding a seat then.
    /// The one record in twenty that no rep is drawn for falls to the team lead (seat 1).
    pub(super) fn owner(&self, rng: &mut ChaCha8Rng, team: usize, at: Millis) -> Value {
        if rng.random_bool(0.95) {
            self.rep(rng, team, at)
        } else {
            self.people.holder(team, 0, at)
        }
    }

    /// The owner of a deal the team made at `at`: as [`World::owner`], but the one deal in
    /// twenty that no rep is drawn for has no owner, as in CRM exports.
    pub(super) fn deal_owner(&self, rng: &mut ChaCha8Rng, team: usize, at: Millis) -> Value {
        if rng.random_bool(0.95) {
            self.rep(rng, team, at)
        } else {
            Value::Null
        }
    }

    /// Whoever held a random seat of the team at `at`.
    fn rep(&self, rng: &mut ChaCha8Rng, team: usize, at: Millis) -> Value {
        let seat = rng.random_range(0..self.people.seats(team));
        self.people.holder(team, seat, at)
    }

    /// The team's id, as a field value.
    pub(super) fn team(&self, team: usize) -> Value {
        Value::Text(self.team_ids[team].clone())
    }

    /// The id of a team's record: `<prefix>-<team>-<number, six digits>`.
    pub(super) fn id(&self, prefix: &str, team: usize, number: usize) -> Value {
        Value::Text(format!("{prefix}-{}-{number:06}", self.team_ids[team]))
    }
}

/// A text field value.
pub(super) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// A time field value; `Millis::MAX` (never) is NULL.
pub(super) fn opt_time(t: Millis) -> Value {
    if t == Millis::MAX {
        Value::Null
    } else {
        Value::Time(t)
    }
}
