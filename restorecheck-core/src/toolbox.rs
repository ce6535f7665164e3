//! [`ToolBox`]: where a check's external tools run — the backup tools a source drives
//! (`pgbackrest`, `barman`, `wal-g`, `wal-e`, a `command`) and, for targets that use it, the
//! PostgreSQL programs (`pg_restore`, `psql`, `initdb`, `pg_verifybackup`, `pg_controldata`).
//!
//! The target decides ([`crate::RestoreTarget::toolbox`]): the `local` target runs them on this
//! host ([`HostTools`]); the `docker` target runs them in a container of the check's image, so
//! the host needs nothing but Docker and restorecheck. A source never builds a
//! `tokio::process::Command` for a tool itself: it asks the context's toolbox to
//! [`locate`](ToolBox::locate) the program and to [`prepare`](ToolBox::prepare) a command, then
//! adds its arguments. Paths are the same inside and outside a container (the work dir and
//! every read-only path are mounted at their host paths), so arguments and scripts written
//! into the work dir work in both.
//!
//! Environment given to a tool (a backup tool's credentials) never appears on a command line,
//! in a log or in `docker inspect`: a container toolbox writes it into files in the work dir
//! that only the tool's user can read, and a wrapper exports them inside the container.

use std::ffi::OsString;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::postgres::user::OsUser;

/// Which OS user a tool runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunAs {
    /// The user restorecheck runs as (root in most deployments): backup tools that read a
    /// repository or credentials only that user can read.
    Tester,
    /// The restored server's unprivileged OS user: PostgreSQL programs (which refuse root, and
    /// whose input is the untrusted backup or dump).
    Server,
}

/// What to run: a program [`ToolBox::locate`] found, its environment, its user, and the
/// PostgreSQL major the backup has (a container toolbox picks its image by it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolCommand {
    /// The program, as [`ToolBox::locate`] returned it.
    pub program: PathBuf,
    /// Environment variables the tool needs besides `LC_ALL=C` (possibly secrets).
    pub env: crate::source::SecretEnv,
    /// Its OS user.
    pub run_as: RunAs,
    /// The backup's PostgreSQL major, when known.
    pub major: Option<u32>,
}

impl ToolCommand {
    /// Runs `program` as [`RunAs::Tester`] with no extra environment.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ToolCommand {
            program: program.into(),
            env: crate::source::SecretEnv::default(),
            run_as: RunAs::Tester,
            major: None,
        }
    }

    /// Sets the environment.
    pub fn env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = crate::source::SecretEnv(env.into_iter().collect());
        self
    }

    /// Sets the user.
    pub fn run_as(mut self, run_as: RunAs) -> Self {
        self.run_as = run_as;
        self
    }

    /// Sets the backup's major.
    pub fn major(mut self, major: Option<u32>) -> Self {
        self.major = major;
        self
    }
}

/// A host command line ready to be started; the caller appends the tool's own arguments.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The host program (the tool itself, or `docker`).
    pub program: PathBuf,
    /// Arguments before the tool's own.
    pub args: Vec<OsString>,
    /// Environment set on the host process.
    env: crate::source::SecretEnv,
    /// Host user to switch to.
    user: Option<OsUser>,
}

impl Prepared {
    /// `program` with `args` first, the host environment inherited as is and no user switch
    /// (a container toolbox's `docker exec …`).
    #[cfg_attr(not(feature = "docker"), allow(dead_code))]
    pub(crate) fn host_command(program: PathBuf, args: Vec<OsString>) -> Self {
        Prepared { program, args, env: crate::source::SecretEnv::default(), user: None }
    }

    /// A tokio command; add the tool's arguments with `.args(…)`.
    pub fn tokio(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(&self.args).envs(self.env.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(u) = &self.user {
            u.apply(&mut c);
        }
        c
    }

    /// The same as a `std::process::Command` (for a thread that streams the tool's stdin).
    pub fn std(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args).envs(self.env.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(u) = &self.user {
            u.apply_std(&mut c);
        }
        c
    }
}

/// Where a check's tools run. See the [module docs](self).
///
/// # Contract
/// - [`locate`](Self::locate) fails with [`Error::Tooling`](crate::Error::Tooling) naming the
///   place (this host, or the image) and the fix when the program is not there, so a source
///   can call it before anything is restored.
/// - Commands [`prepare`](Self::prepare)d see the work dir read-write and the paths the source
///   declared ([`crate::BackupSource::read_only_paths`]) read-only, at their host paths.
/// - [`close`](Self::close) stops whatever the toolbox started; it is idempotent.
#[async_trait]
pub trait ToolBox: Send + Sync + Debug {
    /// Where the tools run, for messages and reports (`this host`, `image restorecheck/postgres:15`).
    fn describe(&self) -> String;

    /// Finds `program` (a name looked up on `PATH`, or an absolute path) where the tools run.
    /// `hint` says how to install it on a host.
    async fn locate(&self, program: &str, hint: &str, major: Option<u32>) -> Result<PathBuf>;

    /// A command running `cmd` where the tools run.
    async fn prepare(&self, cmd: &ToolCommand) -> Result<Prepared>;

    /// True when the tools run on this host, as this host's users ([`HostTools`]): only then
    /// do a source's host-side checks of a [`locate`](Self::locate)d program (can the restored
    /// server's OS user execute it) and of host OS users (the one Barman switches to) apply.
    /// The default: false.
    fn on_this_host(&self) -> bool {
        false
    }

