//! The fuzz targets of kpi-engine: each takes arbitrary bytes and feeds
//! them to one parser of untrusted input, exactly as the CLI or the server
//! would. A target must never panic, hang or overflow the stack; bad input
//! is an `Err` with a message. The `src/bin/*` wrappers hand them to AFL++;
//! `replay` runs them over the corpora without AFL (see docs/fuzzing.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use kpi_engine::config::ConfigSnapshot;
use kpi_engine::config::edit::{self, Bound, TargetOf, TargetSpec};
use kpi_engine::config::toml_doc::Source;
use kpi_engine::period::{Calendar, PeriodId, parse_period_range};
use kpi_engine::store::import::{Input, Parsed, RowReader, json_array, readers};

/// Every target by name, as the binaries and `replay` call them.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("csv_rows", csv_rows),
    ("ndjson_rows", ndjson_rows),
    ("json_rows", json_rows),
    ("mapping_file", mapping_file),
    ("period", period),
    ("config_toml", config_toml),
    ("put_kpi", put_kpi),
    ("put_json", put_json),
];

/// The repository's root (the standard library lives in its kpis/ and scripts/).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The standard library's files, read once.
fn library_files() -> &'static BTreeMap<String, String> {
    static FILES: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
        kpi_engine::config::read_files(&repo()).expect("the standard library reads")
    });
    &FILES
}

/// The standard library, loaded once.
fn library() -> &'static ConfigSnapshot {
    static CFG: LazyLock<ConfigSnapshot> = LazyLock::new(|| {
        kpi_engine::config::from_files(&repo(), library_files().clone())
            .unwrap_or_else(|e| panic!("the standard library loads: {e:?}"))
    });
    &CFG
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Reads rows of `deals` (every field type) as `kpi import` does; the first
/// byte picks the entity among the schema's.
fn rows(data: &[u8], input: impl FnOnce(&[u8]) -> Option<Input<'_>>) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let cfg = library();
    let entities: Vec<_> = cfg.schema.entities.values().collect();
    let entity = entities[pick as usize % entities.len()];
    let cal = Calendar::new("Asia/Shanghai", 1).expect("a calendar");
    let reader = RowReader { entity, cal: &cal };
    let Some(input) = input(body) else {
        return;
    };
    let _ = readers::read(&reader, "fuzz", input, &mut |parsed| {
        if let Parsed::Row(pos, _) = parsed {
            let _ = pos.at("fuzz");
        }
        Ok(())
    });
}

pub fn csv_rows(data: &[u8]) {
    rows(data, |b| Some(Input::Csv(Box::new(b))));
}

pub fn ndjson_rows(data: &[u8]) {
    rows(data, |b| Some(Input::Ndjson(Box::new(b))));
}

/// A JSON array body of `POST /api/records/{entity}`.
pub fn json_rows(data: &[u8]) {
    rows(data, |b| json_array(b).ok().map(Input::JsonArray));
}

/// A mapping file of kpis/mappings/ (SPEC 15), read and checked against the schema.
pub fn mapping_file(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let src = Source::new("kpis/mappings/fuzz.toml", t);
    let _ = kpi_engine::mapping::spec::read(&src, "fuzz", &library().schema);
}

/// Period ids and ranges, and the periods and instants they name.
pub fn period(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let cal = Calendar::utc();
    if let Ok(id) = t.parse::<PeriodId>() {
        let p = cal.period(id);
        let _ = (id.prev(), id.next(), id.recurring_key(), p.elapsed(p.start));
        assert_eq!(id.to_string().parse::<PeriodId>().ok(), Some(id), "{t:?}");
    }
    if let Ok(ids) = parse_period_range(t) {
        for id in ids.iter().take(4) {
            let _ = cal.period(*id);
        }
    }
    let _ = cal.parse_time(t);
}

/// A file of kpis/ replaced by the input, and the whole root loaded and
/// checked as `kpi check` and a reload do; the first byte picks the file.
pub fn config_toml(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Some(t) = text(body) else { return };
    let mut files = library_files().clone();
    let names: Vec<String> = files
        .keys()
        .filter(|k| k.ends_with(".toml"))
        .cloned()
        .collect();
    let name = names[pick as usize % names.len()].clone();
    files.insert(name, t.to_string());
    let _ = kpi_engine::config::from_files(&repo(), files);
}

/// `PUT /api/kpis/{id}`: the body edited into its file, then the candidate loaded.
pub fn put_kpi(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let files = library_files();
    let id = "win_rate";
    let path = edit::kpi_file(files, id);
    let old = files.get(&path).cloned().unwrap_or_default();
    if let Ok(new) = edit::put_kpi(&path, &old, id, t) {
        let mut files = files.clone();
        files.insert(path, new);
        let _ = kpi_engine::config::from_files(&repo(), files);
    }
}

/// The JSON bodies of `PUT /api/targets/{kpi}` and
/// `PUT /api/scorecards/{id}/weights/{key}`, edited into their files.
pub fn put_json(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let files = library_files();
    let targets = files.get(edit::TARGETS_FILE).cloned().unwrap_or_default();
    let scorecards = files
        .get(edit::SCORECARDS_FILE)
        .cloned()
        .unwrap_or_default();
    let key = v["key"].as_str().unwrap_or("Q4");
    if let Some(target) = v["target"].as_f64() {
        let spec = TargetSpec {
            target,
            threshold: Bound::from_field(v.get("threshold").map(serde_json::Value::as_f64)),
            stretch: Bound::from_field(v.get("stretch").map(serde_json::Value::as_f64)),
        };
        let of = match (v["team"].as_str(), v["owner"].as_str()) {
            (Some(t), _) => TargetOf::Team(t),
            (None, Some(o)) => TargetOf::Owner(o),
            _ => TargetOf::All,
        };
        if let Ok(new) = edit::put_target(&targets, "win_rate", of, key, &spec) {
            let mut files = files.clone();
            files.insert(edit::TARGETS_FILE.to_string(), new);
            let _ = kpi_engine::config::from_files(&repo(), files);
        }
    }
    if let Some(w) = v["weights"].as_object() {
        let weights: Vec<(String, f64)> = w
            .iter()
            .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
            .collect();
        if let Ok(new) = edit::put_weights(&scorecards, "sales", key, &weights) {
            let mut files = files.clone();
            files.insert(edit::SCORECARDS_FILE.to_string(), new);
            let _ = kpi_engine::config::from_files(&repo(), files);
        }
    }
}
