//! Running a mapping: decode the source (UTF-8, GB18030, UTF-16), read its
//! rows (CSV with the mapping's delimiter, or NDJSON), make each part's
//! records (skip_if, for_each, field rules), fold rows of one id when a part
//! asks for it (keep, when, order_by), and write everything through one
//! import transaction of the store: every entity, or nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use rhai::{Dynamic, Map};

use super::cell::Rules;
use super::script::{Runtime, ScriptError, Tables};
use super::spec::{Encoding, FieldRule, FieldSource, LookupFrom, LookupSpec, Mapping, Part};
use crate::config::ConfigSnapshot;
use crate::diag::hint;
use crate::store::import::{self, ImportReport, Ingest};
use crate::store::{Entity, StoreError, Value};

/// At most this many mapped records are shown by a dry run.
pub const PREVIEW: usize = 10;

/// One mapped import: which mapping, over what.
pub struct Request<'a> {
    /// The entity named by the command (or URL): the mapping's `[mapping]` entity.
    pub entity: String,
    pub mapping: String,
    /// Names the source in messages: the file as given, or "body".
    pub label: String,
    pub input: Box<dyn Read + 'a>,
    /// Where lookup files are looked for first (the imported file's folder).
    pub dir: Option<PathBuf>,
    /// Check and show, write nothing.
    pub dry_run: bool,
}

impl Request<'static> {
    /// An HTTP body.
    pub fn body(entity: &str, mapping: &str, body: Vec<u8>) -> Request<'static> {
        Request {
            entity: entity.to_string(),
            mapping: mapping.to_string(),
            label: "body".to_string(),
            input: Box::new(std::io::Cursor::new(body)),
            dir: None,
            dry_run: false,
        }
    }
}

/// What a mapped import did.
#[derive(Debug, Clone, Default)]
pub struct MappedImport {
    /// One report per entity written, `[mapping]`'s first.
    pub reports: Vec<ImportReport>,
    /// Source rows read, and those `skip_if` skipped.
    pub rows: usize,
    pub skipped: usize,
    /// With `dry_run`: the first mapped records, `entity {json}` each.
    pub preview: Vec<String>,
}

fn problem(message: String) -> StoreError {
    StoreError::Import {
        bad_rows: 1,
        messages: vec![message],
    }
}

/// Imports `req` through the mapping it names, all or nothing.
pub fn import_with_mapping(
    conn: &mut rusqlite::Connection,
    cfg: &ConfigSnapshot,
    req: Request<'_>,
) -> Result<MappedImport, StoreError> {
    let Some(mapping) = cfg.mappings.get(&req.mapping) else {
        let h = hint(&req.mapping, cfg.mappings.keys().map(String::as_str));
        return Err(problem(format!(
            "unknown mapping '{}'{h}: no kpis/mappings/{}.toml",
            req.mapping, req.mapping
        )));
    };
    if mapping.parts[0].entity != req.entity {
        return Err(problem(format!(
            "{}: this mapping makes {} records, not {}",
            mapping.file, mapping.parts[0].entity, req.entity
        )));
    }
    let tables = Arc::new(load_tables(conn, cfg, mapping, req.dir.as_deref())?);
    let entities = mapping.entities();
    let schema = cfg.schema.clone();
    let mut run = Run::new(cfg, mapping, &entities, tables, req.dry_run);
    let label = req.label.clone();
    let mut input = Some(decode(mapping.encoding, req.input, &label)?);
    let reports = import::ingest(conn, &schema, &entities, req.dry_run, &mut |ing| {
        let Some(input) = input.take() else {
            return Ok(());
        };
        run.read(&label, input, ing)?;
        run.finish(&label, ing)
    })?;
    Ok(MappedImport {
        reports,
        rows: run.rows,
        skipped: run.skipped,
        preview: run.preview,
    })
}

