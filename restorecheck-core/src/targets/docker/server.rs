//! The restored server's container: started on a prepared data dir, watched through its
//! socket in the work dir, stopped in order (fast, then immediate shutdown) and removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::tools::{ContainerKey, ContainerTools, DetachedProcess};
use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::checksums::ChecksumPlan;
use crate::postgres::launch::Launch;
use crate::postgres::server::{ServerProbe, ServerSession};
use crate::postgres::user::OsUser;
use crate::source::{FetchedBackup, WalFetch, WalSupply};
use crate::target::{Connection, ReadCoverage, RecoveryInfo, RestoreRequest, RunningServer};
use crate::toolbox::{write_env_dir, ENV_LOADER};

/// Where the server container's `restore_command` finds the environment its WAL fetch needs.
const WAL_ENV_DIR: &str = "restore-command-env";

/// The backup with its WAL fetch's environment moved into an env dir of the work dir (owned
/// by the server's OS user) that `restore_command` loads with [`ENV_LOADER`]: so the
/// container's configuration (`docker inspect`) holds no credentials, only that folder's path.
pub(super) fn env_free(backup: &FetchedBackup, work_dir: &Path, user: &OsUser) -> Result<FetchedBackup> {
    let WalSupply::Fetch(fetch) = &backup.wal else { return Ok(backup.clone()) };
    if fetch.env.0.is_empty() {
        return Ok(backup.clone());
    }
    let dir = work_dir.join(WAL_ENV_DIR);
    write_env_dir(&dir, &fetch.env.0, Some(user))?;
    let args = ["-c".to_string(), ENV_LOADER.to_string(), "restorecheck-tool".into(), dir.display().to_string()]
        .into_iter()
        .chain(std::iter::once(fetch.program.display().to_string()))
        .chain(fetch.args.iter().cloned());
    let mut out = backup.clone();
    out.wal = WalSupply::Fetch(WalFetch::new("/bin/sh", args).reading(fetch.read_only_paths.iter().cloned()));
    Ok(out)
}

fn shell_quote_all(args: &[String]) -> String {
    args.iter().map(|a| crate::wal_archive::shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// The mount of the server's socket dir when it lies outside the work dir (a socket path has
/// at most 107 bytes), writable; created now, the server's, so that it exists before it is
/// mounted. `None` when it is inside the work dir.
pub(super) fn socket_mount(req: &RestoreRequest, user: &OsUser) -> Result<Option<(PathBuf, bool)>> {
    if req.socket_dir.starts_with(&req.work_dir) {
        return Ok(None);
    }
    if !req.socket_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&req.socket_dir)
            .map_err(|e| Error::io("creating socket dir", &req.socket_dir, e))?;
        user.chown_tree(&req.socket_dir)?;
    }
    Ok(Some((req.socket_dir.clone(), true)))
}

/// The tools container the server of `image` runs in: the check's work dir and the toolbox's
/// own mounts, plus what the `restore_command` reads (`wal_paths`, read-only) and the socket
/// dir when it lies outside the work dir ([`socket_mount`]).
pub(super) fn server_key(
    tools: &ContainerTools,
    image: &str,
    req: &RestoreRequest,
    user: &OsUser,
    wal_paths: &[PathBuf],
) -> Result<ContainerKey> {
    let extra: Vec<(PathBuf, bool)> = wal_paths
        .iter()
        .filter(|p| !tools.sees(p))
        .map(|p| (p.clone(), false))
        .chain(socket_mount(req, user)?)
        .collect();
    Ok(ContainerKey { image: image.to_string(), extra })
}

/// Starts `postgres` with the plan's arguments as the server's OS user in the check's tools
/// container for `key` (one container start less than a container of its own). The container
/// has no network unless the target names one, and no new privileges.
pub(super) async fn start_server(
    tools: &ContainerTools,
    key: &ContainerKey,
    user: &OsUser,
    plan: &Launch,
) -> Result<DetachedProcess> {
    let script = format!(
        "exec postgres {} 2>>{}",
        shell_quote_all(&plan.args),
        crate::wal_archive::shell_quote(&plan.log_path.display().to_string())
    );
    tools.spawn_detached(key, (user.uid, user.gid), &script).await
}

