//! Subscriptions: about a quarter of the scale new contracts per team and quarter, for a quarter
//! or a year, renewed at the team's renewal rate once they ended.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::RecordSink;
use super::random::Stream;
use super::teams::PROFILES;
use super::world::World;
use crate::period::Millis;
use crate::store::Value;

impl World<'_> {
    pub(super) fn subscriptions<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        self.at_instants(
            sink,
            Stream::Subscriptions,
            |ti, qi| self.scale / 4.0 * self.volume[ti][qi],
            |rng, ti, number, starts, sink| self.subscription(rng, ti, number, starts, sink),
        )
    }

    fn subscription<S: RecordSink>(
        &self,
        rng: &mut ChaCha8Rng,
        ti: usize,
        number: usize,
        starts: Millis,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        let p = &PROFILES[ti];
        let customer = self.pick_customer(rng, ti, starts, 0.9);
        let yearly = rng.random_bool(0.4);
        let months = if yearly { 12 } else { 3 };
        let fee = p.subscription * rng.random_range(0.6..1.4);
        // A year paid at once costs four quarters less a tenth.
        let amount = if yearly { fee * 4.0 * 0.9 } else { fee };
        let amount = (amount / 10.0).round() * 10.0;
        let ends = self.clock.add_months(starts, months);
        let renewed = rng.random_bool(p.renewal) && ends < self.until();
        sink.write(
            "subscriptions",
            &[
                ("id", self.id("sb", ti, number)),
                ("team", self.team(ti)),
                ("customer", self.customer_ref(ti, customer)),
                ("amount", Value::Real(amount)),
                ("starts_at", Value::Time(starts)),
                ("ends_at", Value::Time(ends)),
                ("renewed", Value::Bool(renewed)),
            ],
        )
    }
}
