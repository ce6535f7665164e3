//! Files restorecheck writes for its users (reports, metrics, history and state files): created
//! without following symlinks and private by default.
//!
//! restorecheck runs as root; a symlink planted at an output path (or at its temp file's
//! path) must not make it write through to another file. Every output is written to a fresh
//! temp file in the same folder (`create_new` + `O_NOFOLLOW`, so neither an existing file nor a
//! link is ever opened), then renamed over the final path — `rename(2)` replaces a symlink
//! there by the new file and never touches the link's target. Mode `DEFAULT_MODE` (`0600`)
//! unless the caller asks for another one (`restorecheck run --output-mode 0640`).

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::error::{Error, Result};

/// Mode of every output file unless configured otherwise: owner read/write only.
pub(crate) const DEFAULT_MODE: u32 = 0o600;

/// Parses an octal file mode such as `0640` or `640`: permission bits only (no setuid, setgid
/// or sticky bit), and the owner must be able to read and write it.
pub fn parse_mode(s: &str) -> Result<u32> {
    let digits = s.trim().strip_prefix("0o").unwrap_or(s.trim());
    let bad = |why: &str| Error::config(format!("output mode {s:?} {why}; use an octal mode such as 0600 or 0640"));
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad("is not an octal file mode"));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad("is not an octal file mode"))?;
    if mode & !0o777 != 0 {
        return Err(bad("sets setuid, setgid or sticky bits"));
    }
    if mode & 0o600 != 0o600 {
        return Err(bad("does not let the owner read and write the file"));
    }
    Ok(mode)
}

/// Creates a new file at `path` with `mode` (exactly, whatever the umask), failing if anything
/// — a file, a directory or a symlink — already exists there.
pub(crate) fn create_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Replaces `path` atomically with `bytes`: a fresh temp file `.<name>.tmp-<pid>-<n>` in the
/// same folder (see `create_new`), fsynced, renamed over `path`, then the folder fsynced.
/// Readers (node_exporter, CI) never see a partial file, and a symlink at `path` or at the temp
/// name is never followed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name =
        path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"));
    }
    // A link (or anything) planted at a temp name makes create_new fail: try another name.
    let mut attempt = 0;
    let tmp = loop {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".tmp-{}-{}-{:08x}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            random_u32()
        ));
        let tmp = path.with_file_name(tmp_name);
        match create_new(&tmp, mode) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let (tmp, mut f) = tmp;
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The rename is done; a folder that cannot be fsynced (some filesystems) is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default(),
    );
    h.finish() as u32
}

/// Reads the file at `path` without following a symlink there (an earlier output read back,
/// such as the previous metrics file).
pub fn read_nofollow(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// Refuses a symlink at `path` (for files opened in place, such as the SQLite history).
#[cfg(any(feature = "history", test))]
pub(crate) fn refuse_symlink(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a symbolic link; restorecheck does not write through links (remove it or point at the real file)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_permission_bits_the_owner_can_use() {
        assert_eq!(parse_mode("0600").unwrap(), 0o600);
        assert_eq!(parse_mode("640").unwrap(), 0o640);
        assert_eq!(parse_mode("0o644").unwrap(), 0o644);
        for bad in ["", "rw", "0800", "4755", "0400", "12345", "-600"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn atomic_write_never_follows_links_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let p = d.path().join("report.json");
        std::os::unix::fs::symlink(&outside, &p).unwrap();
        write_atomic(&p, b"one", DEFAULT_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o640);
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
        assert!(write_atomic(&d.path().join("missing/x"), b"x", DEFAULT_MODE).is_err());
        assert!(create_new(&p, DEFAULT_MODE).is_err(), "an existing file is never opened");
        assert!(refuse_symlink(&outside).is_ok());
        std::os::unix::fs::symlink(&outside, d.path().join("l")).unwrap();
        assert!(refuse_symlink(&d.path().join("l")).is_err());
    }
}
