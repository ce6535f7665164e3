//! Target `docker`: the same restore, run in a container (through `testcontainers`) built from
//! any image with PostgreSQL binaries. The PostgreSQL logic — data dir preparation, the safe
//! settings, readiness and completeness — is the one the `local` target uses
//! (`crate::postgres::launch`, `crate::postgres::server`); only running and stopping differ.
//!
//! The container has **no network at all** (`--network none`): the work dir is bind-mounted at
//! the same path inside, and restorecheck talks to the server through its Unix socket in that
//! work dir, authenticated like the `local` target (peer for restorecheck's own OS user while
//! recovering, the run's password after promotion: `crate::postgres::auth`). The container's
//! environment is only `LC_ALL=C` and the variables the source declares for its
//! `restore_command`: nothing of restorecheck's own environment. WAL archives are mounted read-only. Containers carry the labels
//! `org.restorecheck.run`, `org.restorecheck.pid` and `org.restorecheck.host`; a run removes
//! containers left behind by an earlier, killed run on the same host.
//!
//! The target needs the `docker` feature; without it only [`DockerTargetConfig`] is compiled
//! (so configurations still parse) and `kind = "docker"` fails with an error naming the feature.

use std::collections::BTreeMap;
#[cfg(feature = "docker")]
use std::collections::HashMap;
#[cfg(feature = "docker")]
use std::path::Path;
use std::time::Duration;

#[cfg(feature = "docker")]
use async_trait::async_trait;
use serde::Deserialize;
#[cfg(feature = "docker")]
use testcontainers::bollard::Docker;
#[cfg(feature = "docker")]
use testcontainers::core::{AccessMode, Mount, WaitFor};
#[cfg(feature = "docker")]
use testcontainers::runners::AsyncRunner;
#[cfg(feature = "docker")]
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

#[cfg(feature = "docker")]
use crate::context::RunContext;
#[cfg(feature = "docker")]
use crate::error::{Error, Result};
#[cfg(feature = "docker")]
use crate::postgres::control::ControlData;
#[cfg(feature = "docker")]
use crate::postgres::launch::{self, LaunchSpec};
#[cfg(feature = "docker")]
use crate::postgres::server::{ServerProbe, ServerSession};
#[cfg(feature = "docker")]
use crate::postgres::user::OsUser;
#[cfg(feature = "docker")]
use crate::source::{Artifact, FetchedBackup, WalSupply};
#[cfg(feature = "docker")]
use crate::target::{Connection, RecoveryInfo, RestoreRequest, RestoreTarget, RunningServer};

/// Label keys on every container restorecheck starts.
#[cfg(feature = "docker")]
pub const LABEL_RUN: &str = "org.restorecheck.run";
/// Label: pid of the restorecheck process that owns the container.
#[cfg(feature = "docker")]
pub const LABEL_PID: &str = "org.restorecheck.pid";
/// Label: host name of that process.
#[cfg(feature = "docker")]
pub const LABEL_HOST: &str = "org.restorecheck.host";

/// Options of target `docker` (`[check.target] kind = "docker"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct DockerTargetConfig {
    /// Image; `{major}` is replaced by the backup's PostgreSQL major version
    /// (default `postgres:{major}`). Never pulled: it must exist locally.
    pub image: Option<String>,
    /// `uid:gid` the server runs as inside; data files are chowned to match
    /// (default: the `local` target's OS user, `restorecheck` of this host when run as root).
    pub user: Option<String>,
    /// Host OS user whose uid/gid to use when `user` is not given.
    pub os_user: Option<String>,
    /// Database superuser role to connect as; default: `postgres`, then the backup's owner.
    pub superuser: Option<String>,
    /// Extra server settings, as for `local`.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// How long a fast shutdown may take before an immediate one (default 30s).
    #[serde(default, with = "crate::config::opt_duration")]
    pub stop_timeout: Option<Duration>,
}

/// Target `docker`.
#[cfg(feature = "docker")]
#[derive(Debug, Clone)]
pub struct DockerTarget {
    cfg: DockerTargetConfig,
    user_settings: Vec<(String, String)>,
}

#[cfg(feature = "docker")]
fn err(message: impl Into<String>) -> Error {
    Error::Target { target_kind: "docker", message: message.into(), log_tail: None, source: None }
}

#[cfg(feature = "docker")]
impl DockerTarget {
    /// A docker target with the given options.
    pub fn new(cfg: DockerTargetConfig) -> Result<Self> {
        let user_settings = launch::user_settings(&cfg.settings)?;
        if let Some(u) = &cfg.user {
            parse_uid_gid(u)?;
        }
        Ok(Self { cfg, user_settings })
    }