    /// The check's work dir as the tools see it, where a toolbox that runs them elsewhere has
    /// one (a source writes the files its tool reads there, such as a generated configuration).
    /// Default: none.
    fn work_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Stops what the toolbox started (containers); called by the runner before the work dir
    /// is removed.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Tools on this host: programs from `PATH`, the tester's environment (restorecheck's own
/// plus what the source adds), [`RunAs::Server`] switching to the target's OS user.
#[derive(Debug, Clone, Default)]
pub struct HostTools {
    /// The server's OS user, for [`RunAs::Server`] (none: the tester's own).
    pub server_user: Option<OsUser>,
    /// The check's work dir, when there is one ([`ToolBox::work_dir`]).
    pub work_dir: Option<PathBuf>,
}

#[async_trait]
impl ToolBox for HostTools {
    fn describe(&self) -> String {
        "this host".into()
    }

    async fn locate(&self, program: &str, hint: &str, _major: Option<u32>) -> Result<PathBuf> {
        let p = crate::sources::tool::find_program(program, hint)?;
        Ok(std::path::absolute(&p).unwrap_or(p))
    }

    async fn prepare(&self, cmd: &ToolCommand) -> Result<Prepared> {
        let user = match cmd.run_as {
            RunAs::Tester => None,
            RunAs::Server => self.server_user.clone(),
        };
        Ok(Prepared { program: cmd.program.clone(), args: Vec::new(), env: cmd.env.clone(), user })
    }

    fn on_this_host(&self) -> bool {
        true
    }

    fn work_dir(&self) -> Option<PathBuf> {
        self.work_dir.clone()
    }
}

/// What a target gets to set up a [`ToolBox`] for one check.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolboxRequest {
    /// The check's work dir (read-write for the tools).
    pub work_dir: PathBuf,
    /// Paths the source's tools read (its repository, catalog, configuration): read-only.
    pub read_only_paths: Vec<PathBuf>,
    /// Folders the source's tools write into as though they owned them
    /// ([`crate::BackupSource::private_write_paths`]): a private copy-on-write view each, the
    /// real folder never written.
    pub private_write_paths: Vec<PathBuf>,
}

impl ToolboxRequest {
    /// A request for `work_dir` and the source's read-only paths.
    pub fn new(work_dir: impl Into<PathBuf>, read_only_paths: Vec<PathBuf>) -> Self {
        ToolboxRequest { work_dir: work_dir.into(), read_only_paths, private_write_paths: Vec::new() }
    }

    /// The same, with the folders the source's tools write into privately.
    pub fn with_private_writes(mut self, paths: Vec<PathBuf>) -> Self {
        self.private_write_paths = paths;
        self
    }
}

/// The default toolbox of a [`crate::RunContext`]: this host.
pub(crate) fn host() -> Arc<dyn ToolBox> {
    Arc::new(HostTools::default())
}

/// True for a name fit for an environment variable (`[A-Za-z_][A-Za-z0-9_]*`).
// Used by the docker target's toolbox (feature `docker`).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// Writes `env` as one file per variable (mode 0600) into a fresh folder `dir` (mode 0700),
/// owned by `owner` when given: what [`ENV_LOADER`] reads inside a container.
// Used by the docker target's toolbox (feature `docker`).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
pub(crate) fn write_env_dir(dir: &Path, env: &[(String, String)], owner: Option<&OsUser>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(|e| crate::Error::io("creating", dir, e))?;
    for (k, v) in env {
        if !valid_env_name(k) {
            return Err(crate::Error::config(format!("{k:?} is not a valid environment variable name")));
        }
        let p = dir.join(k);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| crate::Error::io("writing", &p, e))?;
        f.write_all(v.as_bytes()).map_err(|e| crate::Error::io("writing", &p, e))?;
    }
    if let Some(u) = owner {
        u.chown_tree(dir)?;
    }
    Ok(())
}

/// `/bin/sh -c ENV_LOADER <env dir> <program> <args…>`: exports one variable per file of the
/// env dir (trailing newlines of a value are dropped, as by `$(…)`), then `exec`s the program.
// Used by the docker target's toolbox (feature `docker`).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
pub(crate) const ENV_LOADER: &str = "d=$1; shift; for f in \"$d\"/*; do [ -f \"$f\" ] || continue; \
     export \"${f##*/}=$(cat \"$f\")\"; done; exec \"$@\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_checked() {
        assert!(valid_env_name("AWS_SECRET_ACCESS_KEY"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("../x"));
    }

    #[tokio::test]
    async fn the_loader_exports_the_env_dir_and_runs_the_program() {
        let d = tempfile::tempdir().unwrap();
        let env = d.path().join("env");
        let vals = vec![("A_KEY".to_string(), "s3cr et'\"$x".to_string()), ("B".to_string(), "2".to_string())];
        write_env_dir(&env, &vals, None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(env.join("A_KEY")).unwrap().permissions().mode() & 0o777, 0o600);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(ENV_LOADER)
            .arg("restorecheck-tool")
            .arg(&env)
            .args(["sh", "-c", "printf '%s|%s' \"$A_KEY\" \"$B\""])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "s3cr et'\"$x|2");
        assert!(write_env_dir(&d.path().join("bad"), &[("A=B".into(), "x".into())], None).is_err());
    }

    #[tokio::test]
    async fn host_tools_locate_on_path_and_refuse_missing_programs() {
        let t = HostTools::default();
        assert!(t.locate("sh", "install sh", None).await.unwrap().is_absolute());
        let e = t.locate("restorecheck-no-such-tool", "install it", None).await.unwrap_err();
        assert!(e.to_string().contains("restorecheck-no-such-tool"), "{e}");
        let p = t.prepare(&ToolCommand::new("/bin/echo").env([("X".into(), "1".into())])).await.unwrap();
        let out = p.tokio().arg("hi").output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");
    }
}
