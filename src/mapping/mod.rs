//! Mappings (SPEC 15): `kpis/mappings/NAME.toml` turns a foreign export (a
//! Salesforce, HubSpot or Odoo file) into records of one or more entities.
//!
//! [`spec`] reads and checks a mapping file against the schema (every problem
//! with its file:line:col, like every other configuration file); [`script`]
//! is the sandboxed Rhai of `expr`, `skip_if`, `when`, `order_by` and
//! `key_expr`; [`cell`] converts one source cell by the mapping's reading
//! rules; [`run`] reads the source, folds rows of one id and hands checked
//! records to the store's import transaction ([`crate::store::import::ingest`]).
//!
//! Architecture invariant: this module writes nothing itself and holds no
//! SQL; every record goes through the same writer and checks as `kpi import`.

pub mod cell;
pub mod run;
pub mod script;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use run::{MappedImport, Request, import_with_mapping};
pub use spec::{Mapping, Part};

use crate::config::toml_doc::Source;
use crate::diag::Diagnostic;
use crate::store::Schema;

/// The folder of mapping files, relative to the root.
pub const DIR: &str = "kpis/mappings/";

/// Reads every `kpis/mappings/*.toml` of `files` against `schema`: the
/// mappings by name, and every problem found.
pub fn load_all(
    files: &BTreeMap<String, String>,
    schema: &Schema,
) -> (BTreeMap<String, Arc<Mapping>>, Vec<Diagnostic>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (path, text) in files {
        let Some(name) = path.strip_prefix(DIR).and_then(|n| n.strip_suffix(".toml")) else {
            continue;
        };
        if name.contains('/') {
            continue;
        }
        match spec::read(&Source::new(path.clone(), text.clone()), name, schema) {
            Ok(m) => {
                out.insert(name.to_string(), Arc::new(m));
            }
            Err(e) => errors.extend(e),
        }
    }
    (out, errors)
}
