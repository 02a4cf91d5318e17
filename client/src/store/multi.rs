//! Several stores as one: every block goes to all of them (a backup to
//! two friends' servers), and reads come from the first that has it.
//! A failure names every store that failed, not only the first.

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
        // `done` runs when the last store answers, with every failure.
        struct Pending {
            left: usize,
            score: Option<Score>,
            errors: Vec<StoreError>,
            done: Option<PutDone>,
        }
        let pending = Arc::new(Mutex::new(Pending {
            left: self.stores.len(),
            score: None,
            errors: Vec::new(),
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
                    match r {
                        Ok(score) => p.score = Some(score),
                        Err(e) => p.errors.push(e),
                    }
                    if p.left == 0 {
                        let errors = std::mem::take(&mut p.errors);
                        let outcome = match p.score {
                            Some(score) if errors.is_empty() => Ok(score),
                            _ => Err(combined(errors)),
                        };
                        let done = p.done.take().expect("done once");
                        drop(p);
                        done(outcome);
                    }
                }),
            );
        }
    }

    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        let mut errors = Vec::new();
        for store in &self.stores {
            match store.get(score, block_type) {
                Ok(b) => return Ok(b),
                Err(e) => errors.push(e),
            }
        }
        // Missing everywhere is one missing block, named with every store.
        if errors
            .iter()
            .all(|e| matches!(e, StoreError::Missing { .. }))
        {
            return Err(StoreError::Missing {
                score,
                block_type,
                store: self.name(),
            });
        }
        Err(combined(errors))
    }

    fn sync(&self) -> Result<(), StoreError> {
        for store in &self.stores {
            store.sync()?;
        }
        Ok(())
    }
}

/// One error for the failures of several stores (one: itself).
fn combined(mut errors: Vec<StoreError>) -> StoreError {
    match errors.len() {
        1 => errors.pop().expect("one"),
        _ => StoreError::Several(errors),
    }
}
