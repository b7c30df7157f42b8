//! A single-flight memo: a value is computed once per key, concurrent askers
//! of the same key wait for that one computation, and the table is bounded
//! (it starts over when full). The scorecard cache of the server and the
//! shape memo of evaluations are both one of these.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};

/// One entry: filled by one computation at a time.
struct Slot<V> {
    filling: Mutex<()>,
    value: Mutex<Option<Arc<V>>>,
}

impl<V> Slot<V> {
    fn new(value: Option<Arc<V>>) -> Slot<V> {
        Slot {
            filling: Mutex::new(()),
            value: Mutex::new(value),
        }
    }

    fn value(&self) -> Option<Arc<V>> {
        self.value.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct Memo<K, V> {
    map: RwLock<HashMap<K, Arc<Slot<V>>>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> Memo<K, V> {
    /// A memo that starts over once it holds `capacity` entries.
    pub fn new(capacity: usize) -> Memo<K, V> {
        Memo {
            map: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The value of `key`, if it has been computed.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).and_then(|s| s.value())
    }

    /// The value of `key` if there is one and `usable` accepts it; else
    /// `fill(previous value)`, kept in its place. Blocking: concurrent callers
    /// of one key wait for one computation. An error is not kept.
    pub fn get_or_fill<E>(
        &self,
        key: &K,
        usable: impl Fn(&V) -> bool,
        fill: impl FnOnce(Option<&V>) -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let slot = self.slot(key);
        let _filling = slot.filling.lock().unwrap_or_else(|p| p.into_inner());
        let previous = slot.value();
        if let Some(v) = previous.as_ref().filter(|v| usable(v)) {
            return Ok(v.clone());
        }
        let value = Arc::new(fill(previous.as_deref())?);
        *slot.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value.clone());
        Ok(value)
    }

    fn slot(&self, key: &K) -> Arc<Slot<V>> {
        if let Some(s) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return s.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= self.capacity {
            map.clear();
        }
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(Slot::new(None)))
            .clone()
    }

    /// Drops the entries whose key `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
    }

    /// A new memo holding the computed entries that `keep` accepts.
    pub fn filtered(&self, keep: impl Fn(&K, &V) -> bool) -> Memo<K, V> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let kept = map
            .iter()
            .filter_map(|(k, s)| {
                let v = s.value().filter(|v| keep(k, v))?;
                Some((k.clone(), Arc::new(Slot::new(Some(v)))))
            })
            .collect();
        Memo {
            map: RwLock::new(kept),
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_misses_of_one_key_compute_it_once() {
        let memo = Arc::new(Memo::<u32, u32>::new(8));
        let fills = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (memo, fills) = (memo.clone(), fills.clone());
                std::thread::spawn(move || {
                    *memo
                        .get_or_fill(
                            &1,
                            |_| true,
                            |_| {
                                fills.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(30));
                                Ok::<_, ()>(7)
                            },
                        )
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 7);
        }
        assert_eq!(fills.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn errors_are_not_kept_and_unusable_values_are_computed_again() {
        let memo = Memo::<u32, u32>::new(8);
        assert!(memo.get_or_fill(&1, |_| true, |_| Err("boom")).is_err());
        assert!(memo.get(&1).is_none());
        memo.get_or_fill(&1, |_| true, |_| Ok::<_, ()>(1)).unwrap();
        let v = memo
            .get_or_fill(&1, |v| *v > 1, |old| Ok::<_, ()>(old.unwrap() + 1))
            .unwrap();
        assert_eq!(*v, 2);
    }

    #[test]
    fn filtered_keeps_only_what_it_is_told_and_the_original_is_untouched() {
        let memo = Memo::<u32, u32>::new(8);
        for k in 0..4 {
            memo.get_or_fill(&k, |_| true, |_| Ok::<_, ()>(k * 10))
                .unwrap();
        }
        let odd = memo.filtered(|k, _| k % 2 == 1);
        assert_eq!(odd.get(&1).as_deref(), Some(&10));
        assert!(odd.get(&2).is_none());
        assert_eq!(memo.get(&2).as_deref(), Some(&20));
    }

    #[test]
    fn a_full_memo_starts_over() {
        let memo = Memo::<u32, u32>::new(2);
        for k in 0..3 {
            memo.get_or_fill(&k, |_| true, |_| Ok::<_, ()>(k)).unwrap();
        }
        assert!(memo.get(&0).is_none());
        assert_eq!(memo.get(&2).as_deref(), Some(&2));
    }
}
