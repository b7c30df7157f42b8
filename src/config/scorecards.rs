//! `kpis/scorecards.toml`: scorecards, their teams, cap and weight sets.

use super::KpiIds;
use super::kpi::read_labels;
use super::targets::{period_keys, valid_period_key};
use super::toml_doc::{Node, Reader, Source};
use crate::diag::Diagnostic;
use crate::period::PeriodId;
use std::collections::BTreeMap;

pub const DEFAULT_CAP: f64 = 1.2;
/// The largest cap: a score of at most 100 × this.
pub const MAX_CAP: f64 = 10.0;
/// The largest weight. Weights are relative; a larger one would make the
/// weighted sums overflow to infinity (every score null).
pub const MAX_WEIGHT: f64 = 1e6;

/// The rule every weight follows (the files, the PUT routes and the preview).
pub fn check_weight(w: f64) -> Result<(), String> {
    if !w.is_finite() || !(0.0..=MAX_WEIGHT).contains(&w) {
        return Err(format!("must be a number from 0 to {MAX_WEIGHT}, got {w}"));
    }
    Ok(())
}

/// Who a scorecard scores (`subjects = "teams" | "owners"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subjects {
    #[default]
    Teams,
    Owners,
}

impl Subjects {
    pub fn name(self) -> &'static str {
        match self {
            Subjects::Teams => "teams",
            Subjects::Owners => "owners",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Who is scored and ranked: teams, or people.
    pub subjects: Subjects,
    /// None: every team. For people: those whose team is in one of these subtrees.
    pub teams: Option<Vec<String>>,
    pub cap: f64,
    /// Weight sets by key (default, Q4, 2026-Q4, …), each KPI → weight, in file order.
    pub weights: Vec<(String, Vec<(String, f64)>)>,
}

impl Scorecard {
    /// The weight set for a period: the most specific key, taken whole.
    pub fn weights_for(&self, period: PeriodId) -> Option<&[(String, f64)]> {
        period_keys(period)
            .iter()
            .find_map(|k| self.weights.iter().find(|(key, _)| key == k))
            .map(|(_, w)| w.as_slice())
    }

    /// The key of the weight set a period uses (what `PUT …/weights/{key}` rewrites).
    pub fn weights_key_for(&self, period: PeriodId) -> Option<&str> {
        period_keys(period)
            .iter()
            .find_map(|k| self.weights.iter().find(|(key, _)| key == k))
            .map(|(k, _)| k.as_str())
    }

    pub fn label(&self, lang: Option<&str>) -> &str {
        lang.and_then(|l| self.labels.get(l))
            .map_or(&self.name, |s| s)
    }

