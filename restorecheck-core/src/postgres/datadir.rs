//! Preparing a fetched data directory for start, the same for every target.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::source::WalSupply;

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io("writing", path, e))
}

/// Comments out `include` / `include_dir` lines of the backup's postgresql.conf whose target
/// does not exist on this host (production's `/etc/...` files): PostgreSQL refuses to start
/// otherwise. `include_if_exists` is left alone. Returns a note per line disabled.
pub fn disable_missing_includes(data: &Path, conf: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(conf).map_err(|e| Error::io("reading", conf, e))?;
    let mut notes = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let directive = ["include_dir", "include"].into_iter().find(|d| {
            t.strip_prefix(d).is_some_and(|rest| rest.starts_with(|c: char| c.is_whitespace() || c == '=' || c == '\''))
        });
        let target = directive.and_then(|d| {
            let rest = t[d.len()..].trim_start().trim_start_matches('=').trim_start();
            let q = rest.strip_prefix('\'')?;
            q.split('\'').next().map(str::to_string)
        });
        match target {
            Some(path) if !data.join(&path).exists() => {
                out.push_str("# disabled by restorecheck (missing on this host): ");
                out.push_str(line);
                notes.push(format!("disabled `{}` in postgresql.conf: {path} does not exist on this host", t.trim()));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if !notes.is_empty() {
        write(conf, &out)?;
    }
    Ok(notes)
}

/// Comments out, in `file` (postgresql.conf or postgresql.auto.conf), every line setting one of
/// `names` — settings restorecheck passes on the command line anyway. PostgreSQL validates
/// config-file values even when the command line overrides them, so a production value that
/// is invalid here (a locale this host lacks, say) would otherwise stop the server. Returns the
/// names commented out.
pub fn comment_out_settings(file: &Path, names: &[&str]) -> Result<Vec<String>> {
    let Ok(text) = fs::read_to_string(file) else { return Ok(Vec::new()) };
    let mut hit = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let name: String = t.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
        let rest = t[name.len()..].trim_start();
        let is_setting = !name.is_empty() && (rest.starts_with('=') || rest.starts_with('\'') || !rest.is_empty());
        if is_setting && names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            out.push_str("# overridden by restorecheck: ");
            if !hit.contains(&name.to_ascii_lowercase()) {
                hit.push(name.to_ascii_lowercase());
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !hit.is_empty() {
        write(file, &out)?;
    }
    Ok(hit)
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
    } else {
        notes.extend(disable_missing_includes(data, &conf)?);
    }
    fs::set_permissions(data, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("chmod 0700", data, e))?;
    Ok(notes)
}

/// Arguments for `pg_verifybackup` on a fetched data directory (before it starts): WAL is parsed
/// only when the backup carries it, and tablespaces extracted from tar backups get the
/// `pg_tblspc/<oid>` links the tool follows (PostgreSQL replaces them from `tablespace_map`).
pub fn verifybackup_args(data: &Path, wal: &WalSupply) -> Result<Vec<String>> {
    let map = data.join("tablespace_map");
    if let Ok(text) = fs::read_to_string(&map) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some((oid, path)) = line.split_once(' ') {
                let link = data.join("pg_tblspc").join(oid);
                if fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(path, &link).map_err(|e| Error::io("linking tablespace", &link, e))?;
                }
            }
        }
    }
    // tablespace_map was rewritten to point at the extracted tablespaces: ignore that one file.
    let mut args = vec!["-q".to_string(), "-i".into(), "tablespace_map".into()];
    if matches!(wal, WalSupply::RestoreCommand { .. }) {
        args.push("-n".into());
    }
    args.push("-m".into());
    args.push(data.join("backup_manifest").display().to_string());
    args.push(data.display().to_string());
    Ok(args)
}

/// Turns a failed `pg_verifybackup` run into the failure it stands for.
pub fn verifybackup_failed(output: &str) -> Error {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).take(10).collect();
    Error::BackupDefect {
        message: format!(
            "the restored files do not match backup_manifest: {}",
            lines.first().map(|l| l.trim()).unwrap_or("pg_verifybackup failed")
        ),
        log_tail: Some(lines.join("\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overridden_settings_are_commented_out() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("postgresql.conf");
        fs::write(
            &conf,
            "lc_messages = 'xx_XX'\n#lc_time = 'x'\nLC_MONETARY 'yy'\nwork_mem = 4MB\nlisten_addresses='*'\n",
        )
        .unwrap();
        let hit = comment_out_settings(&conf, &["lc_messages", "lc_monetary", "listen_addresses", "lc_time"]).unwrap();
        assert_eq!(hit, ["lc_messages", "lc_monetary", "listen_addresses"]);
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.contains("# overridden by restorecheck: lc_messages = 'xx_XX'"));
        assert!(text.contains("\nwork_mem = 4MB\n"));
        assert!(text.contains("\n#lc_time = 'x'\n"));
    }

    #[test]
    fn includes_missing_here_are_disabled_others_kept() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("conf.d")).unwrap();
        let conf = d.path().join("postgresql.conf");
        fs::write(
            &conf,
            "shared_buffers = 1GB\ninclude_dir 'conf.d'\ninclude '/etc/postgresql/15/main/extra.conf'\ninclude_if_exists '/nope'\ninclude_dir = '/etc/pg/conf.d'\n",
        )
        .unwrap();
        let notes = disable_missing_includes(d.path(), &conf).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.contains("\ninclude_dir 'conf.d'\n"));
        assert!(text.contains(
            "# disabled by restorecheck (missing on this host): include '/etc/postgresql/15/main/extra.conf'"
        ));
        assert!(text.contains("\ninclude_if_exists '/nope'\n"));
        assert!(text.contains("# disabled by restorecheck (missing on this host): include_dir = '/etc/pg/conf.d'"));
    }
}
