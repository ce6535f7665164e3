//! `backup_label`: the file a physical backup carries that says where recovery starts (START
//! WAL LOCATION), when the backup began and what it was called.

use chrono::{DateTime, Utc};

use crate::postgres::Lsn;

/// Parsed `backup_label`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BackupLabel {
    /// The WAL file of START WAL LOCATION (`000000010000000000000002`).
    pub(crate) start_wal_file: Option<String>,
    /// START TIME, converted to UTC when the zone is known.
    pub(crate) start_time: Option<DateTime<Utc>>,
    /// LABEL.
    pub(crate) label: Option<String>,
    /// START WAL LOCATION.
    pub(crate) start_lsn: Option<Lsn>,
}

impl BackupLabel {
    /// Parses the text of a `backup_label` file.
    pub(crate) fn parse(text: &str) -> Self {
        let mut b = BackupLabel::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("START TIME: ") {
                b.start_time = parse_label_time(v.trim());
            } else if let Some(v) = line.strip_prefix("LABEL: ") {
                b.label = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("START WAL LOCATION: ") {
                b.start_lsn = v.split_whitespace().next().and_then(|s| s.parse().ok());
                b.start_wal_file = v
                    .split_once("(file ")
                    .and_then(|(_, f)| f.split(')').next())
                    .map(|f| f.trim().to_string())
                    .filter(|f| f.len() == 24);
            }
        }
        b
    }
}

/// `2026-11-26 05:00:00 UTC` → UTC time. PostgreSQL writes the zone as an abbreviation of the
/// server's `log_timezone`; numeric zones (`+03`, `-0430`) and common abbreviations are known.
pub(crate) fn parse_label_time(s: &str) -> Option<DateTime<Utc>> {
    let (dt, zone) = s.rsplit_once(' ')?;
    let naive = chrono::NaiveDateTime::parse_from_str(dt, "%Y-%m-%d %H:%M:%S").ok()?;
    let offset_min: i64 = match zone {
        // Unambiguous abbreviations only; ambiguous ones (IST, CST) fall back to the file time.
        "UTC" | "GMT" | "Z" | "UCT" | "WET" => 0,
        "BST" | "CET" | "WEST" => 60,
        "CEST" | "EET" | "SAST" => 120,
        "EEST" | "MSK" => 180,
        "HKT" | "AWST" | "SGT" => 480,
        "JST" | "KST" => 540,
        "AEST" => 600,
        "AEDT" => 660,
        "NZST" => 720,
        "NZDT" => 780,
        "EST" | "CDT" => -300,
        "EDT" => -240,
        "MST" | "PDT" => -420,
        "MDT" => -360,
        "PST" => -480,
        "AKST" => -540,
        "HST" => -600,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits = &z[1..].replace(':', "");
            let (h, m) = match digits.len() {
                1 | 2 => (digits.parse::<i64>().ok()?, 0),
                4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
                _ => return None,
            };
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    Some((naive - chrono::Duration::minutes(offset_min)).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_parsing() {
        let l = BackupLabel::parse(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
             CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: 2026-11-26 05:00:00 CET\nLABEL: nightly\nSTART TIMELINE: 1\n",
        );
        assert_eq!(l.label.as_deref(), Some("nightly"));
        assert_eq!(l.start_lsn.unwrap().to_string(), "0/2000028");
        assert_eq!(l.start_time.unwrap().to_rfc3339(), "2026-11-26T04:00:00+00:00");
    }

    #[test]
    fn label_times_in_numeric_zones() {
        assert_eq!(parse_label_time("2026-01-01 03:00:00 +03").unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(parse_label_time("2026-01-01 00:00:00 -0430").unwrap().to_rfc3339(), "2026-01-01T04:30:00+00:00");
        assert!(parse_label_time("2026-01-01 00:00:00 XYZT").is_none());
    }
}
