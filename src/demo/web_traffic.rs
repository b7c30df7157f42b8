//! Web traffic: one row per team per local day before `until`, with visits (fewer at weekends)
//! and the leads they brought at the team's conversion rate.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::{Day, QUARTERS};
use super::random::{Stream, maybe_pick};
use super::teams::{PROFILES, Profile};
use super::world::World;
use crate::store::Value;

const TRAFFIC_SOURCES: [(&str, f64); 4] = [
    ("web", 0.35),
    ("search", 0.35),
    ("social", 0.20),
    ("referral", 0.10),
];

impl World<'_> {
    pub(super) fn web_traffic<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Traffic);
                let trend = p.trend(qi);
                for day in &self.clock.days[self.clock.quarters[qi].span.days.clone()] {
                    number += 1;
                    let (visits, leads) = visits_and_leads(&mut rng, p, trend, day);
                    sink.write(
                        "web_traffic",
                        &[
                            ("id", self.id("w", ti, number)),
                            ("team", self.team(ti)),
                            ("day", Value::Time(day.start)),
                            ("source", maybe_pick(&mut rng, 0.9, &TRAFFIC_SOURCES)),
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

/// One day's visits (at least one) and the leads they brought.
fn visits_and_leads(rng: &mut ChaCha8Rng, p: &Profile, trend: f64, day: &Day) -> (f64, f64) {
    let weekday = if day.weekend { 0.75 } else { 1.0 };
    let visits = (p.visits * weekday * trend * rng.random_range(0.85..1.15))
        .round()
        .max(1.0);
    let leads = (visits * p.traffic_conversion * rng.random_range(0.7..1.3)).round();
    (visits, leads)
}
