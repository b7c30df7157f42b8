//! Loading a deployment's kpis/ and scripts/ into one immutable, validated
//! [`ConfigSnapshot`].
//!
//! Loading reads every file, parses and checks each one, then checks them
//! against each other (literal entity/field/KPI names, KPI reference cycles,
//! targets and weights of known KPIs). It either returns a complete snapshot
//! or every problem found, each with its file:line:col. Nothing is ever half
//! loaded, which is what lets the server swap snapshots atomically.

pub mod alerts;
pub mod diff;
pub mod edit;
pub mod kpi;
pub mod scorecards;
pub mod settings;
pub mod targets;
pub mod toml_doc;
pub mod write_set;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics, hint};
use crate::formula::FormulaEngine;
use crate::formula::scan::{LiteralKind, literals};
use crate::store::Schema;
pub use alerts::AlertSettings;
pub use kpi::{Body, Direction, KpiDef, Unit};
pub use scorecards::{Scorecard, Subjects};
pub use settings::Settings;
pub use targets::{Target, Targets};
use toml_doc::{Reader, Source};

/// The special files of kpis/; every other *.toml there defines KPIs.
pub const SPECIAL_FILES: &[&str] = &[
    "settings.toml",
    "schema.toml",
    "targets.toml",
    "scorecards.toml",
    "alerts.toml",
];

/// A KPI ready to run.
pub struct Kpi {
    pub def: KpiDef,
    pub ast: rhai::AST,
    pub params: rhai::Map,
    /// The formula or script text.
    pub text: String,
    /// KPIs named literally by `kpi("…")`.
    pub depends_on: Vec<String>,
    /// Entities named literally by `records("…")` (SPEC 15: a KPI reading only
    /// entities that hold no records has no data).
    pub reads: Vec<String>,
}

/// Everything loaded from one root, checked, never changed after loading.
pub struct ConfigSnapshot {
    pub root: PathBuf,
    pub settings: Settings,
    pub schema: Arc<Schema>,
    pub kpis: Vec<Kpi>,
    index: HashMap<String, usize>,
    pub targets: Targets,
    pub scorecards: Vec<Scorecard>,
    pub alerts: AlertSettings,
    pub engine: FormulaEngine,
    /// Every file read, path relative to the root → text.
    pub files: BTreeMap<String, String>,
    /// Per entity, the fields some formula names: what to read in one scan.
    pub fields_used: BTreeMap<String, Vec<String>>,
    /// Per KPI (by index), the entities it reads by name, through the KPIs it
    /// references too: computed once here, asked for every value.
    reads: Vec<BTreeSet<String>>,
    /// kpis/mappings/*.toml by name (SPEC 15).
    pub mappings: BTreeMap<String, Arc<crate::mapping::Mapping>>,
}

impl ConfigSnapshot {
    pub fn kpi(&self, id: &str) -> Option<&Kpi> {
        self.index.get(id).map(|i| &self.kpis[*i])
    }

    pub fn kpi_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn scorecard(&self, id: &str) -> Option<&Scorecard> {
        self.scorecards.iter().find(|s| s.id == id)
    }

    /// The entities KPI `id` reads by name, through the KPIs it references too.
    pub fn entities_read(&self, kpi: usize) -> &BTreeSet<String> {
        &self.reads[kpi]
    }

