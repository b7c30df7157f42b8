//! What every row of one entity must pass before it is written, checked on
//! the reading thread: its team and owner are known, and the bookkeeping of
//! an import (ids written, ids repeated, a teams import's lines).

use std::collections::{HashMap, HashSet};

use super::super::engine_db::Db;
use super::super::schema::{Entity, OWNERS, OwnerLink, TEAMS};
use super::super::{StoreError, Value};
use super::{Errors, MAX_LISTED_IDS};
use crate::diag::hint;

/// What the database knew when the import's transaction began.
pub(super) struct Known {
    pub(super) teams: HashSet<String>,
    /// The `owners` ids; None when the schema has no such table.
    pub(super) owners: Option<HashSet<String>>,
}

/// The checks and counts of one entity's rows.
pub(super) struct Checks<'s> {
    pub(super) entity: &'s Entity,
    known: &'s Known,
    team_index: Option<usize>,
    /// The field naming the record's person and the people known, when the
    /// `owners` table holds any (CRMs often export deals before users: then
    /// no owner is checked).
    owner_check: Option<(usize, &'s HashSet<String>)>,
    /// For a teams import: id → line, to report cycles and bad parents.
    pub(super) team_lines: HashMap<String, String>,
    /// Distinct ids written.
    written: usize,
    /// Every id written so far, to count the rows that repeat one.
    seen: rustc_hash::FxHashSet<Box<str>>,
    duplicates: usize,
    /// The ids written, until there are more than [`MAX_LISTED_IDS`].
    ids: Option<Vec<String>>,
}

impl<'s> Checks<'s> {
    pub(super) fn new(entity: &'s Entity, known: &'s Known) -> Self {
        let team_index = entity
            .team_field
            .as_deref()
            .and_then(|t| entity.field_index(t));
        let owner_check = match (&entity.owner, &known.owners) {
            (Some(OwnerLink::Field(f)), Some(ids)) if !ids.is_empty() => {
                entity.field_index(f).map(|i| (i, ids))
            }
            _ => None,
        };
        Checks {
            entity,
            known,
            team_index,
            owner_check,
            team_lines: HashMap::new(),
            written: 0,
            seen: Default::default(),
            duplicates: 0,
            ids: Some(Vec::new()),
        }
    }

    /// Checks what only the database knows; true when the row may be
    /// written. With `dry` (a problem was found before) the row is only
    /// checked, not counted. `at` names the row in messages.
    pub(super) fn row(
        &mut self,
        at: &dyn Fn() -> String,
        values: &[Value],
        errors: &mut Errors,
        dry: bool,
    ) -> bool {
        if let Some(i) = self.team_index
            && let Value::Text(team) = &values[i]
            && !self.known.teams.contains(team)
        {
            let h = hint(team, self.known.teams.iter().map(String::as_str));
            errors.push(format!(
                "{}: field '{}': unknown team {team:?}{h} (import teams first)",
                at(),
                self.entity.fields[i].name
            ));
            return false;
        }
        if let Some((i, owners)) = &self.owner_check
            && let Value::Text(owner) = &values[*i]
            && !owners.contains(owner)
        {
            let h = hint(owner, owners.iter().map(String::as_str));
            errors.push(format!(
                "{}: field '{}': unknown owner {owner:?}{h} (import owners first, or leave it empty)",
                at(),
                self.entity.fields[*i].name
            ));
            return false;
        }
        if self.entity.name == TEAMS
            && let Value::Text(id) = &values[0]
        {
            self.team_lines.insert(id.clone(), at());
        }
        if dry {
            return false;
        }
        self.count(&values[0]);
        true
    }

    /// Counts a row about to be written by its id: a new record or a repeat.
    fn count(&mut self, id: &Value) {
        let first = match id {
            Value::Text(id) => {
                !self.seen.contains(id.as_str()) && self.seen.insert(id.as_str().into())
            }
            _ => true,
        };
        if !first {
            self.duplicates += 1;
            return;
        }
        self.written += 1;
        if let Some(ids) = &mut self.ids {
            match id {
                Value::Text(id) if ids.len() < MAX_LISTED_IDS => ids.push(id.clone()),
                _ => self.ids = None,
            }
        }
    }

    /// What was written.
    pub(super) fn report(mut self) -> super::ImportReport {
        super::ImportReport {
            entity: self.entity.name.clone(),
            written: self.written,
            duplicates: self.duplicates,
            ids: self.ids.take(),
        }
    }
}

/// The teams and owners known to `conn` (inside the import's transaction).
pub(super) fn known(conn: &rusqlite::Connection) -> Result<Known, StoreError> {
    let has_owners = Db::Sqlite(conn).has_table(OWNERS)?;
    Ok(Known {
        teams: ids(conn, TEAMS)?,
        owners: has_owners.then(|| ids(conn, OWNERS)).transpose()?,
    })
}

fn ids(conn: &rusqlite::Connection, table: &str) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT id FROM \"{table}\""))?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}
