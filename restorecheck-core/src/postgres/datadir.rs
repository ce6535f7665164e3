//! Preparing a fetched data directory for start, the same for every target.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::safefs;
use crate::source::WalSupply;

fn write(path: &Path, text: &str) -> Result<()> {
    safefs::write_file(path, text.as_bytes())
}

/// Files PostgreSQL reads to know what the backup is: a link or special file in their place is
/// refused (the backup is then unusable), never followed.
const CONTROL_FILES: [&str; 5] =
    ["backup_label", "tablespace_map", "PG_VERSION", "backup_manifest", "global/pg_control"];

/// Configuration files restorecheck reads, rewrites or overrides: a link or special file in
/// their place is removed (and `postgresql.conf` replaced by a placeholder), never followed.
const CONFIG_FILES: [&str; 4] = ["postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf"];

/// Whether `rel` (a path inside a data directory) names one of the files PostgreSQL trusts to
/// describe the backup ([`CONTROL_FILES`]).
pub(crate) fn is_control_file(rel: &Path) -> bool {
    let rel: PathBuf = rel.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    CONTROL_FILES.iter().any(|c| rel == Path::new(c))
}

/// Refuses a data directory whose `backup_label`, `tablespace_map`, `PG_VERSION`,
/// `backup_manifest` or `global/pg_control` is anything but a regular file (a symbolic link
/// could make the server, or restorecheck, read a file elsewhere on this host).
pub(crate) fn refuse_irregular_control_files(data: &Path) -> Result<()> {
    for f in CONTROL_FILES {
        let p = data.join(f);
        if safefs::present(&p) && !safefs::is_regular(&p) {
            return Err(Error::defect(format!(
                "{f} in the backup is a symbolic link or special file, not a regular file; restorecheck refuses to \
                 follow it (it could point anywhere on this host), so the backup cannot be checked"
            )));
        }
    }
    Ok(())
}

/// Removes configuration and signal files of the backup that are links or special files
/// (`postgresql.conf` is replaced by a placeholder). Returns a note per file.
fn replace_irregular_config(data: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut names: Vec<String> = CONFIG_FILES.iter().map(|s| s.to_string()).collect();
    if let Ok(rd) = fs::read_dir(data) {
        names.extend(
            rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".signal")),
        );
    }
    for f in names {
        let p = data.join(&f);
        if !safefs::present(&p) || safefs::is_regular(&p) {
            continue;
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            return Err(Error::defect(format!("{f} in the backup is a folder, not a file")));
        }
        fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
        if f == "postgresql.conf" {
            write(
                &p,
                "# written by restorecheck: the backup's postgresql.conf was a link or special file, not followed\n",
            )?;
        }
        notes.push(format!(
            "{f} in the backup was a symbolic link or special file: removed{}, never followed",
            if f == "postgresql.conf" { " and replaced by an empty one" } else { "" }
        ));
    }
    Ok(notes)
}

/// Comments out `include` / `include_dir` / `include_if_exists` lines of the backup's
/// postgresql.conf whose target does not exist on this host (production's `/etc/...` files:
/// PostgreSQL refuses to start otherwise) or leads outside the data directory (a file of the
/// test host, or of a production cluster on it: its content would reach the server log) —
/// also through a link. Included files inside the data directory are treated the same way, a
/// few levels deep. Returns a note per line disabled.
pub(crate) fn disable_missing_includes(data: &Path, conf: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    sanitize_includes(data, conf, 0, &mut notes)?;
    Ok(notes)
}

/// How deep included files are followed (PostgreSQL itself stops at 10).
const INCLUDE_DEPTH: usize = 10;