    /// `kpi check`'s notes on an owner scorecard: each KPI it weighs that reads
    /// only entities whose records name no person, so it never has a value
    /// for a person (`file:line:col: warning: …`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for card in self
            .scorecards
            .iter()
            .filter(|c| c.subjects == Subjects::Owners)
        {
            let mut kpis: Vec<&str> = card.all_kpis();
            kpis.sort_unstable();
            kpis.dedup();
            for (id, i) in kpis
                .into_iter()
                .filter_map(|id| Some((id, self.kpi_index(id)?)))
            {
                let read = self.entities_read(i);
                let blind = !read.is_empty()
                    && read
                        .iter()
                        .all(|e| self.schema.entity(e).is_none_or(|e| e.owner.is_none()));
                if blind {
                    let at = self.kpi(id).map_or(String::new(), |k| {
                        format!("{}:{}:{}: ", k.def.file, k.def.line, k.def.col)
                    });
                    out.push(format!(
                        "{at}warning: scorecard {}: KPI '{id}' reads only {} (no owner_field or owner_via), so it never has a value for a person",
                        card.id,
                        read.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        out
    }

    /// Message for an unknown KPI id, with a hint.
    pub fn unknown_kpi(&self, id: &str) -> String {
        format!(
            "unknown KPI '{id}'{}",
            hint(id, self.kpis.iter().map(|k| k.def.id.as_str()))
        )
    }

    /// A stable hash of every file's path and content (FNV-1a, hex).
    pub fn content_hash(&self) -> String {
        content_hash(&self.files)
    }
}

pub fn content_hash(files: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, text) in files {
        for b in path.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Reads the files of a root: kpis/*.toml (not kpis/tests/), the alert
/// message templates kpis/templates/**/*.{md,txt}, and scripts/**/*.rhai.
pub fn read_files(root: &Path) -> Result<BTreeMap<String, String>, Vec<Diagnostic>> {
    let mut files = BTreeMap::new();
    let mut errors = Vec::new();
    let kpis = root.join("kpis");
    if !kpis.is_dir() {
        // Relative, like every other diagnostic: /health must not show the root's absolute path.
        return Err(vec![Diagnostic::file(
            "kpis",
            "no kpis/ folder here (use --root DIR)",
        )]);
    }
    collect(root, &kpis, "toml", false, &mut files, &mut errors);
    let mappings = kpis.join("mappings");
    if mappings.is_dir() {
        collect(root, &mappings, "toml", false, &mut files, &mut errors);
    }
    let templates = kpis.join("templates");
    if templates.is_dir() {
        for ext in ["md", "txt"] {
            collect(root, &templates, ext, true, &mut files, &mut errors);
        }
    }
    let scripts = root.join("scripts");
    if scripts.is_dir() {
        collect(root, &scripts, "rhai", true, &mut files, &mut errors);
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn collect(
    root: &Path,
    dir: &Path,
    ext: &str,
    recurse: bool,
    files: &mut BTreeMap<String, String>,
    errors: &mut Vec<Diagnostic>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        errors.push(Diagnostic::file(
            dir.strip_prefix(root)
                .unwrap_or(dir)
                .to_string_lossy()
                .replace('\\', "/"),
            "cannot read the folder",
        ));
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        // A symlink (or a folder of them) may point anywhere: a file is read only
        // when its real path lies inside the root, so scripts/x.rhai → /etc/passwd
        // is refused, never read.
        let inside = match (std::fs::canonicalize(&path), std::fs::canonicalize(root)) {
            (Ok(real), Ok(root)) => real.starts_with(&root),
            _ => true,
        };
        if !inside {
            errors.push(Diagnostic::file(
                &rel,
                "resolves to a file outside the deployment root (a symlink?); it is not read",
            ));
            continue;
        }
        if path.is_dir() {
            if recurse {
                collect(root, &path, ext, recurse, files, errors);
            }
        } else if path.extension().is_some_and(|e| e == ext) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    files.insert(rel, text);
                }
                Err(e) => errors.push(Diagnostic::file(rel, format!("cannot read: {e}"))),
            }
        }
    }
}

/// Loads and checks a root from disk.
pub fn load(root: &Path) -> Result<ConfigSnapshot, Diagnostics> {
    let files = read_files(root).map_err(Diagnostics)?;
    from_files(root, files)
}

/// Builds a snapshot from file texts (a candidate that may not be on disk yet).
pub fn from_files(
    root: &Path,
    files: BTreeMap<String, String>,
) -> Result<ConfigSnapshot, Diagnostics> {
    let mut errors = Vec::new();
    let source = |name: &str| {
        files
            .get(&format!("kpis/{name}"))
            .map(|t| Source::new(format!("kpis/{name}"), t.clone()))
    };
    let settings = match source("settings.toml") {
        Some(s) => take(Settings::from_source(&s), &mut errors).unwrap_or_default(),
        None => Settings::default(),
    };
    let schema = match source("schema.toml") {
        Some(s) => take(Schema::from_source(&s), &mut errors),
        None => {
            errors.push(Diagnostic::file(
                "kpis/schema.toml",
                "missing: the record schema is required",
            ));
            None
        }
    };
    let scripts: Arc<BTreeMap<String, String>> = Arc::new(
        files
            .iter()
            .filter_map(|(p, t)| {
                p.strip_prefix("scripts/")
                    .map(|n| (n.to_string(), t.clone()))
            })
            .collect(),
    );
    let engine = FormulaEngine::with_budget(scripts.clone(), settings.formula_time_budget);
    let (defs, unreadable) = read_kpi_files(&files, &mut errors);
    let kpis = compile_kpis(&engine, &scripts, defs, &mut errors);
    let index: HashMap<String, usize> = kpis
        .iter()
        .enumerate()
        .map(|(i, k)| (k.def.id.clone(), i))
        .collect();
    let ids = KpiIds {
        ids: kpis.iter().map(|k| k.def.id.as_str()).collect(),
        complete: unreadable.is_empty(),
    };
    for file in &unreadable {
        errors.push(Diagnostic::file(
            file,
            "its KPIs could not be read (see the error above), so references to KPIs are not checked until it parses",
        ));
    }
    if let Some(schema) = &schema {
        check_literals(schema, &kpis, &ids, &scripts, &mut errors);
    }
    check_cycles(&kpis, &index, &mut errors);
    let direction = |id: &str| index.get(id).map(|i| kpis[*i].def.direction);
    let targets = match source("targets.toml") {
        Some(s) => {
            take(Targets::from_source(&s, &direction, &ids), &mut errors).unwrap_or_default()
        }
        None => Targets::default(),
    };
    let scorecards = match source("scorecards.toml") {
        Some(s) => take(scorecards::from_source(&s, &ids), &mut errors).unwrap_or_default(),
        None => Vec::new(),
    };
    let alerts = match source("alerts.toml") {
        Some(s) => take(
            AlertSettings::from_source(&s, &settings.calendar, &files),
            &mut errors,
        )
        .unwrap_or_default(),
        None => AlertSettings::default(),
    };
    let mappings = match &schema {
        Some(schema) => {
            let (m, e) = crate::mapping::load_all(&files, schema);
            errors.extend(e);
            m
        }
        None => BTreeMap::new(),
    };
    match schema {
        Some(schema) if errors.is_empty() => Ok(ConfigSnapshot {
            mappings,
            fields_used: fields_used(&schema, &kpis),
            reads: transitive_reads(&kpis, &index),
            root: root.to_path_buf(),
            settings,
            schema: Arc::new(schema),
            kpis,
            index,
            targets,
            scorecards,
            alerts,
            engine,
            files,
        }),
        _ => Err(Diagnostics(errors)),
    }
}

/// For each KPI, the entities it and the KPIs it references (transitively) read.
fn transitive_reads(kpis: &[Kpi], index: &HashMap<String, usize>) -> Vec<BTreeSet<String>> {
    (0..kpis.len())
        .map(|start| {
            let mut out = BTreeSet::new();
            let mut todo = vec![start];
            let mut seen = BTreeSet::new();
            while let Some(i) = todo.pop() {
                if !seen.insert(i) {
                    continue;
                }
                out.extend(kpis[i].reads.iter().cloned());
                todo.extend(
                    kpis[i]
                        .depends_on
                        .iter()
                        .filter_map(|d| index.get(d).copied()),
                );
            }
            out
        })
        .collect()
}

/// The value, or None with its errors moved into `errors`.
fn take<T>(r: Result<T, Vec<Diagnostic>>, errors: &mut Vec<Diagnostic>) -> Option<T> {
    r.map_err(|e| errors.extend(e)).ok()
}

/// Fields each formula names literally, by the entity of the query they are
/// used on: a reading hint (a miss only costs another scan later).
fn fields_used(schema: &Schema, kpis: &[Kpi]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for lit in kpis.iter().flat_map(|k| literals(&k.text)) {
        if let (LiteralKind::Field, Some(e)) = (
            lit.kind,
            lit.entity.as_deref().and_then(|e| schema.entity(e)),
        ) && e.field(&lit.name).is_some()
        {
            out.entry(e.name.clone()).or_default().push(lit.name);
        }
    }
    out.values_mut().for_each(|v| {
        v.sort();
        v.dedup();
    });
    out
}

/// The KPI definitions of every KPI file, and the files that are not valid TOML.
fn read_kpi_files(
    files: &BTreeMap<String, String>,
    errors: &mut Vec<Diagnostic>,
) -> (Vec<KpiDef>, Vec<String>) {
    let mut defs: Vec<KpiDef> = Vec::new();
    let mut unreadable = Vec::new();
    for (path, text) in files {
        let Some(name) = path.strip_prefix("kpis/") else {
            continue;
        };
        if name.contains('/') || SPECIAL_FILES.contains(&name) {
            continue;
        }
        let src = Source::new(path.clone(), text.clone());
        if src.parse().is_err() {
            unreadable.push(path.clone());
        }
        let mut r = Reader::new(&src);
        for def in kpi::read_file(&src, &mut r) {
            match defs.iter().find(|d| d.id == def.id) {
                Some(first) => r.errors.push(Diagnostic::new(
                    &def.file,
                    def.line,
                    def.col,
                    format!(
                        "KPI '{}' is already defined at {}:{}",
                        def.id, first.file, first.line
                    ),
                )),
                None => defs.push(def),
            }
        }
        errors.extend(r.errors);
    }
    (defs, unreadable)
}

/// The ids of the KPIs that were read, and whether every KPI file could be
/// read. While one cannot, an id not among them may well be defined there, so
/// it is not reported (one syntax error, not a page of knock-on hints).
pub struct KpiIds<'a> {
    pub ids: Vec<&'a str>,
    pub complete: bool,
}

impl KpiIds<'_> {
    /// "unknown KPI 'x'; did you mean 'y'?" when `name` is surely unknown.
    pub fn unknown(&self, name: &str) -> Option<String> {
        (self.complete && !self.ids.contains(&name)).then(|| {
            format!(
                "unknown KPI '{name}'{}",
                hint(name, self.ids.iter().copied())
            )
        })
    }
}

fn compile_kpis(
    engine: &FormulaEngine,
    scripts: &BTreeMap<String, String>,
    defs: Vec<KpiDef>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Kpi> {
    let mut out = Vec::new();
    for def in defs {
        let (text, params) = match &def.body {
            Body::Formula(t) => (t.clone(), rhai::Map::new()),
            Body::Script { path, params } => match scripts.get(path.as_str()) {
                Some(t) => (t.clone(), params_map(params)),
                None => {
                    let h = hint(path, scripts.keys().map(String::as_str));
                    errors.push(Diagnostic::new(
                        &def.file,
                        def.line,
                        def.col,
                        format!("kpi.{}: no script scripts/{path}{h}", def.id),
                    ));
                    continue;
                }
            },
        };
        match engine.compile(&text, &def.origin) {
            Ok(ast) => {
                let lits = literals(&text);
                let names = |kind: LiteralKind| {
                    let mut v: Vec<String> = lits
                        .iter()
                        .filter(|l| l.kind == kind)
                        .map(|l| l.name.clone())
                        .collect();
                    v.dedup();
                    v
                };
                let depends_on = names(LiteralKind::Kpi);
                let reads = names(LiteralKind::Entity);
                out.push(Kpi {
                    def,
                    ast,
                    params,
                    text,
                    depends_on,
                    reads,
                });
            }
            Err((message, line, col)) => errors.push(Diagnostic::new(
                &def.origin.file,
                line,
                col,
                format!("kpi.{}: {message}", def.id),
            )),
        }
    }
    out
}

fn params_map(params: &BTreeMap<String, serde_json::Value>) -> rhai::Map {
    params
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().into(),
                rhai::serde::to_dynamic(v).unwrap_or_default(),
            )
        })
        .collect()
}

