//! `kpi alerts` (SPEC 11 and 18): evaluate once, print the alerts of the
//! watched periods, and deliver with `--send`.
//!
//! `--as-of T` without `--send` is a dry run: the evaluation runs inside a
//! transaction that is rolled back after the report is made, so nothing is
//! written unless `--record` (or `--send`) is given. `--kpi`, `--team` (a
//! team and its subtree), `--kind` and `--state` filter the list;
//! `--summary` prints counts per team × kind instead.

use std::sync::Arc;
use std::time::Duration;

use super::view::{self, Filter};
use super::{AlertError, DeliveryOptions, Kind, conditions};
use crate::config::ConfigSnapshot;
use crate::eval::Records;
use crate::period::Millis;
use crate::store::StoreError;
use crate::store::TeamTree;
use crate::store::engine_db::{AsDb, Db};

/// The options of `kpi alerts`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AlertsArgs {
    /// Evaluate as of this time (RFC 3339 or YYYY-MM-DD[ HH:MM:SS]); default now. Without
    /// --send or --record this is a dry run: nothing is written.
    #[arg(long = "as-of")]
    pub as_of: Option<String>,
    /// Record the evaluation and deliver pending notifications (retrying for up to about 30 s).
    #[arg(long)]
    pub send: bool,
    /// Store what an --as-of evaluation finds (alerts and their queued notifications).
    #[arg(long)]
    pub record: bool,
    /// Only these KPIs (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub kpi: Vec<String>,
    /// Only this team and the teams under it.
    #[arg(long)]
    pub team: Option<String>,
    /// Only this kind: missed or at_risk.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only alerts in this state: firing, resolved or all (the default).
    #[arg(long)]
    pub state: Option<String>,
    /// Print counts per team and kind instead of the list.
    #[arg(long)]
    pub summary: bool,
}

/// What went wrong, for the user.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Alerts(#[from] AlertError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("alerts database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("--as-of: {0}")]
    AsOf(crate::period::PeriodError),
    #[error("--kpi: unknown KPI '{0}'{1}")]
    UnknownKpi(String, String),
    #[error("--team: unknown team '{0}'{1}")]
    UnknownTeam(String, String),
}

/// The text to print, and warnings for stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Runs `kpi alerts` against `conn` (the alert tables) and `store` (records).
pub fn run(
    cfg: &Arc<ConfigSnapshot>,
    conn: &impl AsDb,
    store: Records,
    args: &AlertsArgs,
) -> Result<Output, CliError> {
    let conn = conn.as_db();
    let as_of = match &args.as_of {
        Some(t) => cfg
            .settings
            .calendar
            .parse_time(t)
            .map_err(CliError::AsOf)?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let filter = filter(cfg, &*store.store.teams()?, args)?;
    let dry = args.as_of.is_some() && !args.send && !args.record;
    let judged = super::judge(cfg, &conn, store, as_of)?;
    if dry {
        let text = conn.rolled_back(|tx| -> Result<String, CliError> {
            let applied = super::apply_in(cfg, tx, &judged, as_of)?;
            Ok(format!(
                "dry run: nothing is written (--record stores this evaluation, --send stores and sends)\n{}",
                render(cfg, tx, as_of, &applied.transitions, None, &filter, args)?
            ))
        })?;
        return Ok(Output {
            text,
            warnings: Vec::new(),
        });
    }
    let applied = conn.in_transaction(|tx| super::apply_in(cfg, tx, &judged, as_of))?;
    let mut warnings = Vec::new();
    let delivery = if args.send {
        let opts = DeliveryOptions::from_settings(&cfg.alerts);
        let r = super::deliver_within(&conn, &opts, Duration::from_secs(30))?;
        warnings.extend(r.errors.iter().cloned());
        Some(r)
    } else {
        None
    };
    let text = render(
        cfg,
        &conn,
        as_of,
        &applied.transitions,
        delivery.as_ref(),
        &filter,
        args,
    )?;
    Ok(Output { text, warnings })
}

fn render(
    cfg: &ConfigSnapshot,
    conn: &Db<'_>,
    as_of: Millis,
    transitions: &[super::Transition],
    delivery: Option<&super::DeliveryReport>,
    filter: &Filter,
    args: &AlertsArgs,
) -> Result<String, AlertError> {
    if !args.summary {
        return view::report_filtered(cfg, conn, as_of, transitions, delivery, filter);
    }
    let watched = conditions::watched_periods(cfg, as_of);
    let shown: Vec<view::AlertView> = view::list_filtered(conn, filter)?
        .into_iter()
        .filter(|a| watched.contains(&a.alert.period))
        .collect();
    Ok(format!(
        "alerts as of {}: {} open (at_risk), {} closed last (missed); {} transition(s)\n\n{}",
        crate::period::format_utc(as_of),
        watched.open,
        watched.closed,
        transitions.len(),
        view::summary(&shown)
    ))
}

/// The filters of `args`, checked against the configuration and team tree.
fn filter(cfg: &ConfigSnapshot, teams: &TeamTree, args: &AlertsArgs) -> Result<Filter, CliError> {
    for k in &args.kpi {
        if cfg.kpi(k).is_none() {
            let ids = cfg.kpis.iter().map(|k| k.def.id.as_str());
            return Err(CliError::UnknownKpi(k.clone(), crate::diag::hint(k, ids)));
        }
    }
    let teams = match &args.team {
        None => None,
        Some(t) => {
            let Some(root) = teams.index(t) else {
                let ids = teams.ids.iter().map(String::as_str);
                return Err(CliError::UnknownTeam(t.clone(), crate::diag::hint(t, ids)));
            };
            Some(subtree(teams, root))
        }
    };
    let state = view::StateFilter::parse(args.state.as_deref())?.state();
    let kind = match args.kind.as_deref() {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| AlertError::BadKind(k.to_string()))?),
    };
    Ok(Filter {
        state,
        kind,
        kpis: (!args.kpi.is_empty()).then(|| args.kpi.clone()),
        teams,
    })
}

/// The ids of `root` and every team under it.
fn subtree(teams: &TeamTree, root: u32) -> Vec<String> {
    (0..teams.len() as u32)
        .filter(|&i| {
            let mut at = Some(i);
            let mut steps = 0;
            while let Some(a) = at {
                if a == root {
                    return true;
                }
                at = teams.parent[a as usize];
                steps += 1;
                if steps > teams.len() {
                    break;
                }
            }
            false
        })
        .map(|i| teams.ids[i as usize].clone())
        .collect()
}
