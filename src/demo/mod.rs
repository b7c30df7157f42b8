//! The demo CRM: a deterministic generator of every entity of the default schema.
//!
//! `kpi demo` and `kpi serve --demo` fill a database with it, and the benchmark uses it at large
//! scale. It writes a small team tree (headquarters, three regions, six leaf teams), the people
//! of every team (owners with Chinese names; some join or leave during the demo), and eight
//! quarters of customers, deals with their stage history, activities, tickets, surveys, campaigns,
//! expenses, subscriptions, forecasts and web traffic, ending just before `until`. Customers,
//! deals, activities and tickets name the person of their team who owned them at their time.
//!
//! Each leaf team has a fixed quality profile ([`PROFILES`]): Shanghai and Shenzhen are strong,
//! Beijing solid, Hangzhou average, Guangzhou below average and Tianjin weak. The profile drives
//! win rates, deal sizes, cycle lengths, service times, survey scores, churn, renewals and campaign
//! efficiency, so that against sensible targets some teams meet them and some miss.
//!
//! Determinism: the same options and calendar give byte-identical records in the same order. Every
//! (team, quarter, entity) draws from its own ChaCha8 stream whose seed is derived from the demo
//! seed, the team and the quarter's start, so no stream depends on how much another one consumed.
//! Nothing iterates a hash map.
//!
//! Every field of an entity is always written, optional ones as `Value::Null`, so all records of
//! an entity have the same fields in the same order. No time is at or after `until`, with one
//! deliberate exception: a subscription's `ends_at` may lie in the future (a running contract).
//!
//! Memory stays small at any scale: only compact plans (customer creation and churn times,
//! campaign windows, per-quarter revenue) are kept; deals are planned per team and quarter into a
//! reused buffer, and planned again for the passes that need them (deals, then stage events).
//!
//! The files: `teams` (the tree and the profiles), `people` (who works in which team, and when),
//! `clock` (the eight quarters, their months and local days, random instants), `random` (the
//! streams and distributions), `world` (the state the entities share), then one file per entity
//! or family of entities.

mod activities;
mod campaigns;
mod clock;
mod customers;
mod deals;
mod expenses;
mod forecasts;
mod people;
mod random;
mod subscriptions;
mod surveys;
mod teams;
#[cfg(test)]
mod tests;
mod tickets;
mod web_traffic;
mod world;

pub use teams::{PROFILES, Profile, TEAMS};

use crate::period::{Calendar, Millis};
use crate::store::Value;
use world::World;

/// The scale `kpi demo` uses when none is given: about this many deals per team per quarter.
pub const DEFAULT_SCALE: u32 = 40;
/// The seed `kpi demo` uses when none is given.
pub const DEFAULT_SEED: u64 = 2026;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// About this many deals are created per leaf team per quarter.
    pub scale: u32,
    /// Same seed (and scale, until, calendar): same records.
    pub seed: u64,
    /// Exclusive end of the data: the eighth quarter is the one containing it.
    pub until: Millis,
}

/// Where generated records go (a database import, a file, a test vector).
pub trait RecordSink {
    type Error;
    fn write(&mut self, entity: &str, record: &[(&str, Value)]) -> Result<(), Self::Error>;
}

/// Writes the whole demo CRM through the sink, entity by entity, `teams` first. Returns counts per
/// entity, in the order written.
pub fn generate<S: RecordSink>(
    opts: &DemoOptions,
    cal: &Calendar,
    sink: &mut S,
) -> Result<Vec<(&'static str, u64)>, S::Error> {
    let mut world = World::new(opts, cal);
    let mut counts = Vec::with_capacity(13);
    counts.push(("teams", teams::write_teams(sink)?));
    counts.push(("owners", people::write_owners(&world.clock, sink)?));
    counts.push(("customers", world.customers(sink)?));
    world.plan_campaigns();
    world.tally_deals();
    counts.push(("campaigns", world.write_campaigns(sink)?));
    counts.push(("deals", world.deals(sink)?));
    counts.push(("stage_events", world.stage_events(sink)?));
    counts.push(("activities", world.activities(sink)?));
    counts.push(("tickets", world.tickets(sink)?));
    counts.push(("surveys", world.surveys(sink)?));
    counts.push(("expenses", world.expenses(sink)?));
    counts.push(("subscriptions", world.subscriptions(sink)?));
    counts.push(("forecasts", world.forecasts(sink)?));
    counts.push(("web_traffic", world.web_traffic(sink)?));
    Ok(counts)
}
