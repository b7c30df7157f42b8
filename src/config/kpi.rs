//! KPI definitions: `[kpi.<id>]` tables in any kpis/*.toml that is not one of
//! the special files.

use std::collections::BTreeMap;

use serde::Serialize;

use super::toml_doc::{Key, Node, NodeKind, Reader, Source};
use crate::formula::Origin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Ratio,
    Currency,
    Count,
    Days,
    Hours,
    Score,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Higher,
    Lower,
    Target,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Higher => "higher",
            Direction::Lower => "lower",
            Direction::Target => "target",
        }
    }
}

/// Where the formula text comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Formula(String),
    Script {
        path: String,
        params: BTreeMap<String, serde_json::Value>,
    },
}

#[derive(Debug, Clone)]
pub struct KpiDef {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub description: String,
    pub unit: Unit,
    pub direction: Direction,
    pub cumulative: bool,
    pub body: Body,
    /// The file that defines it, relative to the root.
    pub file: String,
    /// Line and column of the `[kpi.<id>]` key.
    pub line: usize,
    pub col: usize,
    /// Where the formula text starts (the file for an inline formula, the script otherwise).
    pub origin: Origin,
}

impl KpiDef {
    pub fn label(&self, lang: Option<&str>) -> &str {
        lang.and_then(|l| self.labels.get(l))
            .map_or(&self.name, |s| s)
    }
}

const KPI_KEYS: &[&str] = &[
    "name",
    "labels",
    "description",
    "unit",
    "direction",
    "cumulative",
    "formula",
    "script",
    "params",
];

/// Reads every `[kpi.*]` table of one file.
pub fn read_file(src: &Source, r: &mut Reader<'_>) -> Vec<KpiDef> {
    let doc = match src.parse() {
        Ok(d) => d,
        Err(e) => {
            r.errors.push(e);
            return Vec::new();
        }
    };
    r.deny_unknown(&doc, &src.file, &["kpi"]);
    let Some(kpis) = doc.get("kpi").and_then(|n| r.table(n, "kpi")) else {
        return Vec::new();
    };
    kpis.iter()
        .filter_map(|(k, v)| read_kpi(src, r, k, v))
        .collect()
}

fn read_kpi(src: &Source, r: &mut Reader<'_>, key: &Key, node: &Node) -> Option<KpiDef> {
    let id = key.name.clone();
    if !crate::store::schema::is_identifier(&id) {
        r.error(
            &key.span,
            format!("KPI id '{id}' must be a lowercase identifier (a-z, 0-9, _)"),
        );
        return None;
    }
    r.table(node, &format!("kpi.{id}"))?;
    r.deny_unknown(node, &format!("kpi.{id}"), KPI_KEYS);
    let text = |r: &mut Reader<'_>, k: &str| {
        node.get(k)
            .and_then(|n| r.string(n, &format!("kpi.{id}.{k}")))
    };
    let name = text(r, "name").unwrap_or_else(|| id.clone());
    let description = text(r, "description").unwrap_or_default();
    let labels = node
        .get("labels")
        .map(|n| read_labels(r, n))
        .unwrap_or_default();
    let unit = required_choice(
        r,
        node,
        key,
        "unit",
        &["ratio", "currency", "count", "days", "hours", "score"],
    )
    .map(|u| match u {
        "ratio" => Unit::Ratio,
        "currency" => Unit::Currency,
        "count" => Unit::Count,
        "days" => Unit::Days,
        "hours" => Unit::Hours,
        _ => Unit::Score,
    });
    let direction = required_choice(r, node, key, "direction", &["higher", "lower", "target"]).map(
        |d| match d {
            "higher" => Direction::Higher,
            "lower" => Direction::Lower,
            _ => Direction::Target,
        },
    );
    let cumulative = node
        .get("cumulative")
        .and_then(|n| r.boolean(n, "cumulative"))
        .unwrap_or(false);
    let (body, origin) = read_body(src, r, &id, key, node)?;
    let (line, col) = src.line_col(key.span.start);
    Some(KpiDef {
        id,
        name,
        labels,
        description,
        // A bad unit or direction is already reported; the formula is still
        // compiled and checked so that every problem shows in one run.
        unit: unit.unwrap_or(Unit::Count),
        direction: direction.unwrap_or(Direction::Higher),
        cumulative,
        body,
        file: src.file.clone(),
        line,
        col,
        origin,
    })
}