/// Entity, field and KPI names written as literals must exist.
fn check_literals(
    schema: &Schema,
    kpis: &[Kpi],
    ids: &KpiIds,
    scripts: &BTreeMap<String, String>,
    errors: &mut Vec<Diagnostic>,
) {
    let mut seen = std::collections::HashSet::new();
    for k in kpis {
        let lits = literals(&k.text);
        let used: Vec<&str> = lits
            .iter()
            .filter(|l| l.kind == LiteralKind::Entity)
            .map(|l| l.name.as_str())
            .collect();
        for l in &lits {
            let message = match l.kind {
                LiteralKind::Entity => schema.require(&l.name).err().map(|e| e.to_string()),
                LiteralKind::Kpi => ids.unknown(&l.name),
                LiteralKind::Import => crate::formula::import_target(scripts, &l.name).err(),
                LiteralKind::Field => {
                    let in_any = used
                        .iter()
                        .filter_map(|e| schema.entity(e))
                        .any(|e| e.field(&l.name).is_some());
                    match l.entity.as_deref().and_then(|e| schema.entity(e)) {
                        Some(e) if !in_any => Some(e.unknown_field(&l.name).to_string()),
                        _ => None,
                    }
                }
            };
            if let Some(m) = message {
                let (line, col) = k
                    .def
                    .origin
                    .locate(rhai::Position::new(l.line as u16, l.col as u16));
                // A script shared by several KPIs reports its problem once.
                if seen.insert((k.def.origin.file.clone(), line, col)) {
                    errors.push(Diagnostic::new(&k.def.origin.file, line, col, m));
                }
            }
        }
    }
}

