//! A cache bounded by bytes, least recently used out first: decrypted
//! blocks and decoded directories of a mounted snapshot. The mount's
//! memory is this bound plus its inode table, whatever the snapshot's size.

use std::hash::Hash;
use std::sync::Mutex;

/// See the module documentation. Values are cheap to clone (`Arc`s).
pub struct ByteLru<K: Hash + Eq, V: Clone> {
    inner: Mutex<Inner<K, V>>,
    limit: usize,
}

struct Inner<K: Hash + Eq, V> {
    map: lru::LruCache<K, (V, usize)>,
    bytes: usize,
}

impl<K: Hash + Eq, V: Clone> ByteLru<K, V> {
    /// A cache that holds at most `limit` bytes (as its callers count them).
    pub fn new(limit: usize) -> ByteLru<K, V> {
        ByteLru {
            inner: Mutex::new(Inner {
                map: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            limit,
        }
    }

    /// The value under `key`, now the most recently used.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.map.get(key).map(|(v, _)| v.clone())
    }

    /// Whether `key` is held (without touching its place).
    pub fn contains(&self, key: &K) -> bool {
        self.inner.lock().expect("cache lock").map.contains(key)
    }

    /// Keeps `value`, which costs `bytes`, dropping the least recently
    /// used until the cache is within its bound. A value larger than the
    /// whole bound is still kept, alone: the listing of a directory of a
    /// million entries must not be decoded again for each of them.
    pub fn insert(&self, key: K, value: V, bytes: usize) {
        let mut inner = self.inner.lock().expect("cache lock");
        if let Some((_, old)) = inner.map.put(key, (value, bytes)) {
            inner.bytes -= old;
        }
        inner.bytes += bytes;
        while inner.bytes > self.limit && inner.map.len() > 1 {
            match inner.map.pop_lru() {
                Some((_, (_, b))) => inner.bytes -= b,
                None => break,
            }
        }
    }

    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_bound_and_drops_the_least_recently_used() {
        let cache: ByteLru<u32, u32> = ByteLru::new(100);
        cache.insert(1, 10, 40);
        cache.insert(2, 20, 40);
        assert_eq!(cache.get(&1), Some(10)); // 1 is now the most recent
        cache.insert(3, 30, 40);
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.get(&1), Some(10));
        assert_eq!(cache.get(&3), Some(30));
        assert_eq!(cache.bytes(), 80);
        cache.insert(3, 31, 10);
        assert_eq!((cache.get(&3), cache.bytes()), (Some(31), 50));
        // Larger than the bound: kept, alone.
        cache.insert(4, 40, 101);
        assert_eq!(
            (cache.get(&4), cache.get(&1), cache.get(&3)),
            (Some(40), None, None)
        );
        assert_eq!(cache.bytes(), 101);
        cache.insert(5, 50, 10);
        assert_eq!((cache.get(&4), cache.get(&5)), (None, Some(50)));
    }
}
