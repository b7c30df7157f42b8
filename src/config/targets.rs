//! `kpis/targets.toml`: a target per KPI, by team and period key.
//!
//! Resolution, most specific first: team + exact period, team + recurring key
//! (Q1..Q4 or a month 01..12), team default, then the same three without team.

use std::collections::BTreeMap;

use serde::Serialize;

use super::KpiIds;
use super::kpi::Direction;
use super::toml_doc::{Node, Reader, Source};
use crate::diag::Diagnostic;
use crate::period::PeriodId;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    pub target: f64,
    pub threshold: Option<f64>,
    pub stretch: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KpiTargets {
    pub by_key: BTreeMap<String, Target>,
    pub teams: BTreeMap<String, BTreeMap<String, Target>>,
    /// `[KPI.owners.ID]`: one person's targets by period key.
    pub owners: BTreeMap<String, BTreeMap<String, Target>>,
    /// `[KPI.per_owner]`: every person's default targets by period key.
    pub per_owner: BTreeMap<String, Target>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    pub kpis: BTreeMap<String, KpiTargets>,
}

/// Is `key` a period key: "default", "Q1".."Q4", "01".."12" or a period id?
pub fn valid_period_key(key: &str) -> bool {
    key == "default"
        || matches!(key, "Q1" | "Q2" | "Q3" | "Q4")
        || (key.len() == 2 && key.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m)))
        || key.parse::<PeriodId>().is_ok()
}

/// The keys to try for a period, most specific first.
pub fn period_keys(period: PeriodId) -> Vec<String> {
    let mut keys = vec![period.to_string()];
    keys.extend(period.recurring_key());
    keys.push("default".to_string());
    keys
}

/// Which table and key of targets.toml gave a target, e.g. `[revenue.teams.east]`, `"Q4"`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRule {
    pub table: String,
    pub key: String,
}

impl Targets {
    pub fn resolve(&self, kpi: &str, team: &str, period: PeriodId) -> Option<Target> {
        self.resolve_rule(kpi, team, period).map(|(t, _)| t)
    }

    /// A team's target and the rule it came from.
    pub fn resolve_rule(
        &self,
        kpi: &str,
        team: &str,
        period: PeriodId,
    ) -> Option<(Target, TargetRule)> {
        let t = self.kpis.get(kpi)?;
        let keys = period_keys(period);
        let team_table = format!("{kpi}.teams.{team}");
        t.teams
            .get(team)
            .and_then(|m| first_key(m, &keys, &team_table))
            .or_else(|| first_key(&t.by_key, &keys, kpi))
    }

    /// A person's target: the person's own keys, then `per_owner`, then (only
    /// for a KPI that does not accumulate) the KPI's keys without team. A
    /// team's total never becomes one person's target.
    pub fn resolve_owner(
        &self,
        kpi: &str,
        owner: &str,
        period: PeriodId,
        cumulative: bool,
    ) -> Option<Target> {
        self.resolve_owner_rule(kpi, owner, period, cumulative)
            .map(|(t, _)| t)
    }

    /// A person's target and the rule it came from.
    pub fn resolve_owner_rule(
        &self,
        kpi: &str,
        owner: &str,
        period: PeriodId,
        cumulative: bool,
    ) -> Option<(Target, TargetRule)> {
        let t = self.kpis.get(kpi)?;
        let keys = period_keys(period);
        t.owners
            .get(owner)
            .and_then(|m| first_key(m, &keys, &format!("{kpi}.owners.{owner}")))
            .or_else(|| first_key(&t.per_owner, &keys, &format!("{kpi}.per_owner")))
            .or_else(|| {
                (!cumulative)
                    .then(|| first_key(&t.by_key, &keys, kpi))
                    .flatten()
            })
    }

