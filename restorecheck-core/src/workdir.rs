//! Private work directories: created per check, removed at teardown, and swept up at the start
//! of the next run if a killed run left one behind.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

const PREFIX: &str = "restorecheck-";
const OWNER_FILE: &str = "restorecheck.pid";

/// A check's private work directory: `data/`, `tablespaces/`, `scratch/`, the server log, the
/// socket directory (when its path is short enough) and a file naming the owning process.
#[derive(Debug, Clone)]
pub struct WorkDir {
    path: PathBuf,
    socket: PathBuf,
}

impl WorkDir {
    /// Creates `<root>/restorecheck-<run>-<index>` (mode 0700).
    pub fn create(root: &Path, run_id: &str, index: usize) -> Result<Self> {
        let path = root.join(format!("{PREFIX}{run_id}-{index}"));
        let mk = |p: &Path| {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(|e| Error::Tooling {
                what: format!("cannot create work dir {}", p.display()),
                hint: "set work_dir in the config (or TMPDIR) to a writable folder with room for the restored cluster"
                    .into(),
                source: Some(e.into()),
            })
        };
        mk(&path)?;
        fs::write(path.join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| Error::io("writing", path.join(OWNER_FILE), e))?;
        for sub in ["data", "tablespaces", "scratch"] {
            mk(&path.join(sub))?;
        }
        // Unix socket paths must fit in 107 bytes including `/.s.PGSQL.NNNNN`.
        let socket = if path.join("sock").as_os_str().len() <= 88 {
            path.join("sock")
        } else {
            PathBuf::from(format!("/tmp/rc-{run_id}-{index}"))
        };
        Ok(WorkDir { path, socket })
    }

    /// The work directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    /// Where the data directory goes.
    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }
    /// Where tablespaces go.
    pub fn tablespace_dir(&self) -> PathBuf {
        self.path.join("tablespaces")
    }
    /// Scratch space.
    pub fn scratch_dir(&self) -> PathBuf {
        self.path.join("scratch")
    }
    /// The server's socket directory.
    pub(crate) fn socket_dir(&self) -> PathBuf {
        self.socket.clone()
    }

    /// Removes everything. Work still winding down after a cancellation (an extraction thread
    /// finishing its current file) may recreate entries for a moment, so removal is retried
    /// for up to 30 seconds.
    pub fn remove(self) -> Result<()> {
        if self.socket.exists() && !self.socket.starts_with(&self.path) {
            let _ = fs::remove_dir_all(&self.socket);
        }
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match fs::remove_dir_all(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if std::time::Instant::now() < until && e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(Error::io("removing work dir", &self.path, e)),
            }
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Removes work directories under `root` whose owning restorecheck process is gone, first
/// stopping any PostgreSQL still running in them. Returns what it did, for the log.
pub(crate) fn remove_stale(root: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    let Ok(rd) = fs::read_dir(root) else { return notes };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || !e.path().is_dir() {
            continue;
        }
        let dir = e.path();
        let read = |p: &Path| crate::safefs::read_text(p, crate::safefs::SMALL_MAX).ok().flatten();
        let owner = read(&dir.join(OWNER_FILE)).and_then(|s| s.trim().parse::<i32>().ok());
        match owner {
            Some(pid) if pid_alive(pid) => continue, // another run in progress
            None => continue,                        // not ours to judge
            _ => {}
        }
        if let Some(pm) = read(&dir.join("data/postmaster.pid"))
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            let is_ours = fs::read_link(format!("/proc/{pm}/cwd")).map(|c| c.starts_with(&dir)).unwrap_or(false);
            if is_ours && pid_alive(pm) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), nix::sys::signal::Signal::SIGQUIT);
                let until = std::time::Instant::now() + Duration::from_secs(10);
                while pid_alive(pm) && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                notes.push(format!("stopped PostgreSQL (pid {pm}) left running by a killed run in {}", dir.display()));
            }
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => notes.push(format!("removed work dir {} left by a killed run", dir.display())),
            Err(err) => notes.push(format!("could not remove stale work dir {}: {err}", dir.display())),
        }
    }
    notes
}

/// Checks that the filesystem holding `dir` has at least `needed` bytes free for an
/// unprivileged writer (`statvfs`), before a source writes `what` there. Not enough is an
/// [`Error::Tooling`] (verdict error, exit 2): the tester's disk, not the backup.
pub(crate) fn ensure_free_space(dir: &Path, needed: u64, what: &str) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| Error::io("checking free space", dir, e.into()))?;
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    if free < needed {
        return Err(Error::Tooling {
            what: format!(
                "not enough free space in the work dir {}: {what} needs at least {} but only {} is free",
                dir.display(),
                crate::safefs::human_bytes(needed),
                crate::safefs::human_bytes(free)
            ),
            hint: "free space there, or set work_dir in the config (or TMPDIR) to a filesystem with room for the \
                   restored cluster"
                .into(),
            source: None,
        });
    }
    Ok(())
}

/// [`ensure_free_space`] before a physical source writes `backup` into `req`: the size the
/// source listed (the stored size — for compressed backups a lower bound of what they expand
/// to) must be free in the work dir. Nothing is checked when the source does not know a size.
pub(crate) fn ensure_room_for(req: &crate::source::FetchRequest, backup: &crate::source::BackupInfo) -> Result<()> {
    match (backup.size_bytes, req.data_dir.parent()) {
        (Some(n), Some(work)) if n > 0 => ensure_free_space(work, n, &format!("backup {}", backup.id)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_shortage_is_a_tooling_error() {
        let d = tempfile::tempdir().unwrap();
        ensure_free_space(d.path(), 1, "a tiny backup").unwrap();
        let e = ensure_free_space(d.path(), u64::MAX / 2, "the backup x").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Tooling);
        assert!(e.to_string().contains("not enough free space in the work dir"), "{e}");
    }
}
