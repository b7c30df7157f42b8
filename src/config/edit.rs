//! Editing configuration files for the API: one KPI table, one weight set, one
//! target, changed with `toml_edit` so that the rest of the file (comments,
//! order, quoting, blank lines) stays byte for byte, and a replaced value
//! keeps its surrounding whitespace and trailing comment.
//!
//! These functions only turn text into text; checking the result and writing
//! it ([`write_atomic`]) is the caller's business (`Engine::edit`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use toml_edit::{DocumentMut, InlineTable, Item, Key, Table, Value};

use crate::config::SPECIAL_FILES;
use crate::diag::hint;

/// Why an edit cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditError {
    /// The edit itself is malformed (the body of a PUT).
    #[error("{0}")]
    BadRequest(String),
    /// The edit names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The file to edit cannot take the edit; `details` say where.
    #[error("{message}")]
    Unprocessable {
        message: String,
        details: Vec<String>,
    },
}

impl EditError {
    pub fn bad_request(message: impl Into<String>) -> EditError {
        EditError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> EditError {
        EditError::NotFound(message.into())
    }
}

/// Where new KPIs go when no file defines them yet.
pub const CUSTOM_KPI_FILE: &str = "kpis/custom.toml";
pub const SCORECARDS_FILE: &str = "kpis/scorecards.toml";
pub const TARGETS_FILE: &str = "kpis/targets.toml";

/// The KPI file that defines `id`, or [`CUSTOM_KPI_FILE`].
pub fn kpi_file(files: &BTreeMap<String, String>, id: &str) -> String {
    files
        .iter()
        .filter(|(path, _)| is_kpi_file(path))
        .find(|(_, text)| {
            text.parse::<DocumentMut>()
                .is_ok_and(|d| d.get("kpi").and_then(|k| k.get(id)).is_some())
        })
        .map_or_else(|| CUSTOM_KPI_FILE.to_string(), |(path, _)| path.clone())
}

fn is_kpi_file(path: &str) -> bool {
    path.strip_prefix("kpis/")
        .is_some_and(|n| !n.contains('/') && n.ends_with(".toml") && !SPECIAL_FILES.contains(&n))
}

/// Replaces (or adds) `[kpi.<id>]` in `text` with the table in `body`, which may
/// be written with or without its `[kpi.<id>]` header.
pub fn put_kpi(path: &str, text: &str, id: &str, body: &str) -> Result<String, EditError> {
    let new = kpi_body(id, body)?;
    let mut doc = parse_file(path, text)?;
    let kpi = doc.entry("kpi").or_insert_with(|| Item::Table(implicit()));
    let kpi = kpi
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(path, "kpi"))?;
    match kpi.get_mut(id) {
        Some(existing) => merge(existing, new),
        None => {
            let mut t = fresh(new);
            t.decor_mut().set_prefix("\n");
            kpi.insert(id, Item::Table(t));
        }
    }
    let out = doc.to_string();
    if text.trim().is_empty() {
        return Ok(format!(
            "# KPIs added through the admin API (PUT /api/kpis/ID).\n{}",
            out.trim_start_matches('\n')
        ));
    }
    Ok(out)
}

/// The KPI table a PUT body holds.
fn kpi_body(id: &str, body: &str) -> Result<Table, EditError> {
    let doc: DocumentMut = body
        .parse()
        .map_err(|e| EditError::bad_request(format!("the body is not valid TOML: {e}")))?;
    let mut root = doc.into_table();
    let table = if root.contains_key("kpi") {
        if root.len() != 1 {
            return Err(EditError::bad_request(format!(
                "the body may hold only the [kpi.{id}] table"
            )));
        }
        let Some(mut kpi) = root.remove("kpi").and_then(table_of) else {
            return Err(EditError::bad_request(format!(
                "expected a [kpi.{id}] table in the body"
            )));
        };
        let others: Vec<String> = kpi
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| k != id)
            .collect();
        if !others.is_empty() {
            return Err(EditError::bad_request(format!(
                "the body defines kpi.{} but the URL names kpi.{id}",
                others.join(", kpi.")
            )));
        }
        kpi.remove(id).and_then(table_of).ok_or_else(|| {
            EditError::bad_request(format!("expected a [kpi.{id}] table in the body"))
        })?
    } else {
        root
    };
    if table.is_empty() {
        return Err(EditError::bad_request(format!(
            "the body is empty: expected the keys of [kpi.{id}] (name, unit, direction, formula, …)"
        )));
    }
    Ok(table)
}

