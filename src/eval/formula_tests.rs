//! `kpi test`: formula tests from kpis/tests/*.toml, each case run against a
//! fresh in-memory database holding only the case's records.

use std::path::Path;
use std::sync::Arc;

use super::{Evaluation, Records, Subject};
use crate::config::ConfigSnapshot;
use crate::config::kpi::node_json;
use crate::config::toml_doc::{Node, Reader, Source};
use crate::diag::Diagnostic;
use crate::period::PeriodId;
use crate::store::columns::ColumnStore;
use crate::store::schema::TEAMS;

/// What a case expects of one KPI.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Value { value: f64, tolerance: f64 },
    NoData,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub period: PeriodId,
    pub team: String,
    /// A person to evaluate instead of the team (SPEC 14).
    pub owner: Option<String>,
    pub as_of: Option<String>,
    /// Entity → records as JSON objects, in file order.
    pub records: Vec<(String, Vec<serde_json::Value>)>,
    /// KPI → expectation, with the line it is written on.
    pub expect: Vec<(String, Expect, usize)>,
}

/// The outcome of one expectation.
#[derive(Debug, Clone)]
pub struct Check {
    pub case: String,
    pub file: String,
    pub line: usize,
    pub kpi: String,
    pub expected: Expect,
    pub got: Result<Option<f64>, String>,
    pub explanation: Vec<String>,
    pub passed: bool,
}

