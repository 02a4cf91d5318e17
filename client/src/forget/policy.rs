//! Which snapshots a retention policy keeps, with restic's meaning for
//! each rule (`docs/OPERATIONS.md`, "Forget"). Pure: times come in, the
//! local time zone is a function handed in, nothing is read or written.
//!
//! Snapshots are grouped (by host and paths unless told otherwise) and
//! each group is sorted newest first; then, snapshot by snapshot:
//! - `--keep-tag T` keeps every snapshot that has all the tags of one
//!   comma-separated list `T` (lists are alternatives);
//! - `--keep-within D` keeps every snapshot made within `D` (`1y2m3d4h`,
//!   calendar years and months) before the newest snapshot that is not
//!   in the future;
//! - `--keep-last N` keeps the newest N; `--keep-hourly N` the newest
//!   snapshot of each of the newest N hours that have one, and so on for
//!   days, ISO weeks, months and years, in local time. While a count is
//!   left when the oldest snapshot is reached, the oldest is kept too, so
//!   the history reaches as far back as the policy allows. `all` for a
//!   count means no limit.
//!
//! A snapshot no rule keeps is removed. A policy with no rule keeps all.

use std::collections::BTreeMap;

use eventi_shared::time::{civil_from_days as civil, days_from_civil};

/// How many of a rule's buckets to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// This many.
    Only(u64),
    /// Every bucket.
    All,
}

impl std::str::FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Count, String> {
        if s == "all" || s == "unlimited" {
            return Ok(Count::All);
        }
        s.parse()
            .map(Count::Only)
            .map_err(|_| format!("{s:?} is not a count (a number, or `all`)"))
    }
}

/// A calendar span for `--keep-within`: years, months, days, hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Years.
    pub years: i64,
    /// Months.
    pub months: i64,
    /// Days.
    pub days: i64,
    /// Hours.
    pub hours: i64,
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        let bad = || {
            format!(
                "{s:?} is not a span: write it like 1y6m (years, months, days, hours: 2y3m10d12h)"
            )
        };
        let mut span = Span::default();
        let mut number = String::new();
        let mut any = false;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: i64 = number.parse().map_err(|_| bad())?;
            number.clear();
            match c {
                'y' => span.years += n,
                'm' => span.months += n,
                'd' => span.days += n,
                'h' => span.hours += n,
                _ => return Err(bad()),
            }
            any = true;
        }
        if !number.is_empty() || !any {
            return Err(bad());
        }
        Ok(span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// What to group snapshots by before the policy applies to each group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// By host.
    pub host: bool,
    /// By the set of paths backed up.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<GroupBy, String> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(format!(
                        "cannot group by {other:?}: say host, paths, tags (comma-separated), or \"\" for one group"
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// A retention policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--keep-last`.
    pub last: Option<Count>,
    /// `--keep-hourly`.
    pub hourly: Option<Count>,
    /// `--keep-daily`.
    pub daily: Option<Count>,
    /// `--keep-weekly`.
    pub weekly: Option<Count>,
    /// `--keep-monthly`.
    pub monthly: Option<Count>,
    /// `--keep-yearly`.
    pub yearly: Option<Count>,
    /// `--keep-within`.
    pub within: Option<Span>,
    /// `--keep-tag`: each a list of tags that must all be present.
    pub tags: Vec<Vec<String>>,
}

/// What the policy needs to know of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Seconds since the epoch.
    pub time: i64,
    /// The host it ran on.
    pub host: String,
    /// The paths backed up.
    pub paths: Vec<Vec<u8>>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Kept or removed.
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