/// A table, whether written as `[a.b]` or `b = { … }`.
fn table_of(item: Item) -> Option<Table> {
    match item {
        Item::Table(t) => Some(t),
        Item::Value(Value::InlineTable(t)) => Some(t.into_table()),
        _ => None,
    }
}

/// Replaces the content of `slot` with `new`, keeping what can be kept: the
/// keys that stay keep their place and formatting, replaced values keep their
/// decor (spacing and trailing comment), sub-tables are merged the same way.
fn merge(slot: &mut Item, new: Table) {
    let Some(old) = slot.as_table_like_mut() else {
        *slot = Item::Table(fresh(new));
        return;
    };
    let gone: Vec<String> = old
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !new.contains_key(k))
        .collect();
    for k in gone {
        old.remove(&k);
    }
    for (k, item) in new {
        match old.get_mut(&k) {
            Some(existing) => replace(existing, item),
            None => {
                old.insert(&k, without_positions(item));
            }
        }
    }
}

/// Puts `new` in place of `slot`, keeping the old value's decor.
fn replace(slot: &mut Item, new: Item) {
    match new {
        Item::Value(mut v) => {
            if let Some(old) = slot.as_value() {
                *v.decor_mut() = old.decor().clone();
            }
            *slot = Item::Value(v);
        }
        Item::Table(t) if slot.is_table() => merge(slot, t),
        other => *slot = without_positions(other),
    }
}

/// A table parsed from a request body carries positions in *that* document;
/// rebuilt without them, it is laid out after its neighbours in the file.
fn fresh(t: Table) -> Table {
    let mut out = Table::new();
    *out.decor_mut() = t.decor().clone();
    out.set_implicit(t.is_implicit());
    out.set_dotted(t.is_dotted());
    for (k, item) in t {
        out.insert(&k, without_positions(item));
    }
    out
}

fn without_positions(item: Item) -> Item {
    match item {
        Item::Table(t) => Item::Table(fresh(t)),
        other => other,
    }
}

fn implicit() -> Table {
    let mut t = Table::new();
    t.set_implicit(true);
    t
}

fn parse_file(path: &str, text: &str) -> Result<DocumentMut, EditError> {
    text.parse().map_err(|e: toml_edit::TomlError| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(":{line}:{col}")
            })
            .unwrap_or_default();
        EditError::Unprocessable {
            message: format!("{path} is not valid TOML; fix it first"),
            details: vec![format!(
                "{path}{at}: error: invalid TOML: {}",
                e.message().trim()
            )],
        }
    })
}

fn not_a_table(path: &str, key: &str) -> EditError {
    EditError::Unprocessable {
        message: format!("{path}: `{key}` is not a table"),
        details: vec![],
    }
}

/// A number as TOML: integers stay integers.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// Sets the period key `key` of `table` to `value`, keeping the old value's
/// decor when it is replaced. A new key other than `default` is quoted, as the
/// shipped files write `"Q4"` and `"2026-Q4"`.
fn set(table: &mut dyn toml_edit::TableLike, key: &str, value: Value) {
    if let Some(slot) = table.get_mut(key) {
        replace(slot, Item::Value(value));
        return;
    }
    let quoted = (key != "default")
        .then(|| Key::parse(&format!("\"{key}\"")).ok()?.pop())
        .flatten();
    match quoted {
        Some(k) => {
            table.entry_format(&k).or_insert(Item::Value(value));
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// Sets the weight set `key` of scorecard `card` in scorecards.toml.
pub fn put_weights(
    text: &str,
    card: &str,
    key: &str,
    weights: &[(String, f64)],
) -> Result<String, EditError> {
    let mut doc = parse_file(SCORECARDS_FILE, text)?;
    let known: Vec<String> = doc
        .get("scorecard")
        .and_then(Item::as_table_like)
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default();
    let Some(sc) = doc
        .get_mut("scorecard")
        .and_then(|s| s.get_mut(card))
        .and_then(Item::as_table_like_mut)
    else {
        return Err(EditError::not_found(format!(
            "unknown scorecard '{card}'{}",
            hint(card, known.iter().map(String::as_str))
        )));
    };
    let sets = sc
        .entry("weights")
        .or_insert_with(|| Item::Table(Table::new()));
    let sets = sets
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(SCORECARDS_FILE, &format!("scorecard.{card}.weights")))?;
    let mut inline = InlineTable::new();
    for (kpi, w) in weights {
        inline.insert(kpi, number(*w));
    }
    set(sets, key, Value::InlineTable(inline));
    Ok(doc.to_string())
}

/// A target as the API receives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetSpec {
    pub target: f64,
    pub threshold: Bound,
    pub stretch: Bound,
}

/// What an edit does to a target's threshold or stretch (SPEC 17: a PUT that
/// names only `target` keeps them; `"threshold": null` removes one).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Bound {
    #[default]
    Keep,
    Set(f64),
    Remove,
}

