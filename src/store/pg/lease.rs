//! The alert scheduler's lease on a PostgreSQL database (SPEC 20, several
//! `kpi serve` on one database): a session-level advisory lock held by a
//! connection of its own. At most one process holds it; when the holder dies
//! (or its connection drops) PostgreSQL ends the session and frees the lock,
//! and the next process that tries takes it over. The alert scheduler of
//! `kpi serve` evaluates only while it holds it (`alerts::schedule`).

use postgres::Client;

use super::sql;
use crate::store::StoreError;

/// A held lease: the dedicated connection whose session holds the lock.
pub struct Lease {
    client: Client,
}

impl Lease {
    /// Takes the lease when nobody holds it; None when another session does.
    pub fn try_take(url: &str) -> Result<Option<Lease>, StoreError> {
        let mut client = super::connect(url)?;
        let held: bool = client.query_one(sql::TRY_SCHEDULER_LOCK, &[])?.get(0);
        Ok(held.then_some(Lease { client }))
    }

    /// Whether the lease is still held: the session answers (a dropped
    /// connection has lost the lock, and another process may hold it now).
    pub fn still_held(&mut self) -> bool {
        self.client
            .is_valid(std::time::Duration::from_secs(5))
            .is_ok()
    }
}
