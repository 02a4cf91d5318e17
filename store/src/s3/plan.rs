//! The repack's shared objects, pure (no I/O); `repack.rs` says how they
//! are used, `docs/FORMAT.md` pins the bytes.
//!
//! - a *plan* (`repack/plans/<generation>`): the packs one repack removes
//!   and how far it has got;
//! - a *heartbeat* (`frontends/<id>`): a front-end is alive, and which
//!   plan phase it has applied;
//! - the *lease* (shared record `repack`/`lease`): which front-end may
//!   repack, until when.

use eventi_shared::Score;

use super::pack::PackId;

/// Magic bytes of a plan.
const PLAN_MAGIC: &[u8; 4] = b"EvP1";
/// Magic bytes of a heartbeat.
const HEARTBEAT_MAGIC: &[u8; 4] = b"EvH1";

/// How far a repack has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The packs are being retired: a block in them is stored anew
    /// rather than taken as already there, and every front-end shares
    /// the references it made before it heard so.
    Retire = 1,
    /// Their live blocks are copied into the repacker's packs, up to the
    /// plan's `moved_through`: every front-end reads those first.
    Moved = 2,
    /// The packs are gone.
    Done = 3,
}

impl Phase {
    fn from_byte(b: u8) -> Option<Phase> {
        [Phase::Retire, Phase::Moved, Phase::Done]
            .into_iter()
            .find(|p| *p as u8 == b)
    }
}

/// One repack's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The lease generation it runs under (its name).
    pub generation: u64,
    /// How far it has got.
    pub phase: Phase,
    /// The front-end that repacks.
    pub repacker: u64,
    /// In [`Phase::Moved`]: the repacker's packs below this sequence
    /// number hold every copy.
    pub moved_through: u64,
    /// In [`Phase::Done`]: bytes given back (the packs' less the copies').
    pub freed: u64,
    /// The packs it removes.
    pub packs: Vec<PackId>,
}

impl Plan {
    /// `"EvP1" generation[8] phase[1] repacker[8] moved_through[8]
    /// freed[8] count[4] {frontend[8] seq[8]}×count sha1[20]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(61 + self.packs.len() * 16);
        out.extend_from_slice(PLAN_MAGIC);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.push(self.phase as u8);
        out.extend_from_slice(&self.repacker.to_be_bytes());
        out.extend_from_slice(&self.moved_through.to_be_bytes());
        out.extend_from_slice(&self.freed.to_be_bytes());
        out.extend_from_slice(&(self.packs.len() as u32).to_be_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.frontend.to_be_bytes());
            out.extend_from_slice(&p.seq.to_be_bytes());
        }
        let sum = Score::of(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Parses a plan; `None` if it is damaged or not one.
    pub fn decode(bytes: &[u8]) -> Option<Plan> {
        if bytes.len() < 61 || &bytes[..4] != PLAN_MAGIC {
            return None;
        }
        let (body, sum) = bytes.split_at(bytes.len() - 20);
        if Score::of(body).as_bytes() != sum {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8"));
        let count = u32::from_be_bytes(body[37..41].try_into().expect("4")) as usize;
        if body.len() != 41 + count * 16 {
            return None;
        }
        let packs = (0..count)
            .map(|i| PackId {
                frontend: u64_at(41 + i * 16),
                seq: u64_at(49 + i * 16),
            })
            .collect();
        Some(Plan {
            generation: u64_at(4),
            phase: Phase::from_byte(body[12])?,
            repacker: u64_at(13),
            moved_through: u64_at(21),
            freed: u64_at(29),
            packs,
        })
    }
}

/// A front-end's heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The newest plan it has applied, and the phase of it.
    pub generation: u64,
    /// That phase (0: none yet).
    pub phase: u8,
    /// When it wrote this (Unix seconds, its own clock).
    pub time: u64,
}

impl Heartbeat {
    /// `"EvH1" generation[8] phase[1] time[8]`.
    pub fn encode(&self) -> [u8; 21] {
        let mut v = [0u8; 21];
        v[..4].copy_from_slice(HEARTBEAT_MAGIC);
        v[4..12].copy_from_slice(&self.generation.to_be_bytes());
        v[12] = self.phase;
        v[13..21].copy_from_slice(&self.time.to_be_bytes());
        v
    }

    /// Parses a heartbeat.
    pub fn decode(v: &[u8]) -> Option<Heartbeat> {
        if v.len() != 21 || &v[..4] != HEARTBEAT_MAGIC {
            return None;
        }
        Some(Heartbeat {
            generation: u64::from_be_bytes(v[4..12].try_into().ok()?),
            phase: v[12],
            time: u64::from_be_bytes(v[13..21].try_into().ok()?),
        })
    }

    /// Whether it says plan `generation` is applied up to `phase`.
    pub fn has_applied(&self, generation: u64, phase: Phase) -> bool {
        (self.generation, self.phase) >= (generation, phase as u8)
    }
}

/// Who may repack: `holder[8] generation[8] expires[8]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The front-end holding it.
    pub holder: u64,
    /// Raised at every taking: the plan's name.
    pub generation: u64,
    /// Unix seconds after which another may take it.
    pub expires: u64,
}

impl Lease {
    /// The record's value.
    pub fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.holder.to_be_bytes());
        v[8..16].copy_from_slice(&self.generation.to_be_bytes());
        v[16..].copy_from_slice(&self.expires.to_be_bytes());
        v
    }

    /// Parses the record's value.
    pub fn decode(v: &[u8]) -> Option<Lease> {
        (v.len() == 24).then(|| Lease {
            holder: u64::from_be_bytes(v[..8].try_into().expect("8")),
            generation: u64::from_be_bytes(v[8..16].try_into().expect("8")),
            expires: u64::from_be_bytes(v[16..].try_into().expect("8")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_heartbeats_and_leases_round_trip() {
        let plan = Plan {
            generation: 3,
            phase: Phase::Moved,
            repacker: 0xab,
            moved_through: 9,
            freed: 4096,
            packs: vec![
                PackId {
                    frontend: 1,
                    seq: 2,
                },
                PackId {
                    frontend: 5,
                    seq: 0,
                },
            ],
        };
        let bytes = plan.encode();
        assert_eq!(Plan::decode(&bytes), Some(plan));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(Plan::decode(&bad), None, "byte {i}");
        }
        assert_eq!(
            hex::encode(&bytes[..41]),
            "4576503100000000000000030200000000000000ab0000000000000009\
             000000000000100000000002"
        );
        let beat = Heartbeat {
            generation: 3,
            phase: 2,
            time: 0x6553_f100,
        };
        assert_eq!(Heartbeat::decode(&beat.encode()), Some(beat));
        assert_eq!(
            hex::encode(beat.encode()),
            "45764831000000000000000302000000006553f100"
        );
        assert!(beat.has_applied(3, Phase::Retire));
        assert!(beat.has_applied(2, Phase::Done));
        assert!(!beat.has_applied(3, Phase::Done));
        let lease = Lease {
            holder: 7,
            generation: 4,
            expires: 100,
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease));
        assert_eq!(Lease::decode(&[0; 23]), None);
    }
}
