//! The queue of column snapshot writes: one writer thread, the newest request
//! per file. A request replaced before it is written is dropped at once, with
//! the table it held, so a burst of ingests neither writes nor keeps every
//! version of a table; a patched table waits [`SETTLE`] for the next ingest
//! before it is written, a table that gained a column for the next column,
//! and [`wait_for_writes`] writes everything now. A due write also waits for
//! the process to be [`QUIET`] (no [`Foreground`] work for that long, at most
//! [`MAX_DEFER`]): on two cores, a 500 MB snapshot written beside an
//! evaluation takes half of its CPU.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::column::{Column, Table};
use super::snapshot::{self, Tag};
use crate::store::schema::Entity;

/// How long a patched table, or one that gained a column, waits for a newer version before it
/// is written.
pub(super) const SETTLE: Duration = Duration::from_millis(1500);

/// How long after the last [`Foreground`] work a due write waits...
pub(super) const QUIET: Duration = Duration::from_millis(250);

/// ...but never longer than this past its due time (a server kept busy still writes).
const MAX_DEFER: Duration = Duration::from_secs(20);

/// Foreground work running now, and when the last one ended.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static LAST_ENDED: Mutex<Option<Instant>> = Mutex::new(None);

/// Held while foreground work (a query pass) runs: snapshot writes wait until it has ended
/// and [`QUIET`] has passed.
pub struct Foreground(());

/// Marks foreground work until the guard is dropped.
pub fn foreground() -> Foreground {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    Foreground(())
}

impl Drop for Foreground {
    fn drop(&mut self) {
        *LAST_ENDED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a write due now is still to wait for the foreground: zero when none ran for
/// [`QUIET`].
fn foreground_wait() -> Duration {
    if ACTIVE.load(Ordering::SeqCst) > 0 {
        return QUIET;
    }
    let last = *LAST_ENDED.lock().unwrap_or_else(|p| p.into_inner());
    last.map_or(Duration::ZERO, |t| QUIET.saturating_sub(t.elapsed()))
}

/// How long a request due `at` still waits at `now`: none when flushed, until it is due, then
/// for the foreground to be quiet (`foreground`), but not past [`MAX_DEFER`].
fn wait_before(
    at: Instant,
    now: Instant,
    flushing: bool,
    foreground: impl FnOnce() -> Duration,
) -> Duration {
    if flushing {
        Duration::ZERO
    } else if at > now {
        at - now
    } else if now - at < MAX_DEFER {
        foreground()
    } else {
        Duration::ZERO
    }
}

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
    /// Callers of [`wait_for_writes`] waiting: write what is pending without waiting.
    flushing: usize,
    /// A request is being written.
    writing: bool,
}

static QUEUE: Mutex<Option<Queue>> = Mutex::new(None);
/// Wakes the writer (a new request, or a flush).
static WAKE: Condvar = Condvar::new();
/// Wakes [`wait_for_writes`] (a write done).
static DONE: Condvar = Condvar::new();

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
                q.writing = false;
                if q.pending.is_empty() {
                    // Detached: the next request starts a new worker.
                    q.worker.take();
                    DONE.notify_all();
                    return;
                }
                let now = Instant::now();
                let due = q.pending.iter().min_by_key(|(_, (at, _))| *at);
                let (file, at) = due.map(|(f, (at, _))| (f.clone(), *at)).expect("not empty");
                let wait = wait_before(at, now, q.flushing > 0, foreground_wait);
                if wait.is_zero() {
                    q.writing = true;
                    break q.pending.remove(&file).expect("found").1;
                }
                guard = WAKE
                    .wait_timeout(guard, wait)
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

/// Writes the requests pending now and waits for them (before a process exits). Callers on
/// several threads each wait until nothing is pending or being written.
pub fn wait_for_writes() {
    let mut guard = lock();
    let Some(q) = guard.as_mut() else { return };
    q.flushing += 1;
    WAKE.notify_all();
    // (A writer that panicked notifies no one: its end is looked for every 100 ms.)
    let busy = |q: &Queue| {
        (q.writing || !q.pending.is_empty()) && q.worker.as_ref().is_some_and(|w| !w.is_finished())
    };
    while guard.as_ref().is_some_and(busy) {
        let timeout = Duration::from_millis(100);
        guard = (DONE
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|p| p.into_inner()))
        .0;
    }
    if let Some(q) = guard.as_mut() {
        q.flushing -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;
    use crate::store::columns::column::Rowids;
    use crate::store::schema::Schema;
    use std::sync::{OnceLock, RwLock};

    fn entity() -> Entity {
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n\
            [entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\n\
            amount = \"real?\"\n";
        let schema = Schema::from_source(&Source::new("schema.toml", text)).unwrap();
        schema.entity("deals").unwrap().clone()
    }

    /// A request for deals with one row of `amount`, tagged `generation`.
    fn request(dir: &std::path::Path, generation: i64, amount: f64) -> Request {
        let ent = entity();
        let columns: HashMap<String, Arc<Column>> =
            [("amount".to_string(), Arc::new(Column::Real(vec![amount])))].into();
        let table = Arc::new(Table {
            entity: "deals".into(),
            rowids: Rowids::Dense(1),
            columns: RwLock::new(columns.clone()),
            team_rows: OnceLock::new(),
            owner_rows: OnceLock::new(),
            generation: Some(generation),
        });
        let tag = Tag {
            database: "db1".into(),
            generation,
            max_rowid: 1,
            fields: snapshot::fingerprint(&ent),
        };
        Request {
            dir: dir.to_path_buf(),
            ent,
            tag,
            table,
            columns,
        }
    }

    #[test]
    fn a_newer_request_replaces_a_waiting_one_and_a_flush_writes_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let older = request(dir.path(), 1, 10.0);
        let held = Arc::downgrade(&older.table);
        write_later(older, Duration::from_secs(3600));
        write_later(request(dir.path(), 2, 20.0), Duration::from_secs(3600));
        assert!(
            held.upgrade().is_none(),
            "the replaced request's table was dropped"
        );
        let started = Instant::now();
        wait_for_writes();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "written without the delay"
        );
        let newer = request(dir.path(), 2, 20.0);
        let (_, columns) = snapshot::read(dir.path(), &newer.ent, &newer.tag).expect("written");
        assert!(matches!(&*columns["amount"], Column::Real(v) if v == &[20.0]));
        let older = request(dir.path(), 1, 10.0);
        assert!(snapshot::read(dir.path(), &older.ent, &older.tag).is_none());
    }

    #[test]
    fn a_due_write_waits_for_the_foreground_to_be_quiet_but_not_for_ever() {
        let now = Instant::now();
        let busy = || QUIET;
        let later = now + Duration::from_secs(1);
        assert_eq!(wait_before(later, now, false, busy), Duration::from_secs(1));
        assert_eq!(
            wait_before(now, now, false, busy),
            QUIET,
            "due, foreground busy"
        );
        assert_eq!(
            wait_before(now, now, false, || Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(
            wait_before(now, now + MAX_DEFER, false, busy),
            Duration::ZERO
        );
        assert_eq!(
            wait_before(later, now, true, busy),
            Duration::ZERO,
            "a flush"
        );
        let held = foreground();
        assert_eq!(foreground_wait(), QUIET, "foreground work running");
        drop(held);
        assert!(foreground_wait() <= QUIET);
    }
}
