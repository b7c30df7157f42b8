//! The team tree: teams as small integer indexes with their ancestry.

use std::collections::HashMap;

/// The teams as a tree of small integer indexes.
#[derive(Debug, Default)]
pub struct TeamTree {
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub parent: Vec<Option<u32>>,
    /// For each team: itself and its ancestors, nearest first.
    pub up: Vec<Vec<u32>>,
    index: HashMap<String, u32>,
}

impl TeamTree {
    pub fn new(rows: Vec<(String, String, Option<String>)>) -> TeamTree {
        let mut rows = rows;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let index: HashMap<String, u32> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.0.clone(), i as u32))
            .collect();
        let parent: Vec<Option<u32>> = rows
            .iter()
            .map(|r| r.2.as_ref().and_then(|p| index.get(p).copied()))
            .collect();
        let up = (0..rows.len())
            .map(|t| ancestry(&parent, t as u32))
            .collect();
        TeamTree {
            ids: rows.iter().map(|r| r.0.clone()).collect(),
            names: rows.into_iter().map(|r| r.1).collect(),
            parent,
            up,
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

    /// Depth-first order from the roots, for display.
    pub fn tree_order(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        let roots = (0..self.len() as u32).filter(|t| self.parent[*t as usize].is_none());
        for r in roots {
            self.walk(r, &mut out);
        }
        out
    }

    /// Every team reachable from a root, each after all of its descendants.
    pub fn bottom_up(&self) -> Vec<u32> {
        let mut order = self.tree_order();
        order.reverse();
        order
    }

    fn walk(&self, t: u32, out: &mut Vec<u32>) {
        if out.contains(&t) {
            return;
        }
        out.push(t);
        for c in (0..self.len() as u32).filter(|c| self.parent[*c as usize] == Some(t)) {
            self.walk(c, out);
        }
    }
}

/// Self then ancestors; stops at a repeated team, so a cycle written behind
/// the engine's back cannot loop forever.
fn ancestry(parent: &[Option<u32>], t: u32) -> Vec<u32> {
    let mut chain = vec![t];
    let mut cur = t;
    while let Some(p) = parent[cur as usize] {
        if chain.contains(&p) {
            break;
        }
        chain.push(p);
        cur = p;
    }
    chain
}