fn sanitize_includes(data: &Path, conf: &Path, depth: usize, notes: &mut Vec<String>) -> Result<()> {
    let Some(text) = safefs::read_text(conf, safefs::CONF_MAX)? else { return Ok(()) };
    let shown = conf.strip_prefix(data).unwrap_or(conf).display().to_string();
    let base = conf.parent().unwrap_or(data);
    let canon_data = fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    // Inside the data directory, also after resolving links.
    let inside = |p: &Path| fs::canonicalize(p).is_ok_and(|c| c.starts_with(&canon_data));
    let mut changed = false;
    let mut nested = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let directive = ["include_if_exists", "include_dir", "include"].into_iter().find(|d| {
            t.strip_prefix(d).is_some_and(|rest| rest.starts_with(|c: char| c.is_whitespace() || c == '=' || c == '\''))
        });
        let target = directive.and_then(|d| {
            let rest = t[d.len()..].trim_start().trim_start_matches('=').trim_start();
            let q = rest.strip_prefix('\'')?;
            q.split('\'').next().map(|p| (d, p.to_string()))
        });
        let why = target.as_ref().and_then(|(d, path)| {
            let p = Path::new(path);
            let full = base.join(p);
            if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
                return Some(format!("{path} is outside the data directory"));
            }
            if !safefs::present(&full) {
                return Some(format!("{path} does not exist on this host"));
            }
            if !inside(&full) {
                return Some(format!("{path} leads outside the data directory (a link)"));
            }
            if *d == "include_dir" {
                let entries: Vec<PathBuf> =
                    fs::read_dir(&full).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
                let confs: Vec<PathBuf> =
                    entries.into_iter().filter(|e| e.extension().is_some_and(|x| x == "conf")).collect();
                if confs.iter().any(|c| !safefs::is_regular(c) || !inside(c)) {
                    return Some(format!("{path} holds a link or special file"));
                }
                nested.extend(confs);
            } else if !safefs::is_regular(&full) {
                return Some(format!("{path} is a link or special file"));
            } else {
                nested.push(full);
            }
            None
        });
        match why {
            Some(why) => {
                out.push_str("# disabled by restorecheck (outside the backup or missing on this host): ");
                out.push_str(line);
                notes.push(format!("disabled `{}` in {shown}: {why}", t.trim()));
                changed = true;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if changed {
        write(conf, &out)?;
    }
    for f in nested {
        if depth + 1 >= INCLUDE_DEPTH {
            return Err(Error::defect(format!(
                "{shown}: configuration files include each other more than {INCLUDE_DEPTH} levels deep"
            )));
        }
        sanitize_includes(data, &f, depth + 1, notes)?;
    }
    Ok(())
}

/// Comments out, in `file` (postgresql.conf or postgresql.auto.conf), every line setting one of
/// `names` — settings restorecheck passes on the command line anyway. PostgreSQL validates
/// config-file values even when the command line overrides them, so a production value that
/// is invalid here (a locale this host lacks, say) would otherwise stop the server. Returns the
/// names commented out.
pub(crate) fn comment_out_settings(file: &Path, names: &[&str]) -> Result<Vec<String>> {
    let Some(text) = safefs::read_text(file, safefs::CONF_MAX)? else { return Ok(Vec::new()) };
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
/// the signal file matching how WAL is supplied, mode 0700, a config file present, no
/// configuration or signal file that is a link. Returns notes for the report.
pub(crate) fn prepare(data: &Path, wal: &WalSupply) -> Result<Vec<String>> {
    refuse_irregular_control_files(data)?;
    let mut notes = replace_irregular_config(data)?;
    for f in ["postmaster.pid", "postmaster.opts", "standby.signal"] {
        let p = data.join(f);
        if safefs::present(&p) {
            fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
            if f == "standby.signal" {
                notes.push("removed standby.signal from the backup (a restored copy never follows a primary)".into());
            }
        }
    }
    let rc = data.join("recovery.conf");
    if safefs::present(&rc) {
        let to = data.join("recovery.conf.restorecheck-disabled");
        fs::rename(&rc, &to).map_err(|e| Error::io("renaming", &rc, e))?;
        notes.push("renamed a leftover recovery.conf (not supported since PostgreSQL 12)".into());
    }
    let signal = data.join("recovery.signal");
    match wal {
        WalSupply::Fetch(_) => write(&signal, "")?,
        WalSupply::SelfContained => {
            if safefs::present(&signal) {
                fs::remove_file(&signal).map_err(|e| Error::io("removing", &signal, e))?;
            }
        }
    }
    let conf = data.join("postgresql.conf");
    if !safefs::present(&conf) {
        // Debian-style primaries keep their configuration in /etc: the backup has none.
        write(&conf, "# written by restorecheck: the backup had no postgresql.conf\n")?;
    } else {
        notes.extend(disable_missing_includes(data, &conf)?);
    }
    // ALTER SYSTEM never writes includes, but a crafted postgresql.auto.conf may.
    notes.extend(disable_missing_includes(data, &data.join("postgresql.auto.conf"))?);
    fs::set_permissions(data, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("chmod 0700", data, e))?;
    Ok(notes)
}

/// Replaces a `pg_wal` symbolic link that leads out of `work_dir` (a plain backup made with
/// `pg_basebackup --waldir`, or a copy of one) by a folder holding a copy of its segments,
/// history files and `archive_status`: the restored server recycles and writes WAL, and must
/// never do that in the backup's own WAL folder. Returns a note when it did.
pub(crate) fn materialize_wal(data: &Path, work_dir: &Path) -> Result<Option<String>> {
    let link = data.join("pg_wal");
    let is_link = fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Ok(None);
    }
    let target = fs::read_link(&link).map_err(|e| Error::io("reading link", &link, e))?;
    let target = if target.is_relative() { data.join(target) } else { target };
    let canon = fs::canonicalize(&target).map_err(|_| {
        Error::defect(format!("pg_wal of the backup is a link to {}, which does not exist here", target.display()))
    })?;
    let canon_work = fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    if canon.starts_with(&canon_work) && canon != canon_work {
        return Ok(None);
    }
    if !canon.is_dir() {
        return Err(Error::defect(format!(
            "pg_wal of the backup is a link to {}, which is not a folder",
            canon.display()
        )));
    }
    let tmp = data.join("pg_wal.restorecheck-copy");
    let mut bytes = 0u64;
    copy_regular_files(&canon, &tmp, &mut bytes)?;
    let status = canon.join("archive_status");
    if fs::symlink_metadata(&status).is_ok_and(|m| m.is_dir()) {
        copy_regular_files(&status, &tmp.join("archive_status"), &mut bytes)?;
    } else {
        fs::create_dir(tmp.join("archive_status")).map_err(|e| Error::io("creating", tmp.join("archive_status"), e))?;
    }
    fs::remove_file(&link).map_err(|e| Error::io("replacing pg_wal link", &link, e))?;
    fs::rename(&tmp, &link).map_err(|e| Error::io("placing copied pg_wal", &link, e))?;
    Ok(Some(format!(
        "pg_wal of the backup is a link to {}: its {} were copied into the work dir (the backup is never written)",
        canon.display(),
        safefs::human_bytes(bytes)
    )))
}

/// Copies the regular files directly in `src` (links and other entries are skipped, never
/// followed) into the new folder `dst`.
fn copy_regular_files(src: &Path, dst: &Path, bytes: &mut u64) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(dst).map_err(|e| Error::io("creating", dst, e))?;
    for e in fs::read_dir(src).map_err(|e| Error::io("listing", src, e))? {
        let e = e.map_err(|er| Error::io("listing", src, er))?;
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let mut r = safefs::open_nofollow(&from).map_err(|er| Error::io("opening", &from, er))?;
        let mut w = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&to)
            .map_err(|er| Error::io("creating", &to, er))?;
        *bytes +=
            std::io::copy(&mut r, &mut w).map_err(|er| crate::archive::read_error(&from.display().to_string(), er))?;
    }
    Ok(())
}

