//! Checks of a restored physical data directory before its server starts, shared by every
//! source that restores a physical backup (basebackup, WAL-G, WAL-E, command, …).

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::postgres::{datadir, Lsn};
use crate::safefs;

/// Checks a restored physical data directory before start: `backup_label` present (without it
/// PostgreSQL would start from the wrong checkpoint), `PG_VERSION` readable. Returns the major
/// version and the backup's end LSN from its `backup_manifest` when there is one. `origin`
/// names the backup in messages.
pub(crate) fn check_physical(data: &Path, origin: &Path) -> Result<(u32, Option<Lsn>)> {
    datadir::refuse_irregular_control_files(data)?;
    if !safefs::is_regular(&data.join("backup_label")) {
        return Err(Error::defect(format!(
            "{}: backup_label is missing; without it PostgreSQL would start from the wrong checkpoint and silently corrupt the copy",
            origin.display()
        )));
    }
    let pg_major: u32 = safefs::read_text(&data.join("PG_VERSION"), safefs::SMALL_MAX)?
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::defect(format!("{}: PG_VERSION is missing or unreadable", origin.display())))?;
    Ok((pg_major, manifest_end_lsn(&data.join("backup_manifest"))?))
}

/// The end of the backup's WAL range from `backup_manifest` (`WAL-Ranges[-1].End-LSN`).
pub(crate) fn manifest_end_lsn(path: &Path) -> Result<Option<Lsn>> {
    #[derive(Deserialize)]
    struct Range {
        #[serde(rename = "End-LSN")]
        end: String,
    }
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(rename = "WAL-Ranges", default)]
        wal_ranges: Vec<Range>,
    }
    let f = match safefs::open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading backup manifest", path, e)),
    };
    if f.metadata().map(|m| m.len()).unwrap_or(0) > safefs::MANIFEST_MAX {
        return Err(Error::defect(format!(
            "{} is larger than {}; refusing to read it",
            path.display(),
            safefs::human_bytes(safefs::MANIFEST_MAX)
        )));
    }
    let capped = std::io::Read::take(std::io::BufReader::new(f), safefs::MANIFEST_MAX);
    let m: Manifest = serde_json::from_reader(capped)
        .map_err(|e| Error::defect(format!("{} is not a valid backup manifest: {e}", path.display())))?;
    Ok(m.wal_ranges.last().and_then(|r| r.end.parse().ok()))
}
