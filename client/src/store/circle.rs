//! The circle: several stores (friends' servers, or the one embedded
//! store) as one, with a number of copies every block must reach.
//!
//! Writes go to every member that is up, each through its own bounded,
//! pipelined queue (the member's own store). A member that fails (down,
//! full, refusing, or silent past its timeout) is marked down for the
//! rest of the command and gets nothing more; the others go on, and the
//! circle fails only when fewer than `copies` members are left up. Every
//! block put while a member is up reaches it, so "up at the final sync"
//! means "holds everything": what a member missed is its shortfall, which
//! `eventi repair` fills later.
//!
//! Reads go to the fastest member (by the latency measured at connect)
//! until it has a few reads in flight, then to the next, so that parallel
//! readers spread over every member that answers once one is busy. A missing block, an
//! error, or a block that fails the caller's SHA-256 check falls back to
//! the next member; each member's trouble is reported once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eventi_shared::{BlockType, Score};
use sha2::{Digest, Sha256};

use super::{BlockStore, PutDone, StoreError};

/// A member's stable key in the client's per-server records: a hash of
/// its address, so a server that joins starts with an empty record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub [u8; 8]);

impl MemberId {
    /// The id of the member at `address`.
    pub fn of(address: &str) -> MemberId {
        let mut h = Sha256::new();
        h.update(b"eventi circle member v1\n");
        h.update(address.as_bytes());
        let digest = h.finalize();
        MemberId(digest[..8].try_into().expect("8 bytes"))
    }
}

/// A server's name, with its address when that says more.
pub fn label(name: &str, address: &str) -> String {
    if name == address {
        name.to_string()
    } else {
        format!("{name} ({address})")
    }
}

/// One store of the circle: what the circle knows about it.
pub struct Member {
    /// What the user calls it.
    pub name: String,
    /// Its address (`host:port`, or the embedded store's path).
    pub address: String,
    /// Its key in the per-server records.
    pub id: MemberId,
    /// The round trip measured at connect.
    pub latency: Option<Duration>,
    down: AtomicBool,
    /// Left behind for being slow: its queue is still full, so it is not
    /// synced at the end (that would wait for the slow queue to drain).
    slow: AtomicBool,
    why_down: Mutex<Option<String>>,
    reads_in_flight: AtomicUsize,
}

impl Member {
    fn new(
        name: &str,
        address: &str,
        latency: Option<Duration>,
        why_down: Option<String>,
    ) -> Member {
        Member {
            name: name.to_string(),
            address: address.to_string(),
            id: MemberId::of(address),
            latency,
            down: AtomicBool::new(why_down.is_some()),
            slow: AtomicBool::new(false),
            why_down: Mutex::new(why_down),
            reads_in_flight: AtomicUsize::new(0),
        }
    }

    /// Its name, with its address when that says more.
    pub fn label(&self) -> String {
        label(&self.name, &self.address)
    }

    /// Whether it is still taking writes and answering.
    pub fn is_up(&self) -> bool {
        !self.down.load(Relaxed)
    }

    /// Why it is down, if it is.
    pub fn why_down(&self) -> Option<String> {
        self.why_down.lock().expect("member").clone()
    }
}

/// A member as the circle is built from: a store that answered (with its
/// measured round trip), or why it could not be reached.
pub struct Joined {
    /// What the user calls it.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its store and latency, or why there is none.
    pub store: Result<(Arc<dyn BlockStore>, Option<Duration>), String>,
}

/// How long a member that is slow to take blocks (its queue stays full)
/// may hold up a backup that enough other members are keeping up with.
pub const DEFAULT_LAG: Duration = Duration::from_secs(10);

/// Reads in flight on a member before the next member gets reads too.
const SPILL_READS: usize = 4;

/// Called for each member's outcome of a [`Circle::put_each`].
pub type EachDone = Arc<dyn Fn(&Member, Result<Score, StoreError>) + Send + Sync>;

