//! A mapping file read and checked: `[mapping]`, `[mapping.fields]`,
//! `[mapping.lookup.NAME]` and `[[mapping.also]]`, each problem reported at
//! its file:line:col. What is checked here: the keys, the entity and its
//! fields (every required one mapped), the delimiter, encoding, decimal, and
//! that every Rhai expression compiles.

use std::collections::{BTreeMap, HashMap};

use super::script::{Script, compile};
use crate::config::toml_doc::{Node, Reader, Source};
use crate::diag::{Diagnostic, hint};
use crate::store::import::Format;
use crate::store::{Entity, Schema};

/// How the source file's bytes are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// GB18030, which covers GBK and GB2312.
    Gb18030,
    /// UTF-16 with a byte order mark (either order).
    Utf16,
}

impl Encoding {
    fn parse(s: &str) -> Option<Encoding> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "gb18030" | "gbk" | "gb2312" => Some(Encoding::Gb18030),
            "utf-16" | "utf16" => Some(Encoding::Utf16),
            _ => None,
        }
    }
}

/// One mapping file.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    /// `kpis/mappings/NAME.toml`.
    pub file: String,
    pub format: Format,
    pub encoding: Encoding,
    /// `[mapping]` first, then each `[[mapping.also]]`.
    pub parts: Vec<Part>,
    /// Every lookup table of the file, by name.
    pub lookups: BTreeMap<String, LookupSpec>,
}

impl Mapping {
    /// The entities written, in part order, each once.
    pub fn entities(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if !out.contains(&p.entity.as_str()) {
                out.push(&p.entity);
            }
        }
        out
    }
}

/// `[mapping]` or one `[[mapping.also]]`: how source rows become records of one entity.
#[derive(Debug)]
pub struct Part {
    pub entity: String,
    pub delimiter: u8,
    pub time_formats: Vec<String>,
    /// The decimal separator: '.' or ','.
    pub decimal: char,
    pub null_values: Vec<String>,
    pub skip_if: Option<Script>,
    pub order_by: Option<Script>,
    /// `for_each = { COLUMN = VALUE, … }`, in file order.
    pub for_each: Vec<(String, String)>,
    /// One rule per mapped field, in the entity's field order.
    pub fields: Vec<FieldRule>,
}

impl Part {
    /// Rows of one id must be folded (not simply upserted, last row winning).
    pub fn folds(&self) -> bool {
        self.order_by.is_some() || self.fields.iter().any(|f| f.keep_first || f.when.is_some())
    }

    /// Some Rhai runs per row (so each row needs its `row` map).
    pub fn scripted(&self) -> bool {
        self.skip_if.is_some()
            || self.order_by.is_some()
            || self
                .fields
                .iter()
                .any(|f| f.when.is_some() || matches!(f.source, FieldSource::Expr(_)))
    }
}

/// Where a field's value comes from.
#[derive(Debug)]
pub enum FieldSource {
    Column(String),
    Expr(Script),
}

/// How one field is made.
#[derive(Debug)]
pub struct FieldRule {
    /// The field's position in the entity.
    pub index: usize,
    pub field: String,
    pub source: FieldSource,
    /// `values`: source value → field value (`"*"` kept apart as the fallback).
    pub values: Option<HashMap<String, String>>,
    pub fallback: Option<String>,
    pub lookup: Option<String>,
    pub default: Option<String>,
    pub keep_first: bool,
    pub when: Option<Script>,
}

impl FieldRule {
    /// How messages name the rule: `column 'Close Date'` or `field 'amount' (expr)`.
    pub fn label(&self) -> String {
        match &self.source {
            FieldSource::Column(c) => format!("column '{c}'"),
            FieldSource::Expr(_) => format!("field '{}' (expr)", self.field),
        }
    }
}

/// `[mapping.lookup.NAME]`: a key → value table.
#[derive(Debug)]
pub struct LookupSpec {
    pub name: String,
    pub from: LookupFrom,
    pub key: String,
    pub value: String,
    pub key_expr: Option<Script>,
    pub delimiter: Option<u8>,
    pub encoding: Option<Encoding>,
}

#[derive(Debug, Clone)]
pub enum LookupFrom {
    /// A CSV file beside the imported file (or in kpis/mappings/).
    File(String),
    /// The records of an entity already in the database.
    Entity(String),
}

impl LookupSpec {
    /// The entity the lookup reads, when it reads one.
    pub fn entity(&self) -> Option<&str> {
        match &self.from {
            LookupFrom::Entity(e) => Some(e),
            LookupFrom::File(_) => None,
        }
    }
}