    /// The image for a backup of `major`.
    pub fn image_for(&self, major: u32) -> String {
        self.cfg.image.as_deref().unwrap_or("postgres:{major}").replace("{major}", &major.to_string())
    }

    fn os_user(&self) -> Result<OsUser> {
        match &self.cfg.user {
            Some(u) => {
                let (uid, gid) = parse_uid_gid(u)?;
                let me = nix::unistd::Uid::effective();
                Ok(OsUser { name: u.clone(), uid, gid, switched: me.is_root() && uid != me.as_raw() })
            }
            None => OsUser::resolve(self.cfg.os_user.as_deref()),
        }
    }
}

#[cfg(feature = "docker")]
fn parse_uid_gid(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::config(format!("target.user must be \"uid:gid\" (numbers), not {s:?}"));
    let (u, g) = s.split_once(':').ok_or_else(bad)?;
    let (u, g) = (u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?);
    if u == 0 {
        return Err(Error::config("target.user must not be root (uid 0): PostgreSQL refuses to run as root"));
    }
    Ok((u, g))
}

/// Connects to the Docker engine and checks it answers, within a few seconds.
#[cfg(feature = "docker")]
pub async fn engine() -> Result<Docker> {
    let no_engine = |detail: &str| Error::Tooling {
        what: format!("no Docker engine reachable{detail}"),
        hint: "start the Docker daemon (or set DOCKER_HOST), or use [check.target] kind = \"local\"".into(),
        source: None,
    };
    let docker = Docker::connect_with_defaults().map_err(|e| no_engine("").with_source(e))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(no_engine("").with_source(e)),
        Err(_) => Err(no_engine(" (no answer within 5s)")),
    }
}

/// Fails unless `image` exists locally (restorecheck never pulls).
#[cfg(feature = "docker")]
pub async fn require_image(docker: &Docker, image: &str) -> Result<()> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            Err(Error::Tooling {
                what: format!("Docker image {image} is not present on this host"),
                hint:
                    "build or load it first (this repository's docker/build-images.sh builds restorecheck/postgres:N); \
                       restorecheck never pulls images"
                        .into(),
                source: None,
            })
        }
        Err(e) => Err(err(format!("inspecting image {image}")).with_source(e)),
    }
}

#[cfg(feature = "docker")]
fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// Removes containers started by restorecheck processes on this host that no longer run.
#[cfg(feature = "docker")]
pub async fn remove_stale_containers(docker: &Docker) -> Vec<String> {
    use testcontainers::bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
    let mut notes = Vec::new();
    let filters: HashMap<String, Vec<String>> = HashMap::from([("label".to_string(), vec![LABEL_PID.to_string()])]);
    let Ok(list) =
        docker.list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build())).await
    else {
        return notes;
    };
    let me = host_name();
    for c in list {
        let labels = c.labels.unwrap_or_default();
        let pid: i32 = labels.get(LABEL_PID).and_then(|p| p.parse().ok()).unwrap_or(0);
        if labels.get(LABEL_HOST).map(String::as_str) != Some(me.as_str()) || pid <= 0 {
            continue;
        }
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
            continue; // its run is still going
        }
        if let Some(id) = c.id {
            let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            if docker.remove_container(&id, Some(opts)).await.is_ok() {
                notes.push(format!("removed container {} left by a killed run (pid {pid})", &id[..12.min(id.len())]));
            }
        }
    }
    notes
}

