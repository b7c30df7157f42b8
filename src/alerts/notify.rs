//! Which messages the transitions of one evaluation become (SPEC 18):
//! silences hold transitions back, `inhibit_children` folds a team's
//! `missed` into its parent's, `group_by` makes one digest per group, and
//! each message is rendered for its webhook's kind and queued in the outbox.
//!
//! Runs inside the transaction that applies the transitions, so a message
//! is queued exactly when its transitions are.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::message::{self, Entry, Names};
use super::outbox::{self, Outgoing, Told};
use super::silence::{self, Silence};
use super::state::{Row, Transition, set_muted};
use super::{AlertError, Kind, robots};
use crate::config::ConfigSnapshot;
use crate::config::alerts::{Webhook, WebhookKind};
use crate::period::Millis;
use crate::store::TeamTree;
use crate::store::engine_db::Db;

/// (kpi, team, period) of `missed` alerts that are firing after the evaluation.
pub(crate) type FiringMissed = HashSet<(String, String, String)>;

/// Plans and queues the messages of `rows` (the transitions just applied,
/// in order; `transitions` are their payloads and get their counts and
/// mutes). Returns how many messages were queued.
#[allow(clippy::too_many_arguments)]
pub(crate) fn queue(
    tx: &Db<'_>,
    cfg: &Arc<ConfigSnapshot>,
    teams: &TeamTree,
    rows: &[Row],
    transitions: &mut [Transition],
    firing_missed: &FiringMissed,
    as_of: Millis,
    now: Millis,
) -> Result<usize, AlertError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut silences: Vec<Silence> = cfg.alerts.silences.clone();
    silences.extend(silence::stored(tx)?);
    let cal = &cfg.settings.calendar;
    // Why each transition is held back, and behind which ancestor alert.
    let mut parent_of: Vec<Option<usize>> = vec![None; rows.len()];
    let index: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.id(), i))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let k = &row.key;
        let muted = if let Some(s) = silences
            .iter()
            .find(|s| s.matches(&k.kpi, &k.team, as_of, cal))
        {
            Some(s.describe())
        } else if cfg.alerts.inhibit_children && k.kind == Kind::Missed {
            top_firing_ancestor(teams, &k.kpi, &k.team, &k.period, firing_missed).map(|a| {
                let id = format!("missed:{}:{a}:{}", k.kpi, k.period);
                parent_of[i] = index.get(&id).copied();
                format!("inhibited by {id}")
            })
        } else {
            None
        };
        set_muted(tx, &k.id(), muted.as_deref())?;
        transitions[i].muted = muted;
    }
    let names = Names { cfg, teams };
    let mut queued = 0;
    for hook in &cfg.alerts.webhooks {
        queued += queue_for(tx, &names, hook, rows, transitions, &parent_of, now)?;
    }
    Ok(queued)
}

/// The highest ancestor of `team` whose `missed` of the same KPI and period
/// is firing (the one whose notification lists the others).
fn top_firing_ancestor(
    teams: &TeamTree,
    kpi: &str,
    team: &str,
    period: &str,
    firing: &FiringMissed,
) -> Option<String> {
    let mut at = teams.index(team)?;
    let mut top = None;
    let mut steps = 0;
    while let Some(p) = teams.parent[at as usize] {
        let id = &teams.ids[p as usize];
        if firing.contains(&(kpi.to_string(), id.clone(), period.to_string())) {
            top = Some(id.clone());
        }
        at = p;
        steps += 1;
        if steps > teams.len() {
            break;
        }
    }
    top
}

/// Queues the messages of one webhook; returns how many.
fn queue_for(
    tx: &Db<'_>,
    names: &Names<'_>,
    hook: &Webhook,
    rows: &[Row],
    transitions: &mut [Transition],
    parent_of: &[Option<usize>],
    now: Millis,
) -> Result<usize, AlertError> {
    let takes = |i: usize| {
        transitions[i].muted.is_none() && outbox::matches(hook, &rows[i].key.kpi, &rows[i].key.team)
    };
    // Groups in order of their first transition; each entry lists the
    // children held back behind it.
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for i in (0..rows.len()).filter(|&i| takes(i)) {
        let key: Vec<String> = if hook.group_by.is_empty() {
            vec![i.to_string()]
        } else {
            hook.group_by
                .iter()
                .map(|k| message::group_value(*k, &transitions[i].payload))
                .collect()
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut queued = 0;
    for (_, members) in groups {
        let entries: Vec<Entry> = members
            .iter()
            .map(|&i| Entry {
                payload: transitions[i].payload.clone(),
                children: (0..rows.len())
                    .filter(|&c| parent_of[c] == Some(i))
                    .map(|c| transitions[c].payload.clone())
                    .collect(),
            })
            .collect();
        let body = match hook.kind {
            WebhookKind::Json => message::json_body(hook, &entries),
            kind => robots::body(
                kind,
                &message::chat_message(names, hook, &entries),
                &hook.mention,
            ),
        };
        let tells = members
            .iter()
            .map(|&i| Told {
                alert_id: rows[i].key.id(),
                transition: rows[i].transitions,
                state: rows[i].state.as_str().to_string(),
            })
            .collect();
        let m = Outgoing {
            webhook: hook.name.clone(),
            url: hook.url.clone(),
            kind: hook.kind,
            secret: hook.secret.clone(),
            body,
            tells,
        };
        if outbox::enqueue(tx, &m, now)? {
            queued += 1;
            for &i in &members {
                transitions[i].notifications += 1;
            }
        }
    }
    Ok(queued)
}
