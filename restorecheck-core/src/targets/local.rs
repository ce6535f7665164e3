//! Target `local`: a `postgres` process of this machine, on a private socket, as an
//! unprivileged OS user, cut off from production.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::binaries::{self, BinDir, PgTools};
use crate::postgres::checksums::ChecksumPlan;
use crate::postgres::control::ControlData;
use crate::postgres::launch::{self, LaunchSpec};
use crate::postgres::logical;
use crate::postgres::server::{ServerProbe, ServerSession};
use crate::postgres::user::OsUser;
use crate::process;
use crate::source::{Artifact, FetchedBackup, PhysicalBackup, WalSupply};
use crate::target::{
    Capabilities, Connection, ReadCoverage, RecoveryInfo, RestoreRequest, RestoreTarget, RunningServer,
};

/// Options of target `local` (`[check.target] kind = "local"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct LocalTargetConfig {
    /// Directory of the PostgreSQL binaries; default: search for the backup's major version.
    pub bin_dir: Option<PathBuf>,
    /// OS user the server runs as when restorecheck runs as root (default: the dedicated user
    /// `restorecheck`, or `postgres` with a note in the report when it does not exist).
    pub os_user: Option<String>,
    /// Database superuser role to connect as; default: `postgres`, then the backup's owner.
    pub superuser: Option<String>,
    /// Extra server settings (`-c name=value`); settings that keep the copy away from
    /// production cannot be overridden.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// How long a fast shutdown may take before an immediate one (default 30s).
    #[serde(default, with = "crate::config::opt_duration")]
    pub stop_timeout: Option<Duration>,
}

/// Target `local`.
#[derive(Debug, Clone)]
pub struct LocalTarget {
    cfg: LocalTargetConfig,
    user_settings: Vec<(String, String)>,
}

impl LocalTarget {
    /// A local target with the given options; rejects settings that would undo the isolation.
    pub fn new(cfg: LocalTargetConfig) -> Result<Self> {
        let user_settings = launch::user_settings(&cfg.settings)?;
        Ok(Self { cfg, user_settings })
    }
}

#[async_trait]
impl RestoreTarget for LocalTarget {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn preflight(&self, pg_major: Option<u32>) -> Result<()> {
        OsUser::resolve(self.cfg.os_user.as_deref())?;
        match pg_major {
            Some(m) => binaries::find(m, self.cfg.bin_dir.as_deref()).map(|_| ()),
            None => match &self.cfg.bin_dir {
                Some(d) => binaries::probe(d).map(|_| ()).ok_or_else(|| Error::Tooling {
                    what: format!("no usable `postgres` in target.bin_dir {}", d.display()),
                    hint: "point bin_dir at a PostgreSQL bin directory".into(),
                    source: None,
                }),
                None => binaries::newest().map(|_| ()),
            },
        }
    }