    /// Every KPI any weight set names, in first-seen order.
    pub fn all_kpis(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (_, set) in &self.weights {
            for (k, _) in set {
                if !out.contains(&k.as_str()) {
                    out.push(k);
                }
            }
        }
        out
    }
}

pub fn from_source(src: &Source, kpi_ids: &KpiIds) -> Result<Vec<Scorecard>, Vec<Diagnostic>> {
    let doc = src.parse().map_err(|e| vec![e])?;
    let mut r = Reader::new(src);
    r.deny_unknown(&doc, "scorecards.toml", &["scorecard"]);
    let mut out = Vec::new();
    for (k, node) in doc
        .get("scorecard")
        .and_then(|n| r.table(n, "scorecard"))
        .unwrap_or_default()
    {
        if !crate::store::schema::is_identifier(&k.name) {
            r.error(
                &k.span,
                format!("scorecard id '{}' must be a lowercase identifier", k.name),
            );
            continue;
        }
        if r.table(node, &format!("scorecard.{}", k.name)).is_some() {
            out.extend(read_scorecard(&mut r, &k.name, &k.span, node, kpi_ids));
        }
    }
    if r.errors.is_empty() {
        Ok(out)
    } else {
        Err(r.errors)
    }
}

fn read_scorecard(
    r: &mut Reader<'_>,
    id: &str,
    span: &std::ops::Range<usize>,
    node: &Node,
    kpi_ids: &KpiIds,
) -> Option<Scorecard> {
    r.deny_unknown(
        node,
        &format!("scorecard.{id}"),
        &["name", "labels", "subjects", "teams", "cap", "weights"],
    );
    let subjects = match node.get("subjects") {
        None => Subjects::Teams,
        Some(n) => match r.string(n, "subjects").as_deref() {
            Some("teams") | None => Subjects::Teams,
            Some("owners") => Subjects::Owners,
            Some(other) => {
                r.error(
                    &n.span,
                    format!("subjects must be \"teams\" or \"owners\", got \"{other}\""),
                );
                Subjects::Teams
            }
        },
    };
    let name = node
        .get("name")
        .and_then(|n| r.string(n, "name"))
        .unwrap_or_else(|| id.to_string());
    let labels = node
        .get("labels")
        .map(|n| read_labels(r, n))
        .unwrap_or_default();
    let teams = node.get("teams").and_then(|n| r.string_list(n, "teams"));
    let cap = match node.get("cap") {
        Some(n) => match r.number(n, "cap") {
            Some(c) if (1.0..=MAX_CAP).contains(&c) => c,
            Some(c) => {
                r.error(
                    &n.span,
                    format!(
                        "cap must be from 1.0 to {MAX_CAP} (a score of at most 100 × cap); got {c}"
                    ),
                );
                DEFAULT_CAP
            }
            None => DEFAULT_CAP,
        },
        None => DEFAULT_CAP,
    };
    let Some(wnode) = node.get("weights") else {
        r.error(
            span,
            format!(
                "scorecard.{id} needs a [scorecard.{id}.weights] table with at least a default set"
            ),
        );
        return None;
    };
    let mut weights = Vec::new();
    for (key, set) in r.table(wnode, "weights").unwrap_or_default() {
        if !valid_period_key(&key.name) {
            r.error(&key.span, format!("bad weight key '{}': use default, Q1..Q4, 01..12 or a period id such as 2026-Q4", key.name));
            continue;
        }
        weights.push((
            key.name.clone(),
            read_weight_set(r, &key.name, set, kpi_ids),
        ));
    }
    Some(Scorecard {
        id: id.to_string(),
        name,
        labels,
        subjects,
        teams,
        cap,
        weights,
    })
}

fn read_weight_set(
    r: &mut Reader<'_>,
    key: &str,
    set: &Node,
    kpi_ids: &KpiIds,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (k, v) in r.table(set, &format!("weights.{key}")).unwrap_or_default() {
        if let Some(m) = kpi_ids.unknown(&k.name) {
            r.error(&k.span, format!("weight for {m}"));
            continue;
        }
        match r.number(v, &format!("weight of {}", k.name)) {
            Some(w) if w < 0.0 => r.error(
                &v.span,
                format!("weight of {} must not be negative, got {w}", k.name),
            ),
            Some(w) => match check_weight(w) {
                Ok(()) => out.push((k.name.clone(), w)),
                Err(m) => r.error(&v.span, format!("weight of {} {m}", k.name)),
            },
            None => {}
        }
    }
    if out.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 && !out.is_empty() {
        r.error(&set.span, format!("weight set '{key}' sums to 0"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(ids: &[&'a str]) -> KpiIds<'a> {
        KpiIds {
            ids: ids.to_vec(),
            complete: true,
        }
    }

    #[test]
    fn picks_the_most_specific_weight_set_whole() {
        let text = "[scorecard.sales]\nname = \"Sales\"\n[scorecard.sales.weights]\ndefault = { win_rate = 15, revenue = 25 }\n\"Q4\" = { revenue = 40 }\n";
        let cards =
            from_source(&Source::new("s.toml", text), &ids(&["win_rate", "revenue"])).unwrap();
        let q4 = cards[0].weights_for("2026-Q4".parse().unwrap()).unwrap();
        assert_eq!(q4, &[("revenue".to_string(), 40.0)]);
        assert_eq!(
            cards[0]
                .weights_for("2026-Q1".parse().unwrap())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(cards[0].cap, DEFAULT_CAP);
    }

    #[test]
    fn reports_unknown_kpis_and_bad_keys() {
        let text = "[scorecard.sales.weights]\ndefault = { win_rat = 15 }\nQ7 = { win_rate = 1 }\n";
        let errs = from_source(&Source::new("s.toml", text), &ids(&["win_rate"])).unwrap_err();
        assert!(errs[0].message.contains("did you mean 'win_rate'"));
        assert_eq!(errs[1].line, 3);
    }
}