pub fn read_labels(r: &mut Reader<'_>, n: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in r.table(n, "labels").unwrap_or_default() {
        if let Some(s) = r.string(v, &format!("labels.{}", k.name)) {
            out.insert(k.name.clone(), s);
        }
    }
    out
}

fn required_choice<'c>(
    r: &mut Reader<'_>,
    node: &Node,
    key: &Key,
    field: &str,
    choices: &[&'c str],
) -> Option<&'c str> {
    let Some(n) = node.get(field) else {
        r.error(
            &key.span,
            format!("kpi.{} needs {field} ({})", key.name, choices.join(" | ")),
        );
        return None;
    };
    let s = r.string(n, field)?;
    let found = choices.iter().find(|c| **c == s).copied();
    if found.is_none() {
        let h = crate::diag::hint(&s, choices.iter().copied());
        r.error(
            &n.span,
            format!(
                "{field} must be one of {}, got \"{s}\"{h}",
                choices.join(", ")
            ),
        );
    }
    found
}

fn read_body(
    src: &Source,
    r: &mut Reader<'_>,
    id: &str,
    key: &Key,
    node: &Node,
) -> Option<(Body, Origin)> {
    match (node.get("formula"), node.get("script")) {
        (Some(f), None) => {
            let text = r.string(f, "formula")?;
            if node.get("params").is_some() {
                let n = node.get("params").expect("checked");
                r.error(&n.span, "params only go with script = \"…\"");
            }
            Some((Body::Formula(text), formula_origin(src, f)))
        }
        (None, Some(s)) => {
            let path = r.string(s, "script")?;
            let params = node
                .get("params")
                .map(|p| read_params(r, p))
                .unwrap_or_default();
            let origin = Origin {
                file: format!("scripts/{path}"),
                first_line: 1,
                first_col: 1,
            };
            Some((Body::Script { path, params }, origin))
        }
        (Some(_), Some(s)) => {
            r.error(
                &s.span,
                format!("kpi.{id} has both formula and script; keep one"),
            );
            None
        }
        (None, None) => {
            r.error(
                &key.span,
                format!("kpi.{id} needs a formula = '''…''' or a script = \"file.rhai\""),
            );
            None
        }
    }
}

/// Where the text of a TOML string value starts: after its quotes, and after
/// the newline that TOML trims right behind opening triple quotes.
fn formula_origin(src: &Source, n: &Node) -> Origin {
    let raw = &src.text[n.span.start.min(src.text.len())..];
    let (line, col) = src.line_col(n.span.start);
    let origin = |first_line, first_col| Origin {
        file: src.file.clone(),
        first_line,
        first_col,
    };
    if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        let after = &raw[3..];
        if after.starts_with('\n') || after.starts_with("\r\n") {
            return origin(line + 1, 1);
        }
        return origin(line, col + 3);
    }
    origin(line, col + 1)
}

fn read_params(r: &mut Reader<'_>, n: &Node) -> BTreeMap<String, serde_json::Value> {
    r.table(n, "params")
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.name.clone(), node_json(v)))
        .collect()
}

/// A TOML value as JSON (params are handed to Rhai as a map).
pub fn node_json(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.kind {
        NodeKind::Str(s) | NodeKind::Datetime(s) => J::String(s.clone()),
        NodeKind::Int(i) => J::from(*i),
        NodeKind::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        NodeKind::Bool(b) => J::Bool(*b),
        NodeKind::Array(a) => J::Array(a.iter().map(node_json).collect()),
        NodeKind::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.name.clone(), node_json(v)))
                .collect(),
        ),
    }
}