impl Bound {
    /// From a JSON field: absent (None), null (Some(None)) or a number.
    pub fn from_field(f: Option<Option<f64>>) -> Bound {
        match f {
            None => Bound::Keep,
            Some(None) => Bound::Remove,
            Some(Some(x)) => Bound::Set(x),
        }
    }

    fn apply(self, old: Option<f64>) -> Option<f64> {
        match self {
            Bound::Keep => old,
            Bound::Set(x) => Some(x),
            Bound::Remove => None,
        }
    }
}

/// The threshold and stretch a target entry has now (none for a bare number).
fn bounds_of(item: Option<&Item>) -> (Option<f64>, Option<f64>) {
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return (None, None);
    };
    let num = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
    };
    (num("threshold"), num("stretch"))
}

/// Sets the target of `kpi` for `key` (and `team`, when given) in targets.toml.
/// Whose target a `PUT /api/targets` sets.
#[derive(Debug, Clone, Copy)]
pub enum TargetOf<'a> {
    /// Every team (the KPI's own keys).
    All,
    /// One team: `[KPI.teams.ID]`.
    Team(&'a str),
    /// One person: `[KPI.owners.ID]`.
    Owner(&'a str),
}

pub fn put_target(
    text: &str,
    kpi: &str,
    of: TargetOf<'_>,
    key: &str,
    t: &TargetSpec,
) -> Result<String, EditError> {
    let scoped = match of {
        TargetOf::All => None,
        TargetOf::Team(id) => Some(("teams", id)),
        TargetOf::Owner(id) => Some(("owners", id)),
    };
    let mut doc = parse_file(TARGETS_FILE, text)?;
    let section = doc.entry(kpi).or_insert_with(|| {
        let mut t = Table::new();
        t.decor_mut().set_prefix("\n");
        Item::Table(t)
    });
    let mut table = section
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(TARGETS_FILE, kpi))?;
    if let Some((group, id)) = scoped {
        let all = table
            .entry(group)
            .or_insert_with(|| Item::Table(implicit()));
        let all = all
            .as_table_like_mut()
            .ok_or_else(|| not_a_table(TARGETS_FILE, &format!("{kpi}.{group}")))?;
        let own = all.entry(id).or_insert_with(|| Item::Table(Table::new()));
        table = own
            .as_table_like_mut()
            .ok_or_else(|| not_a_table(TARGETS_FILE, &format!("{kpi}.{group}.{id}")))?;
    }
    let (old_threshold, old_stretch) = bounds_of(table.get(key));
    let threshold = t.threshold.apply(old_threshold);
    let stretch = t.stretch.apply(old_stretch);
    let value = if threshold.is_none() && stretch.is_none() {
        number(t.target)
    } else {
        let mut inline = InlineTable::new();
        inline.insert("target", number(t.target));
        if let Some(x) = threshold {
            inline.insert("threshold", number(x));
        }
        if let Some(x) = stretch {
            inline.insert("stretch", number(x));
        }
        Value::InlineTable(inline)
    };
    set(table, key, value);
    Ok(doc.to_string())
}

/// Replaces `path` with `text` atomically: a temporary file in the same folder
/// (a dot file the watcher and the loader ignore), fsync, the original file's
/// permissions, rename over, fsync of the folder.
///
/// A symlink is written through: the file it points to is replaced (the
/// temporary file is made beside that file), the link stays a link.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    stage(path, text)?.commit()
}

/// A file's new text written to its temporary file, not yet renamed over it.
/// Dropped without [`Staged::commit`], the temporary file is removed.
pub struct Staged {
    tmp: std::path::PathBuf,
    target: std::path::PathBuf,
    done: bool,
}

