//! Target `docker`: the whole restore in containers of an image with PostgreSQL binaries, so
//! the host needs nothing but Docker and restorecheck. The PostgreSQL logic — data dir
//! preparation, the safe settings, readiness and completeness, loading a dump — is the one the
//! `local` target uses (`crate::postgres::launch`, `crate::postgres::server`,
//! `crate::postgres::logical`); only where the programs run differs.
//!
//! Per check, two kinds of containers, both labelled `org.restorecheck.run`, `.pid`, `.host`
//! and `.workdir` (a run removes containers an earlier, killed run left behind; the end of a
//! check removes every container of its work dir, whatever went wrong):
//! - **tools** ([`tools`]): the check's [`ToolBox`](crate::ToolBox). The source's backup tools
//!   and the target's own PostgreSQL programs (`pg_controldata`, `pg_verifybackup`, `initdb`,
//!   `pg_restore`, `psql`) run in it with `docker exec`; one long-lived
//!   container per image, started when first needed.
//! - **server** ([`server`]): `postgres` on the restored data dir (a backup, or the fresh
//!   cluster a dump is loaded into).
//!
//! Isolation: **no network** (`--network none`) unless `network` names one — the only opening,
//! for tools and `restore_command`s that read object storage — and `no-new-privileges`. The work
//! dir is bind-mounted read-write at its host path and restorecheck talks to the server through
//! its Unix socket there, authenticated like the `local` target (peer for restorecheck's own
//! OS user while recovering, the run's password after promotion: `crate::postgres::auth`).
//! Backups, WAL archives, the source's repositories and every entry of `mounts` are mounted
//! READ-ONLY. A container's environment is only `LC_ALL=C`: credentials a tool or the
//! server's `restore_command` needs are files of an env dir in the work dir, loaded by a
//! wrapper inside the container, so `docker inspect` never shows them.
//!
//! The target needs the `docker` feature; without it only [`DockerTargetConfig`] is compiled
//! (so configurations still parse) and `kind = "docker"` fails with an error naming the feature.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[cfg(feature = "docker")]
mod engine;
#[cfg(feature = "docker")]
mod server;
#[cfg(feature = "docker")]
mod tools;

#[cfg(feature = "docker")]
pub use engine::{
    engine, remove_stale_containers, require_image, run_script, LABEL_HOST, LABEL_PID, LABEL_RUN, LABEL_WORK,
};
#[cfg(feature = "docker")]
pub use server::DockerServer;

/// A read-only bind mount the target adds to its containers (`mounts = [{ source = "/etc/wal-e",
/// target = "/etc/wal-e" }]`): a tool's configuration or credentials folder. Always read-only.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DockerMount {
    /// Absolute path on this host; must exist.
    pub source: PathBuf,
    /// Absolute path inside the containers.
    pub target: PathBuf,
}

impl DockerMount {
    /// `source` of this host at `target` inside.
    pub fn new(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        DockerMount { source: source.into(), target: target.into() }
    }
}

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
    /// Host paths mounted READ-ONLY into the tools and server containers (a backup tool's
    /// configuration, e.g. `/etc/wal-e`, or its credentials). Absolute; the source must exist.
    #[serde(default)]
    pub mounts: Vec<DockerMount>,
    /// Docker network the containers join. Default: none at all (`--network none`). This is
    /// the only opening, meant for tools (and `restore_command`s) that read object storage.
    pub network: Option<String>,
}

#[cfg(feature = "docker")]
pub use imp::DockerTarget;

#[cfg(feature = "docker")]
mod imp {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use async_trait::async_trait;
    use testcontainers::bollard::Docker;

    use super::engine::{self, err};
    use super::server::{self, DockerServer};
    use super::tools::{ContainerKey, ContainerTools, Images, ToolsSpec};
    use super::DockerTargetConfig;
    use crate::context::RunContext;
    use crate::error::{Error, Result};
    use crate::postgres::binaries::{self, DumpNeeds, PgTools};
    use crate::postgres::control::{not_in_toolbox, ControlData};
    use crate::postgres::launch::{self, LaunchSpec};
    use crate::postgres::logical;
    use crate::postgres::server::ServerSession;
    use crate::postgres::user::OsUser;
    use crate::source::{Artifact, FetchedBackup, LogicalDump, PhysicalBackup, WalSupply};
    use crate::target::{Capabilities, RestoreRequest, RestoreTarget, RunningServer};
    use crate::toolbox::{RunAs, ToolBox, ToolCommand, ToolboxRequest};