/// Reads every test file under `root/kpis/tests/`.
pub fn read_cases(root: &Path) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let dir = root.join("kpis/tests");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let rel = format!(
            "kpis/tests/{}",
            p.file_name().unwrap_or_default().to_string_lossy()
        );
        match std::fs::read_to_string(&p) {
            Ok(text) => match parse_file(&Source::new(rel, text)) {
                Ok(c) => cases.extend(c),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(Diagnostic::file(rel, format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

pub fn parse_file(src: &Source) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let doc = src.parse().map_err(|e| vec![e])?;
    let mut r = Reader::new(src);
    r.deny_unknown(&doc, &src.file, &["case"]);
    let mut cases = Vec::new();
    for node in doc
        .get("case")
        .and_then(|c| c.as_array())
        .unwrap_or_default()
    {
        if let Some(c) = parse_case(&mut r, node) {
            cases.push(c);
        }
    }
    if r.errors.is_empty() {
        Ok(cases)
    } else {
        Err(r.errors)
    }
}

fn parse_case(r: &mut Reader<'_>, node: &Node) -> Option<Case> {
    r.table(node, "[[case]]")?;
    r.deny_unknown(
        node,
        "[[case]]",
        &[
            "name", "period", "team", "owner", "as_of", "records", "expect",
        ],
    );
    let (line, _) = r.src.line_col(node.span.start);
    let need = |r: &mut Reader<'_>, k: &str| match node.get(k) {
        Some(n) => r.string(n, k),
        None => {
            r.error(&node.span, format!("case needs {k}"));
            None
        }
    };
    let name = need(r, "name")?;
    let period_text = need(r, "period")?;
    let owner = node.get("owner").and_then(|n| r.string(n, "owner"));
    let team = match (&owner, node.get("team")) {
        (Some(_), None) => String::new(),
        _ => need(r, "team")?,
    };
    let period = match period_text.parse::<PeriodId>() {
        Ok(p) => p,
        Err(e) => {
            r.error(
                &node
                    .get("period")
                    .map_or(node.span.clone(), |n| n.span.clone()),
                e.to_string(),
            );
            return None;
        }
    };
    let as_of = node.get("as_of").and_then(|n| r.string(n, "as_of"));
    let mut records = Vec::new();
    for (k, v) in node
        .get("records")
        .and_then(|n| r.table(n, "records"))
        .unwrap_or_default()
    {
        let rows: Vec<serde_json::Value> = v
            .as_array()
            .unwrap_or_default()
            .iter()
            .map(node_json)
            .collect();
        records.push((k.name.clone(), rows));
    }
    // Teams first: every other record must name a known team.
    records.sort_by_key(|(e, _)| e != TEAMS);
    let mut expect = Vec::new();
    for (k, v) in node
        .get("expect")
        .and_then(|n| r.table(n, "expect"))
        .unwrap_or_default()
    {
        let e = match (
            v.as_f64(),
            v.as_str(),
            v.get("value").and_then(Node::as_f64),
        ) {
            (Some(x), _, _) => Expect::Value {
                value: x,
                tolerance: 1e-9 * x.abs().max(1.0),
            },
            (_, Some("no_data"), _) => Expect::NoData,
            (_, _, Some(x)) => Expect::Value {
                value: x,
                tolerance: v.get("tolerance").and_then(Node::as_f64).unwrap_or(1e-9),
            },
            _ => {
                r.error(
                    &v.span,
                    format!(
                        "expect.{}: a number, {{ value = …, tolerance = … }} or \"no_data\"",
                        k.name
                    ),
                );
                continue;
            }
        };
        expect.push((k.name.clone(), e, r.src.line_col(k.span.start).0));
    }
    Some(Case {
        file: r.src.file.clone(),
        line,
        name,
        period,
        team,
        owner,
        as_of,
        records,
        expect,
    })
}

/// Where a case's records are put: a fresh in-memory store, or a fresh
/// private schema of a PostgreSQL database (`kpi test --db postgres://…`).
#[derive(Debug, Clone, Copy)]
pub enum CaseStore<'a> {
    Embedded,
    Postgres(&'a str),
}

/// Runs one case: its records into a fresh embedded database, then each expectation.
pub fn run_case(config: &Arc<ConfigSnapshot>, case: &Case) -> Vec<Check> {
    run_case_on(config, case, CaseStore::Embedded)
}

/// [`run_case`] with the records in `on`.
pub fn run_case_on(config: &Arc<ConfigSnapshot>, case: &Case, on: CaseStore<'_>) -> Vec<Check> {
    let fail_all = |msg: String| {
        case.expect
            .iter()
            .map(|(k, e, line)| judge(case, k, e, *line, Err(msg.clone()), vec![]))
            .collect()
    };
    let store = match load_records(config, case, on) {
        Ok(s) => s,
        Err(e) => return fail_all(e),
    };
    let cal = &config.settings.calendar;
    let as_of = match &case.as_of {
        Some(t) => match cal.parse_time(t) {
            Ok(t) => t,
            Err(e) => return fail_all(format!("as_of: {e}")),
        },
        None => cal.period(case.period).end,
    };
    let eval = match Evaluation::new(config.clone(), store, as_of, &[case.period], true) {
        Ok(e) => e,
        Err(e) => return fail_all(e.to_string()),
    };
    let subject = match &case.owner {
        Some(o) => match eval.owners.index(o) {
            Some(i) => Subject::Owner(i),
            None => {
                return fail_all(format!(
                    "owner '{o}' is not among the case's owners records"
                ));
            }
        },
        None => match eval.teams.index(&case.team) {
            Some(t) => Subject::Team(t),
            None => {
                return fail_all(format!(
                    "team '{}' is not among the case's teams records",
                    case.team
                ));
            }
        },
    };
    case.expect
        .iter()
        .map(|(kpi, expected, line)| match config.kpi_index(kpi) {
            None => judge(
                case,
                kpi,
                expected,
                *line,
                Err(config.unknown_kpi(kpi)),
                vec![],
            ),
            Some(i) => {
                let v = eval.value_of(i, subject, case.period);
                judge(
                    case,
                    kpi,
                    expected,
                    *line,
                    v.error.map_or(Ok(v.value), |e| Err(e.to_string())),
                    v.explanation,
                )
            }
        })
        .collect()
}

/// Compares what a KPI gave with what the case expects.
fn judge(
    case: &Case,
    kpi: &str,
    expected: &Expect,
    line: usize,
    got: Result<Option<f64>, String>,
    explanation: Vec<String>,
) -> Check {
    let passed = match (expected, &got) {
        (Expect::NoData, Ok(None)) => true,
        (Expect::Value { value, tolerance }, Ok(Some(x))) => (x - value).abs() <= *tolerance,
        _ => false,
    };
    Check {
        case: case.name.clone(),
        file: case.file.clone(),
        line,
        kpi: kpi.to_string(),
        expected: expected.clone(),
        got,
        explanation,
        passed,
    }
}

fn load_records(
    config: &Arc<ConfigSnapshot>,
    case: &Case,
    on: CaseStore<'_>,
) -> Result<Records, String> {
    let labels: Vec<String> = case
        .records
        .iter()
        .map(|(entity, _)| {
            format!(
                "{}:{} (case '{}', {entity})",
                case.file, case.line, case.name
            )
        })
        .collect();
    let batches: Vec<(&str, &str, Vec<serde_json::Value>)> = case
        .records
        .iter()
        .zip(&labels)
        .map(|((entity, rows), label)| (entity.as_str(), label.as_str(), rows.clone()))
        .collect();
    let (schema, cal) = (config.schema.clone(), &config.settings.calendar);
    let store: Arc<dyn crate::store::RecordStore> = match on {
        CaseStore::Embedded => {
            Arc::new(ColumnStore::in_memory(schema, cal, &batches).map_err(|e| e.to_string())?)
        }
        CaseStore::Postgres(url) => Arc::new(
            crate::store::pg::scratch(url, schema, cal, &batches).map_err(|e| e.to_string())?,
        ),
    };
    Ok(Records::new(store))
}