/// The source as UTF-8 bytes.
fn decode<'a>(
    encoding: Encoding,
    mut input: Box<dyn Read + 'a>,
    label: &str,
) -> Result<Box<dyn Read + 'a>, StoreError> {
    let enc = match encoding {
        Encoding::Utf8 => return Ok(input),
        Encoding::Gb18030 => encoding_rs::GB18030,
        Encoding::Utf16 => encoding_rs::UTF_16LE,
    };
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::Read {
            label: label.to_string(),
            message: e.to_string(),
        })?;
    let enc = match encoding_rs::Encoding::for_bom(&bytes) {
        Some((e, _)) => e,
        None if encoding == Encoding::Utf16 => {
            return Err(problem(format!(
                "{label}:1: encoding utf-16 needs a byte order mark (FF FE or FE FF) at the start"
            )));
        }
        None => enc,
    };
    let (text, _, bad) = enc.decode(&bytes);
    if bad {
        let line = text[..text.find('\u{fffd}').unwrap_or(0)]
            .matches('\n')
            .count()
            + 1;
        return Err(problem(format!(
            "{label}:{line}: not valid {} text",
            enc.name()
        )));
    }
    Ok(Box::new(std::io::Cursor::new(
        text.into_owned().into_bytes(),
    )))
}

/// Reads every lookup table of the mapping.
fn load_tables(
    conn: &rusqlite::Connection,
    cfg: &ConfigSnapshot,
    mapping: &Mapping,
    dir: Option<&std::path::Path>,
) -> Result<Tables, StoreError> {
    let mut tables = Tables::new();
    for spec in mapping.lookups.values() {
        let table = match &spec.from {
            LookupFrom::Entity(e) => {
                let entity = cfg.schema.require(e).map_err(StoreError::from)?;
                import::key_values(conn, entity, &spec.key, &spec.value)?
                    .into_iter()
                    .collect()
            }
            LookupFrom::File(f) => {
                let candidates = [
                    dir.map(|d| d.join(f)),
                    Some(cfg.root.join("kpis/mappings").join(f)),
                ];
                let path = candidates
                    .into_iter()
                    .flatten()
                    .find(|p| p.is_file())
                    .ok_or_else(|| {
                        problem(format!(
                            "{}: lookup '{}': no file {f} beside the imported file or in kpis/mappings/",
                            mapping.file, spec.name
                        ))
                    })?;
                read_lookup_file(cfg, mapping, spec, &path)?
            }
        };
        tables.insert(spec.name.clone(), table);
    }
    Ok(tables)
}

fn read_lookup_file(
    cfg: &ConfigSnapshot,
    mapping: &Mapping,
    spec: &LookupSpec,
    path: &std::path::Path,
) -> Result<HashMap<String, String>, StoreError> {
    let label = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| problem(format!("{label}: {e}")))?;
    let input = decode(
        spec.encoding.unwrap_or(mapping.encoding),
        Box::new(file),
        &label,
    )?;
    let (mut csv, blanks) =
        import::readers::csv_reader(input, spec.delimiter.unwrap_or(mapping.parts[0].delimiter));
    let header = csv
        .headers()
        .map_err(|e| problem(format!("{label}:1: cannot read the header row: {e}")))?
        .clone();
    let names = column_names(&header);
    let col = |c: &str| {
        names.iter().position(|n| n == c).ok_or_else(|| {
            let h = hint(c, names.iter().map(String::as_str));
            problem(format!(
                "{label}:1: lookup '{}': no column '{c}'{h}",
                spec.name
            ))
        })
    };
    let (k, v) = (col(&spec.key)?, col(&spec.value)?);
    let runtime = Runtime::new(Arc::new(Tables::new()), time_rule(cfg, &mapping.parts[0]));
    let mut out: HashMap<String, String> = HashMap::new();
    let mut lines: HashMap<String, u64> = HashMap::new();
    let mut errors = Vec::new();
    for rec in csv.records() {
        let rec = rec.map_err(|e| problem(format!("{label}: cannot read a row: {e}")))?;
        let line = rec.position().map_or(0, |p| blanks.line(p));
        let key = match &spec.key_expr {
            Some(s) => {
                let row = row_map(&names, &rec);
                match runtime.eval(s, &row, &Dynamic::UNIT) {
                    Ok(d) => dynamic_text(&d),
                    Err(ScriptError::Stopped(m) | ScriptError::Failed(m)) => {
                        errors.push(format!("{label}:{line}: key_expr: {m}"));
                        continue;
                    }
                }
            }
            None => rec.get(k).unwrap_or_default().to_string(),
        };
        let value = rec.get(v).unwrap_or_default().to_string();
        match out.get(&key) {
            Some(old) if *old != value => errors.push(format!(
                "{label}:{line}: lookup '{}': key {key:?} is {value:?} here but {old:?} at line {}",
                spec.name, lines[&key]
            )),
            Some(_) => {}
            None => {
                lines.insert(key.clone(), line);
                out.insert(key, value);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(StoreError::Import {
            bad_rows: errors.len(),
            messages: errors,
        })
    }
}

/// Header names, a repeated name getting `#2`, `#3`…
fn column_names(header: &csv::StringRecord) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    header
        .iter()
        .map(|h| {
            let n = seen.entry(h).or_insert(0);
            *n += 1;
            if *n == 1 {
                h.to_string()
            } else {
                format!("{h}#{n}")
            }
        })
        .collect()
}