    /// Target `docker`.
    #[derive(Debug, Clone)]
    pub struct DockerTarget {
        cfg: DockerTargetConfig,
        user_settings: Vec<(String, String)>,
        /// The toolboxes this target gave to checks, to recognise its own in a context.
        toolboxes: Arc<std::sync::Mutex<Vec<Weak<ContainerTools>>>>,
    }

    impl DockerTarget {
        /// A docker target with the given options.
        pub fn new(cfg: DockerTargetConfig) -> Result<Self> {
            let user_settings = launch::user_settings(&cfg.settings)?;
            if let Some(u) = &cfg.user {
                parse_uid_gid(u)?;
            }
            for m in &cfg.mounts {
                for (what, p) in [("source", &m.source), ("target", &m.target)] {
                    if !p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                        return Err(Error::config(format!(
                            "target.mounts: {what} {} must be an absolute path without `..`",
                            p.display()
                        )));
                    }
                }
                if m.target == Path::new("/") {
                    return Err(Error::config("target.mounts: target must not be /"));
                }
            }
            if let Some(n) = &cfg.network {
                if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::config(format!("target.network {n:?} is not a Docker network name")));
                }
            }
            Ok(Self { cfg, user_settings, toolboxes: Arc::default() })
        }

        fn template(&self) -> &str {
            self.cfg.image.as_deref().unwrap_or("postgres:{major}")
        }

        /// The image for a backup of `major`.
        pub fn image_for(&self, major: u32) -> String {
            self.template().replace("{major}", &major.to_string())
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

        /// The `mounts` option as (host path, path inside); every source must exist.
        fn mounts(&self) -> Result<Vec<(PathBuf, PathBuf)>> {
            self.cfg
                .mounts
                .iter()
                .map(|m| {
                    if std::fs::symlink_metadata(&m.source).is_err() {
                        return Err(Error::config(format!(
                            "target.mounts: source {} does not exist on this host",
                            m.source.display()
                        )));
                    }
                    Ok((m.source.clone(), m.target.clone()))
                })
                .collect()
        }

        async fn new_tools(
            &self,
            ctx: &RunContext,
            work_dir: &Path,
            read_only_paths: &[PathBuf],
            private_write_paths: &[PathBuf],
        ) -> Result<Arc<ContainerTools>> {
            let mut read_only = Vec::new();
            for p in read_only_paths {
                if p.exists() {
                    read_only.push((p.clone(), p.clone()));
                } else {
                    tracing::warn!("the source's path {} does not exist: not mounted for its tools", p.display());
                }
            }
            read_only.extend(self.mounts()?);
            let spec = ToolsSpec {
                work_dir: work_dir.to_path_buf(),
                read_only,
                private_write: private_write_paths.iter().filter(|p| p.is_dir()).cloned().collect(),
                network: self.cfg.network.clone(),
                server: self.os_user()?,
                run_id: ctx.run_id.clone(),
                images: Images { template: self.template().to_string() },
            };
            Ok(Arc::new(ContainerTools::new(spec).await?))
        }

        /// The toolbox this target gave the check (`ctx.tools`), or a new one of its own for
        /// `work_dir` (`true`: the caller closes it).
        async fn tools_for(&self, ctx: &RunContext, work_dir: &Path) -> Result<(Arc<ContainerTools>, bool)> {
            let mine = self.toolboxes.lock().ok().and_then(|list| {
                list.iter()
                    .filter_map(Weak::upgrade)
                    .find(|t| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(&ctx.tools)))
            });
            match mine {
                Some(t) => Ok((t, false)),
                None => Ok((self.new_tools(ctx, work_dir, &[], &[]).await?, true)),
            }
        }

        /// Picks the image to load a dump with: the dump's own major, else the oldest present
        /// image newer than what it needs; returns it, its major and a note when it is not the
        /// dump's own.
        async fn image_for_dump(
            &self,
            docker: &Docker,
            tools: &Arc<ContainerTools>,
            needs: &DumpNeeds<'_>,
            extra: &[(PathBuf, bool)],
        ) -> Result<(String, u32, Option<String>)> {
            let template = self.template();
            let want = needs.source_major.max(needs.min_major);
            let made_by = needs.made_by.map(|m| format!(" ({m})")).unwrap_or_default();
            let source = if needs.source_major == 0 { "?".to_string() } else { needs.source_major.to_string() };
            if !template.contains("{major}") {
                // One image for every major: ask it which it has.
                engine::require_image(docker, template).await?;
                let key = ContainerKey { image: template.to_string(), extra: extra.to_vec() };
                let mut cmd = tools.prepare_in(&key, &ToolCommand::new("postgres")).await?.tokio();
                cmd.arg("--version").stdin(std::process::Stdio::null());
                crate::process::own_group(&mut cmd, libc::SIGKILL);
                let out = crate::process::output(cmd)
                    .await
                    .map_err(|e| err(format!("asking postgres --version in {template}")).with_source(e))?;
                let (major, _) =
                    binaries::parse_version(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| Error::Tooling {
                        what: format!("image {template} has no usable `postgres`"),
                        hint: "set [check.target] image to an image with the PostgreSQL server".into(),
                        source: None,
                    })?;
                if major < want {
                    return Err(Error::Tooling {
                        what: format!(
                            "image {template} holds PostgreSQL {major}, but the dump needs PostgreSQL {want} or \
                             newer{made_by}"
                        ),
                        hint: format!(
                            "set [check.target] image to a PostgreSQL {want}+ image (docker/build-images.sh {want} \
                             builds restorecheck/postgres:{want})"
                        ),
                        source: None,
                    });
                }
                let note = (needs.source_major != 0 && major != needs.source_major).then(|| {
                    format!(
                        "dump from PostgreSQL {source}{made_by} loaded with the newer PostgreSQL {major} of image \
                         {template} (pg_restore/psql and server)"
                    )
                });
                return Ok((template.to_string(), major, note));
            }
            let present = engine::present_majors(docker, template).await?;
            let majors = present.keys().copied().collect();
            let listed = if present.is_empty() {
                "none".to_string()
            } else {
                present.values().cloned().collect::<Vec<_>>().join(", ")
            };
            let Some(major) = binaries::pick_for_dump(needs, &majors) else {
                let wanted = if want == 0 { format!("no image {template}") } else { self.image_for(want) };
                return Err(Error::Tooling {
                    what: format!(
                        "Docker image {wanted} is not present on this host (the dump was made from PostgreSQL \
                         {source}{made_by} and needs PostgreSQL {} or newer; present: {listed})",
                        want.max(12)
                    ),
                    hint: format!(
                        "build it (docker/build-images.sh {} builds restorecheck/postgres:{0}) or set [check.target] \
                         image; restorecheck never pulls images",
                        want.max(12)
                    ),
                    source: None,
                });
            };
            let image = self.image_for(major);
            let note = (needs.source_major != 0 && major != needs.source_major).then(|| {
                let why = if majors.contains(&needs.source_major) {
                    format!("its archive format needs PostgreSQL {want} or newer")
                } else {
                    format!("image {} is not present", self.image_for(needs.source_major))
                };
                format!(
                    "dump from PostgreSQL {source}{made_by} loaded with the newer PostgreSQL {major} of image {image} \
                     (pg_restore/psql and server): {why}"
                )
            });
            Ok((image, major, note))
        }

        async fn start_in(
            &self,
            ctx: &RunContext,
            artifact: &Artifact,
            req: &RestoreRequest,
            docker: Docker,
            tools: &Arc<ContainerTools>,
            mut notes: Vec<String>,
        ) -> Result<DockerServer> {
            let os_user = self.os_user()?;
            if self.cfg.user.is_none() {
                notes.extend(crate::postgres::user::fallback_note(&os_user, self.cfg.os_user.as_deref()));
            }
            // The source's tools are done: their credentials leave the work dir before it is
            // given to the server's OS user.
            tools.remove_env_dirs()?;
            os_user.chown_tree(&req.work_dir)?;
            // The server runs in the tools container of its image (with what its restore_command
            // reads mounted), where its PostgreSQL programs run too.
            let (image, key, pg, backup, dump): (String, ContainerKey, PgTools, FetchedBackup, Option<&LogicalDump>) =
                match artifact {
                    Artifact::Physical(backup) => {
                        launch::check_version(backup.pg_major)?;
                        let image = self.image_for(backup.pg_major);
                        engine::require_image(&docker, &image).await?;
                        let key = server::server_key(tools, &image, req, &os_user, &wal_paths_of(backup))?;
                        let pg = pg_in(tools, key.clone(), backup.pg_major, &os_user);
                        (image, key, pg, backup.clone(), None)
                    }
                    Artifact::Logical(dump) => {
                        // The dump (when outside the work dir and the source's paths) read-only,
                        // and the server's socket (when outside the work dir) for psql/pg_restore.
                        let mut extra: Vec<(PathBuf, bool)> = [Some(&dump.path), dump.globals.as_ref()]
                            .into_iter()
                            .flatten()
                            .filter(|p| !tools.sees(p))
                            .map(|p| (p.clone(), false))
                            .collect();
                        extra.extend(server::socket_mount(req, &os_user)?);
                        let needs = DumpNeeds {
                            source_major: dump.server_major,
                            min_major: dump.min_major,
                            made_by: dump.made_by.as_deref(),
                        };
                        let (image, major, note) = self.image_for_dump(&docker, tools, &needs, &extra).await?;
                        notes.extend(note);
                        let key = ContainerKey { image: image.clone(), extra };
                        let pg = pg_in(tools, key.clone(), major, &os_user);
                        logical::initdb(&pg, &dump.data_dir).await?;
                        let backup = PhysicalBackup::new(dump.data_dir.clone(), major, WalSupply::SelfContained);
                        (image, key, pg, backup, Some(dump))
                    }
                };
            // pg_control facts, with the image's own pg_controldata.
            let control = ControlData::read(&pg, &backup.data_dir).await?;
            let backup = server::env_free(&backup, &req.work_dir, &os_user)?;
            let mut plan = launch::prepare(&LaunchSpec {
                backup: &backup,
                req,
                os_user: &os_user,
                control: &control,
                user_settings: &self.user_settings,
                db_user: self.cfg.superuser.as_deref(),
            })?;
            notes.append(&mut plan.notes);
            notes.push(format!(
                "restored in container image {image} ({}; socket in the work dir)",
                match &self.cfg.network {
                    Some(n) => format!("network {n}"),
                    None => "no network".to_string(),
                }
            ));
            plan.notes = notes;
            let process = server::start_server(tools, &key, &os_user, &plan).await?;
            tracing::info!(
                "started PostgreSQL (host pid {}) in tools container {} ({image}) on {} [{} recovery]",
                process.pid,
                process.container_id,
                backup.data_dir.display(),
                plan.mode
            );
            let stop_timeout = self.cfg.stop_timeout.unwrap_or(Duration::from_secs(30));
            let mut server = DockerServer {
                container: Some(process),
                hba_path: plan.hba_path.clone(),
                os_user,
                session: ServerSession::new(plan, req.socket_dir.clone(), stop_timeout),
                checksums: crate::postgres::checksums::ChecksumPlan::for_cluster(
                    &control,
                    backup.pg_major,
                    &backup.data_dir,
                    &req.work_dir,
                )?,
                own_tools: None,
            };
            if let Some(dump) = dump {
                // Load the dump now (restore phase); on any failure stop the server first.
                let loaded = async {
                    server.wait_recovered(ctx).await?;
                    let tablespaces = req.work_dir.join("tablespaces");
                    logical::load(&pg, &server.connection(), dump, &req.database, &tablespaces).await
                }
                .await;
                // pg_restore's and psql's PGPASSWORD files.
                let cleaned = tools.remove_env_dirs();
                match loaded.and_then(|n| cleaned.map(|()| n)) {
                    Ok(n) => {
                        server.session.set_mode("logical");
                        server.session.notes.extend(n);
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

    /// What the `restore_command` of `backup` reads.
    fn wal_paths_of(backup: &FetchedBackup) -> Vec<PathBuf> {
        match &backup.wal {
            WalSupply::Fetch(f) => f.read_only_paths.clone(),
            WalSupply::SelfContained => Vec::new(),
        }
    }

    /// The PostgreSQL programs of `major` in the tools container for `key`.
    fn pg_in(tools: &Arc<ContainerTools>, key: ContainerKey, major: u32, server_user: &OsUser) -> PgTools {
        let version = format!("{major} (image {})", key.image);
        PgTools::in_toolbox(tools.in_container(key), major, version, server_user)
    }

    pub(super) fn parse_uid_gid(s: &str) -> Result<(u32, u32)> {
        let bad = || Error::config(format!("target.user must be \"uid:gid\" (numbers), not {s:?}"));
        let (u, g) = s.split_once(':').ok_or_else(bad)?;
        let (u, g) = (u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?);
        if u == 0 {
            return Err(Error::config("target.user must not be root (uid 0): PostgreSQL refuses to run as root"));
        }
        Ok((u, g))
    }

    #[async_trait]
    impl RestoreTarget for DockerTarget {
        fn kind(&self) -> &'static str {
            "docker"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::ALL.tools_elsewhere()
        }

        async fn toolbox(&self, ctx: &RunContext, req: &ToolboxRequest) -> Result<Arc<dyn ToolBox>> {
            let tools = self.new_tools(ctx, &req.work_dir, &req.read_only_paths, &req.private_write_paths).await?;
            if let Ok(mut list) = self.toolboxes.lock() {
                list.retain(|w| w.strong_count() > 0);
                list.push(Arc::downgrade(&tools));
            }
            Ok(tools)
        }

        async fn preflight(&self, pg_major: Option<u32>) -> Result<()> {
            self.os_user()?;
            self.mounts()?;
            engine::docker_cli()?;
            let docker = engine::engine().await?;
            if let Some(m) = pg_major {
                engine::require_image(&docker, &self.image_for(m)).await?;
            }
            Ok(())
        }

        async fn verify_backup(&self, ctx: &RunContext, backup: &FetchedBackup) -> Result<String> {
            if backup.pg_major < 13 {
                return Ok(format!(
                    "backup_manifest not verified: pg_verifybackup needs PostgreSQL 13+, backup is {}",
                    backup.pg_major
                ));
            }
            let work_dir = backup.data_dir.parent().unwrap_or(&backup.data_dir);
            let (tools, owned) = self.tools_for(ctx, work_dir).await?;
            let image = self.image_for(backup.pg_major);
            let verified = async {
                // The container the server will run in (see `start_in`).
                let extra = wal_paths_of(backup).into_iter().filter(|p| !tools.sees(p)).map(|p| (p, false)).collect();
                let key = ContainerKey { image: image.clone(), extra };
                let pg = pg_in(&tools, key, backup.pg_major, &self.os_user()?);
                let args = crate::postgres::datadir::verifybackup_args(
                    &backup.data_dir,
                    &backup.wal,
                    backup.manifest_stream_verified.is_some(),
                )?;
                // As restorecheck's own user, like the local target: the files are not the
                // server's yet. In a container without network that sees only the work dir
                // read-write.
                let mut cmd = pg.tokio("pg_verifybackup", RunAs::Tester, &[]).await?;
                cmd.args(&args).stdin(std::process::Stdio::null()).kill_on_drop(true);
                let out = crate::process::output(cmd)
                    .await
                    .map_err(|e| Error::io("running pg_verifybackup", pg.program("pg_verifybackup"), e))?;
                if !out.status.success() {
                    if let Some(e) = not_in_toolbox(&pg, "pg_verifybackup", &out) {
                        return Err(e);
                    }
                    let text =
                        format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
                    return Err(crate::postgres::datadir::verifybackup_failed(&text));
                }
                Ok(format!(
                    "{} (pg_verifybackup of image {image})",
                    crate::postgres::datadir::verifybackup_note(backup)
                ))
            }
            .await;
            if owned {
                let _ = tools.close().await;
            }
            verified
        }

        async fn start(
            &self,
            ctx: &RunContext,
            artifact: &Artifact,
            req: &RestoreRequest,
        ) -> Result<Box<dyn RunningServer>> {
            let docker = engine::engine().await?;
            let notes = engine::remove_stale_containers(&docker).await;
            let (tools, owned) = self.tools_for(ctx, &req.work_dir).await?;
            match self.start_in(ctx, artifact, req, docker, &tools, notes).await {
                Ok(mut server) => {
                    if owned {
                        server.own_tools = Some(tools);
                    }
                    Ok(Box::new(server))
                }
                Err(e) => {
                    if owned {
                        // Also removes a server container whose start failed half-way.
                        let _ = tools.close().await;
                    }
                    Err(e)
                }
            }
        }
    }
}

#[cfg(all(test, feature = "docker"))]
mod tests {
    use super::imp::parse_uid_gid;
    use super::*;

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

    #[test]
    fn mounts_must_be_absolute_and_network_a_name() {
        let cfg = |m: DockerMount| DockerTargetConfig::default().mounts(vec![m]);
        assert!(DockerTarget::new(cfg(DockerMount::new("/etc/wal-e", "/etc/wal-e"))).is_ok());
        for bad in [
            DockerMount::new("etc/wal-e", "/etc/wal-e"),
            DockerMount::new("/etc", "x"),
            DockerMount::new("/a/../b", "/b"),
            DockerMount::new("/etc", "/"),
        ] {
            let e = DockerTarget::new(cfg(bad.clone())).unwrap_err().to_string();
            assert!(e.contains("target.mounts"), "{bad:?}: {e}");
        }
        assert!(DockerTarget::new(DockerTargetConfig::default().network("s3 net")).is_err());
        assert!(DockerTarget::new(DockerTargetConfig::default().network("minio")).is_ok());
        let parsed: DockerTargetConfig = toml::from_str(
            "image = \"restorecheck/postgres:{major}\"\nnetwork = \"minio\"\nmounts = [{ source = \"/etc/wal-e\", target = \"/etc/wal-e\" }]\n",
        )
        .unwrap();
        assert_eq!(parsed.mounts, vec![DockerMount::new("/etc/wal-e", "/etc/wal-e")]);
        assert!(toml::from_str::<DockerTargetConfig>("mounts = [{ source = \"/a\", target = \"/a\", mode = \"rw\" }]")
            .is_err());
    }
}