/// The one check of tablespaces, for every source and both targets: every `pg_tblspc` entry
/// and every `tablespace_map` line must name a numeric OID, and every place they lead to must
/// resolve inside `work_dir` (no `..`, no production path, no link out). A server started
/// otherwise would write into a tablespace of the source cluster, the backup, or any folder
/// of this host the backup names. Anything else is a [`Error::BackupDefect`].
pub(crate) fn check_tablespaces(data: &Path, work_dir: &Path) -> Result<()> {
    let outside = |oid: &str, target: &str| {
        Error::defect(format!(
            "tablespace {oid} leads to {target}, outside restorecheck's work dir {}; refusing to start a server that \
             would read or write there",
            work_dir.display()
        ))
    };
    let numeric = |oid: &str| !oid.is_empty() && oid.len() <= 10 && oid.bytes().all(|b| b.is_ascii_digit());
    let tbl = data.join("pg_tblspc");
    if let Ok(rd) = fs::read_dir(&tbl) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !numeric(&name) {
                return Err(Error::defect(format!(
                    "pg_tblspc/{name:?} in the backup is not a tablespace OID (a number); refusing the backup"
                )));
            }
            let link = e.path();
            let meta = fs::symlink_metadata(&link).map_err(|er| Error::io("reading", &link, er))?;
            if meta.is_dir() {
                continue; // an in-place tablespace, inside the data directory
            }
            if !meta.file_type().is_symlink() {
                return Err(Error::defect(format!("pg_tblspc/{name} in the backup is neither a link nor a folder")));
            }
            let target = fs::read_link(&link).map_err(|er| Error::io("reading link", &link, er))?;
            let abs = if target.is_relative() { tbl.join(&target) } else { target.clone() };
            if !safefs::resolves_inside(&abs, work_dir) {
                return Err(outside(&name, &target.display().to_string()));
            }
        }
    }
    let map = data.join("tablespace_map");
    if let Some(text) = safefs::read_text(&map, safefs::LABEL_MAX)? {
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let (oid, path) = line.split_once(' ').unwrap_or((line, ""));
            if !numeric(oid) {
                return Err(Error::defect(format!(
                    "tablespace_map line {}: {oid:?} is not a tablespace OID (a number); refusing the backup",
                    n + 1
                )));
            }
            if !safefs::resolves_inside(Path::new(path), work_dir) {
                return Err(outside(oid, path));
            }
        }
    }
    Ok(())
}

