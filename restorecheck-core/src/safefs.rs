//! Files in a restored data directory (and in a local backup) are opened without following
//! links, and read with a size cap: a backup is untrusted input, and restorecheck runs as root.
//! A `postgresql.conf` that is a symbolic link to `/root/secret` must neither be read (its bytes
//! would reach the report) nor written (that would rewrite the outside file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use crate::error::{Error, Result};

/// `backup_label`, `tablespace_map`: a real one is a few hundred bytes.
pub(crate) const LABEL_MAX: u64 = 1 << 20;
/// `PG_VERSION`, `postmaster.pid` and other one-line files.
pub(crate) const SMALL_MAX: u64 = 4096;
/// `postgresql.conf`, `postgresql.auto.conf`.
pub(crate) const CONF_MAX: u64 = 16 << 20;
/// `backup_manifest` (about 200 bytes per file of the cluster).
pub(crate) const MANIFEST_MAX: u64 = 1 << 30;

/// Opens `path` for reading without following a final symbolic link (`O_NOFOLLOW`) and without
/// blocking on a FIFO (`O_NONBLOCK`); anything but a regular file is refused. Errors keep
/// their `io::ErrorKind` (`NotFound` for a missing file); a link gives `ELOOP`.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    let f =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(f)
}

/// Why [`read_text`] refused a file, as a backup defect naming it.
fn refused(path: &Path, e: &io::Error) -> Option<Error> {
    let why = if e.raw_os_error() == Some(libc::ELOOP) {
        "is a symbolic link"
    } else if e.kind() == io::ErrorKind::InvalidInput {
        "is not a regular file"
    } else {
        return None;
    };
    Some(Error::defect(format!(
        "{} {why}; restorecheck never follows a link or special file from a backup (it could point anywhere on this host)",
        path.display()
    )))
}

/// Reads the text file `path` (a link is not followed, see [`open_nofollow`]) of at most `max`
/// bytes. `Ok(None)` when it does not exist. A link, a special file, a larger file or one that
/// is not UTF-8 is a [`Error::BackupDefect`]: backups are the only source of such files.
pub(crate) fn read_text(path: &Path, max: u64) -> Result<Option<String>> {
    let f = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused(path, &e).unwrap_or_else(|| Error::io("opening", path, e))),
    };
    read_capped(f, max, &path.display().to_string()).map(Some)
}

/// Reads at most `max` bytes of text from `r`; more is a [`Error::BackupDefect`] naming `what`.
/// Memory stays bounded by `max` whatever the claimed size.
pub(crate) fn read_capped(r: impl Read, max: u64, what: &str) -> Result<String> {
    let mut buf = Vec::new();
    r.take(max + 1).read_to_end(&mut buf).map_err(|e| crate::archive::read_error(what, e))?;
    if buf.len() as u64 > max {
        return Err(Error::defect(format!(
            "{what} is larger than {}; refusing to read it (a real one is far smaller)",
            human_bytes(max)
        )));
    }
    String::from_utf8(buf).map_err(|_| Error::defect(format!("{what} is not a text file (invalid UTF-8)")))
}

/// Replaces `path` by a new regular file holding `content`: whatever is there (a file, a
/// symbolic link, a FIFO) is unlinked first and the new file is created with `O_EXCL |
/// O_NOFOLLOW`, so no link is ever written through. A replaced regular file keeps its mode
/// and owner; a new one gets 0644 (these are configuration and signal files, nothing secret)
/// and the owner of its folder (the server's OS user once the work dir is handed over).
pub(crate) fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut mode = 0o644;
    let mut owner = path.parent().and_then(|p| fs::symlink_metadata(p).ok()).map(|m| (m.uid(), m.gid()));
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::defect(format!(
                "{} is a folder where PostgreSQL expects a file; the backup is malformed",
                path.display()
            )))
        }
        Ok(m) => {
            if m.file_type().is_file() {
                mode = m.permissions().mode() & 0o777;
                owner = Some((m.uid(), m.gid()));
            }
            fs::remove_file(path).map_err(|e| Error::io("replacing", path, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspecting", path, e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    if let Some((uid, gid)) = owner {
        // Only root can give a file away; anyone else already owns what it creates.
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| Error::io("changing owner", path, e))?;
        }
    }
    f.write_all(content).map_err(|e| Error::io("writing", path, e))?;
    Ok(())
}