fn row_map(names: &[String], rec: &csv::StringRecord) -> Map {
    names
        .iter()
        .zip(rec.iter())
        .map(|(n, c)| (n.as_str().into(), c.into()))
        .collect()
}

fn dynamic_text(d: &Dynamic) -> String {
    if d.is_unit() {
        String::new()
    } else if d.is_string() {
        d.clone().into_string().unwrap_or_default()
    } else {
        d.to_string()
    }
}

fn time_rule(cfg: &ConfigSnapshot, part: &Part) -> super::script::TimeRule {
    let rules = rules(cfg, part);
    Arc::new(move |s: &str| rules.time(s))
}

fn rules(cfg: &ConfigSnapshot, part: &Part) -> Rules {
    Rules {
        cal: cfg.settings.calendar,
        time_formats: part.time_formats.clone(),
        decimal: part.decimal,
    }
}

/// One source row of a part, before folding.
struct Entry {
    line: u64,
    key: Dynamic,
    values: Vec<Value>,
    /// Per field position: this row may set it (`when`).
    allowed: Vec<bool>,
}

/// Rows of one part grouped by id, in order of first appearance.
#[derive(Default)]
struct Fold {
    index: HashMap<String, usize>,
    groups: Vec<Vec<Entry>>,
}

/// The state of one mapped import.
struct Run<'c> {
    cfg: &'c ConfigSnapshot,
    mapping: &'c Mapping,
    parts: Vec<PartRun<'c>>,
    runtime: Runtime,
    scripted: bool,
    dry_run: bool,
    rows: usize,
    skipped: usize,
    preview: Vec<String>,
}

struct PartRun<'c> {
    part: &'c Part,
    entity: &'c Entity,
    /// Position of the entity in the import.
    k: usize,
    rules: Rules,
    /// Per field rule: the source column's index (column rules).
    columns: Vec<Option<usize>>,
    for_each: Vec<(usize, &'c str, &'c str)>,
    fold: Option<Fold>,
}

impl<'c> Run<'c> {
    fn new(
        cfg: &'c ConfigSnapshot,
        mapping: &'c Mapping,
        entities: &[&str],
        tables: Arc<Tables>,
        dry_run: bool,
    ) -> Self {
        let parts = mapping
            .parts
            .iter()
            .map(|part| PartRun {
                part,
                entity: cfg.schema.entity(&part.entity).expect("checked on load"),
                k: entities.iter().position(|e| *e == part.entity).unwrap_or(0),
                rules: rules(cfg, part),
                columns: Vec::new(),
                for_each: Vec::new(),
                fold: part.folds().then(Fold::default),
            })
            .collect();
        Run {
            cfg,
            mapping,
            parts,
            runtime: Runtime::new(tables, time_rule(cfg, &mapping.parts[0])),
            scripted: mapping
                .parts
                .iter()
                .any(|p| p.scripted() || !p.for_each.is_empty()),
            dry_run,
            rows: 0,
            skipped: 0,
            preview: Vec::new(),
        }
    }

