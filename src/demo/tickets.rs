//! Support tickets: opened by customers, answered and resolved in times around the team's
//! typical service times, some never resolved, many rated once resolved.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::clock::seconds;
use super::random::{Stream, around, score};
use super::teams::PROFILES;
use super::world::World;
use crate::period::Millis;
use crate::store::Value;

impl World<'_> {
    pub(super) fn tickets<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        self.at_instants(
            sink,
            Stream::Tickets,
            |ti, qi| self.scale / 2.0 * self.volume[ti][qi],
            |rng, ti, number, opened, sink| self.ticket(rng, ti, number, opened, sink),
        )
    }

    fn ticket<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        number: usize,
        opened: Millis,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let p = &PROFILES[ti];
        let customer = self.pick_customer(rng, ti, opened, 0.9);
        let responded = rng.random_bool(0.96);
        let response_h = around(rng, p.response_hours, 0.6).clamp(1.0, 24.0);
        let resolved = !rng.random_bool(p.unresolved);
        let resolution_h = around(rng, p.resolution_hours, 0.6)
            .clamp(4.0, 120.0)
            .max(response_h + 0.25);
        let rated = rng.random_bool(0.6);
        let rating = score(rng, 2.3 + 2.5 * p.satisfaction, 0.9, 1, 5);
        let first_response = self.before_until(responded, opened + seconds(response_h * 3_600.0));
        let resolved_at = self.before_until(resolved, opened + seconds(resolution_h * 3_600.0));
        let rating = if rated && resolved_at != Value::Null {
            Value::Int(rating)
        } else {
            Value::Null
        };
        sink.write(
            "tickets",
            &[
                ("id", self.id("t", ti, number)),
                ("team", self.team(ti)),
                ("owner", self.owner(rng, ti, opened)),
                ("customer", self.customer_ref(ti, customer)),
                ("opened_at", Value::Time(opened)),
                ("first_response_at", first_response),
                ("resolved_at", resolved_at),
                ("rating", rating),
            ],
        )
    }

    /// `t` if it happened (`happens`) before `until`, else NULL.
    fn before_until(&self, happens: bool, t: Millis) -> Value {
        if happens && t < self.until() {
            Value::Time(t)
        } else {
            Value::Null
        }
    }
}
