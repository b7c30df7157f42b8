//! The server's background upkeep, one small task ticking a few times a
//! second:
//!
//! - the cross-process refresh: records written to the database by another
//!   process (a cron `kpi import`) are served without a restart
//!   ([`Engine::refresh`](crate::engine::Engine::refresh): one
//!   `PRAGMA data_version` a tick while nothing changed);
//! - on PostgreSQL, a configuration another server sharing the database
//!   recorded (an API edit through it) is written under this root and served
//!   ([`Engine::adopt_recorded_config`](crate::engine::Engine::adopt_recorded_config));
//! - a reload that failed for a reason of the database's (locked, disk full)
//!   is tried again until it applies, so a transient error never leaves the
//!   server degraded once it clears;
//! - a configuration reloaded from files is released to the alert scheduler
//!   once it settled ([`AppState::settle_alerts`]);
//! - the automatic close (SPEC 16): a period of a frozen grain is frozen once
//!   its end + close_after has passed ([`periods::auto_close`](super::periods::auto_close)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{AppState, blocking};
use crate::store::config_history::FILE_ACTOR;

/// How often the database is asked whether another process wrote to it.
pub const TICK: Duration = Duration::from_millis(250);
/// How often a reload that failed on the database is tried again.
pub const RETRY_RELOAD: Duration = Duration::from_secs(1);

/// Starts the upkeep; it runs until the server stops.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retry = Instant::now();
        let mut close_failed = None;
        loop {
            tick.tick().await;
            refresh(&state).await;
            adopt(&state).await;
            super::periods::auto_close(&state, &mut close_failed).await;
            if state.health().transient && last_retry.elapsed() >= RETRY_RELOAD {
                last_retry = Instant::now();
                tracing::info!("trying the configuration again after a database error");
                let _ = state.reload(FILE_ACTOR).await;
            }
            state.settle_alerts();
        }
    })
}

async fn refresh(state: &Arc<AppState>) {
    let engine = state.engine.clone();
    let started = Instant::now();
    match blocking(move || Ok(engine.refresh()?)).await {
        Ok(Some((entities, generation))) => {
            tracing::info!(
                "records of {} were written by another process; read again in {} ms (data generation {generation})",
                entities.join(", "),
                started.elapsed().as_millis()
            );
            state.changed();
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot check the database for changes: {e}"),
    }
}

async fn adopt(state: &Arc<AppState>) {
    let engine = state.engine.clone();
    match blocking(move || Ok(engine.adopt_recorded_config()?)).await {
        Ok(Some(applied)) => {
            tracing::info!(
                "applied configuration version {} recorded by another server sharing the database (files written here: {})",
                applied.version,
                applied.files_changed.join(", ")
            );
            state.config_changed_by_api(&applied);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!("cannot apply the configuration another server recorded: {e}")
        }
    }
}