    /// Resolves every column the mapping names; the missing ones are reported.
    fn bind(&mut self, names: &[String], label: &str, ing: &mut Ingest<'_>) -> bool {
        let mut ok = true;
        let mut find = |c: &str, ing: &mut Ingest<'_>| {
            let i = names.iter().position(|n| n == c);
            if i.is_none() {
                let h = hint(c, names.iter().map(String::as_str));
                ing.problem(format!(
                    "{label}:1: column '{c}' is not in the file{h} (named by {})",
                    self.mapping.file
                ));
                ok = false;
            }
            i
        };
        for p in &mut self.parts {
            p.columns = p
                .part
                .fields
                .iter()
                .map(|r| match &r.source {
                    FieldSource::Column(c) => find(c, ing),
                    FieldSource::Expr(_) => None,
                })
                .collect();
            p.for_each = p
                .part
                .for_each
                .iter()
                .filter_map(|(c, v)| find(c, ing).map(|i| (i, c.as_str(), v.as_str())))
                .collect();
        }
        ok
    }

    fn read(
        &mut self,
        label: &str,
        input: Box<dyn Read + '_>,
        ing: &mut Ingest<'_>,
    ) -> Result<(), StoreError> {
        match self.mapping.format {
            import::Format::Csv => self.read_csv(label, input, ing),
            import::Format::Ndjson => self.read_ndjson(label, input, ing),
        }
    }

    fn read_csv(
        &mut self,
        label: &str,
        input: Box<dyn Read + '_>,
        ing: &mut Ingest<'_>,
    ) -> Result<(), StoreError> {
        let (mut csv, blanks) = import::readers::csv_reader(input, self.mapping.parts[0].delimiter);
        let header = match csv.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                ing.problem(format!("{label}:1: cannot read the header row: {e}"));
                return Ok(());
            }
        };
        let names = column_names(&header);
        if !self.bind(&names, label, ing) {
            return Ok(());
        }
        let mut rec = csv::StringRecord::new();
        loop {
            match csv.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    ing.problem(format!("{label}:{line}: cannot read the row: {e}"));
                    return Ok(());
                }
            }
            let line = rec.position().map_or(0, |p| blanks.line(p));
            // A short row (a report's footer line) reads as if its last cells
            // were empty; a long one is an error.
            while rec.len() < header.len() {
                rec.push_field("");
            }
            if rec.len() != header.len() {
                ing.bad_row(
                    &format!("{label}:{line}"),
                    [format!(
                        "expected {} cells, got {}",
                        header.len(),
                        rec.len()
                    )],
                );
                continue;
            }
            self.row(label, line, &names, &rec, ing)?;
        }
        Ok(())
    }

    fn read_ndjson(
        &mut self,
        label: &str,
        mut input: Box<dyn Read + '_>,
        ing: &mut Ingest<'_>,
    ) -> Result<(), StoreError> {
        let mut text = String::new();
        if let Err(e) = input.read_to_string(&mut text) {
            ing.problem(format!("{label}: cannot read: {e}"));
            return Ok(());
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // Every column the mapping names, then any other key in order of appearance.
        let mut names: Vec<String> = Vec::new();
        for p in &self.mapping.parts {
            for r in &p.fields {
                if let FieldSource::Column(c) = &r.source
                    && !names.contains(c)
                {
                    names.push(c.clone());
                }
            }
            for (c, _) in &p.for_each {
                if !names.contains(c) {
                    names.push(c.clone());
                }
            }
        }
        let mut rows = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let line = i as u64 + 1;
            match serde_json::from_str::<serde_json::Value>(l) {
                Ok(serde_json::Value::Object(o)) => {
                    for k in o.keys() {
                        if !names.contains(k) {
                            names.push(k.clone());
                        }
                    }
                    rows.push((line, o));
                }
                Ok(other) => ing.bad_row(
                    &format!("{label}:{line}"),
                    [format!("expected a JSON object, got {other}")],
                ),
                Err(e) => ing.bad_row(&format!("{label}:{line}"), [format!("invalid JSON: {e}")]),
            }
        }
        self.bind(&names, label, ing);
        for (line, o) in rows {
            let rec: csv::StringRecord = names
                .iter()
                .map(|n| match o.get(n) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                })
                .collect();
            self.row(label, line, &names, &rec, ing)?;
        }
        Ok(())
    }

    /// One source row through every part.
    fn row(
        &mut self,
        label: &str,
        line: u64,
        names: &[String],
        rec: &csv::StringRecord,
        ing: &mut Ingest<'_>,
    ) -> Result<(), StoreError> {
        self.rows += 1;
        let row = if self.scripted {
            row_map(names, rec)
        } else {
            Map::new()
        };
        let at = || format!("{label}:{line}");
        let mut messages = Vec::new();
        for pi in 0..self.parts.len() {
            let items: Vec<Dynamic> = if self.parts[pi].for_each.is_empty() {
                vec![Dynamic::UNIT]
            } else {
                self.parts[pi]
                    .for_each
                    .iter()
                    .filter(|(i, _, _)| !rec.get(*i).unwrap_or_default().is_empty())
                    .map(|(i, c, v)| {
                        let mut m = Map::new();
                        m.insert("column".into(), (*c).into());
                        m.insert("value".into(), (*v).into());
                        m.insert("text".into(), rec.get(*i).unwrap_or_default().into());
                        Dynamic::from_map(m)
                    })
                    .collect()
            };
            for item in items {
                let p = &self.parts[pi];
                if let Some(s) = &p.part.skip_if {
                    match self.runtime.eval(s, &row, &item) {
                        Ok(d) if d.as_bool().unwrap_or(false) => {
                            if pi == 0 {
                                self.skipped += 1;
                                return Ok(());
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(ScriptError::Stopped(m)) => {
                            return Err(problem(format!("{}: skip_if: {m}", at())));
                        }
                        Err(ScriptError::Failed(m)) => {
                            messages.push(format!("skip_if: {m}"));
                            continue;
                        }
                    }
                }
                let mut values = vec![Value::Null; p.entity.fields.len()];
                let mut allowed = vec![true; p.entity.fields.len()];
                let mut bad = Vec::new();
                for (ri, rule) in p.part.fields.iter().enumerate() {
                    if let Some(w) = &rule.when {
                        match self.runtime.eval(w, &row, &item) {
                            Ok(d) => allowed[rule.index] = d.as_bool().unwrap_or(false),
                            Err(ScriptError::Stopped(m)) => {
                                return Err(problem(format!(
                                    "{}: {}: when: {m}",
                                    at(),
                                    rule.label()
                                )));
                            }
                            Err(ScriptError::Failed(m)) => {
                                bad.push(format!("{}: when: {m}", rule.label()));
                                continue;
                            }
                        }
                        if !allowed[rule.index] {
                            continue;
                        }
                    }
                    match self.value(pi, rule, p.columns[ri], rec, &row, &item) {
                        Ok(v) => values[rule.index] = v,
                        Err(ScriptError::Stopped(m)) => {
                            return Err(problem(format!("{}: {}: {m}", at(), rule.label())));
                        }
                        Err(ScriptError::Failed(m)) => bad.push(format!("{}: {m}", rule.label())),
                    }
                }
                if !bad.is_empty() {
                    messages.extend(bad);
                    continue;
                }
                let p = &mut self.parts[pi];
                if let Some(fold) = &mut p.fold {
                    let key = match &p.part.order_by {
                        Some(s) => match self.runtime.eval(s, &row, &item) {
                            Ok(d) => d,
                            Err(ScriptError::Stopped(m)) => {
                                return Err(problem(format!("{}: order_by: {m}", at())));
                            }
                            Err(ScriptError::Failed(m)) => {
                                messages.push(format!("order_by: {m}"));
                                continue;
                            }
                        },
                        None => Dynamic::UNIT,
                    };
                    let Value::Text(id) = &values[0] else {
                        messages.push(format!(
                            "{}: a value is required, got nothing",
                            id_label(p.part)
                        ));
                        continue;
                    };
                    let n = fold.groups.len();
                    let g = *fold.index.entry(id.clone()).or_insert(n);
                    if g == n {
                        fold.groups.push(Vec::new());
                    }
                    fold.groups[g].push(Entry {
                        line,
                        key,
                        values,
                        allowed,
                    });
                } else {
                    let (k, entity) = (p.k, p.entity);
                    if let Some(m) = missing(entity, p.part, &values) {
                        messages.push(m);
                        continue;
                    }
                    if self.dry_run && self.preview.len() < PREVIEW {
                        self.preview.push(preview(self.cfg, entity, &values));
                    }
                    ing.row(k, &at, values)?;
                }
            }
        }
        if !messages.is_empty() {
            ing.bad_row(&at(), messages);
        }
        Ok(())
    }

    /// The value of one rule for one row: source, null_values, default, values, lookup, type.
    fn value(
        &self,
        pi: usize,
        rule: &FieldRule,
        column: Option<usize>,
        rec: &csv::StringRecord,
        row: &Map,
        item: &Dynamic,
    ) -> Result<Value, ScriptError> {
        let p = &self.parts[pi];
        let field = &p.entity.fields[rule.index];
        let mut text: Cow<'_, str> = match &rule.source {
            FieldSource::Column(_) => {
                Cow::Borrowed(column.and_then(|c| rec.get(c)).unwrap_or_default())
            }
            FieldSource::Expr(s) => {
                let d = self.runtime.eval(s, row, item)?;
                if rule.values.is_none()
                    && rule.lookup.is_none()
                    && let Some(v) = typed(field, &d)
                {
                    return Ok(v);
                }
                Cow::Owned(dynamic_text(&d))
            }
        };
        if p.part.null_values.iter().any(|n| n == text.as_ref()) {
            text = Cow::Borrowed("");
        }
        if text.is_empty()
            && let Some(d) = &rule.default
        {
            text = Cow::Owned(d.clone());
        }
        if let Some(values) = &rule.values
            && (!text.is_empty() || values.contains_key(""))
        {
            text = match values.get(text.as_ref()).or(rule.fallback.as_ref()) {
                Some(v) => Cow::Owned(v.clone()),
                None => {
                    return Err(ScriptError::Failed(format!(
                        "{text:?} has no entry in values (and there is no \"*\" fallback)"
                    )));
                }
            };
        }
        if let Some(l) = &rule.lookup
            && !text.is_empty()
        {
            text = match self.runtime_table(l).and_then(|t| t.get(text.as_ref())) {
                Some(v) => Cow::Owned(v.clone()),
                None => {
                    return Err(ScriptError::Failed(format!(
                        "{text:?} is not a key of lookup '{l}'"
                    )));
                }
            };
        }
        p.rules.convert(field, &text).map_err(ScriptError::Failed)
    }

    fn runtime_table(&self, name: &str) -> Option<&HashMap<String, String>> {
        self.tables().get(name)
    }

    fn tables(&self) -> &Tables {
        self.runtime.tables()
    }

    /// Folds the grouped rows of every folding part and writes the records.
    fn finish(&mut self, label: &str, ing: &mut Ingest<'_>) -> Result<(), StoreError> {
        for p in &mut self.parts {
            let Some(fold) = p.fold.take() else {
                continue;
            };
            for mut group in fold.groups {
                if p.part.order_by.is_some() {
                    group.sort_by(|a, b| compare(&a.key, &b.key));
                }
                let width = p.entity.fields.len();
                let mut values = vec![Value::Null; width];
                let mut lines = vec![group[0].line; width];
                for rule in &p.part.fields {
                    let f = rule.index;
                    let chosen = if rule.keep_first {
                        group.iter().find(|e| e.allowed[f])
                    } else {
                        group.iter().rev().find(|e| e.allowed[f])
                    };
                    if let Some(e) = chosen {
                        values[f] = e.values[f].clone();
                        lines[f] = e.line;
                    }
                }
                values[0] = group[0].values[0].clone();
                let missing: Vec<usize> = p
                    .entity
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(i, f)| !f.optional && values[*i] == Value::Null)
                    .map(|(i, _)| i)
                    .collect();
                if !missing.is_empty() {
                    for i in missing {
                        let name = &p.entity.fields[i].name;
                        let rule = p.part.fields.iter().find(|r| r.index == i);
                        ing.bad_row(
                            &format!("{label}:{}", lines[i]),
                            [format!(
                                "{}: a value is required, got nothing (no row of id {:?} set it)",
                                rule.map_or(format!("field '{name}'"), FieldRule::label),
                                text_of(&values[0])
                            )],
                        );
                    }
                    continue;
                }
                if self.dry_run && self.preview.len() < PREVIEW {
                    self.preview.push(preview(self.cfg, p.entity, &values));
                }
                let line = lines[0];
                ing.row(p.k, &|| format!("{label}:{line}"), values)?;
            }
        }
        Ok(())
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn id_label(part: &Part) -> String {
    part.fields
        .iter()
        .find(|r| r.index == 0)
        .map_or("field 'id'".to_string(), FieldRule::label)
}

/// The first required field that has no value, as a message.
fn missing(entity: &Entity, part: &Part, values: &[Value]) -> Option<String> {
    let i = entity
        .fields
        .iter()
        .enumerate()
        .position(|(i, f)| !f.optional && values[i] == Value::Null)?;
    let label = part.fields.iter().find(|r| r.index == i).map_or(
        format!("field '{}'", entity.fields[i].name),
        FieldRule::label,
    );
    Some(format!("{label}: a value is required, got nothing"))
}

/// A typed value straight from a script's non-text result (a number for a
/// time field is milliseconds since the epoch).
fn typed(field: &crate::store::Field, d: &Dynamic) -> Option<Value> {
    use crate::store::FieldType as T;
    if d.is_unit() {
        return Some(Value::Null);
    }
    let n = d
        .as_int()
        .map(|i| i as f64)
        .ok()
        .or_else(|| d.as_float().ok());
    match (field.ty, n, d.as_bool().ok()) {
        (T::Real, Some(f), _) => Some(Value::Real(f)),
        (T::Integer, Some(f), _) if f.fract() == 0.0 => Some(Value::Int(f as i64)),
        (T::Time, Some(f), _) => Some(Value::Time(f as i64)),
        (T::Bool, _, Some(b)) => Some(Value::Bool(b)),
        _ => None,
    }
}

fn compare(a: &Dynamic, b: &Dynamic) -> std::cmp::Ordering {
    let num = |d: &Dynamic| {
        d.as_int()
            .map(|i| i as f64)
            .ok()
            .or_else(|| d.as_float().ok())
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => dynamic_text(a).cmp(&dynamic_text(b)),
    }
}

fn preview(cfg: &ConfigSnapshot, entity: &Entity, values: &[Value]) -> String {
    let obj: serde_json::Map<String, serde_json::Value> = entity
        .fields
        .iter()
        .zip(values)
        .map(|(f, v)| {
            let j = match v {
                Value::Null => serde_json::Value::Null,
                Value::Text(s) => s.clone().into(),
                Value::Int(i) => (*i).into(),
                Value::Real(r) => (*r).into(),
                Value::Bool(b) => (*b).into(),
                Value::Time(t) => cfg.settings.calendar.format_local(*t).into(),
            };
            (f.name.clone(), j)
        })
        .collect();
    format!("{} {}", entity.name, serde_json::Value::Object(obj))
}
