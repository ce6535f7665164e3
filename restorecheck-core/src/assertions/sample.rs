//! `[check.integrity] sample`: check a deterministic part of the data per run, so that the
//! expensive checks (amcheck's `heapallindexed`, `read_all`) stay affordable on big clusters and
//! a rotation still covers everything, like `restic check --read-data-subset`.
//!
//! The relations of the cluster are split into `t` subsets by a stable hash of
//! `database/schema.name`: `t = ⌈1 / fraction⌉` for `sample = "10%"`, `t = ⌈total bytes /
//! budget⌉` for `sample = "20GB"`. A run checks subset `n = day mod t` when the run key is a UTC
//! date (`2026-12-01`, the default), else `n = hash(run key) mod t`. So a daily run covers every
//! relation within `t` days, and the same run key always checks the same relations.

use serde::{Deserialize, Deserializer};

use crate::fleet::fnv1a64 as fnv;

/// How much of the data the sampled checks read per run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// A fraction of the relations (0 < f ≤ 1): `"10%"`.
    Fraction(f64),
    /// A byte budget: `"20GB"`, `"500MB"`.
    Bytes(u64),
}

impl Sample {
    /// Parses `"10%"`, `"0.5%"`, `"20GB"`, `"500 MB"`, `"1TiB"`.
    pub fn parse(s: &str) -> std::result::Result<Sample, String> {
        let t = s.trim();
        let bad = || format!("sample must be a percentage (\"10%\") or a byte budget (\"20GB\"), not {s:?}");
        if let Some(p) = t.strip_suffix('%') {
            let f: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(f > 0.0 && f <= 100.0) {
                return Err(format!("sample {s:?}: the percentage must be above 0 and at most 100"));
            }
            return Ok(Sample::Fraction(f / 100.0));
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1.0,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            "KIB" => 1024.0,
            "MIB" => 1024.0 * 1024.0,
            "GIB" => 1024.0 * 1024.0 * 1024.0,
            "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        let bytes = n * mult;
        if !(bytes >= 1.0 && bytes.is_finite()) {
            return Err(format!("sample {s:?}: the byte budget must be at least 1 byte"));
        }
        Ok(Sample::Bytes(bytes as u64))
    }

    /// Into how many subsets the data is split, given its total size.
    pub(crate) fn subsets(self, total_bytes: u64) -> u64 {
        match self {
            Sample::Fraction(f) => (1.0 / f).ceil().max(1.0) as u64,
            Sample::Bytes(b) => total_bytes.div_ceil(b.max(1)).max(1),
        }
    }
}

impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sample::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The subset of this run: day number mod `of` for a date run key, else a hash of the key.
pub(crate) fn subset_of_run(run_key: &str, of: u64) -> u64 {
    let of = of.max(1);
    match chrono::NaiveDate::parse_from_str(run_key, "%Y-%m-%d") {
        Ok(d) => {
            let days = d.signed_duration_since(chrono::NaiveDate::default()).num_days();
            days.rem_euclid(of as i64) as u64
        }
        Err(_) => fnv(run_key) % of,
    }
}

/// Which subset relation `name` of database `db` is in.
pub(crate) fn subset_of_relation(db: &str, name: &str, of: u64) -> u64 {
    fnv(&format!("{db}/{name}")) % of.max(1)
}

/// One run's share: subset `index` of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    pub(crate) index: u64,
    pub(crate) of: u64,
}

impl Share {
    /// This run's share for `sample` over `total_bytes`.
    pub(crate) fn new(sample: Sample, total_bytes: u64, run_key: &str) -> Share {
        let of = sample.subsets(total_bytes);
        Share { index: subset_of_run(run_key, of), of }
    }

    /// Whether the relation is checked in this run.
    pub(crate) fn holds(&self, db: &str, name: &str) -> bool {
        subset_of_relation(db, name, self.of) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse() {
        assert_eq!(Sample::parse("10%").unwrap(), Sample::Fraction(0.1));
        assert_eq!(Sample::parse("20GB").unwrap(), Sample::Bytes(20_000_000_000));
        assert_eq!(Sample::parse("1 GiB").unwrap(), Sample::Bytes(1 << 30));
        for bad in ["0%", "101%", "-5%", "ten", "5 parsecs", "0B", ""] {
            assert!(Sample::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Sample::Fraction(0.1).subsets(0), 10);
        assert_eq!(Sample::Fraction(0.3).subsets(0), 4);
        assert_eq!(Sample::Bytes(10).subsets(95), 10);
        assert_eq!(Sample::Bytes(10).subsets(0), 1);
    }

    #[test]
    fn consecutive_days_cover_every_relation_once() {
        let names: Vec<String> = (0..200).map(|i| format!("public.t{i}")).collect();
        let mut seen = vec![0u32; names.len()];
        let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        for day in 0..10 {
            let key = (start + chrono::Duration::days(day)).format("%Y-%m-%d").to_string();
            let share = Share::new(Sample::Fraction(0.1), 0, &key);
            assert_eq!(share, Share::new(Sample::Fraction(0.1), 0, &key), "same key, same share");
            for (i, n) in names.iter().enumerate() {
                if share.holds("app", n) {
                    seen[i] += 1;
                }
            }
        }
        assert!(seen.iter().all(|s| *s == 1), "ten consecutive days check each relation exactly once");
        let k = subset_of_run("nightly-7", 10);
        assert_eq!(k, subset_of_run("nightly-7", 10));
    }
}
