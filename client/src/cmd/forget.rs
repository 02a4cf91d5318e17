//! `eventi forget`: removes snapshots from the chain, by a retention
//! policy with restic's rules (`forget/policy.rs`) or by name, and prints
//! what it keeps and removes and why. It writes one history record and
//! moves the head to it; no block is deleted (that is prune's work).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use eventi::forget::policy::{Count, GroupBy, Policy, Span};
use eventi::forget::{self, Decision, Selection};
use eventi::repo::{Access, Repo};

/// Options of `eventi forget`.
#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to forget (root scores, or unique hex prefixes); instead
    /// of a policy.
    #[arg(value_name = "SNAP", conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "keep_tag"])]
    snapshots: Vec<String>,
    /// Keep the N newest snapshots (`all`: no limit).
    #[arg(long, value_name = "N")]
    keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[arg(long, value_name = "N")]
    keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<Count>,
    /// Keep every snapshot made within this span of the newest (1y6m, 10d,
    /// 2y3m10d12h: years, months, days, hours).
    #[arg(long, value_name = "SPAN")]
    keep_within: Option<Span>,
    /// Keep every snapshot that has all these tags (comma-separated; give
    /// the option again for alternatives).
    #[arg(long, value_name = "TAGS")]
    keep_tag: Vec<String>,
    /// Apply the policy to each group of snapshots with the same of these
    /// (comma-separated: host, paths, tags; "" for one group).
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    group_by: GroupBy,
    /// Say what would be kept and removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Then prune: give back the space of blocks no kept snapshot needs.
    #[arg(long)]
    prune: bool,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
    /// The passphrase, from a file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::require_full_key("forget snapshots")?;
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within,
        tags: args
            .keep_tag
            .iter()
            .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
            .collect(),
    };
    if policy.is_empty() && args.snapshots.is_empty() {
        bail!("nothing to forget: give a policy (--keep-last N, --keep-daily N, ...) or the snapshots to remove");
    }
    let access = if args.dry_run {
        Access::Read
    } else {
        Access::Write
    };
    let repo = Repo::open(args.passphrase_file.as_deref(), access)?;
    let selection = if args.snapshots.is_empty() {
        Selection::Policy(policy, args.group_by)
    } else {
        let mut roots = Vec::new();
        for spec in &args.snapshots {
            if spec == "latest" {
                bail!("name the snapshot to forget by its root score, not `latest`");
            }
            roots.push(repo.resolve(spec)?.0);
        }
        Selection::Named(roots)
    };
    let now = eventi::fsmeta::now_ns().div_euclid(1_000_000_000);
    let (plan, record) = if args.dry_run {
        (forget::plan(&repo, &selection, &local_offset, now)?, None)
    } else {
        forget::run(&repo, &selection, &local_offset, now)?
    };
    let (kept, removed): (Vec<&Decision>, Vec<&Decision>) =
        plan.decisions.iter().partition(|d| d.keep);
    let pruned = match args.prune {
        true => Some(eventi::prune::prune(&repo, args.dry_run)?),
        false => None,
    };
    if args.json {
        let list = |ds: &[&Decision]| -> Vec<serde_json::Value> {
            ds.iter()
                .map(|d| {
                    serde_json::json!({
                        "snapshot": d.score.to_string(),
                        "time": super::format_time(d.snapshot.time_ns),
                        "time_ns": d.snapshot.time_ns,
                        "host": d.snapshot.host,
                        "paths": d.snapshot.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                        "tags": d.snapshot.tags,
                        "reasons": d.reasons,
                    })
                })
                .collect()
        };
        let v = serde_json::json!({
            "policy": selection.describe(),
            "dry_run": args.dry_run,
            "keep": list(&kept),
            "remove": list(&removed),
            "history": record.map(|r| r.to_string()),
            "prune": pruned.as_ref().map(|p| serde_json::json!({ "stores": p })),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", selection.describe());
        print_list(&format!("keep {} snapshot(s):", kept.len()), &kept);
        let verb = if args.dry_run {
            "would remove"
        } else {
            "remove"
        };
        print_list(&format!("{verb} {} snapshot(s):", removed.len()), &removed);
        match record {
            Some(r) if pruned.is_none() => println!(
                "history record {r} is the head now; no block was deleted (`eventi prune` gives the removed snapshots' space back)"
            ),
            Some(r) => println!("history record {r} is the head now"),
            None if args.dry_run => println!("dry run: nothing changed"),
            None => println!("nothing removed"),
        }
        for r in pruned.iter().flatten() {
            super::prune::print_report(r, args.dry_run);
        }
    }
    repo.close()?;
    Ok(pruned.map_or(ExitCode::SUCCESS, |p| super::prune::exit_code(&p)))
}

fn print_list(title: &str, list: &[&Decision]) {
    println!("{title}");
    for d in list {
        let s = &d.snapshot;
        let tags = if s.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.tags.join(","))
        };
        let why = if d.reasons.is_empty() {
            String::new()
        } else {
            format!("  ({})", d.reasons.join(", "))
        };
        println!(
            "  {}  {}  {}  {}{tags}{why}",
            &d.score.to_string()[..12],
            super::format_time(s.time_ns),
            s.host,
            super::display_paths(&s.paths)
        );
    }
}

/// This machine's time zone's offset from UTC at `t` (seconds since the
/// epoch), in seconds: days and weeks are local ones, as restic's are.
fn local_offset(t: i64) -> i64 {
    let time = t as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}
