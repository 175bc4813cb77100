//! Backup IDs: `NAME-YYYYMMDD-HHMMSS` in UTC, the guide's naming, so that
//! IDs sort by time and a person can read when a backup was taken. The
//! archive and manifest files of a backup are named from its ID.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The archive's file name.
pub fn archive_file(id: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{id}.tar.gz.age")
    } else {
        format!("{id}.tar.gz")
    }
}

/// The manifest's file name. The manifest is written last, so a backup
/// whose manifest is there is complete.
pub fn manifest_file(id: &str) -> String {
    format!("{id}.manifest.json")
}

/// The ID of a file of a backup named `name`, if it is one.
pub fn of_file<'a>(name: &str, file: &'a str) -> Option<(&'a str, FileKind)> {
    let (id, kind) = if let Some(id) = file.strip_suffix(".manifest.json") {
        (id, FileKind::Manifest)
    } else if let Some(id) = file.strip_suffix(".tar.gz.age") {
        (id, FileKind::Archive)
    } else if let Some(id) = file.strip_suffix(".tar.gz") {
        (id, FileKind::Archive)
    } else {
        return None;
    };
    parse(name, id).map(|_| (id, kind))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Archive,
    Manifest,
}

/// `NAME-YYYYMMDD-HHMMSS` for a time.
pub fn format(name: &str, at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, mo, d) = civil_from_days((secs / 86400) as i64);
    let s = secs % 86400;
    format!(
        "{name}-{y:04}{mo:02}{d:02}-{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The time an ID of `name` stands for, if `id` is one.
pub fn parse(name: &str, id: &str) -> Option<SystemTime> {
    let rest = id.strip_prefix(name)?.strip_prefix('-')?;
    let b = rest.as_bytes();
    if b.len() != 15 || b[8] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = rest.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, s) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&mo) || d == 0 || d > 31 || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    let (cy, cm, cd) = civil_from_days(days);
    if (cy, cm, cd) != (y as i64, mo, d) || days < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(days as u64 * 86400 + (h * 3600 + mi * 60 + s) as u64))
}

/// Days since 1970-01-01 of a UTC time.
pub fn day_number(at: SystemTime) -> i64 {
    (at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86400) as i64
}

/// The day number of the Monday that starts the ISO week of `day`.
pub fn iso_week_start(day: i64) -> i64 {
    // 1970-01-01 was a Thursday: weekday (Monday = 0) is (day + 3) mod 7.
    day - (day + 3).rem_euclid(7)
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_771_502_400); // 2026-02-19 12:00:00
        assert_eq!(format("wallet", t), "wallet-20260219-120000");
        assert_eq!(parse("wallet", "wallet-20260219-120000"), Some(t));
        for secs in [0u64, 951_782_400, 1_709_164_799, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse("w", &format("w", t)), Some(t), "{secs}");
        }
        assert!(format("w", t) < format("w", t + Duration::from_secs(1)));
        for bad in [
            "wallet-20260230-120000",
            "wallet-20261319-120000",
            "wallet-2026021-1200000",
            "wallet-20260219-240000",
            "wallet-2026O219-120000",
            "wallet-20260219_120000",
            "other-20260219-120000",
            "wallet-20260219-120000x",
        ] {
            assert_eq!(parse("wallet", bad), None, "{bad}");
        }
        assert_eq!(
            of_file("wallet", "wallet-20260219-120000.tar.gz.age"),
            Some(("wallet-20260219-120000", FileKind::Archive))
        );
        assert_eq!(
            of_file("wallet", "wallet-20260219-120000.manifest.json"),
            Some(("wallet-20260219-120000", FileKind::Manifest))
        );
        assert_eq!(of_file("wallet", "wallet-20260219-120000.db.gz"), None);
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        // 2026-11-30 is a Monday, 2026-12-06 a Sunday.
        let monday = days_from_civil(2026, 11, 30);
        assert_eq!(iso_week_start(monday), monday);
        assert_eq!(iso_week_start(monday + 6), monday);
        assert_eq!(iso_week_start(monday + 7), monday + 7);
        assert_eq!(iso_week_start(monday - 1), monday - 7);
    }
}
