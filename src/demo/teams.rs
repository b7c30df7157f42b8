//! The demo's organisation: the team tree and how each leaf team performs.
//!
//! The profiles are the only knobs of the demo's story: every generator reads its means and rates
//! from here, so that a team's strengths and weaknesses show in every KPI the same way.

use super::RecordSink;
use super::world::text;
use crate::store::Value;

/// The team tree: (id, name, parent). Records belong to the leaves only.
pub const TEAMS: [(&str, &str, Option<&str>); 10] = [
    ("hq", "总部 Headquarters", None),
    ("east", "华东大区 East", Some("hq")),
    ("north", "华北大区 North", Some("hq")),
    ("south", "华南大区 South", Some("hq")),
    ("shanghai", "上海一部 Shanghai", Some("east")),
    ("hangzhou", "杭州 Hangzhou", Some("east")),
    ("beijing", "北京 Beijing", Some("north")),
    ("tianjin", "天津 Tianjin", Some("north")),
    ("guangzhou", "广州 Guangzhou", Some("south")),
    ("shenzhen", "深圳 Shenzhen", Some("south")),
];

/// How a leaf team performs. Means and rates; the generator adds noise around them.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub team: &'static str,
    /// Volume relative to the scale (deals, customers, activities, tickets, surveys).
    pub size: f64,
    /// Volume growth per quarter.
    pub growth: f64,
    /// Share of closed deals that are won.
    pub win: f64,
    /// Typical deal amount (log-normal around it, clamped to 20k–200k).
    pub amount: f64,
    /// Typical days from creation to close (clamped to 10–90).
    pub cycle_days: f64,
    /// Relative weight of losing a deal right after the demo (drives demo → quote).
    pub demo_drop: f64,
    /// Typical hours to a ticket's first response (clamped to 1–24).
    pub response_hours: f64,
    /// Typical hours to resolve a ticket (clamped to 4–120).
    pub resolution_hours: f64,
    /// Share of tickets never resolved.
    pub unresolved: f64,
    /// 0..1: drives NPS, CES, CSAT and ticket ratings.
    pub satisfaction: f64,
    /// Probability that a customer churns within a quarter.
    pub churn: f64,
    /// Probability that a subscription is renewed.
    pub renewal: f64,
    /// Typical campaign ROI, (revenue − cost) ÷ cost.
    pub roi: f64,
    /// Typical cost ÷ budget of a campaign.
    pub execution: f64,
    /// Campaign leads ÷ participants.
    pub lead_rate: f64,
    /// Web leads ÷ visits.
    pub traffic_conversion: f64,
    /// Typical web visits a day.
    pub visits: f64,
    /// Largest relative error of the team's quarterly forecast.
    pub forecast_error: f64,
    /// Marketing + sales spend per new customer.
    pub cac: f64,
    /// Service spend per active customer per quarter.
    pub service_cost: f64,
    /// Typical quarterly subscription fee.
    pub subscription: f64,
}

impl Profile {
    /// The team's volume trend in quarter `qi` (0 = the oldest), 1 in the middle of the eight.
    pub(super) fn trend(&self, qi: usize) -> f64 {
        (1.0 + self.growth).powf(qi as f64 - 3.5)
    }
}

