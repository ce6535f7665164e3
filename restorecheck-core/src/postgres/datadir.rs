//! Preparing a fetched data directory for start, the same for every target.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::source::WalSupply;

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io("writing", path, e))
}

/// Makes a fetched data directory startable and safe: no stale pid file, no standby mode,
/// the signal file matching how WAL is supplied, mode 0700, a config file present.
/// Returns notes for the report.
pub fn prepare(data: &Path, wal: &WalSupply) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for f in ["postmaster.pid", "postmaster.opts", "standby.signal"] {
        let p = data.join(f);
        if p.exists() {
            fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
            if f == "standby.signal" {
                notes.push("removed standby.signal from the backup (a restored copy never follows a primary)".into());
            }
        }
    }
    let rc = data.join("recovery.conf");
    if rc.exists() {
        let to = data.join("recovery.conf.restorecheck-disabled");
        fs::rename(&rc, &to).map_err(|e| Error::io("renaming", &rc, e))?;
        notes.push("renamed a leftover recovery.conf (not supported since PostgreSQL 12)".into());
    }
    let signal = data.join("recovery.signal");
    match wal {
        WalSupply::RestoreCommand { .. } => write(&signal, "")?,
        WalSupply::SelfContained => {
            if signal.exists() {
                fs::remove_file(&signal).map_err(|e| Error::io("removing", &signal, e))?;
            }
        }
    }
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        // Debian-style primaries keep their configuration in /etc: the backup has none.
        write(&conf, "# written by restorecheck: the backup had no postgresql.conf\n")?;
    }
    fs::set_permissions(data, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("chmod 0700", data, e))?;
    Ok(notes)
}