impl Policy {
    /// Whether no rule is given (then everything is kept).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// The policy as a sentence, for output and history records.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (count, what) in [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            match count {
                Some(Count::Only(n)) => parts.push(format!("{n} {what}")),
                Some(Count::All) => parts.push(format!("all {what}")),
                None => {}
            }
        }
        if let Some(span) = self.within {
            parts.push(format!("all within {span} of the newest"));
        }
        for t in &self.tags {
            parts.push(format!("all tagged {}", t.join("+")));
        }
        if parts.is_empty() {
            return "keep all".into();
        }
        format!("keep {}", parts.join(", "))
    }

    /// The verdict on each of `items` (same order), grouped by `group`;
    /// `offset(t)` is the local time zone's offset from UTC at `t`, in
    /// seconds; `now` bounds the newest snapshot `--keep-within` counts
    /// from (one from the future does not move it).
    pub fn apply(
        &self,
        items: &[Item],
        group: GroupBy,
        offset: &dyn Fn(i64) -> i64,
        now: i64,
    ) -> Vec<Verdict> {
        let mut verdicts = vec![
            Verdict {
                keep: self.is_empty(),
                reasons: if self.is_empty() {
                    vec!["no policy given".into()]
                } else {
                    Vec::new()
                },
            };
            items.len()
        ];
        if self.is_empty() {
            return verdicts;
        }
        let mut groups: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups.entry(group_key(item, group)).or_default().push(i);
        }
        for members in groups.values_mut() {
            // Newest first; equal times keep the order given.
            members.sort_by_key(|&i| std::cmp::Reverse(items[i].time));
            self.apply_group(items, members, offset, now, &mut verdicts);
        }
        verdicts
    }

    fn apply_group(
        &self,
        items: &[Item],
        members: &[usize],
        offset: &dyn Fn(i64) -> i64,
        now: i64,
        verdicts: &mut [Verdict],
    ) {
        let local = |t: i64| t + offset(t);
        let newest = members
            .iter()
            .map(|&i| items[i].time)
            .filter(|&t| t <= now)
            .max();
        let within_from = match (self.within, newest) {
            (Some(span), Some(newest)) => Some(span.before(local(newest))),
            _ => None,
        };
        type Bucket = fn(i64, usize) -> i64;
        let rules: [(Option<Count>, Bucket, &str); 6] = [
            (self.last, |_, nr| nr as i64, "last"),
            (self.hourly, |t, _| t.div_euclid(3600), "hourly"),
            (self.daily, |t, _| t.div_euclid(86_400), "daily"),
            (self.weekly, |t, _| iso_week(t.div_euclid(86_400)), "weekly"),
            (
                self.monthly,
                |t, _| {
                    let (y, m, _) = civil(t.div_euclid(86_400));
                    y * 12 + m
                },
                "monthly",
            ),
            (self.yearly, |t, _| civil(t.div_euclid(86_400)).0, "yearly"),
        ];
        let mut left: Vec<Option<Count>> = rules.iter().map(|r| r.0).collect();
        let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
        for (nr, &i) in members.iter().enumerate() {
            let item = &items[i];
            let t = local(item.time);
            let mut reasons = Vec::new();
            for list in &self.tags {
                if list.iter().all(|tag| item.tags.contains(tag)) {
                    reasons.push(format!("tagged {}", list.join("+")));
                }
            }
            if let Some(from) = within_from {
                if t > from {
                    reasons.push(format!(
                        "within {} of the newest",
                        self.within.expect("set")
                    ));
                }
            }
            let oldest = nr + 1 == members.len();
            for (r, (_, bucket, name)) in rules.iter().enumerate() {
                let remaining = match left[r] {
                    None | Some(Count::Only(0)) => continue,
                    Some(c) => c,
                };
                let b = bucket(t, nr);
                let fresh = last_bucket[r] != Some(b);
                if fresh || oldest {
                    last_bucket[r] = Some(b);
                    if let Count::Only(n) = remaining {
                        left[r] = Some(Count::Only(n - 1));
                    }
                    reasons.push(if fresh {
                        name.to_string()
                    } else {
                        format!("{name} (oldest)")
                    });
                }
            }
            verdicts[i] = Verdict {
                keep: !reasons.is_empty(),
                reasons,
            };
        }
    }
}

fn group_key(item: &Item, group: GroupBy) -> Vec<String> {
    let mut key = Vec::new();
    if group.host {
        key.push(item.host.clone());
    }
    if group.paths {
        let mut paths: Vec<String> = item
            .paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        paths.sort();
        key.push(paths.join("\0"));
    }
    if group.tags {
        let mut tags = item.tags.clone();
        tags.sort();
        key.push(tags.join("\0"));
    }
    key
}

impl Span {
    /// Local wall-clock seconds `t` minus this span, with calendar years
    /// and months (a month back from 31 March is 3 March, as Go's and
    /// restic's AddDate count: the day overflows into the next month).
    fn before(&self, t: i64) -> i64 {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (y, m, d) = civil(days);
        let months = y * 12 + (m - 1) - self.years * 12 - self.months;
        let (y, m) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        let days = days_from_civil(y, m, 1) + (d - 1) - self.days;
        days * 86_400 + secs - self.hours * 3600
    }
}

