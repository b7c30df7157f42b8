//! Forecasts: one per team and quarter, the quarter's actual won revenue off by up to the team's
//! forecast error; for the open quarter, the recent run rate.

use rand::Rng;

use super::RecordSink;
use super::clock::QUARTERS;
use super::random::Stream;
use super::teams::PROFILES;
use super::world::World;
use crate::store::Value;

impl World<'_> {
    pub(super) fn forecasts<S: RecordSink>(&self, sink: &mut S) -> Result<u64, S::Error> {
        let mut written = 0;
        for (ti, p) in PROFILES.iter().enumerate() {
            for qi in 0..QUARTERS {
                let mut rng = self.rng(ti, qi, Stream::Forecasts);
                let basis = self.forecast_basis(ti, qi);
                let error = p.forecast_error * rng.random_range(0.3..1.0);
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                let amount = (basis * (1.0 + sign * error) / 1000.0).round() * 1000.0;
                let period = self.clock.quarters[qi].id.to_string();
                sink.write(
                    "forecasts",
                    &[
                        ("id", Value::Text(format!("f-{}-{period}", p.team))),
                        ("team", self.team(ti)),
                        ("period", Value::Text(period)),
                        ("amount", Value::Real(amount)),
                    ],
                )?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// What the forecast of quarter `qi` is made from: the revenue won in a closed quarter, the
    /// run rate of the two before an open one, or (without revenue) what the profile expects.
    fn forecast_basis(&self, ti: usize, qi: usize) -> f64 {
        let p = &PROFILES[ti];
        let revenue = &self.revenue[ti];
        let model = self.scale * self.volume[ti][qi] * p.win * p.amount * 0.9;
        let basis = if self.quarter_end(qi) <= self.until() {
            revenue[qi]
        } else if qi >= 2 {
            (revenue[qi - 1] + revenue[qi - 2]) / 2.0 * (1.0 + p.growth)
        } else {
            model
        };
        if basis > 0.0 { basis } else { model }
    }
}
