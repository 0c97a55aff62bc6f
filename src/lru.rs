//! A byte-capped least-recently-used map: what a handle keeps of files that never change
//! (index parts, data-file footers).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

struct Entry<V> {
    value: V,
    bytes: usize,
    used: u64,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    bytes: usize,
    tick: u64,
}

/// Values with their sizes; beyond the cap the least recently used go (down to 7/8 of it, a
/// batch at a time: one sort per eviction round, not one scan per entry). A value larger than
/// the cap is not kept. A poisoned lock reads as empty and keeps nothing.
pub(crate) struct ByteLru<K, V> {
    cap: AtomicU64,
    inner: Mutex<Inner<K, V>>,
}

impl<K: Eq + Hash + Clone, V: Clone> ByteLru<K, V> {
    pub(crate) fn new(cap: u64) -> Self {
        ByteLru {
            cap: AtomicU64::new(cap),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                bytes: 0,
                tick: 0,
            }),
        }
    }

    /// Sets the cap, evicting down to it.
    pub(crate) fn set_cap(&self, bytes: u64) {
        self.cap.store(bytes, Ordering::Relaxed);
        if let Ok(mut inner) = self.inner.lock() {
            Self::evict(&mut inner, bytes as usize, None);
        }
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }

    /// Entries held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let e = inner.entries.get_mut(key)?;
        e.used = tick;
        Some(e.value.clone())
    }

    pub(crate) fn put(&self, key: K, value: V, bytes: usize) {
        let cap = self.cap.load(Ordering::Relaxed) as usize;
        if bytes > cap {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner
            .entries
            .insert(key.clone(), Entry { value, bytes, used })
        {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        Self::evict(&mut inner, cap, Some(&key));
    }

    fn evict(inner: &mut Inner<K, V>, cap: usize, keep: Option<&K>) {
        if inner.bytes <= cap {
            return;
        }
        let goal = cap - cap / 8;
        let mut by_age: Vec<(u64, K, usize)> = inner
            .entries
            .iter()
            .filter(|(k, _)| Some(*k) != keep)
            .map(|(k, e)| (e.used, k.clone(), e.bytes))
            .collect();
        by_age.sort_unstable_by_key(|e| e.0);
        for (_, key, bytes) in by_age {
            if inner.bytes <= goal {
                break;
            }
            inner.entries.remove(&key);
            inner.bytes -= bytes;
        }
    }
}