/// KPIs that name each other in a cycle cannot be evaluated.
fn check_cycles(kpis: &[Kpi], index: &HashMap<String, usize>, errors: &mut Vec<Diagnostic>) {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; kpis.len()];
    let mut reported = std::collections::HashSet::new();
    for start in 0..kpis.len() {
        let mut path = Vec::new();
        visit(
            start,
            kpis,
            index,
            &mut state,
            &mut path,
            &mut |cycle: &[usize]| {
                let mut key: Vec<usize> = cycle.to_vec();
                key.sort_unstable();
                if reported.insert(key) {
                    let names: Vec<&str> = cycle
                        .iter()
                        .chain(cycle.first())
                        .map(|i| kpis[*i].def.id.as_str())
                        .collect();
                    let d = &kpis[cycle[0]].def;
                    errors.push(Diagnostic::new(
                        &d.file,
                        d.line,
                        d.col,
                        format!(
                            "KPIs reference each other in a cycle: {}",
                            names.join(" → ")
                        ),
                    ));
                }
            },
        );
    }
}

fn visit(
    i: usize,
    kpis: &[Kpi],
    index: &HashMap<String, usize>,
    state: &mut [u8],
    path: &mut Vec<usize>,
    report: &mut dyn FnMut(&[usize]),
) {
    match state[i] {
        2 => return,
        1 => {
            let from = path.iter().position(|p| *p == i).unwrap_or(0);
            report(&path[from..]);
            return;
        }
        _ => {}
    }
    state[i] = 1;
    path.push(i);
    for dep in &kpis[i].depends_on {
        if let Some(j) = index.get(dep) {
            visit(*j, kpis, index, state, path, report);
        }
    }
    path.pop();
    state[i] = 2;
}

#[cfg(test)]
mod tests {
    #[test]
    fn params_become_rhai_values() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("from".to_string(), serde_json::json!("lead"));
        let m = super::params_map(&p);
        assert_eq!(
            m.get("from").unwrap().clone().into_string().unwrap(),
            "lead"
        );
    }
}