/// A server running in the check's tools container, started by [`super::DockerTarget`].
pub struct DockerServer {
    /// The `postgres` process (until it was stopped).
    pub(super) container: Option<DetachedProcess>,
    /// Our hba file (in the bind-mounted work dir), switched to passwords after promotion.
    pub(super) hba_path: PathBuf,
    /// The server's OS user (owns the hba file).
    pub(super) os_user: OsUser,
    pub(super) session: ServerSession,
    /// Set when the cluster has data checksums: what their verification needs.
    pub(super) checksums: Option<ChecksumPlan>,
    /// Tools this server started itself (no runner gave the check a toolbox): closed at teardown.
    pub(super) own_tools: Option<Arc<ContainerTools>>,
}

impl std::fmt::Debug for DockerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerServer")
            .field("container", &self.container.as_ref().map(|c| c.container_id.clone()))
            .field("pid", &self.container.as_ref().map(|c| c.pid))
            .field("socket_dir", &self.session.socket_dir)
            .finish()
    }
}

struct DockerProbe<'a> {
    container: &'a Option<DetachedProcess>,
}

#[async_trait]
impl ServerProbe for DockerProbe<'_> {
    async fn exited(&mut self) -> Option<String> {
        let c = self.container.as_ref()?;
        match c.exit_code().await {
            Ok(None) => None,
            Ok(Some(code)) => Some(format!("postgres exited with code {code:?}")),
            Err(e) => Some(format!("cannot inspect the server process: {e}")),
        }
    }
    fn target_kind(&self) -> &'static str {
        "docker"
    }
}

impl DockerServer {
    /// Fast shutdown, then immediate; never SIGKILL first (it leaves shared memory behind); the
    /// container's removal ends whatever is left. Returns the exit code once it stopped.
    async fn stop(&self) -> Option<i64> {
        use nix::sys::signal::Signal;
        let c = self.container.as_ref()?;
        for (sig, wait) in [(Signal::SIGINT, self.session.stop_timeout), (Signal::SIGQUIT, Duration::from_secs(10))] {
            if !matches!(c.exit_code().await, Ok(None)) {
                break;
            }
            c.signal(sig).await;
            let until = tokio::time::Instant::now() + wait;
            while matches!(c.exit_code().await, Ok(None)) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        c.exit_code().await.ok().flatten().flatten()
    }
}

#[async_trait]
impl RunningServer for DockerServer {
    async fn wait_recovered(&mut self, ctx: &RunContext) -> Result<RecoveryInfo> {
        let mut probe = DockerProbe { container: &self.container };
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
        if self.container.is_none() {
            return Ok(None);
        }
        // Offline verification needs a cleanly shut down cluster (no torn pages, every dirty
        // buffer written with its checksum): a fast shutdown writes a checkpoint. The data dir
        // is bind-mounted from this host, so it is read here, not in the container.
        let code = self.stop().await;
        if code != Some(0) {
            return Err(Error::Target {
                target_kind: "docker",
                message: format!(
                    "the server did not shut down cleanly (exit code {code:?}), so its page checksums cannot be \
                     verified"
                ),
                log_tail: self.session.log_tail(10),
                source: None,
            });
        }
        plan.verify(ctx, covered).await.map(Some)
    }

    async fn teardown(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.container.is_some() {
            self.stop().await;
            self.container = None;
            let _ = std::fs::remove_dir_all(&self.session.socket_dir);
        }
        if let Some(tools) = self.own_tools.take() {
            let closed = crate::toolbox::ToolBox::close(tools.as_ref()).await;
            result = result.and(closed);
        }
        result
    }
}
