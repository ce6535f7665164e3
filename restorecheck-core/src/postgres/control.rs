//! Reading `pg_control` through `pg_controldata`, with the programs of a [`PgTools`] (this
//! host's bin dir, or a container image).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::postgres::binaries::PgTools;

/// The parts of `pg_controldata` output restorecheck uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ControlData {
    /// `Database cluster state` (e.g. `in production`, copied from the primary).
    pub(crate) state: String,
    /// `Bytes per WAL segment`.
    pub(crate) wal_segment_size: u64,
    /// `Data page checksum version` (0 = off).
    pub(crate) checksum_version: u32,
    /// Settings recorded by the primary that hot standby must not go below, as
    /// `(setting name, value)` pairs ready for `-c name=value`.
    pub(crate) hot_standby_minimums: Vec<(&'static str, u64)>,
    /// `Latest checkpoint's TimeLineID`.
    pub(crate) timeline: Option<u32>,
    /// `Database block size` (0 when not reported).
    pub(crate) block_size: u64,
    /// `Blocks per segment of large relation` (0 when not reported).
    pub(crate) blocks_per_segment: u32,
    /// `Catalog version number` (0 when not reported).
    pub(crate) catalog_version: u64,
}

/// Maps `pg_controldata` labels to the GUC names hot standby compares against.
const MINIMUMS: &[(&str, &str)] = &[
    ("max_connections setting", "max_connections"),
    ("max_worker_processes setting", "max_worker_processes"),
    ("max_wal_senders setting", "max_wal_senders"),
    ("max_prepared_xacts setting", "max_prepared_transactions"),
    ("max_locks_per_xact setting", "max_locks_per_transaction"),
];

impl ControlData {
    /// Parses `pg_controldata` output (run with `LC_ALL=C`).
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let map: HashMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let num = |k: &str| map.get(k).and_then(|v| v.parse::<u64>().ok());
        let wal_segment_size = num("Bytes per WAL segment").ok_or_else(|| {
            Error::defect("pg_controldata did not report 'Bytes per WAL segment': pg_control is unreadable")
        })?;
        Ok(ControlData {
            state: map.get("Database cluster state").unwrap_or(&"").to_string(),
            wal_segment_size,
            checksum_version: num("Data page checksum version").unwrap_or(0) as u32,
            hot_standby_minimums: MINIMUMS.iter().filter_map(|(label, guc)| num(label).map(|v| (*guc, v))).collect(),
            timeline: num("Latest checkpoint's TimeLineID").map(|v| v as u32),
            block_size: num("Database block size").unwrap_or(0),
            blocks_per_segment: num("Blocks per segment of large relation")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            catalog_version: num("Catalog version number").unwrap_or(0),
        })
    }

    /// Runs `pg_controldata` of `pg` on `data_dir` (as [`PgTools::reader`]).
    pub(crate) async fn read(pg: &PgTools, data_dir: &Path) -> Result<Self> {
        let exe = pg.program("pg_controldata");
        let mut cmd = pg.tokio("pg_controldata", pg.reader(), &[]).await?;
        cmd.arg("-D").arg(data_dir).stdin(std::process::Stdio::null());
        let out = crate::process::output(cmd).await.map_err(|e| Error::io("running pg_controldata", &exe, e))?;
        if !out.status.success() {
            if let Some(e) = not_in_toolbox(pg, "pg_controldata", &out) {
                return Err(e);
            }
            return Err(Error::defect(format!(
                "pg_controldata cannot read the backup's pg_control ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Self::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// A PostgreSQL program that could not even start where `pg` runs it (`docker exec` exits 126
/// or 127 when the image lacks it): the tester's tooling, never a defect of the backup.
pub(crate) fn not_in_toolbox(pg: &PgTools, program: &str, out: &std::process::Output) -> Option<Error> {
    if pg.on_host() || !matches!(out.status.code(), Some(126 | 127)) {
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !(stderr.contains("executable file not found") || stderr.contains("no such file") || stderr.contains("exec:")) {
        return None;
    }
    Some(Error::Tooling {
        what: format!("{program} cannot run in {}: {}", pg.describe(), stderr.trim()),
        hint: "use an image with the PostgreSQL server packages (docker/build-images.sh builds them) or set \
               [check.target] image"
            .into(),
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_output_shape() {
        let text = "pg_control version number:            1300\n\
            Database cluster state:               in production\n\
            Latest checkpoint's TimeLineID:       1\n\
            max_connections setting:              250\n\
            max_worker_processes setting:         8\n\
            max_wal_senders setting:              10\n\
            max_prepared_xacts setting:           0\n\
            max_locks_per_xact setting:           64\n\
            Bytes per WAL segment:                16777216\n\
            Data page checksum version:           1\n\
            Catalog version number:               202209061\n\
            Database block size:                  8192\n\
            Blocks per segment of large relation: 131072\n";
        let c = ControlData::parse(text).unwrap();
        assert_eq!(c.state, "in production");
        assert_eq!(c.wal_segment_size, 16 << 20);
        assert_eq!(c.checksum_version, 1);
        assert_eq!(c.timeline, Some(1));
        assert_eq!((c.block_size, c.blocks_per_segment, c.catalog_version), (8192, 131072, 202209061));
        assert!(c.hot_standby_minimums.contains(&("max_connections", 250)));
        assert!(c.hot_standby_minimums.contains(&("max_prepared_transactions", 0)));
        assert!(ControlData::parse("garbage").is_err());
    }
}
