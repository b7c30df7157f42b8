//! The checks of a teams import: every parent is a known team and the tree
//! has no cycle (run on the table as it will be committed).

use std::collections::{HashMap, HashSet};

use rusqlite::Transaction;

use super::super::StoreError;
use super::super::schema::TEAMS;
use super::Errors;
use crate::diag::hint;

/// After a teams import: every parent is a known team and the tree has no cycle.
pub(super) fn check_team_tree(
    tx: &Transaction<'_>,
    lines: &HashMap<String, String>,
    errors: &mut Errors,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare(&format!("SELECT id, parent FROM \"{TEAMS}\""))?;
    let parents: HashMap<String, Option<String>> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut ids: Vec<&String> = lines.keys().collect();
    ids.sort();
    for id in ids {
        let at = &lines[id];
        if let Some(Some(p)) = parents.get(id)
            && !parents.contains_key(p)
        {
            let h = hint(p, parents.keys().map(String::as_str));
            errors.push(format!("{at}: field 'parent': unknown team {p:?}{h}"));
            continue;
        }
        if in_cycle(&parents, id) {
            errors.push(format!(
                "{at}: field 'parent': team {id:?} is its own ancestor (the teams form a cycle)"
            ));
        }
    }
    Ok(())
}

fn in_cycle(parents: &HashMap<String, Option<String>>, start: &str) -> bool {
    let mut seen = HashSet::new();
    let mut cur = start;
    while let Some(Some(p)) = parents.get(cur) {
        if p == start || !seen.insert(p.as_str()) {
            return true;
        }
        cur = p;
    }
    false
}