/// The first half of [`write_atomic`]: writes and syncs the temporary file.
pub fn stage(path: &Path, text: &str) -> std::io::Result<Staged> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let target = if path.is_symlink() {
        std::fs::canonicalize(path)?
    } else {
        path.to_path_buf()
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let staged = Staged {
        tmp: dir.join(format!(".{name}.{}-{n}.tmp", std::process::id())),
        target: target.clone(),
        done: false,
    };
    let mut f = std::fs::File::create(&staged.tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    if let Ok(meta) = std::fs::metadata(&target) {
        std::fs::set_permissions(&staged.tmp, meta.permissions())?;
    }
    Ok(staged)
}

impl Staged {
    /// The second half of [`write_atomic`]: the rename over, and the folder's fsync.
    pub fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.target)?;
        self.done = true;
        if let Some(d) = self
            .target
            .parent()
            .and_then(|dir| std::fs::File::open(dir).ok())
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Removes the temporary files [`write_atomic`] left behind when its process
/// was killed mid-write (`kpis/.NAME.PID-N.tmp`, `scripts/…`): those of a
/// process that no longer runs, or older than a minute where that cannot be told.
pub fn remove_stale_temp_files(root: &Path) {
    for dir in [root.join("kpis"), root.join("scripts")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(pid) = temp_file_pid(&name) else {
                continue;
            };
            let proc = Path::new("/proc");
            let stale = if proc.is_dir() {
                pid != std::process::id() && !proc.join(pid.to_string()).exists()
            } else {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(60))
            };
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                tracing::info!("removed a stale temporary file {}", entry.path().display());
            }
        }
    }
}

/// The process id in a temporary file name of [`write_atomic`]: `.NAME.PID-N.tmp`.
fn temp_file_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = inner.rsplit_once('.')?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_names_of_write_atomic_are_recognised() {
        assert_eq!(temp_file_pid(".custom.toml.4242-0.tmp"), Some(4242));
        assert_eq!(temp_file_pid(".custom.toml.swp"), None);
        assert_eq!(temp_file_pid("custom.toml"), None);
        assert_eq!(temp_file_pid(".x.tmp"), None);
    }

    const SALES: &str = r#"# Sales KPIs.

# Revenue: the sum.
[kpi.revenue]
name = "Revenue"   # shown on the dashboard
unit = "currency"
direction = "higher"
formula = '''
records("deals").sum("amount")
'''

