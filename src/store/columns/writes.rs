//! The queue of column snapshot writes: one writer thread, the newest request
//! per file. A request replaced before it is written is dropped at once, with
//! the table it held, so a burst of ingests neither writes nor keeps every
//! version of a table; a patched table waits [`SETTLE`] for the next ingest
//! before it is written, and [`wait_for_writes`] writes everything now.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::column::{Column, Table};
use super::snapshot::{self, Tag};
use crate::store::schema::Entity;

/// How long a patched table waits for a newer version before it is written.
pub(super) const SETTLE: Duration = Duration::from_millis(1500);

/// One file to write: `columns` of `table`, tagged `tag`.
pub(super) struct Request {
    pub dir: PathBuf,
    pub ent: Entity,
    pub tag: Tag,
    pub table: Arc<Table>,
    pub columns: HashMap<String, Arc<Column>>,
}

#[derive(Default)]
struct Queue {
    /// The newest request of each file, and when it may be written.
    pending: HashMap<PathBuf, (Instant, Request)>,
    worker: Option<JoinHandle<()>>,
    /// Set by [`wait_for_writes`]: write what is pending without waiting.
    flush: bool,
}

static QUEUE: Mutex<Option<Queue>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Option<Queue>> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queues `request`, to be written after `delay` (replacing an older request
/// for the same file).
pub(super) fn write_later(request: Request, delay: Duration) {
    let file = snapshot::file_of(&request.dir, &request.ent.name);
    let replaced = {
        let mut guard = lock();
        let q = guard.get_or_insert_with(Queue::default);
        let replaced = q.pending.insert(file, (Instant::now() + delay, request));
        if q.worker.as_ref().is_none_or(|w| w.is_finished()) {
            q.worker = Some(std::thread::spawn(work));
        }
        WAKE.notify_all();
        replaced
    };
    drop(replaced); // the older table, outside the lock
}

/// The writer thread: writes requests as they fall due, until none is left.
fn work() {
    loop {
        let request = {
            let mut guard = lock();
            loop {
                let Some(q) = guard.as_mut() else { return };
                if q.pending.is_empty() {
                    // Detached: the next request starts a new worker.
                    q.worker.take();
                    return;
                }
                let now = Instant::now();
                let due = q.pending.iter().min_by_key(|(_, (at, _))| *at);
                let (file, at) = due.map(|(f, (at, _))| (f.clone(), *at)).expect("not empty");
                if q.flush || at <= now {
                    break q.pending.remove(&file).expect("found").1;
                }
                guard = WAKE
                    .wait_timeout(guard, at - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        let Request {
            dir,
            ent,
            tag,
            table,
            columns,
        } = &request;
        snapshot::write_logged(dir, ent, tag, &table.rowids, columns);
    }
}

/// Writes the requests pending now and waits for them (before a process exits).
pub fn wait_for_writes() {
    loop {
        let worker = {
            let mut guard = lock();
            let Some(q) = guard.as_mut() else { return };
            q.flush = true;
            WAKE.notify_all();
            q.worker.take()
        };
        let Some(worker) = worker else { break };
        let _ = worker.join();
    }
    if let Some(q) = lock().as_mut() {
        q.flush = false;
    }
}