    /// Reads the file; `direction` tells each KPI's direction (None: unknown KPI).
    pub fn from_source(
        src: &Source,
        direction: &dyn Fn(&str) -> Option<Direction>,
        kpi_ids: &KpiIds,
    ) -> Result<Targets, Vec<Diagnostic>> {
        let doc = src.parse().map_err(|e| vec![e])?;
        let mut r = Reader::new(src);
        let mut targets = Targets::default();
        for (k, node) in doc.as_table().unwrap_or_default() {
            let Some(dir) = direction(&k.name) else {
                if let Some(m) = kpi_ids.unknown(&k.name) {
                    r.error(&k.span, format!("targets for {m}"));
                }
                continue;
            };
            if r.table(node, &format!("[{}]", k.name)).is_none() {
                continue;
            }
            targets
                .kpis
                .insert(k.name.clone(), read_kpi_targets(&mut r, &k.name, dir, node));
        }
        if r.errors.is_empty() {
            Ok(targets)
        } else {
            Err(r.errors)
        }
    }
}

fn read_kpi_targets(r: &mut Reader<'_>, kpi: &str, dir: Direction, node: &Node) -> KpiTargets {
    let mut out = KpiTargets::default();
    for (k, v) in node.as_table().unwrap_or_default() {
        if k.name == "teams" || k.name == "owners" {
            for (id, tnode) in r.table(v, &format!("{kpi}.{}", k.name)).unwrap_or_default() {
                let what = format!("{kpi}.{}.{}", k.name, id.name);
                let m = read_keys(r, kpi, dir, &what, tnode);
                match k.name.as_str() {
                    "teams" => out.teams.insert(id.name.clone(), m),
                    _ => out.owners.insert(id.name.clone(), m),
                };
            }
        } else if k.name == "per_owner" {
            out.per_owner = read_keys(r, kpi, dir, &format!("{kpi}.per_owner"), v);
        } else if let Some(t) = read_entry(r, kpi, dir, &k.name, &k.span, v) {
            out.by_key.insert(k.name.clone(), t);
        }
    }
    out
}

/// A table of period key → target (`[KPI.teams.ID]`, `[KPI.per_owner]`).
fn read_keys(
    r: &mut Reader<'_>,
    kpi: &str,
    dir: Direction,
    what: &str,
    node: &Node,
) -> BTreeMap<String, Target> {
    let mut m = BTreeMap::new();
    for (pk, pv) in r.table(node, what).unwrap_or_default() {
        if let Some(t) = read_entry(r, kpi, dir, &pk.name, &pk.span, pv) {
            m.insert(pk.name.clone(), t);
        }
    }
    m
}

fn read_entry(
    r: &mut Reader<'_>,
    kpi: &str,
    dir: Direction,
    key: &str,
    span: &std::ops::Range<usize>,
    v: &Node,
) -> Option<Target> {
    if !valid_period_key(key) {
        r.error(span, format!("bad key '{key}' in targets of {kpi}: use default, Q1..Q4, 01..12, a period id such as 2026-Q4, teams, owners or per_owner"));
        return None;
    }
    let t = if v.as_table().is_some() {
        r.deny_unknown(
            v,
            &format!("target {kpi}.{key}"),
            &["target", "threshold", "stretch"],
        );
        let Some(tn) = v.get("target") else {
            r.error(
                &v.span,
                format!("target {kpi}.{key} needs target = <number>"),
            );
            return None;
        };
        let num = |r: &mut Reader<'_>, k: &str| v.get(k).and_then(|n| r.number(n, k));
        Target {
            target: r.number(tn, "target")?,
            threshold: num(r, "threshold"),
            stretch: num(r, "stretch"),
        }
    } else {
        Target {
            target: r.number(v, &format!("target {kpi}.{key}"))?,
            threshold: None,
            stretch: None,
        }
    };
    if let Err(m) = check_target(&t, dir) {
        r.error(&v.span, format!("target {kpi}.{key}: {m}"));
        return None;
    }
    Some(t)
}

/// The largest magnitude of a target, threshold or stretch: beyond it score
/// arithmetic loses every digit (or overflows).
pub const MAX_TARGET: f64 = 1e15;

/// The rules of SPEC 7 that make a target scoreable, and finite, sensible numbers.
/// The first of `keys` (most specific first) that `table` holds.
fn first_key(
    map: &BTreeMap<String, Target>,
    keys: &[String],
    table: &str,
) -> Option<(Target, TargetRule)> {
    keys.iter().find_map(|k| {
        map.get(k).map(|t| {
            (
                *t,
                TargetRule {
                    table: format!("[{table}]"),
                    key: k.clone(),
                },
            )
        })
    })
}

