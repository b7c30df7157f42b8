//! Activities: calls, e-mails, meetings and visits of the team's reps, most of them with a
//! customer, about twice as many per quarter as deals.

use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::random::{Stream, pick};
use super::world::{World, text};
use crate::period::Millis;
use crate::store::Value;

const CHANNELS: [(&str, f64); 5] = [
    ("phone", 0.30),
    ("email", 0.30),
    ("social", 0.10),
    ("meeting", 0.15),
    ("visit", 0.15),
];

impl World<'_> {
    pub(super) fn activities<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        self.at_instants(
            sink,
            Stream::Activities,
            |ti, qi| 2.0 * self.scale * self.volume[ti][qi],
            |rng, ti, number, at, sink| self.activity(rng, ti, number, at, sink),
        )
    }

    fn activity<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        number: usize,
        at: Millis,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let customer = self.pick_customer(rng, ti, at, 0.85);
        sink.write(
            "activities",
            &[
                ("id", self.id("a", ti, number)),
                ("team", self.team(ti)),
                ("owner", self.owner(rng, ti, at)),
                ("customer", self.customer_ref(ti, customer)),
                ("channel", text(pick(rng, &CHANNELS))),
                ("occurred_at", Value::Time(at)),
            ],
        )
    }
}
