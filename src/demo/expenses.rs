//! Expenses: a few bookings per category (marketing, sales, service, other) per team and month.
//! Marketing and sales spend follow the team's acquisition cost, service spend its active
//! customers, so that CAC and cost-to-serve KPIs tell the team's story.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::{QUARTERS, Span};
use super::random::Stream;
use super::teams::PROFILES;
use super::world::{World, text};
use crate::store::Value;

impl World<'_> {
    pub(super) fn expenses<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for ti in 0..PROFILES.len() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Expenses);
                for month in &self.clock.quarters[qi].months {
                    if month.days.is_empty() {
                        continue;
                    }
                    for (category, total) in self.monthly_spend(ti, qi, month) {
                        let total = total * month.frac() * rng.random_range(0.9..1.1);
                        for amount in split(&mut rng, total) {
                            number += 1;
                            sink.write(
                                "expenses",
                                &[
                                    ("id", self.id("ex", ti, number)),
                                    ("team", self.team(ti)),
                                    ("category", text(category)),
                                    ("amount", Value::Real(amount)),
                                    ("spent_at", Value::Time(self.clock.instant(&mut rng, month))),
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

    /// The typical spend of a whole month per category.
    fn monthly_spend(&self, ti: usize, qi: usize, month: &Span) -> [(&'static str, f64); 4] {
        let p = &PROFILES[ti];
        let vol = self.volume[ti][qi];
        let acquisition = p.cac * self.scale / 2.0 * vol / 3.0;
        let active = self.customers[ti].active_at(month.start) as f64;
        [
            ("marketing", 0.45 * acquisition),
            ("sales", 0.55 * acquisition),
            (
                "service",
                p.service_cost / 3.0 * active.max(self.scale / 4.0),
            ),
            ("other", 250.0 * self.scale * vol / 3.0),
        ]
    }
}

/// `total` split into two to four bookings of random shares, rounded to cents.
fn split(rng: &mut ChaCha8Rng, total: f64) -> impl Iterator<Item = f64> + use<> {
    let k: usize = rng.random_range(2..=4);
    let mut shares = [0.0; 4];
    for s in shares.iter_mut().take(k) {
        *s = rng.random_range(0.5..1.5);
    }
    let sum: f64 = shares.iter().sum();
    (0..k).map(move |i| (total * shares[i] / sum * 100.0).round() / 100.0)
}