/// Whether `path` exists as anything, a dangling symbolic link included (`Path::exists`
/// follows links).
pub(crate) fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Whether `path` is a regular file itself (not a link to one).
pub(crate) fn is_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Whether a symbolic link with target `target` can only lead further down from the folder it
/// sits in: relative, and made of plain names only (no `..`, no root). Such links cannot leave
/// the tree even when chained, whatever else the tree holds; every other link may.
pub(crate) fn link_stays_below(target: &Path) -> bool {
    !target.as_os_str().is_empty()
        && target.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && target.components().any(|c| matches!(c, Component::Normal(_)))
}

/// `path` made absolute-lexical: `.` dropped, `..` refused (`None`). For paths from a backup
/// (`tablespace_map`), which must name a place without climbing.
pub(crate) fn plain_absolute(path: &Path) -> Option<std::path::PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = std::path::PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether `path` (absolute, no `..`) lies inside `root`, also after resolving the links of the
/// part of it that exists.
pub(crate) fn resolves_inside(path: &Path, root: &Path) -> bool {
    let Some(p) = plain_absolute(path) else { return false };
    if !p.starts_with(root) {
        return false;
    }
    let canon_root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    // The longest existing prefix, resolved, must still be inside.
    let mut probe = p.as_path();
    loop {
        if let Ok(c) = fs::canonicalize(probe) {
            return c.starts_with(&canon_root);
        }
        match probe.parent() {
            Some(parent) => probe = parent,
            None => return false,
        }
    }
}

/// `1.5 GiB`-style sizes for messages.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_neither_read_nor_written_through() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("secret");
        fs::write(&outside, "MARKER").unwrap();
        let link = d.path().join("postgresql.conf");
        symlink(&outside, &link).unwrap();
        let e = read_text(&link, 100).unwrap_err();
        assert!(e.is_backup_defect() && e.to_string().contains("is a symbolic link"), "{e}");
        write_file(&link, b"mine\n").unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "MARKER");
        assert!(is_regular(&link));
        assert_eq!(read_text(&link, 100).unwrap().as_deref(), Some("mine\n"));
    }

    #[test]
    fn fifos_are_refused_without_blocking_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("backup_label");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_text(&p, 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        write_file(&p, b"x").unwrap();
        assert!(is_regular(&p));
    }

    #[test]
    fn reads_are_capped_and_missing_files_are_none() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        let f = File::create(&p).unwrap();
        f.set_len(1 << 30).unwrap(); // sparse
        let e = read_text(&p, LABEL_MAX).unwrap_err();
        assert!(e.is_backup_defect() && e.to_string().contains("larger than 1 MiB"), "{e}");
        assert!(read_text(&d.path().join("nope"), 10).unwrap().is_none());
    }

    #[test]
    fn link_targets_that_can_climb_are_told_apart() {
        for ok in ["a", "a/b", "./a"] {
            assert!(link_stays_below(Path::new(ok)), "{ok}");
        }
        for bad in ["/etc/passwd", "..", "a/../..", "a/..", "", "."] {
            assert!(!link_stays_below(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn mapped_paths_must_resolve_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("work");
        fs::create_dir_all(root.join("tablespaces")).unwrap();
        symlink("/etc", root.join("tablespaces/evil")).unwrap();
        assert!(resolves_inside(&root.join("tablespaces/16400"), &root));
        assert!(!resolves_inside(&root.join("tablespaces/../../x"), &root));
        assert!(!resolves_inside(Path::new("/etc/x"), &root));
        assert!(!resolves_inside(Path::new("tablespaces/1"), &root));
        assert!(!resolves_inside(&root.join("tablespaces/evil/x"), &root));
    }
}