/// See the module documentation.
pub struct Circle {
    health: Health,
    /// How long a member may hold up a put that enough others took.
    lag: Duration,
    /// Each member's store, by index; `None` for one never reached.
    stores: Vec<Option<Arc<dyn BlockStore>>>,
}

/// Which members are up, and the number of copies: what put callbacks
/// hold (cheap to clone). It owns no store, so a callback that outlives
/// the circle never drops a store from inside that store's own runtime.
#[derive(Clone)]
pub struct Health(Arc<HealthState>);

struct HealthState {
    members: Vec<Member>,
    copies: usize,
    /// (member index, kind of trouble) already reported.
    reported: Mutex<HashSet<(usize, &'static str)>>,
    warn: Box<dyn Fn(&str) + Send + Sync>,
}

impl Health {
    /// Every member, in config order.
    pub fn members(&self) -> &[Member] {
        &self.0.members
    }

    /// Members still up.
    pub fn up_count(&self) -> usize {
        self.0.members.iter().filter(|m| m.is_up()).count()
    }

    /// Marks a member down (once; the first reason stays) and reports it.
    pub fn mark_down(&self, member: &Member, why: &StoreError) {
        if member.down.swap(true, Relaxed) {
            return;
        }
        // The member's label goes beside the reason: not twice.
        let text = why.reason();
        member
            .why_down
            .lock()
            .expect("member")
            .get_or_insert(text.clone());
        (self.0.warn)(&format!(
            "{} is down for the rest of this command: {text}",
            member.label()
        ));
    }

    /// Ok while at least `copies` members are up; else the error naming
    /// every member that is down and why.
    pub fn check_copies(&self) -> Result<(), StoreError> {
        let up = self.up_count();
        if up >= self.0.copies {
            return Ok(());
        }
        let down = self
            .0
            .members
            .iter()
            .filter(|m| !m.is_up())
            .map(|m| {
                let why = m.why_down().unwrap_or_else(|| "down".into());
                format!("{}: {why}", m.label())
            })
            .collect();
        Err(StoreError::TooFewCopies {
            copies: self.0.copies,
            up,
            down,
        })
    }

