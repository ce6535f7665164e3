//! PostgreSQL knowledge every target shares: LSNs and WAL file names, `pg_controldata`,
//! finding binaries, the settings that cut a restored copy off from production, and starting,
//! watching and stopping a server without ever sleeping blindly.

pub(crate) mod auth;
pub mod binaries;
pub(crate) mod checksums;
pub(crate) mod control;
pub(crate) mod datadir;
pub(crate) mod label;
pub(crate) mod launch;
pub(crate) mod logical;
pub mod manifest;
pub(crate) mod physical;
pub(crate) mod server;
pub(crate) mod settings;
pub mod user;

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A WAL position (log sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s.trim().split_once('/').ok_or_else(|| format!("not an LSN: {s:?}"))?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| format!("not an LSN: {s:?}"))?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| format!("not an LSN: {s:?}"))?;
        if hi > 0xFFFF_FFFF || lo > 0xFFFF_FFFF {
            return Err(format!("not an LSN: {s:?}"));
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A WAL segment file name (`000000010000000A000000FF`) decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalSegment {
    /// Timeline.
    pub timeline: u32,
    /// Segment number (counted in segments of the cluster's size).
    pub segno: u64,
}

impl WalSegment {
    /// Parses a 24-hex-digit segment name for segments of `seg_size` bytes.
    pub fn parse(name: &str, seg_size: u64) -> Option<Self> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) || seg_size == 0 {
            return None;
        }
        let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
        let per_log = 0x1_0000_0000u64 / seg_size;
        if seg >= per_log {
            return None;
        }
        Some(WalSegment { timeline: tli, segno: log * per_log + seg })
    }

    /// The LSN where this segment starts.
    pub fn start_lsn(&self, seg_size: u64) -> Lsn {
        Lsn(self.segno * seg_size)
    }

    /// The file name of this segment.
    pub fn file_name(&self, seg_size: u64) -> String {
        let per_log = 0x1_0000_0000u64 / seg_size;
        format!("{:08X}{:08X}{:08X}", self.timeline, self.segno / per_log, self.segno % per_log)
    }
}

/// Quotes an SQL identifier (`app"x` → `"app""x"`).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The last `n` lines of a text file, or `None` if it cannot be read or is empty.
pub(crate) fn tail_file(path: &std::path::Path, n: usize) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines[lines.len().saturating_sub(n)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        let l: Lsn = "0/E000100".parse().unwrap();
        assert_eq!(l.0, 0x0E00_0100);
        assert_eq!(l.to_string(), "0/E000100");
        let l: Lsn = "1A/FF".parse().unwrap();
        assert_eq!(l.to_string(), "1A/FF");
        assert!("zz".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
    }

    #[test]
    fn segment_names_decode_for_any_segment_size() {
        let s = WalSegment::parse("00000002000000010000000A", 16 << 20).unwrap();
        assert_eq!(s.timeline, 2);
        assert_eq!(s.segno, 256 + 10);
        assert_eq!(s.start_lsn(16 << 20).to_string(), "1/A000000");
        assert_eq!(s.file_name(16 << 20), "00000002000000010000000A");
        let big = WalSegment::parse("000000010000000100000003", 1 << 30).unwrap();
        assert_eq!(big.start_lsn(1 << 30).to_string(), "1/C0000000");
        assert!(WalSegment::parse("000000010000000000000100", 16 << 20).is_none());
        assert!(WalSegment::parse("00000001.history", 16 << 20).is_none());
    }
}
