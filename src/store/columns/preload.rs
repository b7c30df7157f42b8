//! Reading the column snapshots of a new store ahead, on a second core: while
//! the first query shapes run over one entity, the files of the others are
//! read. The first load of an entity takes what the preload read, waits for
//! an entity being read, or reads it itself when the preload has not got to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::snapshot::{self, Snap};
use crate::store::schema::Schema;

#[derive(Default)]
pub(super) struct Preload {
    slots: Mutex<HashMap<String, Slot>>,
    ready: Condvar,
}

enum Slot {
    /// The preload is reading it.
    Reading,
    /// Read by the preload (None: no valid snapshot), not yet taken.
    Read(Option<Snap>),
    /// Taken, or read by the store itself: every later load reads anew.
    Taken,
}

/// What the first load of an entity does.
pub(super) enum Claim {
    /// Read it (the preload will not).
    Mine,
    /// What the preload read.
    Read(Option<Snap>),
}

impl Preload {
    /// Starts reading the snapshots of `entities` (largest file first) on a
    /// thread with its own read-only connection to `db`.
    pub(super) fn start(
        db: PathBuf,
        dir: PathBuf,
        schema: Arc<Schema>,
        mut entities: Vec<String>,
    ) -> Arc<Preload> {
        let preload = Arc::new(Preload::default());
        let size =
            |e: &String| std::fs::metadata(snapshot::file_of(&dir, e)).map_or(0, |m| m.len());
        entities.retain(|e| size(e) > 0 && schema.entity(e).is_some());
        entities.sort_by_key(|e| std::cmp::Reverse(size(e)));
        let p = preload.clone();
        std::thread::spawn(move || {
            let Ok(conn) = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            else {
                return;
            };
            for name in entities {
                if !p.begin(&name) {
                    continue;
                }
                let ent = schema.entity(&name).expect("kept above");
                let read = snapshot::load(&conn, &dir, ent).unwrap_or_else(|e| {
                    tracing::debug!(entity = %name, "column snapshot not preloaded: {e}");
                    None
                });
                p.finish(&name, read);
            }
        });
        preload
    }

    /// Marks `entity` as being read by the preload, unless someone has it.
    fn begin(&self, entity: &str) -> bool {
        let mut slots = self.slots.lock().expect("preload lock");
        if slots.contains_key(entity) {
            return false;
        }
        slots.insert(entity.to_string(), Slot::Reading);
        true
    }

    fn finish(&self, entity: &str, read: Option<Snap>) {
        let mut slots = self.slots.lock().expect("preload lock");
        slots.insert(entity.to_string(), Slot::Read(read));
        self.ready.notify_all();
    }

    /// The first load's share of `entity`: waits while the preload reads it.
    pub(super) fn claim(&self, entity: &str) -> Claim {
        let mut slots = self.slots.lock().expect("preload lock");
        loop {
            match slots.insert(entity.to_string(), Slot::Taken) {
                Some(Slot::Reading) => {
                    slots.insert(entity.to_string(), Slot::Reading);
                    slots = self.ready.wait(slots).expect("preload lock");
                }
                Some(Slot::Read(read)) => return Claim::Read(read),
                None | Some(Slot::Taken) => return Claim::Mine,
            }
        }
    }
}
