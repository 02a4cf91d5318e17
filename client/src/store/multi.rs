//! Several stores as one: every block goes to all of them (a backup to
//! two friends' servers), and reads come from the first that has it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

use super::{BlockStore, PutDone, StoreError};

/// See the module documentation.
pub struct MultiStore {
    stores: Vec<Arc<dyn BlockStore>>,
}

impl MultiStore {
    /// All of `stores`, in order of preference for reads. Not empty.
    pub fn new(stores: Vec<Arc<dyn BlockStore>>) -> MultiStore {
        assert!(!stores.is_empty(), "a MultiStore needs a store");
        MultiStore { stores }
    }
}

impl BlockStore for MultiStore {
    fn name(&self) -> String {
        let names: Vec<String> = self.stores.iter().map(|s| s.name()).collect();
        names.join(" + ")
    }

    fn put(&self, block_type: BlockType, data: Bytes, done: PutDone) {
        // `done` runs when the last store answers, with the first error.
        struct Pending {
            left: usize,
            outcome: Option<Result<Score, StoreError>>,
            done: Option<PutDone>,
        }
        let pending = Arc::new(Mutex::new(Pending {
            left: self.stores.len(),
            outcome: None,
            done: Some(done),
        }));
        for store in &self.stores {
            let pending = Arc::clone(&pending);
            store.put(
                block_type,
                data.clone(),
                Box::new(move |r| {
                    let mut p = pending.lock().expect("multi put");
                    p.left -= 1;
                    if p.outcome.as_ref().is_none_or(|o| o.is_ok()) {
                        p.outcome = Some(r);
                    }
                    if p.left == 0 {
                        let outcome = p.outcome.take().expect("an outcome");
                        let done = p.done.take().expect("done once");
                        drop(p);
                        done(outcome);
                    }
                }),
            );
        }
    }

    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        let mut first_err = None;
        for store in &self.stores {
            match store.get(score, block_type) {
                Ok(b) => return Ok(b),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.expect("at least one store"))
    }

    fn sync(&self) -> Result<(), StoreError> {
        for store in &self.stores {
            store.sync()?;
        }
        Ok(())
    }
}