#[cfg(feature = "docker")]
fn split_image(image: &str) -> (String, String) {
    // The tag is after the last ':' that comes after the last '/' (registry ports have ':' too).
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (image[..slash + i].to_string(), image[slash + i + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Mounts: the work dir (and an outside socket dir) read-write at the same paths, every path
/// the restore_command reads read-only at the same paths.
#[cfg(feature = "docker")]
fn mounts(req: &RestoreRequest, backup: &FetchedBackup) -> Vec<Mount> {
    let same = |p: &Path| Mount::bind_mount(p.display().to_string(), p.display().to_string());
    let mut m = vec![same(&req.work_dir)];
    if !req.socket_dir.starts_with(&req.work_dir) {
        m.push(same(&req.socket_dir));
    }
    if let WalSupply::Fetch(fetch) = &backup.wal {
        for p in &fetch.read_only_paths {
            m.push(same(p).with_access_mode(AccessMode::ReadOnly));
        }
    }
    m
}

#[cfg(feature = "docker")]
fn request(
    image: &str,
    ctx: &RunContext,
    user: &OsUser,
    mounts: Vec<Mount>,
    wait: WaitFor,
) -> testcontainers::ContainerRequest<GenericImage> {
    let (name, tag) = split_image(image);
    let mut r = GenericImage::new(name, tag)
        .with_entrypoint("sh")
        .with_wait_for(wait)
        .with_network("none")
        .with_user(format!("{}:{}", user.uid, user.gid))
        .with_env_var("LC_ALL", "C")
        .with_label(LABEL_RUN, ctx.run_id.clone())
        .with_label(LABEL_PID, std::process::id().to_string())
        .with_label(LABEL_HOST, host_name());
    for m in mounts {
        r = r.with_mount(m);
    }
    r
}

#[cfg(feature = "docker")]
fn shell_quote_all(args: &[String]) -> String {
    args.iter().map(|a| crate::wal_archive::shell_quote(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(feature = "docker")]
#[async_trait]
impl RestoreTarget for DockerTarget {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn preflight(&self, pg_major: Option<u32>) -> Result<()> {
        self.os_user()?;
        let docker = engine().await?;
        if let Some(m) = pg_major {
            require_image(&docker, &self.image_for(m)).await?;
        }
        Ok(())
    }

    async fn start(
        &self,
        ctx: &RunContext,
        artifact: &Artifact,
        req: &RestoreRequest,
    ) -> Result<Box<dyn RunningServer>> {
        // capabilities() says physical only; the runner refuses dumps before they are fetched.
        let Artifact::Physical(backup) = artifact else {
            return Err(Error::internal("the docker target was given a logical dump"));
        };
        launch::check_version(backup.pg_major)?;
        let docker = engine().await?;
        let image = self.image_for(backup.pg_major);
        require_image(&docker, &image).await?;
        let mut notes = remove_stale_containers(&docker).await;
        let os_user = self.os_user()?;
        if self.cfg.user.is_none() {
            notes.extend(crate::postgres::user::fallback_note(&os_user, self.cfg.os_user.as_deref()));
        }
        os_user.chown_tree(&req.work_dir)?;

        // pg_control facts, read with the image's own pg_controldata.
        let data = backup.data_dir.display().to_string();
        let exit = WaitFor::exit(testcontainers::core::wait::ExitWaitStrategy::new());
        let probe = request(&image, ctx, &os_user, mounts(req, backup), exit).with_cmd([
            "-c",
            "exec pg_controldata -D \"$0\"",
            data.as_str(),
        ]);
        let c = probe.start().await.map_err(|e| err(format!("running pg_controldata in {image}")).with_source(e))?;
        let out =
            c.stdout_to_vec().await.map_err(|e| err("reading pg_controldata output".to_string()).with_source(e))?;
        let code = c.exit_code().await.ok().flatten();
        let stderr = c.stderr_to_vec().await.unwrap_or_default();
        let _ = c.rm().await;
        if code != Some(0) {
            return Err(Error::defect(format!(
                "pg_controldata cannot read the backup's pg_control (exit {code:?}): {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        let control = ControlData::parse(&String::from_utf8_lossy(&out))?;

        let mut plan = launch::prepare(&LaunchSpec {
            backup,
            req,
            os_user: &os_user,
            control: &control,
            user_settings: &self.user_settings,
            db_user: self.cfg.superuser.as_deref(),
        })?;
        notes.append(&mut plan.notes);
        notes.push(format!("restored in container image {image} (no network; socket in the work dir)"));
        plan.notes = notes;
        let script = format!(
            "exec postgres {} 2>>{}",
            shell_quote_all(&plan.args),
            crate::wal_archive::shell_quote(&plan.log_path.display().to_string())
        );
        let mut server_req = request(&image, ctx, &os_user, mounts(req, backup), WaitFor::Nothing);
        let wal_env = match &backup.wal {
            WalSupply::Fetch(fetch) => fetch.env.0.as_slice(),
            WalSupply::SelfContained => &[],
        };
        for (k, v) in wal_env {
            server_req = server_req.with_env_var(k.clone(), v.clone());
        }
        let container = server_req
            .with_cmd(["-c".to_string(), script])
            .start()
            .await
            .map_err(|e| err(format!("starting a container from {image}")).with_source(e))?;
        tracing::info!(
            "started PostgreSQL in container {} ({image}) on {data} [{} recovery]",
            container.id(),
            plan.mode
        );
        let stop_timeout = self.cfg.stop_timeout.unwrap_or(Duration::from_secs(30));
        Ok(Box::new(DockerServer {
            container: Some(container),
            hba_path: plan.hba_path.clone(),
            os_user,
            locked: false,
            docker,
            session: ServerSession::new(plan, req.socket_dir.clone(), stop_timeout),
        }))
    }
}

/// A server running in a container started by [`DockerTarget`].
#[cfg(feature = "docker")]
pub struct DockerServer {
    container: Option<ContainerAsync<GenericImage>>,
    /// Our hba file (in the bind-mounted work dir), switched to passwords after promotion.
    hba_path: std::path::PathBuf,
    /// The server's OS user (owns the hba file).
    os_user: OsUser,
    /// True once the copy only accepts the run's password.
    locked: bool,
    docker: Docker,
    session: ServerSession,
}

#[cfg(feature = "docker")]
impl std::fmt::Debug for DockerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerServer")
            .field("container", &self.container.as_ref().map(|c| c.id().to_string()))
            .field("socket_dir", &self.session.socket_dir)
            .finish()
    }
}

#[cfg(feature = "docker")]
struct DockerProbe<'a> {
    container: &'a Option<ContainerAsync<GenericImage>>,
}

#[cfg(feature = "docker")]
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

#[cfg(feature = "docker")]
#[async_trait]
impl RunningServer for DockerServer {
    async fn wait_recovered(&mut self, ctx: &RunContext) -> Result<RecoveryInfo> {
        let mut probe = DockerProbe { container: &self.container };
        let info = self.session.wait(ctx, &mut probe).await?;
        if !self.locked {
            let conn =
                crate::postgres::auth::lock_down("docker", &self.session.connection(), &self.hba_path, &self.os_user)
                    .await?;
            self.session.set_connection(conn);
            self.locked = true;
        }
        Ok(info)
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

    async fn teardown(&mut self) -> Result<()> {
        use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
        let Some(c) = self.container.take() else { return Ok(()) };
        // Fast shutdown, then immediate; never SIGKILL first (it leaves shared memory behind).
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
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        c.rm().await.map_err(|e| err("removing container".to_string()).with_source(e))?;
        let _ = std::fs::remove_dir_all(&self.session.socket_dir);
        Ok(())
    }
}

/// Runs a shell script in a fresh container of `image` as `user` with `mounts`, waits for it
/// and returns its stdout; used by tests and fixtures to make backups with an image's own tools.
#[cfg(feature = "docker")]
pub async fn run_script(image: &str, user: &str, binds: &[(&Path, bool)], script: &str) -> Result<String> {
    let ctx = RunContext::new();
    let (name, tag) = split_image(image);
    let mut r = GenericImage::new(name, tag)
        .with_entrypoint("sh")
        .with_wait_for(WaitFor::exit(testcontainers::core::wait::ExitWaitStrategy::new()))
        .with_network("none")
        .with_user(user)
        .with_env_var("LC_ALL", "C")
        .with_label(LABEL_RUN, ctx.run_id.clone())
        .with_label(LABEL_PID, std::process::id().to_string())
        .with_label(LABEL_HOST, host_name())
        .with_cmd(["-c", script]);
    for (p, ro) in binds {
        let m = Mount::bind_mount(p.display().to_string(), p.display().to_string());
        r = r.with_mount(if *ro { m.with_access_mode(AccessMode::ReadOnly) } else { m });
    }
    let c = r.start().await.map_err(|e| err(format!("running a script in {image}")).with_source(e))?;
    let out = c.stdout_to_vec().await.unwrap_or_default();
    let errs = c.stderr_to_vec().await.unwrap_or_default();
    let code = c.exit_code().await.ok().flatten();
    let _ = c.rm().await;
    if code != Some(0) {
        return Err(err(format!(
            "script in {image} exited {code:?}: {}",
            String::from_utf8_lossy(&errs)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(all(test, feature = "docker"))]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(split_image("postgres:15"), ("postgres".into(), "15".into()));
        assert_eq!(split_image("registry:5000/pg/postgres:17"), ("registry:5000/pg/postgres".into(), "17".into()));
        assert_eq!(split_image("postgres"), ("postgres".into(), "latest".into()));
    }

    #[test]
    fn user_must_be_numeric_and_not_root() {
        assert_eq!(parse_uid_gid("999:999").unwrap(), (999, 999));
        assert!(parse_uid_gid("postgres").is_err());
        assert!(parse_uid_gid("0:0").is_err());
        let t = DockerTarget::new(DockerTargetConfig {
            image: Some("restorecheck/postgres:{major}".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(t.image_for(13), "restorecheck/postgres:13");
    }
}