    async fn verify_backup(&self, _ctx: &RunContext, backup: &FetchedBackup) -> Result<String> {
        let bin = binaries::find(backup.pg_major, self.cfg.bin_dir.as_deref())?;
        if backup.pg_major < 13 {
            return Ok(format!(
                "backup_manifest not verified: pg_verifybackup needs PostgreSQL 13+, backup is {}",
                backup.pg_major
            ));
        }
        let args = crate::postgres::datadir::verifybackup_args(
            &backup.data_dir,
            &backup.wal,
            backup.manifest_stream_verified.is_some(),
        )?;
        let exe = bin.exe("pg_verifybackup");
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(&args).stdin(Stdio::null()).kill_on_drop(true);
        process::clean_env(&mut cmd, Some(&bin.path), None, &[]);
        process::own_group(&mut cmd, libc::SIGKILL);
        let out = process::output(cmd).await.map_err(|e| Error::io("running pg_verifybackup", &exe, e))?;
        if !out.status.success() {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
            return Err(crate::postgres::datadir::verifybackup_failed(&text));
        }
        Ok(crate::postgres::datadir::verifybackup_note(backup))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn start(
        &self,
        ctx: &RunContext,
        artifact: &Artifact,
        req: &RestoreRequest,
    ) -> Result<Box<dyn RunningServer>> {
        let os_user = OsUser::resolve(self.cfg.os_user.as_deref())?;
        let mut early_notes: Vec<String> =
            crate::postgres::user::fallback_note(&os_user, self.cfg.os_user.as_deref()).into_iter().collect();
        // A dump loads into a fresh cluster of its own major's binaries (else a newer one:
        // PostgreSQL loads older dumps, never newer), started like a crash-recovered backup.
        let fresh;
        let (bin, backup, dump) = match artifact {
            Artifact::Physical(backup) => {
                launch::check_version(backup.pg_major)?;
                (binaries::find(backup.pg_major, self.cfg.bin_dir.as_deref())?, backup, None)
            }
            Artifact::Logical(dump) => {
                let needs = binaries::DumpNeeds {
                    source_major: dump.server_major,
                    min_major: dump.min_major,
                    made_by: dump.made_by.as_deref(),
                };
                let (bin, note) = binaries::for_dump(&needs, self.cfg.bin_dir.as_deref())?;
                early_notes.extend(note);
                os_user.chown_tree(&req.work_dir)?;
                logical::initdb(&PgTools::host(&bin, &os_user), &dump.data_dir).await?;
                fresh = PhysicalBackup::new(dump.data_dir.clone(), bin.major, WalSupply::SelfContained);
                (bin, &fresh, Some(dump))
            }
        };
        let pg = PgTools::host(&bin, &os_user);
        let control = ControlData::read(&pg, &backup.data_dir).await?;
        let mut plan = launch::prepare(&LaunchSpec {
            backup,
            req,
            os_user: &os_user,
            control: &control,
            user_settings: &self.user_settings,
            db_user: self.cfg.superuser.as_deref(),
        })?;
        plan.notes.splice(0..0, early_notes);
        let wal_env = match &backup.wal {
            WalSupply::Fetch(fetch) => fetch.env.0.as_slice(),
            WalSupply::SelfContained => &[],
        };
        let child = spawn_postgres(&bin, &os_user, &plan.args, &plan.log_path, wal_env)?;
        tracing::info!(
            "started PostgreSQL {} (pid {}) on {} [{} recovery]",
            bin.version,
            child.id().unwrap_or_default(),
            backup.data_dir.display(),
            plan.mode,
        );
        let stop_timeout = self.cfg.stop_timeout.unwrap_or(Duration::from_secs(30));
        let mut server = Box::new(LocalServer {
            pgid: child.id().and_then(|p| i32::try_from(p).ok()),
            child: Some(child),
            hba_path: plan.hba_path.clone(),
            os_user: os_user.clone(),
            session: ServerSession::new(plan, req.socket_dir.clone(), stop_timeout),
            checksums: ChecksumPlan::for_cluster(&control, backup.pg_major, &backup.data_dir, &req.work_dir)?,
        });
        if let Some(dump) = dump {
            // Load the dump now (restore phase); on any failure stop the server before returning.
            let loaded = async {
                server.wait_recovered(ctx).await?;
                let tablespaces = req.work_dir.join("tablespaces");
                logical::load(&pg, &server.connection(), dump, &req.database, &tablespaces).await
            }
            .await;
            match loaded {
                Ok(notes) => {
                    server.session.set_mode("logical");
                    server.session.notes.extend(notes);
                }
                Err(e) => {
                    let _ = server.teardown().await;
                    return Err(e);
                }
            }
        }
        Ok(server)
    }
}

/// Spawns `postgres` as `user` with output to `log_path`, in its own process group (a
/// terminal's Ctrl-C reaches restorecheck, which then shuts the server down in order), with a
/// parent-death signal so a killed restorecheck never leaves a server running, and with a
/// clean environment: only what PostgreSQL needs plus the variables the source declared for
/// its `restore_command` (`env`). Nothing else of restorecheck's environment is readable from
/// SQL (`COPY … FROM PROGRAM 'env'`) or `/proc/<pid>/environ`.
fn spawn_postgres(
    bin: &BinDir,
    user: &OsUser,
    args: &[String],
    log_path: &Path,
    env: &[(String, String)],
) -> Result<tokio::process::Child> {
    let log = fs::File::create(log_path).map_err(|e| Error::io("creating server log", log_path, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io("creating server log", log_path, e))?;
    let exe = bin.exe("postgres");
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    process::clean_env(&mut cmd, Some(&bin.path), Some(user), env);
    user.apply(&mut cmd);
    process::own_group(&mut cmd, libc::SIGQUIT);
    cmd.spawn().map_err(|e| Error::Tooling {
        what: format!("cannot start {}", exe.display()),
        hint: "check the PostgreSQL installation".into(),
        source: Some(e.into()),
    })
}

/// A server started by [`LocalTarget`].
#[derive(Debug)]
pub(crate) struct LocalServer {
    child: Option<tokio::process::Child>,
    /// The server's process group (its pid): killed after the server stopped, so nothing its
    /// `restore_command` forked survives the check.
    pgid: Option<i32>,
    /// Our hba file, switched to password authentication after promotion.
    hba_path: PathBuf,
    /// The server's OS user (owns the hba file).
    os_user: OsUser,
    session: ServerSession,
    /// Set when the cluster has data checksums: what their verification needs.
    checksums: Option<ChecksumPlan>,
}

struct LocalProbe<'a> {
    child: &'a mut Option<tokio::process::Child>,
}

#[async_trait]
impl ServerProbe for LocalProbe<'_> {
    async fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for the server process: {e}")),
        }
    }
    fn target_kind(&self) -> &'static str {
        "local"
    }
}

