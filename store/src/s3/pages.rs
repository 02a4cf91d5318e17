//! The read cache: packs are read a *page* (`read_bytes`, 1 MiB by
//! default) at a time and kept, up to `cache_bytes`, so that a restore,
//! which reads blocks in about the order they were written, costs one
//! request per page rather than one per block. Two readers wanting one
//! page wait for a single request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::pack::PackId;
use crate::StoreError;

type PageKey = (PackId, u64);

/// A page being read, or read.
type Slot = Arc<Mutex<Option<Bytes>>>;

/// See the module documentation.
pub struct Pages {
    page_bytes: u64,
    capacity: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<PageKey, Slot>,
    /// Pages in the order they were read, oldest first (evicted first).
    order: VecDeque<(PageKey, u64)>,
    held: u64,
}

impl Pages {
    /// A cache of pages of `page_bytes`, holding at most `capacity` bytes.
    pub fn new(page_bytes: u64, capacity: u64) -> Pages {
        Pages {
            page_bytes: page_bytes.max(4096),
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Bytes `range` of `pack`: from the cache if held, else read with
    /// `fetch(start..end)` a page at a time. A range that crosses a page
    /// boundary, or is larger than a page, is read on its own, uncached.
    pub fn read(
        &self,
        pack: PackId,
        range: std::ops::Range<u64>,
        fetch: impl FnOnce(std::ops::Range<u64>) -> Result<Bytes, StoreError>,
    ) -> Result<Option<Bytes>, StoreError> {
        let page = range.start / self.page_bytes;
        let page_start = page * self.page_bytes;
        if range.end > page_start + self.page_bytes || self.capacity == 0 {
            let bytes = fetch(range.clone())?;
            return Ok(whole(&bytes, 0..range.end - range.start));
        }
        let slot = {
            let mut inner = self.inner.lock().expect("pages lock");
            Arc::clone(inner.slots.entry((pack, page)).or_default())
        };
        let mut held = slot.lock().expect("page lock");
        if held.is_none() {
            let bytes = fetch(page_start..page_start + self.page_bytes)?;
            *held = Some(bytes.clone());
            self.admit((pack, page), bytes.len() as u64);
        }
        let bytes = held.as_ref().expect("filled above");
        Ok(whole(
            bytes,
            range.start - page_start..range.end - page_start,
        ))
    }

    /// Bytes `range` of `pack` if a page already read holds them; never
    /// waits for a request.
    pub fn peek(&self, pack: PackId, range: std::ops::Range<u64>) -> Option<Bytes> {
        let page = range.start / self.page_bytes;
        let page_start = page * self.page_bytes;
        let slot = Arc::clone(
            self.inner
                .lock()
                .expect("pages lock")
                .slots
                .get(&(pack, page))?,
        );
        let held = slot.try_lock().ok()?;
        whole(
            held.as_ref()?,
            range.start - page_start..range.end - page_start,
        )
    }

    /// Accounts for a page just read, evicting the oldest beyond capacity.
    fn admit(&self, key: PageKey, len: u64) {
        let mut inner = self.inner.lock().expect("pages lock");
        inner.order.push_back((key, len));
        inner.held += len;
        while inner.held > self.capacity {
            let Some((old, old_len)) = inner.order.pop_front() else {
                break;
            };
            inner.slots.remove(&old);
            inner.held -= old_len;
        }
    }
}

/// `range` of `bytes`, or `None` if they end first (the pack is shorter
/// than its index said).
fn whole(bytes: &Bytes, range: std::ops::Range<u64>) -> Option<Bytes> {
    (range.end as usize <= bytes.len())
        .then(|| bytes.slice(range.start as usize..range.end as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_a_page_once_and_evicts_the_oldest() {
        let pack = PackId {
            frontend: 1,
            seq: 0,
        };
        let object: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let fetches = AtomicUsize::new(0);
        let fetch = |r: std::ops::Range<u64>| {
            fetches.fetch_add(1, Ordering::SeqCst);
            let end = (r.end as usize).min(object.len());
            Ok(Bytes::copy_from_slice(&object[r.start as usize..end]))
        };
        let pages = Pages::new(4096, 8192);
        assert_eq!(
            pages.read(pack, 10..20, fetch).unwrap().unwrap()[..],
            object[10..20]
        );
        assert_eq!(
            pages.read(pack, 100..200, fetch).unwrap().unwrap()[..],
            object[100..200]
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "one page, one request");
        // Across a boundary: read alone.
        assert_eq!(
            pages.read(pack, 4000..4200, fetch).unwrap().unwrap()[..],
            object[4000..4200]
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // Pages 1 and 2 push page 0 out.
        pages.read(pack, 4096..4100, fetch).unwrap();
        pages.read(pack, 8192..8200, fetch).unwrap();
        pages.read(pack, 0..4, fetch).unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 5);
        // Past the object's end: none, not a short block.
        assert_eq!(pages.read(pack, 19_990..20_010, fetch).unwrap(), None);
    }
}
