//! Which backups to keep: the union of keep-last, keep-daily, keep-weekly
//! and keep-within, the way restic and borg define them, plus one rule
//! above all: the newest verified backup is never deleted, whatever the
//! rules say (a schedule that stopped for longer than keep-within must not
//! leave an operator with nothing).
//!
//! Days and weeks are UTC days and ISO weeks (Monday to Sunday). keep-within
//! counts back from now, like the guide's `find -mtime +30 -delete`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::id;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The newest N.
    pub keep_last: Option<u32>,
    /// The newest backup of each of the newest N days that have one.
    pub keep_daily: Option<u32>,
    /// The newest backup of each of the newest N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Every backup younger than this.
    pub keep_within: Option<Duration>,
}

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub taken: SystemTime,
    /// Passed its checks (at creation, or the last `verify`).
    pub verified: bool,
}

impl Rules {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.keep_last {
            parts.push(format!("last {n}"));
        }
        if let Some(n) = self.keep_daily {
            parts.push(format!("daily {n}"));
        }
        if let Some(n) = self.keep_weekly {
            parts.push(format!("weekly {n}"));
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("within {}", humantime::format_duration(d)));
        }
        parts.join(", ")
    }

    /// The IDs to delete from `entries` at `now`.
    pub fn to_delete(&self, entries: &[Entry], now: SystemTime) -> Vec<String> {
        let mut sorted: Vec<&Entry> = entries.iter().collect();
        // Newest first; IDs sort by time.
        sorted.sort_by(|a, b| b.taken.cmp(&a.taken).then(b.id.cmp(&a.id)));
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        if let Some(newest) = sorted.iter().find(|e| e.verified) {
            keep.insert(&newest.id);
        }
        if let Some(n) = self.keep_last {
            keep.extend(sorted.iter().take(n as usize).map(|e| e.id.as_str()));
        }
        let mut by_period = |n: Option<u32>, period: &dyn Fn(SystemTime) -> i64| {
            let Some(n) = n else { return };
            let mut seen = BTreeSet::new();
            for e in &sorted {
                if seen.len() >= n as usize && !seen.contains(&period(e.taken)) {
                    break;
                }
                if seen.insert(period(e.taken)) {
                    keep.insert(&e.id);
                }
            }
        };
        by_period(self.keep_daily, &id::day_number);
        by_period(self.keep_weekly, &|t| id::iso_week_start(id::day_number(t)));
        if let Some(within) = self.keep_within {
            let cutoff = now.checked_sub(within);
            for e in &sorted {
                if cutoff.is_none_or(|c| e.taken >= c) {
                    keep.insert(&e.id);
                }
            }
        }
        sorted
            .iter()
            .filter(|e| !keep.contains(e.id.as_str()))
            .map(|e| e.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const HOUR: u64 = 3600;
    const DAY: u64 = 86400;
    /// 2026-11-30 00:00:00 UTC, a Monday.
    const MONDAY: u64 = 1_795_996_800;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A backup every 6 hours for `days` days before `end`.
    fn calendar(end: u64, days: u64) -> Vec<Entry> {
        (0..days * 4)
            .map(|i| {
                let t = at(end - i * 6 * HOUR);
                Entry {
                    id: id::format("wallet", t),
                    taken: t,
                    verified: true,
                }
            })
            .collect()
    }

    fn kept(rules: &Rules, entries: &[Entry], now: u64) -> Vec<String> {
        let gone: BTreeSet<String> = rules.to_delete(entries, at(now)).into_iter().collect();
        let mut k: Vec<String> = entries
            .iter()
            .map(|e| e.id.clone())
            .filter(|i| !gone.contains(i))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn the_guides_thirty_days() {
        let end = MONDAY + 12 * HOUR;
        let entries = calendar(end, 60);
        let rules = Rules {
            keep_within: Some(Duration::from_secs(30 * DAY)),
            ..Rules::default()
        };
        let k = kept(&rules, &entries, end);
        // 30 days of 4 a day, plus the one exactly 30 days old.
        assert_eq!(k.len(), 121);
        assert_eq!(
            k.first().unwrap(),
            &id::format("wallet", at(end - 30 * DAY))
        );
    }

    #[test]
    fn daily_and_weekly_keep_the_newest_of_each_period() {
        let end = MONDAY + 18 * HOUR; // Monday 18:00
        let entries = calendar(end, 30);
        let rules = Rules {
            keep_daily: Some(3),
            keep_weekly: Some(3),
            ..Rules::default()
        };
        let k = kept(&rules, &entries, end);
        let expect: BTreeSet<String> = [
            end,                         // today (Monday) and this week
            MONDAY - 6 * HOUR,           // Sunday 18:00: yesterday, and last week
            MONDAY - DAY - 6 * HOUR,     // Saturday 18:00
            MONDAY - 7 * DAY - 6 * HOUR, // the Sunday before: the week before last
        ]
        .iter()
        .map(|s| id::format("wallet", at(*s)))
        .collect();
        assert_eq!(k.into_iter().collect::<BTreeSet<_>>(), expect);
    }

    #[test]
    fn keep_last_and_the_union_of_rules() {
        let end = MONDAY;
        let entries = calendar(end, 10);
        let rules = Rules {
            keep_last: Some(5),
            keep_daily: Some(2),
            ..Rules::default()
        };
        let k = kept(&rules, &entries, end);
        // The newest 5 span Monday 00:00 back to Sunday 00:00; daily 2 adds
        // nothing new (Monday's and Sunday's newest are among them).
        assert_eq!(k.len(), 5);
        let rules = Rules {
            keep_last: Some(1),
            keep_daily: Some(3),
            ..Rules::default()
        };
        assert_eq!(kept(&rules, &entries, end).len(), 3);
    }

    #[test]
    fn the_newest_verified_backup_survives_any_rules() {
        let end = MONDAY;
        let mut entries = calendar(end - 100 * DAY, 2);
        let rules = Rules {
            keep_within: Some(Duration::from_secs(30 * DAY)),
            ..Rules::default()
        };
        // All older than 30 days: only the newest stays.
        assert_eq!(kept(&rules, &entries, end), vec![entries[0].id.clone()]);
        // The newest failed its verification: the newest verified one stays
        // too (the failed one is not protected).
        entries[0].verified = false;
        assert_eq!(kept(&rules, &entries, end), vec![entries[1].id.clone()]);
        assert!(Rules::default().to_delete(&[], at(end)).is_empty());
    }

    #[test]
    fn a_simulated_year_of_runs() {
        // Retention applied after every backup for a year, 4 a day: what is
        // left at the end is exactly what the rules name, never more.
        let rules = Rules {
            keep_last: Some(4),
            keep_daily: Some(7),
            keep_weekly: Some(8),
            keep_within: None,
        };
        let mut have: Vec<Entry> = Vec::new();
        let start = MONDAY - 365 * DAY;
        let mut t = start;
        while t <= MONDAY {
            have.push(Entry {
                id: id::format("wallet", at(t)),
                taken: at(t),
                verified: true,
            });
            let gone: BTreeSet<String> = rules.to_delete(&have, at(t)).into_iter().collect();
            have.retain(|e| !gone.contains(&e.id));
            t += 6 * HOUR;
        }
        let days: BTreeSet<i64> = have.iter().map(|e| id::day_number(e.taken)).collect();
        let newest_day = id::day_number(at(MONDAY));
        // The newest 4 (today 00:00 and Sunday 18:00, 12:00, 06:00), 7 daily
        // (adding Saturday back to Tuesday, 18:00 each), 8 weekly (adding the
        // Sundays 18:00 of six more weeks).
        assert!(days.iter().rev().take(7).eq((newest_day - 6..=newest_day)
            .rev()
            .collect::<Vec<_>>()
            .iter()));
        assert_eq!(
            have.len(),
            4 + 5 + 6,
            "{:?}",
            have.iter().map(|e| &e.id).collect::<Vec<_>>()
        );
    }
}
