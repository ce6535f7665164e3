//! The OS user PostgreSQL runs as. PostgreSQL refuses to run as root, so when restorecheck is
//! started as root the server (and `initdb`, `pg_ctl`, …) run as an unprivileged user instead.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};

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
    /// Resolves the user: `wanted` (default `postgres`) when running as root, else ourselves.
    pub fn resolve(wanted: Option<&str>) -> Result<Self> {
        let me = Uid::effective();
        if !me.is_root() {
            let name = User::from_uid(me).ok().flatten().map(|u| u.name).unwrap_or_else(|| me.to_string());
            return Ok(OsUser { name, uid: me.as_raw(), gid: Gid::effective().as_raw(), switched: false });
        }
        let name = wanted.unwrap_or("postgres");
        let u = User::from_name(name).ok().flatten().ok_or_else(|| Error::Tooling {
            what: format!(
                "running as root, and PostgreSQL refuses to run as root, but OS user {name:?} does not exist"
            ),
            hint: "create it (useradd --system postgres; installing PostgreSQL packages does this) \
                   or set target.os_user to an unprivileged user"
                .into(),
        })?;
        if u.uid.is_root() {
            return Err(Error::Tooling {
                what: format!("target.os_user {name:?} is root; PostgreSQL refuses to run as root"),
                hint: "set target.os_user to an unprivileged user".into(),
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
pub fn check_readable(user: &OsUser, dir: &Path) -> Result<()> {
    let mut cmd = std::process::Command::new("test");
    cmd.arg("-r").arg(dir).arg("-a").arg("-x").arg(dir);
    user.apply_std(&mut cmd);
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::Tooling {
            what: format!("OS user {:?} (which runs the restored server) cannot read {}", user.name, dir.display()),
            hint: "grant it read access (e.g. a group with r-x on the folders, r on the files); \
                   restorecheck never needs write access to backups"
                .into(),
        })
    }
}
