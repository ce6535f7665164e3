//! The OS user PostgreSQL runs as. PostgreSQL refuses to run as root, so when restorecheck is
//! started as root the server (and `initdb`, `pg_ctl`, …) run as an unprivileged user instead.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};

/// The dedicated unprivileged OS user the restored server runs as when restorecheck runs as
/// root: not `postgres`, so the copy shares nothing with a production cluster on the host
/// (its files, its socket, its peer-authenticated roles).
pub(crate) const DEFAULT_OS_USER: &str = "restorecheck";

/// The user taken when [`DEFAULT_OS_USER`] does not exist (with a note in the report).
pub(crate) const FALLBACK_OS_USER: &str = "postgres";

/// A note for the report when the server runs as [`FALLBACK_OS_USER`] because the dedicated
/// user does not exist and none was configured (`configured` = `target.os_user`).
pub(crate) fn fallback_note(user: &OsUser, configured: Option<&str>) -> Option<String> {
    (user.switched && configured.is_none() && user.name == FALLBACK_OS_USER).then(|| {
        format!(
            "the restored server runs as OS user {FALLBACK_OS_USER:?}, which a production cluster on this host \
             may share: create the dedicated user {DEFAULT_OS_USER:?} (scripts/setup.sh) to isolate it"
        )
    })
}

/// The OS identity to run PostgreSQL programs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// User name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
    /// Numeric primary gid.
    pub gid: u32,
    /// True when we are root and switch to this user for PostgreSQL programs.
    pub switched: bool,
}

impl OsUser {
    /// Resolves the user: `wanted` when running as root (default: the dedicated unprivileged
    /// user `DEFAULT_OS_USER`, else `postgres` when it does not exist, see
    /// `fallback_note`), else ourselves.
    pub fn resolve(wanted: Option<&str>) -> Result<Self> {
        let me = Uid::effective();
        if !me.is_root() {
            let name = User::from_uid(me).ok().flatten().map(|u| u.name).unwrap_or_else(|| me.to_string());
            return Ok(OsUser { name, uid: me.as_raw(), gid: Gid::effective().as_raw(), switched: false });
        }
        let name = match wanted {
            Some(w) => w,
            None if User::from_name(DEFAULT_OS_USER).ok().flatten().is_some() => DEFAULT_OS_USER,
            None => FALLBACK_OS_USER,
        };
        let u = User::from_name(name).ok().flatten().ok_or_else(|| Error::Tooling {
            what: format!(
                "running as root, and PostgreSQL refuses to run as root, but OS user {name:?} does not exist"
            ),
            hint: "create the dedicated user (scripts/setup.sh does: useradd --system --no-create-home \
                   --shell /usr/sbin/nologin restorecheck) or set target.os_user to an unprivileged user"
                .into(),
            source: None,
        })?;
        if u.uid.is_root() {
            return Err(Error::Tooling {
                what: format!("target.os_user {name:?} is root; PostgreSQL refuses to run as root"),
                hint: "set target.os_user to an unprivileged user".into(),
                source: None,
            });
        }
        Ok(OsUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), switched: true })
    }

    /// Makes `cmd` run as this user (no-op when not switching).
    pub fn apply_std(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if self.switched {
            cmd.uid(self.uid).gid(self.gid);
            cmd.env("USER", &self.name).env("LOGNAME", &self.name);
        }
    }

    /// Makes `cmd` run as this user (no-op when not switching).
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        if self.switched {
            cmd.uid(self.uid).gid(self.gid);
            cmd.env("USER", &self.name).env("LOGNAME", &self.name);
        }
    }

    /// Gives `path` and everything below it to this user (no-op when not switching).
    /// Symlinks are changed themselves, never followed.
    pub fn chown_tree(&self, path: &Path) -> Result<()> {
        if !self.switched {
            return Ok(());
        }
        chown_tree(path, self.uid, self.gid)
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| Error::io("changing owner", path, e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("reading", path, e))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| Error::io("listing", path, e))? {
            let entry = entry.map_err(|e| Error::io("listing", path, e))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Checks that `user` can read `dir` (list it and open files in it), by asking a child process
/// running as that user. Used before the server's `restore_command` depends on it.
pub(crate) fn check_readable(user: &OsUser, dir: &Path) -> Result<()> {
    let hint = |what: &str| Error::Tooling {
        what: format!("OS user {:?} (which runs the restored server) cannot read {what}", user.name),
        hint: format!(
            "grant it read access, e.g. `setfacl -R -m u:{0}:rX {1} && setfacl -R -d -m u:{0}:rX {1}` \
             (files a PostgreSQL server archives are mode 0600; the restored server runs with its own uid \
             and primary group only, no supplementary groups), or set target.os_user to the files' owner; \
             restorecheck never needs write access to backups",
            user.name,
            dir.display()
        ),
        source: None,
    };
    // A folder must be searchable too; a single file (a tool's config) only readable.
    if !user_can_read(user, dir, dir.is_dir()) {
        return Err(hint(&dir.display().to_string()));
    }
    // The files too: a WAL segment the server cannot read looks "not found" to restore_command,
    // which would end recovery early and fail a good backup. Mode bits first (cheap, exactly how
    // the server's identity is set up), the real check for a file they deny (ACLs may allow it).
    if !user.switched {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || readable_by_mode(user, &meta) {
            continue;
        }
        let path = entry.path();
        if user_can_read(user, &path, false) {
            return Ok(()); // ACLs grant what the mode bits do not: trust them for the rest
        }
        use std::os::unix::fs::MetadataExt;
        return Err(hint(&format!(
            "{} (mode {:04o}, owner uid {}, gid {})",
            path.display(),
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        )));
    }
    Ok(())
}

/// Whether `user` (uid and primary gid only) may read a file by its mode bits.
fn readable_by_mode(user: &OsUser, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & 0o400 != 0
    } else if meta.gid() == user.gid {
        mode & 0o040 != 0
    } else {
        mode & 0o004 != 0
    }
}

/// Asks a child running as `user` whether it can read `path` (and enter it, for a folder).
fn user_can_read(user: &OsUser, path: &Path, folder: bool) -> bool {
    let mut cmd = std::process::Command::new("test");
    cmd.arg("-r").arg(path);
    if folder {
        cmd.arg("-a").arg("-x").arg(path);
    }
    user.apply_std(&mut cmd);
    cmd.status().map(|s| s.success()).unwrap_or(false)
}