/// The ISO 8601 week of a day, as year * 100 + week.
fn iso_week(days: i64) -> i64 {
    // 1970-01-01 was a Thursday; weeks run Monday to Sunday and belong to
    // the year their Thursday is in.
    let weekday = (days + 3).rem_euclid(7); // Monday = 0
    let thursday = days - weekday + 3;
    let (year, _, _) = civil(thursday);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    year * 100 + week
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds of a UTC date and time.
    fn at(y: i64, m: i64, d: i64, h: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + h * 3600
    }

    fn utc(_: i64) -> i64 {
        0
    }

    fn items(times: &[i64]) -> Vec<Item> {
        times
            .iter()
            .map(|&time| Item {
                time,
                host: "h".into(),
                paths: vec![b"/data".to_vec()],
                tags: Vec::new(),
            })
            .collect()
    }

    fn kept(policy: &Policy, items: &[Item]) -> Vec<usize> {
        policy
            .apply(items, GroupBy::default(), &utc, i64::MAX)
            .iter()
            .enumerate()
            .filter(|(_, v)| v.keep)
            .map(|(i, _)| i)
            .collect()
    }

    /// A synthetic history: two snapshots a day at 03:00 and 15:00 UTC
    /// from 2025-12-01 to 2026-03-31, newest first (index 0 the newest).
    fn history() -> Vec<Item> {
        let mut times = Vec::new();
        let (from, to) = (days_from_civil(2025, 12, 1), days_from_civil(2026, 3, 31));
        for day in (from..=to).rev() {
            times.push(day * 86_400 + 15 * 3600);
            times.push(day * 86_400 + 3 * 3600);
        }
        items(&times)
    }

    #[test]
    fn calendar_arithmetic_matches_known_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(days_from_civil(2026, 12, 2), 20_789);
        // ISO weeks: 2021-01-03 is in 2020's week 53; 2024-12-30 in 2025's week 1.
        assert_eq!(iso_week(days_from_civil(2021, 1, 3)), 202_053);
        assert_eq!(iso_week(days_from_civil(2021, 1, 4)), 202_101);
        assert_eq!(iso_week(days_from_civil(2024, 12, 30)), 202_501);
        assert_eq!(iso_week(days_from_civil(2026, 12, 2)), 202_649);
        // A month before 31 March is 3 March (the day overflows February).
        let span: Span = "1m".parse().unwrap();
        assert_eq!(span.before(at(2026, 3, 31, 5)), at(2026, 3, 3, 5));
        let span: Span = "1y2m3d4h".parse().unwrap();
        assert_eq!(span.before(at(2026, 5, 10, 12)), at(2025, 3, 7, 8));
        assert_eq!(span.to_string(), "1y2m3d4h");
        assert!("".parse::<Span>().is_err());
        assert!("3".parse::<Span>().is_err());
        assert!("2w".parse::<Span>().is_err());
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let h = history();
        let p = Policy {
            last: Some(Count::Only(3)),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &h), [0, 1, 2]);
        let v = p.apply(&h, GroupBy::default(), &utc, i64::MAX);
        assert_eq!(v[0].reasons, ["last"]);
        assert!(!v[3].keep && v[3].reasons.is_empty());
    }

    #[test]
    fn daily_weekly_monthly_yearly_keep_the_newest_of_each_period() {
        let h = history();
        let daily = Policy {
            daily: Some(Count::Only(3)),
            ..Policy::default()
        };
        // The 15:00 snapshot of each of the three newest days.
        assert_eq!(kept(&daily, &h), [0, 2, 4]);
        let hourly = Policy {
            hourly: Some(Count::Only(4)),
            ..Policy::default()
        };
        // One snapshot per hour: every snapshot is its hour's newest.
        assert_eq!(kept(&hourly, &h), [0, 1, 2, 3]);
        // 2026-03-31 is a Tuesday: its week's newest is index 0; the week
        // before ends Sunday 29 March (index 4); the one before, 22 March.
        let weekly = Policy {
            weekly: Some(Count::Only(3)),
            ..Policy::default()
        };
        assert_eq!(kept(&weekly, &h), [0, 4, 18]);
        let monthly = Policy {
            monthly: Some(Count::Only(2)),
            ..Policy::default()
        };
        // 31 March 15:00, then 28 February 15:00 (31 days back = 62).
        assert_eq!(kept(&monthly, &h), [0, 62]);
        let yearly = Policy {
            yearly: Some(Count::All),
            ..Policy::default()
        };
        // 2026's newest, 2025's newest (31 December 15:00, index 2 * 90),
        // and, with no limit, the oldest (1 December 03:00).
        assert_eq!(kept(&yearly, &h), [0, 180, h.len() - 1]);
    }

    #[test]
    fn a_count_left_at_the_oldest_keeps_the_oldest() {
        let h = history();
        let oldest = h.len() - 1;
        let p = Policy {
            monthly: Some(Count::Only(10)),
            ..Policy::default()
        };
        // Four months hold snapshots; six counts are left, so the oldest
        // (1 December 03:00) is kept too.
        let k = kept(&p, &h);
        assert_eq!(k.len(), 5);
        assert_eq!(*k.last().unwrap(), oldest);
        let v = p.apply(&h, GroupBy::default(), &utc, i64::MAX);
        assert_eq!(v[oldest].reasons, ["monthly (oldest)"]);
    }

    #[test]
    fn rules_combine_and_each_reason_is_given() {
        let h = history();
        let p = Policy {
            last: Some(Count::Only(2)),
            daily: Some(Count::Only(2)),
            ..Policy::default()
        };
        let v = p.apply(&h, GroupBy::default(), &utc, i64::MAX);
        assert_eq!(v[0].reasons, ["last", "daily"]);
        assert_eq!(v[1].reasons, ["last"]);
        assert_eq!(v[2].reasons, ["daily"]);
        assert_eq!(kept(&p, &h), [0, 1, 2]);
        assert_eq!(p.describe(), "keep 2 last, 2 daily");
    }

    #[test]
    fn within_counts_back_from_the_newest_not_from_now() {
        let h = history();
        let p = Policy {
            within: Some("2d".parse().unwrap()),
            ..Policy::default()
        };
        // Newer than 29 March 15:00: 31 March x2, 30 March x2, 29 March 03:00 is out.
        assert_eq!(kept(&p, &h), [0, 1, 2, 3]);
        // A snapshot from the future does not move the reference point.
        let mut future = h.clone();
        future.insert(0, items(&[at(2030, 1, 1, 0)])[0].clone());
        let k: Vec<usize> = p
            .apply(&future, GroupBy::default(), &utc, at(2026, 4, 1, 0))
            .iter()
            .enumerate()
            .filter(|(_, v)| v.keep)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(k, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn tags_keep_every_snapshot_that_has_all_of_one_list() {
        let mut h = history();
        h[10].tags = vec!["release".into(), "v1".into()];
        h[20].tags = vec!["release".into()];
        let p = Policy {
            tags: vec![vec!["release".into(), "v1".into()]],
            ..Policy::default()
        };
        assert_eq!(kept(&p, &h), [10]);
        let p = Policy {
            tags: vec![vec!["v1".into()], vec!["release".into()]],
            ..Policy::default()
        };
        assert_eq!(kept(&p, &h), [10, 20]);
    }

    #[test]
    fn groups_apply_the_policy_separately() {
        let mut h = items(&[at(2026, 3, 3, 0), at(2026, 3, 2, 0), at(2026, 3, 1, 0)]);
        h[1].host = "other".into();
        let p = Policy {
            last: Some(Count::Only(1)),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &h), [0, 1]);
        let one = p.apply(&h, "".parse().unwrap(), &utc, i64::MAX);
        assert_eq!(one.iter().filter(|v| v.keep).count(), 1);
        assert!("host,color".parse::<GroupBy>().is_err());
    }

    #[test]
    fn days_are_local_days() {
        // 23:30 UTC on 1 March is 1:30 on 2 March at UTC+2: with the zone,
        // the two snapshots fall on one day.
        let h = items(&[at(2026, 3, 2, 1), at(2026, 3, 1, 23)]);
        let p = Policy {
            daily: Some(Count::Only(5)),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &h), [0, 1]);
        let plus_two = |_: i64| 7200;
        let v = p.apply(&h, GroupBy::default(), &plus_two, i64::MAX);
        // One day; the oldest is still kept because counts are left.
        assert_eq!(v[1].reasons, ["daily (oldest)"]);
        let p = Policy {
            daily: Some(Count::Only(1)),
            ..Policy::default()
        };
        let v = p.apply(&h, GroupBy::default(), &plus_two, i64::MAX);
        assert!(v[0].keep && !v[1].keep);
        let v = p.apply(&h, GroupBy::default(), &utc, i64::MAX);
        assert!(v[0].keep && !v[1].keep);
    }

    #[test]
    fn no_policy_keeps_everything() {
        let h = history();
        assert!(Policy::default().is_empty());
        assert_eq!(kept(&Policy::default(), &h).len(), h.len());
        assert!("x".parse::<Count>().is_err());
        assert_eq!("all".parse::<Count>(), Ok(Count::All));
    }
}
