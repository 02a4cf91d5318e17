//! Where everything of a store lives in its bucket: the object names,
//! pure (no I/O). Pinned in `docs/FORMAT.md`.

use super::pack::PackId;

/// The object names of a store in a bucket, all under one prefix.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix` (empty, or ending in `/`).
    pub fn new(prefix: &str) -> Names {
        let mut prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Names { prefix }
    }

    /// The object saying what the bucket holds (created once).
    pub fn format(&self) -> String {
        format!("{}eventi-format", self.prefix)
    }

    /// A pack.
    pub fn pack(&self, id: PackId) -> String {
        format!("{}packs/{:016x}/{:016x}", self.prefix, id.frontend, id.seq)
    }

    /// The folder of every front-end's packs.
    #[cfg(test)]
    pub fn pack_root(&self) -> String {
        format!("{}packs/", self.prefix)
    }

    /// The folder of one front-end's packs.
    pub fn pack_folder(&self, frontend: u64) -> String {
        format!("{}packs/{frontend:016x}/", self.prefix)
    }

    /// The folder of one front-end's pack indexes.
    pub fn index_folder(&self, frontend: u64) -> String {
        format!("{}index/{frontend:016x}/", self.prefix)
    }

    /// Parses a pack's name back into its id.
    pub fn parse_pack(&self, name: &str) -> Option<PackId> {
        let rest = name.strip_prefix(&format!("{}packs/", self.prefix))?;
        let (frontend, seq) = rest.split_once('/')?;
        Some(PackId {
            frontend: parse_hex16(frontend)?,
            seq: parse_hex16(seq)?,
        })
    }

    /// A pack's index.
    pub fn index(&self, id: PackId) -> String {
        format!("{}index/{:016x}/{:016x}", self.prefix, id.frontend, id.seq)
    }

    /// The mark a front-end leaves after its last pack index when it
    /// closes cleanly (holding how many packs it wrote), so that the
    /// others stop looking in its folder.
    pub fn closed(&self, frontend: u64) -> String {
        format!("{}index/{frontend:016x}/closed", self.prefix)
    }

    /// The folder of every front-end's pack indexes.
    pub fn index_root(&self) -> String {
        format!("{}index/", self.prefix)
    }

    /// Parses a pack index's name back into its pack.
    pub fn parse_index(&self, name: &str) -> Option<PackId> {
        let rest = name.strip_prefix(&self.index_root())?;
        let (frontend, seq) = rest.split_once('/')?;
        Some(PackId {
            frontend: parse_hex16(frontend)?,
            seq: parse_hex16(seq)?,
        })
    }

    /// Parses the front-end of an index folder name (`.../index/<fe>/`).
    pub fn parse_index_folder(&self, name: &str) -> Option<u64> {
        let rest = name.strip_prefix(&self.index_root())?;
        parse_hex16(rest.trim_end_matches('/'))
    }

    /// A repack's plan.
    pub fn plan(&self, generation: u64) -> String {
        format!("{}repack/plans/{generation:016x}", self.prefix)
    }

    /// The folder of the repack plans.
    pub fn plan_root(&self) -> String {
        format!("{}repack/plans/", self.prefix)
    }

    /// A front-end's heartbeat.
    pub fn heartbeat(&self, frontend: u64) -> String {
        format!("{}frontends/{frontend:016x}", self.prefix)
    }

    /// The folder of the heartbeats.
    pub fn heartbeat_root(&self) -> String {
        format!("{}frontends/", self.prefix)
    }

    /// The front-end of a heartbeat's name.
    pub fn parse_heartbeat(&self, name: &str) -> Option<u64> {
        parse_hex16(name.strip_prefix(&self.heartbeat_root())?)
    }

    /// The generation of a plan's name.
    pub fn parse_plan(&self, name: &str) -> Option<u64> {
        parse_hex16(name.strip_prefix(&self.plan_root())?)
    }

    /// The object whose presence says the store keeps its write keys
    /// and heads in a PostgreSQL database, not under `records/`.
    pub fn records_in_database(&self) -> String {
        format!("{}records/in-database", self.prefix)
    }

    /// A shared record (write keys, heads): `records/<table>/<hex id>`.
    pub fn record(&self, table: &str, id: &[u8]) -> String {
        format!("{}records/{table}/{}", self.prefix, hex::encode(id))
    }

    /// The folder of one table's shared records.
    pub fn record_folder(&self, table: &str) -> String {
        format!("{}records/{table}/", self.prefix)
    }

    /// The id of a shared record's name.
    pub fn parse_record(&self, table: &str, name: &str) -> Option<Vec<u8>> {
        hex::decode(name.strip_prefix(&self.record_folder(table))?).ok()
    }
}

fn parse_hex16(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let pack = PackId {
            frontend: 0xdead_beef_0000_0001,
            seq: 7,
        };
        let names = Names::new("team/eventi/");
        let idx = names.index(pack);
        assert_eq!(idx, "team/eventi/index/deadbeef00000001/0000000000000007");
        assert_eq!(names.parse_index(&idx), Some(pack));
        assert_eq!(
            names.parse_index_folder("team/eventi/index/deadbeef00000001/"),
            Some(pack.frontend)
        );
        assert_eq!(names.parse_index("team/eventi/index/x/y"), None);
        let closed = names.closed(pack.frontend);
        assert_eq!(closed, "team/eventi/index/deadbeef00000001/closed");
        assert_eq!(names.parse_index(&closed), None, "not a pack index");
        let rec = names.record("heads", &[0xab, 0x01]);
        assert_eq!(rec, "team/eventi/records/heads/ab01");
        assert_eq!(names.parse_record("heads", &rec), Some(vec![0xab, 0x01]));
        assert_eq!(Names::new("").format(), "eventi-format");
        let plan = names.plan(3);
        assert_eq!(plan, "team/eventi/repack/plans/0000000000000003");
        assert_eq!(names.parse_plan(&plan), Some(3));
        assert_eq!(names.parse_pack(&names.pack(pack)), Some(pack));
        assert_eq!(
            names.index_folder(pack.frontend),
            "team/eventi/index/deadbeef00000001/"
        );
        let beat = names.heartbeat(pack.frontend);
        assert_eq!(beat, "team/eventi/frontends/deadbeef00000001");
        assert_eq!(names.parse_heartbeat(&beat), Some(pack.frontend));
    }
}