const MAPPING_KEYS: &[&str] = &[
    "entity",
    "format",
    "delimiter",
    "encoding",
    "time_formats",
    "decimal",
    "skip_if",
    "null_values",
    "order_by",
    "fields",
    "lookup",
    "also",
];
const ALSO_KEYS: &[&str] = &[
    "entity",
    "delimiter",
    "time_formats",
    "decimal",
    "skip_if",
    "null_values",
    "order_by",
    "fields",
    "lookup",
    "for_each",
];
const FIELD_KEYS: &[&str] = &[
    "column", "expr", "values", "lookup", "default", "keep", "when",
];
const LOOKUP_KEYS: &[&str] = &[
    "file",
    "entity",
    "key",
    "value",
    "key_expr",
    "delimiter",
    "encoding",
];

/// Reads and checks one mapping file.
pub fn read(src: &Source, name: &str, schema: &Schema) -> Result<Mapping, Vec<Diagnostic>> {
    let doc = src.parse().map_err(|e| vec![e])?;
    let mut r = Reader::new(src);
    r.deny_unknown(&doc, "a mapping file", &["mapping"]);
    let Some(top) = doc.get("mapping") else {
        r.error(&doc.span, "a mapping file needs a [mapping] table");
        return Err(r.errors);
    };
    if r.table(top, "mapping").is_none() {
        return Err(r.errors);
    }
    r.deny_unknown(top, "[mapping]", MAPPING_KEYS);
    let format = match top.get("format") {
        None => Format::Csv,
        Some(n) => match r
            .string(n, "format")
            .as_deref()
            .map(|s| (s, Format::parse(s)))
        {
            Some((_, Some(f))) => f,
            Some((s, None)) => {
                r.error(
                    &n.span,
                    format!("format must be \"csv\" or \"ndjson\", got {s:?}"),
                );
                Format::Csv
            }
            None => Format::Csv,
        },
    };
    let encoding = match top.get("encoding") {
        None => Encoding::Utf8,
        Some(n) => read_encoding(&mut r, n).unwrap_or(Encoding::Utf8),
    };
    let mut lookups = BTreeMap::new();
    let main = read_part(&mut r, top, schema, None, &mut lookups);
    let mut parts = vec![];
    if let Some(p) = main {
        parts.push(p);
    }
    if let Some(also) = top.get("also") {
        match also.as_array() {
            Some(items) => {
                for item in items {
                    if r.table(item, "[[mapping.also]]").is_none() {
                        continue;
                    }
                    r.deny_unknown(item, "[[mapping.also]]", ALSO_KEYS);
                    if let Some(p) = read_part(&mut r, item, schema, parts.first(), &mut lookups) {
                        parts.push(p);
                    }
                }
            }
            None => r.error(
                &also.span,
                "mapping.also must be an array of tables ([[mapping.also]])",
            ),
        }
    }
    // Every lookup a field names must exist.
    check_lookup_names(&mut r, top, &lookups);
    if let Some(items) = top.get("also").and_then(Node::as_array) {
        for item in items {
            check_lookup_names(&mut r, item, &lookups);
        }
    }
    if r.errors.is_empty() && !parts.is_empty() {
        Ok(Mapping {
            name: name.to_string(),
            file: src.file.clone(),
            format,
            encoding,
            parts,
            lookups,
        })
    } else {
        Err(r.errors)
    }
}

fn check_lookup_names(r: &mut Reader<'_>, part: &Node, lookups: &BTreeMap<String, LookupSpec>) {
    for (_, rule) in part
        .get("fields")
        .and_then(Node::as_table)
        .unwrap_or_default()
    {
        if let Some(n) = rule.get("lookup")
            && let Some(name) = n.as_str()
            && !lookups.contains_key(name)
        {
            let h = hint(name, lookups.keys().map(String::as_str));
            r.error(
                &n.span,
                format!("no lookup table '{name}' ([mapping.lookup.{name}]){h}"),
            );
        }
    }
}

fn read_encoding(r: &mut Reader<'_>, n: &Node) -> Option<Encoding> {
    let s = r.string(n, "encoding")?;
    let e = Encoding::parse(&s);
    if e.is_none() {
        r.error(
            &n.span,
            format!("encoding must be \"utf-8\", \"gb18030\" or \"utf-16\", got {s:?}"),
        );
    }
    e
}