# Win rate.
[kpi.win_rate]
name = "Win rate"
unit = "ratio"
direction = "higher"
formula = "1.0"
"#;

    #[test]
    fn replaces_one_kpi_and_keeps_everything_else() {
        let body = "name = \"Revenue (won)\"\nunit = \"currency\"\ndirection = \"higher\"\nformula = '''\nrecords(\"deals\").eq(\"stage\", \"won\").sum(\"amount\")\n'''\n";
        let out = put_kpi("kpis/sales.toml", SALES, "revenue", body).unwrap();
        let expected = SALES
            .replace("\"Revenue\"   #", "\"Revenue (won)\"   #")
            .replace(
                "records(\"deals\").sum",
                "records(\"deals\").eq(\"stage\", \"won\").sum",
            );
        assert_eq!(out, expected);
    }

    #[test]
    fn accepts_the_header_form_and_drops_keys_left_out() {
        let body = "[kpi.win_rate]\nname = \"Win rate\"\nunit = \"ratio\"\ndirection = \"higher\"\nformula = \"0.5\"\nlabels = { zh = \"赢单率\" }\n";
        let out = put_kpi("kpis/sales.toml", SALES, "win_rate", body).unwrap();
        assert!(out.starts_with(&SALES[..SALES.find("# Win rate.").unwrap()]));
        assert!(out.ends_with(
            "[kpi.win_rate]\nname = \"Win rate\"\nunit = \"ratio\"\ndirection = \"higher\"\nformula = \"0.5\"\nlabels = { zh = \"赢单率\" }\n"
        ), "{out}");
        let wrong = put_kpi(
            "kpis/sales.toml",
            SALES,
            "win_rate",
            "[kpi.other]\nname = \"x\"\n",
        );
        assert!(matches!(wrong.unwrap_err(), EditError::BadRequest(_)));
        let bad = put_kpi("kpis/sales.toml", SALES, "win_rate", "name = ");
        assert!(matches!(bad.unwrap_err(), EditError::BadRequest(_)));
    }

    #[test]
    fn adds_a_new_kpi_at_the_end_or_in_a_new_file() {
        let body = "name = \"X\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"1.0\"\n[labels]\nzh = \"甲\"\n";
        let out = put_kpi("kpis/sales.toml", SALES, "x", body).unwrap();
        assert!(out.starts_with(SALES), "{out}");
        assert_eq!(
            &out[SALES.len()..],
            "\n[kpi.x]\nname = \"X\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"1.0\"\n[kpi.x.labels]\nzh = \"甲\"\n"
        );
        let new = put_kpi(CUSTOM_KPI_FILE, "", "x", "name = \"X\"\n").unwrap();
        assert_eq!(
            new,
            "# KPIs added through the admin API (PUT /api/kpis/ID).\n[kpi.x]\nname = \"X\"\n"
        );
        assert!(new.parse::<DocumentMut>().is_ok());
    }

    #[test]
    fn finds_the_file_that_defines_a_kpi() {
        let files = BTreeMap::from([
            ("kpis/sales.toml".to_string(), SALES.to_string()),
            ("kpis/targets.toml".to_string(), "[revenue]\n".to_string()),
        ]);
        assert_eq!(kpi_file(&files, "win_rate"), "kpis/sales.toml");
        assert_eq!(kpi_file(&files, "nope"), CUSTOM_KPI_FILE);
    }

    const CARDS: &str = "# Cards.\n[scorecard.sales]\nname = \"Sales\"\n[scorecard.sales.weights]\ndefault = { revenue = 60, win_rate = 40 }   # the usual\n\"Q4\" = { revenue = 80, win_rate = 20 }\n";

    #[test]
    fn sets_a_weight_set_in_place() {
        let w = vec![
            ("revenue".to_string(), 50.0),
            ("win_rate".to_string(), 12.5),
        ];
        let out = put_weights(CARDS, "sales", "default", &w).unwrap();
        assert_eq!(
            out,
            CARDS.replace(
                "{ revenue = 60, win_rate = 40 }",
                "{ revenue = 50, win_rate = 12.5 }"
            )
        );
        let added = put_weights(CARDS, "sales", "2026-Q1", &w).unwrap();
        assert_eq!(
            added,
            format!("{CARDS}\"2026-Q1\" = {{ revenue = 50, win_rate = 12.5 }}\n")
        );
        let e = put_weights(CARDS, "sale", "default", &w).unwrap_err();
        assert!(matches!(e, EditError::NotFound(_)));
        assert!(e.to_string().contains("did you mean 'sales'"), "{e}");
    }

    const TARGETS: &str = "# Targets.\n[revenue]\ndefault = 100.0   # per quarter\n\"Q4\" = 120.0\n[revenue.teams.north]\ndefault = 90.0\n\n# Win rate.\n[win_rate]\ndefault = 0.25\n";

    #[test]
    fn sets_targets_for_everyone_or_one_team() {
        let t = TargetSpec {
            target: 110.5,
            threshold: Bound::Keep,
            stretch: Bound::Keep,
        };
        let out = put_target(TARGETS, "revenue", TargetOf::All, "default", &t).unwrap();
        assert_eq!(out, TARGETS.replace("100.0   #", "110.5   #"));
        let full = TargetSpec {
            target: 0.3,
            threshold: Bound::Set(0.2),
            stretch: Bound::Set(0.4),
        };
        let out = put_target(
            TARGETS,
            "win_rate",
            TargetOf::Team("south"),
            "2026-Q4",
            &full,
        )
        .unwrap();
        assert_eq!(
            out,
            format!(
                "{TARGETS}\n[win_rate.teams.south]\n\"2026-Q4\" = {{ target = 0.3, threshold = 0.2, stretch = 0.4 }}\n"
            )
        );
        let north = put_target(TARGETS, "revenue", TargetOf::Team("north"), "Q1", &t).unwrap();
        assert_eq!(
            north,
            TARGETS.replace("default = 90.0\n", "default = 90.0\n\"Q1\" = 110.5\n")
        );
        let fresh = put_target(TARGETS, "nps", TargetOf::All, "default", &t).unwrap();
        assert_eq!(fresh, format!("{TARGETS}\n[nps]\ndefault = 110.5\n"));
    }

    #[test]
    fn naming_only_the_target_keeps_the_threshold_and_stretch_and_null_removes_one() {
        let text = "[win_rate]\n\"Q4\" = { target = 0.32, threshold = 0.20, stretch = 0.40 }\n";
        let only = TargetSpec {
            target: 0.35,
            threshold: Bound::Keep,
            stretch: Bound::Keep,
        };
        let out = put_target(text, "win_rate", TargetOf::All, "Q4", &only).unwrap();
        assert!(
            out.contains("\"Q4\" = { target = 0.35, threshold = 0.2, stretch = 0.4 }"),
            "{out}"
        );
        let drop = TargetSpec {
            threshold: Bound::Remove,
            ..only
        };
        let out = put_target(text, "win_rate", TargetOf::All, "Q4", &drop).unwrap();
        assert!(
            out.contains("\"Q4\" = { target = 0.35, stretch = 0.4 }"),
            "{out}"
        );
        let plain = TargetSpec {
            threshold: Bound::Remove,
            stretch: Bound::Remove,
            ..only
        };
        let out = put_target(text, "win_rate", TargetOf::All, "Q4", &plain).unwrap();
        assert!(out.contains("\"Q4\" = 0.35"), "{out}");
    }

    #[test]
    fn writes_atomically_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        write_atomic(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