    fn report_once(&self, index: usize, kind: &'static str, text: String) {
        if self
            .0
            .reported
            .lock()
            .expect("reported")
            .insert((index, kind))
        {
            (self.0.warn)(&text);
        }
    }
}

impl Circle {
    /// `joined` (not empty) needing `copies` of every block; `warn`
    /// hears about each member's trouble once.
    pub fn new(
        joined: Vec<Joined>,
        copies: usize,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Circle {
        assert!(!joined.is_empty(), "a circle needs a member");
        let mut members = Vec::new();
        let mut stores = Vec::new();
        for j in joined {
            match j.store {
                Ok((store, latency)) => {
                    members.push(Member::new(&j.name, &j.address, latency, None));
                    stores.push(Some(store));
                }
                Err(why) => {
                    members.push(Member::new(&j.name, &j.address, None, Some(why)));
                    stores.push(None);
                }
            }
        }
        Circle {
            lag: DEFAULT_LAG,
            health: Health(Arc::new(HealthState {
                copies: copies.clamp(1, members.len()),
                members,
                reported: Mutex::new(HashSet::new()),
                warn,
            })),
            stores,
        }
    }

    /// The circle, leaving behind a member whose queue stays full for
    /// `lag` while more than `copies` members are up (the config's `lag`).
    pub fn with_lag(mut self, lag: Duration) -> Circle {
        self.lag = lag;
        self
    }

    /// A circle of one store (the embedded store, or a test's).
    pub fn single(store: Arc<dyn BlockStore>) -> Circle {
        let name = store.name();
        Circle::new(
            vec![Joined {
                name: name.clone(),
                address: name,
                store: Ok((store, None)),
            }],
            1,
            Box::new(|m| eprintln!("eventi: {m}")),
        )
    }

    /// Every member, in config order.
    pub fn members(&self) -> &[Member] {
        self.health.members()
    }

    /// On how many members every block must be.
    pub fn copies(&self) -> usize {
        self.health.0.copies
    }

    /// Which members are up (for put callbacks).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The store of the member at `index`, while it is up.
    pub fn store_of(&self, index: usize) -> Option<&Arc<dyn BlockStore>> {
        let up = self.health.0.members[index].is_up();
        self.stores[index].as_ref().filter(|_| up)
    }

    /// Members still up.
    pub fn up_count(&self) -> usize {
        self.health.up_count()
    }

    /// Syncs every member that has a connection, in parallel (one that
    /// stalls until its timeout must not add its wait to the others');
    /// says, by member, which synced. A member that fails is marked down;
    /// so is one still syncing `lag` after `copies` others have (its
    /// queue is far behind: it is left behind as too slow, and its sync
    /// finishes, or not, on its own thread). A member already down is
    /// synced too when its connection still works (it refused a write:
    /// over quota, disk full), so that what it took before is durable and
    /// need not be sent again.
    pub fn sync_members(&self) -> Vec<bool> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut pending = 0;
        for (index, (member, store)) in self.members().iter().zip(&self.stores).enumerate() {
            let Some(store) = store.as_ref().filter(|_| !member.slow.load(Relaxed)) else {
                continue;
            };
            let store = Arc::clone(store);
            let tx = tx.clone();
            pending += 1;
            std::thread::spawn(move || {
                let _ = tx.send((index, store.sync()));
            });
        }
        drop(tx);
        let mut synced = vec![false; self.stores.len()];
        let mut enough_at: Option<std::time::Instant> = None;
        while pending > 0 {
            let got = match enough_at {
                None => rx.recv().ok(),
                Some(at) => {
                    let left = self.lag.saturating_sub(at.elapsed());
                    rx.recv_timeout(left).ok()
                }
            };
            let Some((index, result)) = got else { break };
            pending -= 1;
            let member = &self.members()[index];
            match result {
                Ok(()) => synced[index] = true,
                Err(e) => self.health.mark_down(member, &e),
            }
            let up_synced = (0..synced.len())
                .filter(|&i| synced[i] && self.members()[i].is_up())
                .count();
            if enough_at.is_none() && up_synced >= self.copies() {
                enough_at = Some(std::time::Instant::now());
            }
        }
        // Those still syncing after the lag are left behind.
        if enough_at.is_some() {
            for (index, member) in self.members().iter().enumerate() {
                let asked = self.stores[index].is_some() && !member.slow.load(Relaxed);
                if asked && !synced[index] && member.is_up() {
                    member.slow.store(true, Relaxed);
                    let why = StoreError::TooSlow {
                        store: member.label(),
                        seconds: self.lag.as_secs_f64(),
                    };
                    self.health.mark_down(member, &why);
                }
            }
        }
        synced
    }

    /// Ok while at least `copies` members are up (see [`Health::check_copies`]).
    pub fn check_copies(&self) -> Result<(), StoreError> {
        self.health.check_copies()
    }

    /// Puts a block on every member that is up and not `skip`ped; `each`
    /// hears every member's outcome. A member that fails is marked down.
    pub fn put_each(
        &self,
        score: Score,
        block_type: BlockType,
        data: Bytes,
        skip: &dyn Fn(&Member) -> bool,
        each: EachDone,
    ) {
        for (index, member) in self.members().iter().enumerate() {
            let Some(store) = self.store_of(index) else {
                continue;
            };
            if skip(member) {
                continue;
            }
            let each = Arc::clone(&each);
            let health = self.health.clone();
            let done: PutDone = Box::new(move |r| {
                let member = &health.0.members[index];
                if let Err(e) = &r {
                    if matches!(e, StoreError::TooSlow { .. }) {
                        member.slow.store(true, Relaxed);
                    }
                    health.mark_down(member, e);
                }
                each(member, r);
            });
            // With members to spare, a slow one may not hold the others
            // back: it is left behind (its shortfall recorded) instead.
            if self.up_count() > self.copies() {
                if let Some(done) =
                    store.put_within(score, block_type, data.clone(), done, self.lag)
                {
                    done(Err(StoreError::TooSlow {
                        store: member.label(),
                        seconds: self.lag.as_secs_f64(),
                    }));
                }
            } else {
                store.put_scored(score, block_type, data.clone(), done);
            }
        }
    }