#[async_trait]
impl RunningServer for LocalServer {
    async fn wait_recovered(&mut self, ctx: &RunContext) -> Result<RecoveryInfo> {
        let mut probe = LocalProbe { child: &mut self.child };
        self.session.wait_locked(ctx, &mut probe, &self.hba_path, &self.os_user).await
    }

    fn connection(&self) -> Connection {
        self.session.connection()
    }

    fn log_tail(&self, lines: usize) -> Option<String> {
        self.session.log_tail(lines)
    }

    fn notes(&self) -> Vec<String> {
        self.session.notes.clone()
    }

    async fn verify_checksums(
        &mut self,
        ctx: &RunContext,
        covered: &ReadCoverage,
    ) -> Result<Option<crate::assertion::Outcome>> {
        let Some(plan) = self.checksums.clone() else { return Ok(None) };
        let Some(mut child) = self.child.take() else { return Ok(None) };
        // Offline verification needs a cleanly shut down cluster (no torn pages, every dirty
        // buffer written with its checksum): a fast shutdown writes a checkpoint.
        stop_child(&mut child, self.session.stop_timeout).await;
        self.pgid = None;
        let clean = child.try_wait().ok().flatten().is_some_and(|s| s.success());
        if !clean {
            return Err(Error::Target {
                target_kind: "local",
                message: "the server did not shut down cleanly, so its page checksums cannot be verified".into(),
                log_tail: self.session.log_tail(10),
                source: None,
            });
        }
        plan.verify(ctx, covered).await.map(Some)
    }

    async fn teardown(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            if let Some(g) = self.pgid.take() {
                process::kill_group(g);
            }
            return Ok(());
        };
        stop_child(&mut child, self.session.stop_timeout).await;
        self.pgid = None;
        let _ = fs::remove_dir_all(&self.session.socket_dir);
        Ok(())
    }
}

/// Fast shutdown (SIGINT), then immediate (SIGQUIT) after `timeout`, then SIGKILL as a last
/// resort; then the rest of the server's process group.
async fn stop_child(child: &mut tokio::process::Child, timeout: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) = child.id() else { return };
    let pid = Pid::from_raw(pid as i32);
    for (sig, wait) in [
        (Signal::SIGINT, timeout),
        (Signal::SIGQUIT, Duration::from_secs(10)),
        (Signal::SIGKILL, Duration::from_secs(10)),
    ] {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        if sig == Signal::SIGKILL {
            tracing::warn!("PostgreSQL (pid {pid}) ignored SIGINT and SIGQUIT; killing it");
        }
        let _ = kill(pid, sig);
        if tokio::time::timeout(wait, child.wait()).await.is_ok() {
            break;
        }
    }
    // The server ran in its own process group: whatever its restore_command left running in
    // the background dies with it.
    process::kill_group(pid.as_raw());
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // Safety net for paths that never reached teardown (a panic, a dropped future):
        // an immediate shutdown, so no server outlives the run.
        if let Some(child) = &mut self.child {
            if let Some(pid) = child.id() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGQUIT);
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        if let Some(g) = self.pgid.take() {
            process::kill_group(g);
        }
    }
}