/// The six leaf teams, strongest first.
pub const PROFILES: [Profile; 6] = [
    Profile {
        team: "shanghai",
        size: 1.08,
        growth: 0.03,
        win: 0.42,
        amount: 115_000.0,
        cycle_days: 32.0,
        demo_drop: 0.08,
        response_hours: 2.5,
        resolution_hours: 16.0,
        unresolved: 0.03,
        satisfaction: 0.85,
        churn: 0.02,
        renewal: 0.88,
        roi: 2.2,
        execution: 0.98,
        lead_rate: 0.32,
        traffic_conversion: 0.038,
        visits: 130.0,
        forecast_error: 0.06,
        cac: 9_000.0,
        service_cost: 600.0,
        subscription: 12_000.0,
    },
    Profile {
        team: "shenzhen",
        size: 1.04,
        growth: 0.03,
        win: 0.39,
        amount: 98_000.0,
        cycle_days: 36.0,
        demo_drop: 0.10,
        response_hours: 3.5,
        resolution_hours: 20.0,
        unresolved: 0.04,
        satisfaction: 0.80,
        churn: 0.025,
        renewal: 0.85,
        roi: 1.8,
        execution: 1.00,
        lead_rate: 0.30,
        traffic_conversion: 0.035,
        visits: 125.0,
        forecast_error: 0.08,
        cac: 10_000.0,
        service_cost: 650.0,
        subscription: 11_000.0,
    },
    Profile {
        team: "beijing",
        size: 1.00,
        growth: 0.02,
        win: 0.33,
        amount: 88_000.0,
        cycle_days: 45.0,
        demo_drop: 0.16,
        response_hours: 6.0,
        resolution_hours: 30.0,
        unresolved: 0.06,
        satisfaction: 0.65,
        churn: 0.035,
        renewal: 0.78,
        roi: 1.1,
        execution: 0.95,
        lead_rate: 0.24,
        traffic_conversion: 0.030,
        visits: 115.0,
        forecast_error: 0.12,
        cac: 12_000.0,
        service_cost: 750.0,
        subscription: 10_000.0,
    },
    Profile {
        team: "hangzhou",
        size: 0.96,
        growth: 0.02,
        win: 0.29,
        amount: 70_000.0,
        cycle_days: 50.0,
        demo_drop: 0.22,
        response_hours: 8.0,
        resolution_hours: 40.0,
        unresolved: 0.08,
        satisfaction: 0.58,
        churn: 0.045,
        renewal: 0.72,
        roi: 0.7,
        execution: 1.06,
        lead_rate: 0.21,
        traffic_conversion: 0.027,
        visits: 105.0,
        forecast_error: 0.15,
        cac: 13_500.0,
        service_cost: 800.0,
        subscription: 8_500.0,
    },
    Profile {
        team: "guangzhou",
        size: 0.94,
        growth: 0.01,
        win: 0.25,
        amount: 62_000.0,
        cycle_days: 58.0,
        demo_drop: 0.30,
        response_hours: 11.0,
        resolution_hours: 55.0,
        unresolved: 0.10,
        satisfaction: 0.48,
        churn: 0.055,
        renewal: 0.66,
        roi: 0.35,
        execution: 1.10,
        lead_rate: 0.18,
        traffic_conversion: 0.024,
        visits: 100.0,
        forecast_error: 0.18,
        cac: 15_000.0,
        service_cost: 900.0,
        subscription: 7_500.0,
    },
    Profile {
        team: "tianjin",
        size: 0.90,
        growth: -0.01,
        win: 0.18,
        amount: 48_000.0,
        cycle_days: 68.0,
        demo_drop: 0.40,
        response_hours: 15.0,
        resolution_hours: 75.0,
        unresolved: 0.14,
        satisfaction: 0.33,
        churn: 0.075,
        renewal: 0.58,
        roi: -0.15,
        execution: 0.82,
        lead_rate: 0.14,
        traffic_conversion: 0.021,
        visits: 90.0,
        forecast_error: 0.25,
        cac: 17_000.0,
        service_cost: 1_000.0,
        subscription: 6_500.0,
    },
];

/// Writes the team tree, parents before children.
pub(super) fn write_teams<S: RecordSink>(sink: &mut S) -> Result<u64, S::Error> {
    for (id, name, parent) in TEAMS {
        sink.write(
            "teams",
            &[
                ("id", text(id)),
                ("name", text(name)),
                ("parent", parent.map_or(Value::Null, text)),
            ],
        )?;
    }
    Ok(TEAMS.len() as u64)
}