pub fn check_target(t: &Target, dir: Direction) -> Result<(), String> {
    for (what, x) in [
        ("target", Some(t.target)),
        ("threshold", t.threshold),
        ("stretch", t.stretch),
    ] {
        if let Some(x) = x
            && (!x.is_finite() || x.abs() > MAX_TARGET)
        {
            return Err(format!(
                "{what} must be a finite number from -{MAX_TARGET:e} to {MAX_TARGET:e}, got {x}"
            ));
        }
    }
    if t.threshold.is_none() && t.stretch.is_none() && t.target <= 0.0 {
        return Err(format!(
            "a target-only score needs target > 0, got {}; add a threshold",
            t.target
        ));
    }
    if dir == Direction::Target {
        if t.stretch.is_some() {
            return Err(
                "stretch only applies to higher/lower KPIs; this one's direction is target".into(),
            );
        }
        if t.threshold.is_some_and(|th| th == t.target) {
            return Err("threshold must differ from target".into());
        }
        return Ok(());
    }
    let worse = |a: f64, b: f64| {
        if dir == Direction::Higher {
            a < b
        } else {
            a > b
        }
    };
    if let Some(th) = t.threshold
        && !worse(th, t.target)
    {
        return Err(format!(
            "threshold {th} must be worse than target {} for a '{}' KPI",
            t.target,
            dir.name()
        ));
    }
    if let Some(st) = t.stretch
        && !worse(t.target, st)
    {
        return Err(format!(
            "stretch {st} must be better than target {} for a '{}' KPI",
            t.target,
            dir.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Targets, Vec<Diagnostic>> {
        let dir = |id: &str| match id {
            "win_rate" => Some(Direction::Higher),
            "cac" => Some(Direction::Lower),
            _ => None,
        };
        Targets::from_source(
            &Source::new("kpis/targets.toml", text),
            &dir,
            &KpiIds {
                ids: vec!["win_rate", "cac"],
                complete: true,
            },
        )
    }

    #[test]
    fn resolves_most_specific_first() {
        let t = parse(
            "[win_rate]\ndefault = 0.25\n\"Q4\" = 0.30\n\"2026-Q4\" = { target = 0.32, threshold = 0.20, stretch = 0.40 }\n[win_rate.teams.north]\ndefault = 0.28\n\"Q1\" = 0.29\n",
        )
        .unwrap();
        let q = |s: &str| s.parse::<PeriodId>().unwrap();
        assert_eq!(
            t.resolve("win_rate", "south", q("2026-Q4")).unwrap().target,
            0.32
        );
        assert_eq!(
            t.resolve("win_rate", "south", q("2025-Q4")).unwrap().target,
            0.30
        );
        assert_eq!(
            t.resolve("win_rate", "south", q("2025-Q2")).unwrap().target,
            0.25
        );
        assert_eq!(
            t.resolve("win_rate", "north", q("2026-Q4")).unwrap().target,
            0.28,
            "team default beats a non-team exact key"
        );
        assert_eq!(
            t.resolve("win_rate", "north", q("2027-Q1")).unwrap().target,
            0.29
        );
        assert!(t.resolve("cac", "north", q("2027-Q1")).is_none());
    }

    #[test]
    fn reports_unknown_kpis_bad_keys_and_unscoreable_targets() {
        let errs = parse("[win_rat]\ndefault = 1\n[win_rate]\nQ5 = 1\n[cac]\ndefault = 0\n\"Q1\" = { target = 10, threshold = 5 }\n").unwrap_err();
        let m: Vec<String> = errs
            .iter()
            .map(|e| format!("{}:{}", e.line, e.message))
            .collect();
        assert!(
            m[0].starts_with("1:") && m[0].contains("did you mean 'win_rate'"),
            "{m:?}"
        );
        assert!(
            m[1].starts_with("4:") && m[1].contains("bad key 'Q5'"),
            "{m:?}"
        );
        assert!(
            m[2].starts_with("6:") && m[2].contains("needs target > 0"),
            "{m:?}"
        );
        assert!(
            m[3].starts_with("7:") && m[3].contains("threshold 5 must be worse"),
            "{m:?}"
        );
    }
}
