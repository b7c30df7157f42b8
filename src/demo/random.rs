//! The demo's randomness: one independent stream per (team, quarter, purpose), and the few
//! distributions the generators draw from.
//!
//! A stream's seed is derived from the demo seed, the team and the quarter's start (not its
//! index), so adding a draw to one stream never shifts another, and the same quarter gives the
//! same records whatever `until` says about the quarters around it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::world::text;
use crate::period::Millis;
use crate::store::Value;

/// The independent random streams of one (team, quarter).
#[derive(Clone, Copy)]
pub(super) enum Stream {
    Volume = 1,
    Customers,
    CampaignPlan,
    CampaignCost,
    Deals,
    DealOwners,
    Activities,
    Tickets,
    Surveys,
    Expenses,
    Subscriptions,
    Forecasts,
    Traffic,
}

/// The stream of one (team, quarter, purpose), the quarter given by its start.
pub(super) fn stream(seed: u64, team: usize, quarter_start: Millis, purpose: Stream) -> ChaCha8Rng {
    let mut h = splitmix(seed ^ 0x6b70_692d_6465_6d6f);
    h = splitmix(h ^ team as u64);
    h = splitmix(h ^ quarter_start as u64);
    h = splitmix(h ^ purpose as u64);
    ChaCha8Rng::seed_from_u64(h)
}

/// Roughly standard normal (Irwin–Hall with four terms).
pub(super) fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let sum: f64 = (0..4).map(|_| rng.random::<f64>()).sum();
    (sum - 2.0) * 3f64.sqrt()
}

/// `typical` scaled by a log-normal factor of the given spread (`typical · e^(spread·N(0,1))`).
pub(super) fn around(rng: &mut ChaCha8Rng, typical: f64, spread: f64) -> f64 {
    typical * (spread * gauss(rng)).exp()
}

/// An integer score around `mean`, clamped to [lo, hi].
pub(super) fn score(rng: &mut ChaCha8Rng, mean: f64, spread: f64, lo: i64, hi: i64) -> i64 {
    ((mean + spread * gauss(rng)).round() as i64).clamp(lo, hi)
}

/// One of the items, by weight.
pub(super) fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// One of the items, each as likely.
pub(super) fn one_of<'i>(rng: &mut ChaCha8Rng, items: &[&'i str]) -> &'i str {
    items[rng.random_range(0..items.len())]
}

/// With probability `p` one of the weighted items as text, else NULL (an optional field).
pub(super) fn maybe_pick(rng: &mut ChaCha8Rng, p: f64, items: &[(&str, f64)]) -> Value {
    if rng.random_bool(p) {
        text(pick(rng, items))
    } else {
        Value::Null
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
