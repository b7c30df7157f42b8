//! Surveys: NPS, CES and CSAT answers of customers, each kind about a third of the scale per
//! quarter, scored around the team's satisfaction.

use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::QUARTERS;
use super::random::{Stream, score};
use super::teams::{PROFILES, Profile};
use super::world::{World, text};
use crate::period::Millis;
use crate::store::Value;

/// One kind of survey: (kind, mean, spread, lowest, highest score).
type Kind = (&'static str, f64, f64, i64, i64);

/// The survey kinds of a team, their means set by its satisfaction.
fn kinds(p: &Profile) -> [Kind; 3] {
    let s = p.satisfaction;
    [
        ("nps", 5.0 + 4.5 * s, 1.8, 0, 10),
        ("ces", 3.0 + 3.5 * s, 1.1, 1, 7),
        ("csat", 2.4 + 2.4 * s, 0.8, 1, 5),
    ]
}

impl World<'_> {
    pub(super) fn surveys<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut times = Vec::new();
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            let mut number = 0;
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Surveys);
                let base = self.scale / 3.0 * self.volume[ti][qi];
                for kind in kinds(p) {
                    self.clock.instants(&mut rng, base, qi, &mut times);
                    for &at in &times {
                        number += 1;
                        self.survey(&mut rng, ti, number, kind, at, sink)?;
                    }
                    written += times.len() as u64;
                }
            }
        }
        Ok(written)
    }

    fn survey<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        number: usize,
        (kind, mean, spread, lo, hi): Kind,
        at: Millis,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let customer = self.pick_customer(rng, ti, at, 0.8);
        sink.write(
            "surveys",
            &[
                ("id", self.id("s", ti, number)),
                ("team", self.team(ti)),
                ("customer", self.customer_ref(ti, customer)),
                ("kind", text(kind)),
                ("score", Value::Int(score(rng, mean, spread, lo, hi))),
                ("answered_at", Value::Time(at)),
            ],
        )
    }
}