    /// The members to try for a read, best first: up, the fastest until
    /// it has [`SPILL_READS`] reads in flight, then the next: reads stay
    /// on one server (its read-ahead and caches keep working) until it is
    /// busy, and spread over all of them under load.
    fn read_order(&self) -> Vec<usize> {
        let members = self.members();
        let mut order: Vec<usize> = (0..members.len())
            .filter(|&i| self.store_of(i).is_some())
            .collect();
        order.sort_by_key(|&i| {
            let m = &members[i];
            (
                m.reads_in_flight.load(Relaxed) / SPILL_READS,
                m.latency.unwrap_or(Duration::MAX),
            )
        });
        order
    }

    /// Reads from the best member that has the block and whose copy
    /// passes `check` (when given), falling back on each failure.
    fn read(
        &self,
        score: Score,
        block_type: BlockType,
        check: Option<&[u8; 32]>,
    ) -> Result<Bytes, StoreError> {
        let mut errors = Vec::new();
        for index in self.read_order() {
            let member = &self.members()[index];
            let Some(store) = self.store_of(index) else {
                continue;
            };
            member.reads_in_flight.fetch_add(1, Relaxed);
            let got = match check {
                Some(want) => store.get_checked(score, block_type, want),
                None => store.get(score, block_type),
            };
            member.reads_in_flight.fetch_sub(1, Relaxed);
            match got {
                Ok(data) => return Ok(data),
                Err(e @ StoreError::Damaged { .. }) => {
                    self.health.report_once(
                        index,
                        "corrupt",
                        format!(
                            "{} holds a damaged copy of block {score}; reading it from another server",
                            member.label()
                        ),
                    );
                    errors.push(e);
                }
                Err(e @ StoreError::Missing { .. }) => {
                    if self.members().len() > 1 {
                        self.health.report_once(
                            index,
                            "missing",
                            format!(
                                "{} lacks block {score} (and maybe others); reading from another server",
                                member.label()
                            ),
                        );
                    }
                    errors.push(e);
                }
                Err(e) => {
                    self.health.mark_down(member, &e);
                    errors.push(e);
                }
            }
        }
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
        Err(super::combined(errors))
    }
}

impl BlockStore for Circle {
    fn name(&self) -> String {
        let names: Vec<String> = self.members().iter().map(|m| m.label()).collect();
        names.join(" + ")
    }

    fn put(&self, block_type: BlockType, data: Bytes, done: PutDone) {
        let score = Score::of(&data);
        self.put_scored(score, block_type, data, done)
    }

    fn put_scored(&self, score: Score, block_type: BlockType, data: Bytes, done: PutDone) {
        // `done` runs once every member that was asked has answered.
        let asked = (0..self.stores.len())
            .filter(|&i| self.store_of(i).is_some())
            .count();
        if asked == 0 {
            return done(self.check_copies().map(|()| score));
        }
        struct Pending {
            left: usize,
            done: Option<PutDone>,
        }
        let pending = Arc::new(Mutex::new(Pending {
            left: asked,
            done: Some(done),
        }));
        let health = self.health.clone();
        self.put_each(
            score,
            block_type,
            data,
            &|_| false,
            Arc::new(move |_, _| {
                let mut p = pending.lock().expect("circle put");
                p.left -= 1;
                if p.left == 0 {
                    let done = p.done.take().expect("done once");
                    drop(p);
                    done(health.check_copies().map(|()| score));
                }
            }),
        );
    }

    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        self.read(score, block_type, None)
    }

    fn get_checked(
        &self,
        score: Score,
        block_type: BlockType,
        sha256: &[u8; 32],
    ) -> Result<Bytes, StoreError> {
        self.read(score, block_type, Some(sha256))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.sync_members();
        self.check_copies()
    }
}