fn read_delimiter(r: &mut Reader<'_>, n: &Node) -> Option<u8> {
    let s = r.string(n, "delimiter")?;
    let d = match s.as_str() {
        "\\t" | "\t" | "tab" => Some(b'\t'),
        one if one.len() == 1 && one.is_ascii() => Some(one.as_bytes()[0]),
        _ => None,
    };
    if d.is_none() {
        r.error(
            &n.span,
            format!("delimiter must be one ASCII character (\"\\t\" for a tab), got {s:?}"),
        );
    }
    d
}

fn script(r: &mut Reader<'_>, n: &Node, what: &str) -> Option<Script> {
    let text = r.string(n, what)?;
    match compile(&text) {
        Ok(s) => Some(s),
        Err((message, line, col)) => {
            // The script's own position, counted from the string's first character.
            let (l0, c0) = r.src.line_col(n.span.start + 1);
            let (line, col) = if line <= 1 {
                (l0, c0 + col.saturating_sub(1))
            } else {
                (l0 + line - 1, col)
            };
            r.errors.push(Diagnostic::new(
                &r.src.file,
                line,
                col,
                format!("{what}: {message}"),
            ));
            None
        }
    }
}

fn read_part(
    r: &mut Reader<'_>,
    node: &Node,
    schema: &Schema,
    main: Option<&Part>,
    lookups: &mut BTreeMap<String, LookupSpec>,
) -> Option<Part> {
    let entity: Option<&Entity> = match node.get("entity") {
        None => {
            r.error(
                &node.span,
                "missing entity = \"…\" (the entity the rows become)",
            );
            None
        }
        Some(n) => r
            .string(n, "entity")
            .and_then(|e| match schema.require(&e) {
                Ok(e) => Some(e),
                Err(m) => {
                    r.error(&n.span, m.to_string());
                    None
                }
            }),
    };
    let delimiter = node
        .get("delimiter")
        .and_then(|n| read_delimiter(r, n))
        .or(main.map(|m| m.delimiter))
        .unwrap_or(b',');
    let time_formats = match node.get("time_formats") {
        Some(n) => r.string_list(n, "time_formats").unwrap_or_default(),
        None => main.map(|m| m.time_formats.clone()).unwrap_or_default(),
    };
    if let Some(n) = node.get("time_formats") {
        for f in &time_formats {
            if chrono::format::StrftimeItems::new(f)
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                r.error(
                    &n.span,
                    format!("time_formats: {f:?} is not a valid strftime pattern"),
                );
            }
        }
    }
    let decimal = match node.get("decimal") {
        Some(n) => match r.string(n, "decimal").as_deref() {
            Some(".") => '.',
            Some(",") => ',',
            Some(other) => {
                r.error(
                    &n.span,
                    format!("decimal must be \".\" or \",\", got {other:?}"),
                );
                '.'
            }
            None => '.',
        },
        None => main.map(|m| m.decimal).unwrap_or('.'),
    };
    let null_values = match node.get("null_values") {
        Some(n) => r.string_list(n, "null_values").unwrap_or_default(),
        None => main.map(|m| m.null_values.clone()).unwrap_or_default(),
    };
    let skip_if = node.get("skip_if").and_then(|n| script(r, n, "skip_if"));
    let order_by = node.get("order_by").and_then(|n| script(r, n, "order_by"));
    let mut for_each = Vec::new();
    if let Some(n) = node.get("for_each")
        && let Some(t) = r.table(n, "for_each")
    {
        for (k, v) in t {
            if let Some(v) = r.string(v, "a for_each value") {
                for_each.push((k.name.clone(), v));
            }
        }
    }
    if let Some(n) = node.get("lookup")
        && let Some(t) = r.table(n, "mapping.lookup")
    {
        for (k, v) in t {
            if let Some(l) = read_lookup(r, &k.name, v, schema) {
                if lookups.contains_key(&k.name) {
                    r.error(
                        &k.span,
                        format!("lookup table '{}' is defined twice", k.name),
                    );
                } else {
                    lookups.insert(k.name.clone(), l);
                }
            }
        }
    }
    let entity = entity?;
    let mut fields: Vec<FieldRule> = Vec::new();
    match node.get("fields") {
        None => r.error(
            &node.span,
            "missing [mapping.fields] (which column makes which field)",
        ),
        Some(n) => {
            if let Some(t) = r.table(n, "mapping.fields") {
                for (k, v) in t {
                    let Some(index) = entity.field_index(&k.name) else {
                        r.error(&k.span, entity.unknown_field(&k.name).to_string());
                        continue;
                    };
                    if let Some(rule) = read_rule(r, &k.name, index, v) {
                        fields.push(rule);
                    }
                }
                for f in &entity.fields {
                    if !f.optional && !fields.iter().any(|r| r.field == f.name) {
                        r.error(
                            &n.span,
                            format!(
                                "field '{}' is required by {} but not mapped",
                                f.name, entity.name
                            ),
                        );
                    }
                }
            }
        }
    }
    fields.sort_by_key(|f| f.index);
    Some(Part {
        entity: entity.name.clone(),
        delimiter,
        time_formats,
        decimal,
        null_values,
        skip_if,
        order_by,
        for_each,
        fields,
    })
}

