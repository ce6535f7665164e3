//! The restored server's container: started on a prepared data dir, watched through its
//! socket in the work dir, stopped in order (fast, then immediate shutdown) and removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use testcontainers::bollard::Docker;
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::engine::{self, err};
use super::tools::ContainerTools;
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

/// How to start the server container.
pub(super) struct ServerSpec<'a> {
    pub(super) image: &'a str,
    pub(super) ctx: &'a RunContext,
    pub(super) req: &'a RestoreRequest,
    pub(super) user: &'a OsUser,
    /// Paths the `restore_command` reads (read-only at the same path).
    pub(super) wal_paths: &'a [PathBuf],
    /// The target's `mounts` (read-only).
    pub(super) mounts: &'a [(PathBuf, PathBuf)],
    pub(super) network: Option<&'a str>,
}

fn shell_quote_all(args: &[String]) -> String {
    args.iter().map(|a| crate::wal_archive::shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// Starts `postgres` with the plan's arguments in a container of the spec's image.
pub(super) async fn start_container(spec: &ServerSpec<'_>, plan: &Launch) -> Result<ContainerAsync<GenericImage>> {
    let req = spec.req;
    let mut r = engine::labelled(spec.image, &spec.ctx.run_id, &req.work_dir, spec.network, WaitFor::Nothing)
        .with_user(format!("{}:{}", spec.user.uid, spec.user.gid));
    let mut list = vec![(req.work_dir.clone(), req.work_dir.clone(), true)];
    if !req.socket_dir.starts_with(&req.work_dir) {
        // A long work dir path puts the socket in a short folder outside it (a socket path
        // has at most 107 bytes): it must exist, the server's, before it is mounted.
        if !req.socket_dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&req.socket_dir)
                .map_err(|e| Error::io("creating socket dir", &req.socket_dir, e))?;
            spec.user.chown_tree(&req.socket_dir)?;
        }
        list.push((req.socket_dir.clone(), req.socket_dir.clone(), true));
    }
    list.extend(spec.wal_paths.iter().map(|p| (p.clone(), p.clone(), false)));
    list.extend(spec.mounts.iter().map(|(s, t)| (s.clone(), t.clone(), false)));
    for m in engine::binds(list) {
        r = r.with_mount(m);
    }
    let script = format!(
        "exec postgres {} 2>>{}",
        shell_quote_all(&plan.args),
        crate::wal_archive::shell_quote(&plan.log_path.display().to_string())
    );
    r.with_cmd(["-c".to_string(), script])
        .start()
        .await
        .map_err(|e| err(format!("starting a container from {}", spec.image)).with_source(e))
}

/// A server running in a container started by [`super::DockerTarget`].
pub struct DockerServer {
    pub(super) container: Option<ContainerAsync<GenericImage>>,
    /// Our hba file (in the bind-mounted work dir), switched to passwords after promotion.
    pub(super) hba_path: PathBuf,
    /// The server's OS user (owns the hba file).
    pub(super) os_user: OsUser,
    pub(super) docker: Docker,
    pub(super) session: ServerSession,
    /// Set when the cluster has data checksums: what their verification needs.
    pub(super) checksums: Option<ChecksumPlan>,
    /// Tools this server started itself (no runner gave the check a toolbox): closed at teardown.
    pub(super) own_tools: Option<Arc<ContainerTools>>,
}

impl std::fmt::Debug for DockerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerServer")
            .field("container", &self.container.as_ref().map(|c| c.id().to_string()))
            .field("socket_dir", &self.session.socket_dir)
            .finish()
    }
}

struct DockerProbe<'a> {
    container: &'a Option<ContainerAsync<GenericImage>>,
}

#[async_trait]
impl ServerProbe for DockerProbe<'_> {
    async fn exited(&mut self) -> Option<String> {
        let c = self.container.as_ref()?;
        match c.is_running().await {
            Ok(true) => None,
            Ok(false) => Some(format!("container exited with code {:?}", c.exit_code().await.ok().flatten())),
            Err(e) => Some(format!("cannot inspect the container: {e}")),
        }
    }
    fn target_kind(&self) -> &'static str {
        "docker"
    }
}

impl DockerServer {
    /// Fast shutdown, then immediate; never SIGKILL first (it leaves shared memory behind).
    /// Returns the container's exit code once it stopped.
    async fn stop(&self) -> Option<i64> {
        use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
        let c = self.container.as_ref()?;
        for (sig, wait) in [("SIGINT", self.session.stop_timeout), ("SIGQUIT", Duration::from_secs(10))] {
            if !c.is_running().await.unwrap_or(false) {
                break;
            }
            let _ = self
                .docker
                .kill_container(c.id(), Some(KillContainerOptionsBuilder::default().signal(sig).build()))
                .await;
            let until = tokio::time::Instant::now() + wait;
            while c.is_running().await.unwrap_or(false) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        c.exit_code().await.ok().flatten()
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
                    "the server did not shut down cleanly (container exit code {code:?}), so its page checksums \
                     cannot be verified"
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
            if let Some(c) = self.container.take() {
                result = c.rm().await.map_err(|e| err("removing container".to_string()).with_source(e));
            }
            let _ = std::fs::remove_dir_all(&self.session.socket_dir);
        }
        if let Some(tools) = self.own_tools.take() {
            let closed = crate::toolbox::ToolBox::close(tools.as_ref()).await;
            result = result.and(closed);
        }
        result
    }
}