/// Arguments for `pg_verifybackup` on a fetched data directory (before it starts): WAL is parsed
/// only when the backup carries it, and tablespaces extracted from tar backups get the
/// `pg_tblspc/<oid>` links the tool follows (PostgreSQL replaces them from `tablespace_map`).
/// Tablespaces are checked first ([`check_tablespaces`]): no link leads out of the work dir.
pub(crate) fn verifybackup_args(data: &Path, wal: &WalSupply, skip_checksums: bool) -> Result<Vec<String>> {
    refuse_irregular_control_files(data)?;
    check_tablespaces(data, data.parent().unwrap_or(data))?;
    let map = data.join("tablespace_map");
    if let Some(text) = safefs::read_text(&map, safefs::LABEL_MAX)? {
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
    if matches!(wal, WalSupply::Fetch(_)) {
        args.push("-n".into());
    }
    if skip_checksums {
        // Checked while extracting (postgres::manifest): only the tree and the WAL remain.
        args.push("-s".into());
    }
    args.push("-m".into());
    args.push(data.join("backup_manifest").display().to_string());
    args.push(data.display().to_string());
    Ok(args)
}

/// The report note after `pg_verifybackup` passed.
pub(crate) fn verifybackup_note(backup: &crate::source::PhysicalBackup) -> String {
    match &backup.manifest_stream_verified {
        Some(v) => format!(
            "backup_manifest verified: {} files ({}) matched their size and {} checksum while they were extracted, in \
             the same pass; pg_verifybackup --skip-checksums then checked the file list, the manifest's own checksum{}",
            v.files,
            crate::safefs::human_bytes(v.bytes),
            if v.algorithms.is_empty() { "NONE".to_string() } else { v.algorithms.join("/") },
            if matches!(backup.wal, WalSupply::SelfContained) { " and the WAL" } else { "" }
        ),
        None => "backup_manifest verified with pg_verifybackup (every file, size and checksum)".into(),
    }
}

/// Turns a failed `pg_verifybackup` run into the failure it stands for.
pub(crate) fn verifybackup_failed(output: &str) -> Error {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).take(10).collect();
    Error::BackupDefect {
        message: format!(
            "the restored files do not match backup_manifest: {}",
            lines.first().map(|l| l.trim()).unwrap_or("pg_verifybackup failed")
        ),
        log_tail: Some(lines.join("\n")),
        source: None,
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
        assert_eq!(notes.len(), 3, "{notes:?}");
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.contains("\ninclude_dir 'conf.d'\n"));
        let off = "# disabled by restorecheck (outside the backup or missing on this host): ";
        assert!(text.contains(&format!("{off}include '/etc/postgresql/15/main/extra.conf'")));
        // Outside the data directory, even when it exists here: its content would reach the log.
        assert!(text.contains(&format!("{off}include_if_exists '/nope'")));
        assert!(text.contains(&format!("{off}include_dir = '/etc/pg/conf.d'")));
    }

    fn restore_command() -> WalSupply {
        WalSupply::Fetch(crate::source::WalFetch::shell("true"))
    }

    #[test]
    fn linked_configs_are_replaced_and_linked_control_files_refused() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let (data, secret) = (d.path().join("data"), d.path().join("secret"));
        fs::create_dir(&data).unwrap();
        fs::write(&secret, "MARKER\n").unwrap();
        for f in ["postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "recovery.signal", "standby.signal"] {
            symlink(&secret, data.join(f)).unwrap();
        }
        let notes = prepare(&data, &restore_command()).unwrap();
        assert_eq!(fs::read_to_string(&secret).unwrap(), "MARKER\n");
        assert!(safefs::is_regular(&data.join("postgresql.conf")) && safefs::is_regular(&data.join("recovery.signal")));
        assert!(!safefs::present(&data.join("postgresql.auto.conf")) && !safefs::present(&data.join("pg_hba.conf")));
        assert!(!fs::read_to_string(data.join("postgresql.conf")).unwrap().contains("MARKER"));
        assert_eq!(notes.iter().filter(|n| n.contains("symbolic link")).count(), 5, "{notes:?}");
        for f in ["backup_label", "tablespace_map", "PG_VERSION", "global/pg_control"] {
            let p = data.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(&secret, &p).unwrap();
            let e = prepare(&data, &WalSupply::SelfContained).unwrap_err();
            assert!(e.is_backup_defect() && e.to_string().contains(f), "{f}: {e}");
            fs::remove_file(&p).unwrap();
        }
        assert_eq!(fs::read_to_string(&secret).unwrap(), "MARKER\n");
    }

    #[test]
    fn includes_of_files_outside_the_data_dir_are_disabled_even_when_they_exist() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("postgresql.conf");
        fs::write(&conf, "include '/etc/passwd'\ninclude_if_exists '../secret'\n").unwrap();
        let notes = disable_missing_includes(d.path(), &conf).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes.iter().all(|n| n.contains("outside the data directory")));
        // Nested: an included file inside the data dir that includes /etc, and links out.
        fs::create_dir(d.path().join("conf.d")).unwrap();
        fs::write(
            d.path().join("conf.d/a.conf"),
            "include '/etc/hostname'
",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("linked.conf")).unwrap();
        fs::write(
            &conf,
            "include_dir 'conf.d'
include 'linked.conf'
",
        )
        .unwrap();
        let notes = disable_missing_includes(d.path(), &conf).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        let text = fs::read_to_string(&conf).unwrap();
        assert!(
            text.starts_with(
                "include_dir 'conf.d'
# disabled"
            ),
            "{text}"
        );
        assert!(fs::read_to_string(d.path().join("conf.d/a.conf")).unwrap().starts_with("# disabled"));
    }

    #[test]
    fn a_pg_wal_link_out_of_the_work_dir_becomes_a_copy() {
        let d = tempfile::tempdir().unwrap();
        let (work, wal) = (d.path().join("work"), d.path().join("backup-wal"));
        let data = work.join("data");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(wal.join("archive_status")).unwrap();
        fs::write(wal.join("000000010000000000000002"), "segment").unwrap();
        fs::write(wal.join("archive_status/000000010000000000000002.done"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", wal.join("evil")).unwrap();
        std::os::unix::fs::symlink(&wal, data.join("pg_wal")).unwrap();
        let note = materialize_wal(&data, &work).unwrap().unwrap();
        assert!(note.contains("copied into the work dir"), "{note}");
        let pg_wal = data.join("pg_wal");
        assert!(fs::symlink_metadata(&pg_wal).unwrap().is_dir());
        assert_eq!(fs::read_to_string(pg_wal.join("000000010000000000000002")).unwrap(), "segment");
        assert!(pg_wal.join("archive_status/000000010000000000000002.done").is_file());
        assert!(!safefs::present(&pg_wal.join("evil")), "links in the WAL folder are not copied");
        assert!(fs::symlink_metadata(wal.join("evil")).is_ok(), "the backup's WAL folder is left alone");
        // A link inside the work dir stays.
        fs::create_dir(work.join("wal2")).unwrap();
        fs::remove_dir_all(&pg_wal).unwrap();
        std::os::unix::fs::symlink(work.join("wal2"), &pg_wal).unwrap();
        assert!(materialize_wal(&data, &work).unwrap().is_none());
    }

    #[test]
    fn tablespaces_must_name_oids_and_stay_inside_the_work_dir() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let work = d.path().join("work");
        let (data, ts) = (work.join("data"), work.join("tablespaces"));
        fs::create_dir_all(data.join("pg_tblspc")).unwrap();
        fs::create_dir_all(ts.join("16400")).unwrap();
        symlink("/etc", ts.join("evil")).unwrap();
        let map = data.join("tablespace_map");
        let ok = format!("16400 {}\n", ts.join("16400").display());
        fs::write(&map, &ok).unwrap();
        check_tablespaces(&data, &work).unwrap();
        for (text, words) in [
            ("16400 ../../x\n".to_string(), "outside restorecheck's work dir"),
            ("16400 /etc/x\n".to_string(), "outside restorecheck's work dir"),
            (format!("16400 {}/../../x\n", ts.display()), "outside restorecheck's work dir"),
            (format!("16400 {}\n", ts.join("evil/x").display()), "outside restorecheck's work dir"),
            (format!("abc {}\n", ts.join("16400").display()), "is not a tablespace OID"),
        ] {
            fs::write(&map, &text).unwrap();
            let e = check_tablespaces(&data, &work).unwrap_err();
            assert!(e.is_backup_defect() && e.to_string().contains(words), "{text}: {e}");
        }
        fs::remove_file(&map).unwrap();
        let link = data.join("pg_tblspc/16400");
        symlink(ts.join("16400"), &link).unwrap();
        check_tablespaces(&data, &work).unwrap();
        for target in ["/etc", "../../../x"] {
            fs::remove_file(&link).unwrap();
            symlink(target, &link).unwrap();
            assert!(check_tablespaces(&data, &work).is_err(), "{target}");
        }
        fs::remove_file(&link).unwrap();
        symlink(ts.join("16400"), data.join("pg_tblspc/x16400")).unwrap();
        let e = check_tablespaces(&data, &work).unwrap_err();
        assert!(e.to_string().contains("not a tablespace OID"), "{e}");
    }
}
