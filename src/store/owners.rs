//! The people records belong to (SPEC 14): the `owners` entity as small
//! integer indexes, each with its team and whether it is active.

use std::collections::HashMap;

use super::teams::TeamTree;

/// One row of `owners` as read: id, name, team id, active (None = active).
pub type OwnerRow = (String, String, Option<String>, Option<bool>);

#[derive(Debug, Default)]
pub struct Owners {
    pub ids: Vec<String>,
    pub names: Vec<String>,
    /// The team of each person (its index in the team tree), when known.
    pub team: Vec<Option<u32>>,
    pub active: Vec<bool>,
    index: HashMap<String, u32>,
}

impl Owners {
    /// People sorted by id, their teams resolved in `tree`.
    pub fn new(rows: Vec<OwnerRow>, tree: &TeamTree) -> Owners {
        let mut rows = rows;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.0.clone(), i as u32))
            .collect();
        Owners {
            team: rows
                .iter()
                .map(|r| r.2.as_deref().and_then(|t| tree.index(t)))
                .collect(),
            active: rows.iter().map(|r| r.3.unwrap_or(true)).collect(),
            ids: rows.iter().map(|r| r.0.clone()).collect(),
            names: rows.into_iter().map(|r| r.1).collect(),
            index,
        }
    }

    pub fn index(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of person `o`'s team, if it is a known team.
    pub fn team_id<'t>(&self, o: u32, tree: &'t TeamTree) -> Option<&'t str> {
        self.team[o as usize].map(|t| tree.ids[t as usize].as_str())
    }
}