fn read_rule(r: &mut Reader<'_>, field: &str, index: usize, v: &Node) -> Option<FieldRule> {
    let mut rule = FieldRule {
        index,
        field: field.to_string(),
        source: FieldSource::Column(String::new()),
        values: None,
        fallback: None,
        lookup: None,
        default: None,
        keep_first: false,
        when: None,
    };
    if let Some(col) = v.as_str() {
        rule.source = FieldSource::Column(col.to_string());
        return Some(rule);
    }
    r.table(v, &format!("fields.{field}"))?;
    r.deny_unknown(v, &format!("fields.{field}"), FIELD_KEYS);
    rule.source = match (v.get("column"), v.get("expr")) {
        (Some(c), None) => FieldSource::Column(r.string(c, "column")?),
        (None, Some(e)) => FieldSource::Expr(script(r, e, "expr")?),
        (Some(_), Some(e)) => {
            r.error(
                &e.span,
                format!("fields.{field}: give column or expr, not both"),
            );
            return None;
        }
        (None, None) => {
            r.error(
                &v.span,
                format!("fields.{field}: needs column = \"…\" or expr = '…'"),
            );
            return None;
        }
    };
    if let Some(n) = v.get("values")
        && let Some(t) = r.table(n, "values")
    {
        let mut map = HashMap::new();
        for (k, val) in t {
            if let Some(s) = r.string(val, "a values entry") {
                if k.name == "*" {
                    rule.fallback = Some(s);
                } else {
                    map.insert(k.name.clone(), s);
                }
            }
        }
        rule.values = Some(map);
    }
    rule.lookup = v.get("lookup").and_then(|n| r.string(n, "lookup"));
    rule.default = v.get("default").and_then(|n| r.string(n, "default"));
    if let Some(n) = v.get("keep") {
        match r.string(n, "keep").as_deref() {
            Some("first") => rule.keep_first = true,
            Some("last") => {}
            Some(other) => r.error(
                &n.span,
                format!("keep must be \"first\" or \"last\", got {other:?}"),
            ),
            None => {}
        }
    }
    rule.when = v.get("when").and_then(|n| script(r, n, "when"));
    Some(rule)
}

fn read_lookup(r: &mut Reader<'_>, name: &str, v: &Node, schema: &Schema) -> Option<LookupSpec> {
    r.table(v, &format!("lookup.{name}"))?;
    r.deny_unknown(v, &format!("lookup.{name}"), LOOKUP_KEYS);
    let from = match (v.get("file"), v.get("entity")) {
        (Some(f), None) => LookupFrom::File(r.string(f, "file")?),
        (None, Some(e)) => {
            let e = r.string(e, "entity")?;
            if let Err(m) = schema.require(&e) {
                r.error(&v.get("entity")?.span, m.to_string());
                return None;
            }
            LookupFrom::Entity(e)
        }
        _ => {
            r.error(
                &v.span,
                format!("lookup.{name}: give file = \"…\" or entity = \"…\""),
            );
            return None;
        }
    };
    let Some(key) = v.get("key").and_then(|n| r.string(n, "key")) else {
        r.error(&v.span, format!("lookup.{name}: missing key = \"COLUMN\""));
        return None;
    };
    let Some(value) = v.get("value").and_then(|n| r.string(n, "value")) else {
        r.error(
            &v.span,
            format!("lookup.{name}: missing value = \"COLUMN\""),
        );
        return None;
    };
    if let LookupFrom::Entity(e) = &from
        && let Some(ent) = schema.entity(e)
    {
        for (what, f) in [("key", &key), ("value", &value)] {
            if ent.field(f).is_none() {
                r.error(&v.get(what)?.span, ent.unknown_field(f).to_string());
            }
        }
    }
    Some(LookupSpec {
        name: name.to_string(),
        from,
        key,
        value,
        key_expr: v.get("key_expr").and_then(|n| script(r, n, "key_expr")),
        delimiter: v.get("delimiter").and_then(|n| read_delimiter(r, n)),
        encoding: v.get("encoding").and_then(|n| read_encoding(r, n)),
    })
}
