//! [`ContainerTools`]: the `docker` target's [`ToolBox`]. A check's tools (the source's backup
//! tools, the target's PostgreSQL programs) run with `docker exec` in a long-lived container of
//! the check's image, started when first needed (one per image) and removed when the check
//! ends ([`ToolBox::close`]).
//!
//! Each tools container:
//! - runs `tail -f /dev/null` and nothing else; the tools are `docker exec`ed into it as
//!   restorecheck's own uid:gid ([`RunAs::Tester`]) or the restored server's
//!   ([`RunAs::Server`]), both given an entry in the container's `/etc/passwd` when the image
//!   lacks one (`initdb` and others refuse a uid without a name);
//! - has **no network** (`--network none`) unless the target's `network` option names one,
//!   and `--security-opt no-new-privileges`;
//! - sees the check's work dir read-write at its host path, and READ-ONLY: every path the
//!   source declared ([`crate::BackupSource::read_only_paths`]) at its host path and every
//!   entry of the target's `mounts` option;
//! - sees each folder the source's tool writes into as though it owned it
//!   ([`crate::BackupSource::private_write_paths`], Barman's catalog) through an overlay
//!   volume at its host path: the real folder is the overlay's read-only lower layer, every
//!   write lands in an upper layer in the work dir (`overlay-N/`), and the volume is removed
//!   with the containers;
//! - carries the target's labels (run, pid, host, work dir), so a later run removes it if this
//!   one was killed.
//!
//! A tool's environment (credentials) never appears on a command line or in `docker inspect`:
//! it is written with [`crate::toolbox::write_env_dir`] into a fresh folder of the work dir
//! owned by the tool's user, and exported inside the container by
//! [`crate::toolbox::ENV_LOADER`]. A tool run as [`RunAs::Server`] needs the work dir to be
//! reachable by the server's user (the target gives it that user before it starts the server).
//!
//! Killing the `docker exec` client does not stop the process inside: at the check's deadline
//! it runs on until [`ToolBox::close`] removes the container.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use testcontainers::bollard::Docker;
use testcontainers::core::{ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::engine::{self, err};
use crate::error::{Error, Result};
use crate::postgres::user::OsUser;
use crate::toolbox::{Prepared, RunAs, ToolBox, ToolCommand};

/// What `tail -f /dev/null` is preceded by: `/etc/passwd` and `/etc/group` entries for the
/// `uid:gid` arguments the image lacks, then a line saying the container is ready.
const STARTUP: &str = r#"for spec in "$@"; do
  uid=${spec%%:*}; gid=${spec#*:}; known=
  while IFS=: read -r n p id rest; do [ "$id" = "$uid" ] && known=1; done < /etc/passwd
  [ -n "$known" ] || echo "rc$uid:x:$uid:$gid:restorecheck:/tmp:/bin/sh" >> /etc/passwd
  known=
  while IFS=: read -r n p id rest; do [ "$id" = "$gid" ] && known=1; done < /etc/group
  [ -n "$known" ] || echo "rc$gid:x:$gid:" >> /etc/group
done 2>/dev/null
echo restorecheck-tools-ready
exec tail -f /dev/null"#;

/// Which tools container: its image and the mounts a target adds for one purpose (a dump file
/// outside the work dir, an outside socket dir) besides the toolbox's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ContainerKey {
    /// The image.
    pub(crate) image: String,
    /// Extra bind mounts at the same path: (path, writable).
    pub(crate) extra: Vec<(PathBuf, bool)>,
}

impl ContainerKey {
    /// The image with the toolbox's own mounts only.
    pub(crate) fn image(image: impl Into<String>) -> Self {
        ContainerKey { image: image.into(), extra: Vec::new() }
    }
}

/// A process started with [`ContainerTools::spawn_detached`].
#[derive(Debug, Clone)]
pub(crate) struct DetachedProcess {
    docker: Docker,
    exec_id: String,
    /// Its pid on this host (0: it had already ended when asked).
    pub(crate) pid: i32,
    /// The container it runs in.
    pub(crate) container_id: String,
}

impl DetachedProcess {
    /// `None` while it runs, else its exit code (`None` inside: unknown).
    pub(crate) async fn exit_code(&self) -> Result<Option<Option<i64>>> {
        let i =
            self.docker.inspect_exec(&self.exec_id).await.map_err(|e| err("inspecting a process").with_source(e))?;
        Ok(match i.running {
            Some(true) => None,
            _ => Some(i.exit_code),
        })
    }

    /// Sends `signal` to it (nothing once it ended).
    pub(crate) async fn signal(&self, signal: nix::sys::signal::Signal) {
        if self.pid > 0 && matches!(self.exit_code().await, Ok(None)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal);
        }
    }
}

/// How a [`ContainerTools`] picks the image of a command that names no container itself.
#[derive(Debug, Clone)]
pub(crate) struct Images {
    /// The target's image template (`restorecheck/postgres:{major}`).
    pub(crate) template: String,
}

impl Images {
    /// The image for a backup of `major`.
    pub(crate) fn for_major(&self, major: u32) -> String {
        self.template.replace("{major}", &major.to_string())
    }
}

/// Everything a [`ContainerTools`] needs to start its containers.
#[derive(Debug, Clone)]
pub(crate) struct ToolsSpec {
    /// The check's work dir (read-write at its host path).
    pub(crate) work_dir: PathBuf,
    /// Read-only bind mounts: (host path, path inside).
    pub(crate) read_only: Vec<(PathBuf, PathBuf)>,
    /// Folders seen through a private copy-on-write overlay at their host path.
    pub(crate) private_write: Vec<PathBuf>,
    /// The network to join (`None`: none).
    pub(crate) network: Option<String>,
    /// The restored server's OS user ([`RunAs::Server`]).
    pub(crate) server: OsUser,
    /// The run's id (a label).
    pub(crate) run_id: String,
    /// How images are chosen.
    pub(crate) images: Images,
}

/// The `docker` target's [`ToolBox`]. See the [module docs](self).
pub(crate) struct ContainerTools {
    spec: ToolsSpec,
    docker: Docker,
    cli: PathBuf,
    containers: tokio::sync::Mutex<Vec<(ContainerKey, Arc<ContainerAsync<GenericImage>>)>>,
    located: std::sync::Mutex<HashMap<(ContainerKey, String), PathBuf>>,
    env_dirs: std::sync::Mutex<Vec<PathBuf>>,
    next_env: AtomicUsize,
    closed: AtomicBool,
    /// The overlay volumes made so far (removed at close).
    overlays: std::sync::Mutex<Vec<String>>,
    next_overlay: AtomicUsize,
}

impl std::fmt::Debug for ContainerTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerTools")
            .field("work_dir", &self.spec.work_dir)
            .field("images", &self.spec.images.template)
            .field("network", &self.spec.network)
            .finish()
    }
}

impl ContainerTools {
    /// A toolbox for `spec`: finds the `docker` client and the engine; starts nothing yet.
    pub(crate) async fn new(spec: ToolsSpec) -> Result<Self> {
        let cli = engine::docker_cli()?;
        let docker = engine::engine().await?;
        Ok(ContainerTools {
            spec,
            docker,
            cli,
            containers: tokio::sync::Mutex::new(Vec::new()),
            located: std::sync::Mutex::new(HashMap::new()),
            env_dirs: std::sync::Mutex::new(Vec::new()),
            next_env: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            overlays: std::sync::Mutex::new(Vec::new()),
            next_overlay: AtomicUsize::new(0),
        })
    }

    /// The image for a command of `major`: the template's image of that major; for an unknown
    /// major the newest present one (or the template itself when it names no `{major}`).
    pub(crate) async fn image_for(&self, major: Option<u32>) -> Result<String> {
        let template = &self.spec.images.template;
        match major {
            Some(m) => Ok(self.spec.images.for_major(m)),
            None if !template.contains("{major}") => Ok(template.clone()),
            None => engine::present_majors(&self.docker, template).await?.into_values().next_back().ok_or_else(|| {
                Error::Tooling {
                    what: format!("no image {template} is present on this host (for any major)"),
                    hint: "build one (docker/build-images.sh builds restorecheck/postgres:N) or set [check.target] \
                           image; restorecheck never pulls images"
                        .into(),
                    source: None,
                }
            }),
        }
    }

    fn user_of(&self, run_as: RunAs) -> (u32, u32) {
        match run_as {
            RunAs::Tester => (nix::unistd::Uid::effective().as_raw(), nix::unistd::Gid::effective().as_raw()),
            RunAs::Server => (self.spec.server.uid, self.spec.server.gid),
        }
    }

    /// The running tools container for `key`, started now if there is none yet.
    async fn container(&self, key: &ContainerKey) -> Result<Arc<ContainerAsync<GenericImage>>> {
        let mut list = self.containers.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::internal("the check's tools were already stopped"));
        }
        if let Some((_, c)) = list.iter().find(|(k, _)| k == key) {
            return Ok(c.clone());
        }
        engine::require_image(&self.docker, &key.image).await?;
        let spec = &self.spec;
        let (tu, tg) = self.user_of(RunAs::Tester);
        let (su, sg) = self.user_of(RunAs::Server);
        let mut req = engine::labelled(
            &key.image,
            &spec.run_id,
            &spec.work_dir,
            spec.network.as_deref(),
            WaitFor::message_on_stdout("restorecheck-tools-ready"),
        )
        .with_user("0:0")
        .with_cmd([
            "-c".to_string(),
            STARTUP.to_string(),
            "restorecheck-tools".into(),
            format!("{tu}:{tg}"),
            format!("{su}:{sg}"),
        ]);
        let overlays = self.new_overlays().await?;
        // What an overlay covers is seen (privately writable) through it, not read-only again.
        let covered = |t: &Path| overlays.iter().any(|(_, o)| t.starts_with(o));
        let binds = std::iter::once((spec.work_dir.clone(), spec.work_dir.clone(), true))
            .chain(spec.read_only.iter().filter(|(_, t)| !covered(t)).map(|(s, t)| (s.clone(), t.clone(), false)))
            .chain(key.extra.iter().map(|(p, w)| (p.clone(), p.clone(), *w)));
        for m in engine::binds(binds) {
            req = req.with_mount(m);
        }
        for (volume, target) in &overlays {
            req = req.with_mount(testcontainers::core::Mount::volume_mount(volume, target.display().to_string()));
        }
        let c = req
            .start()
            .await
            .map_err(|e| err(format!("starting a tools container from {}", key.image)).with_source(e))?;
        tracing::debug!("tools container {} ({}) for {}", c.id(), key.image, spec.work_dir.display());
        let c = Arc::new(c);
        list.push((key.clone(), c.clone()));
        Ok(c)
    }

    /// New overlay volumes of `spec.private_write` for one container (one per folder not under
    /// another), their upper and work layers in `overlay-N/` of the work dir: each container
    /// gets its own, so that the Barman of one image (listing) never sees what the Barman of
    /// another (restoring) wrote.
    async fn new_overlays(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut folders: Vec<PathBuf> = self.spec.private_write.clone();
        folders.sort();
        folders.dedup();
        let outer: Vec<PathBuf> =
            folders.iter().filter(|p| !folders.iter().any(|q| q != *p && p.starts_with(q))).cloned().collect();
        let mut list = Vec::new();
        for lower in outer {
            let n = self.next_overlay.fetch_add(1, Ordering::SeqCst);
            let layers = self.spec.work_dir.join(format!("overlay-{n}"));
            let (upper, work) = (layers.join("upper"), layers.join("work"));
            for d in [&upper, &work] {
                std::fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
            }
            let volume =
                engine::create_overlay(&self.docker, &self.spec.run_id, &self.spec.work_dir, &lower, &upper, &work)
                    .await?;
            if let Ok(mut all) = self.overlays.lock() {
                all.push(volume.clone());
            }
            list.push((volume, lower));
        }
        Ok(list)
    }

    /// Starts `sh -c script` detached in the container for `key` as `uid:gid` (the restored
    /// server, which thus shares the check's tools container instead of starting one of its
    /// own). Returns the process: its exec id and host pid.
    pub(crate) async fn spawn_detached(
        &self,
        key: &ContainerKey,
        (uid, gid): (u32, u32),
        script: &str,
    ) -> Result<DetachedProcess> {
        use testcontainers::bollard::exec::StartExecOptions;
        use testcontainers::bollard::models::ExecConfig;
        let c = self.container(key).await?;
        let config = ExecConfig {
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.to_string()]),
            user: Some(format!("{uid}:{gid}")),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            ..Default::default()
        };
        let exec =
            self.docker.create_exec(c.id(), config).await.map_err(|e| {
                err(format!("starting a process in the tools container of {}", key.image)).with_source(e)
            })?;
        self.docker
            .start_exec(&exec.id, Some(StartExecOptions { detach: true, tty: false, output_capacity: None }))
            .await
            .map_err(|e| err(format!("starting a process in the tools container of {}", key.image)).with_source(e))?;
        // The engine reports the host pid once the process runs (0: it has ended already).
        for _ in 0..100 {
            let i = self.docker.inspect_exec(&exec.id).await.map_err(|e| err("inspecting a process").with_source(e))?;
            let pid = match (i.pid, i.running) {
                (Some(pid), _) if pid > 0 => i32::try_from(pid).map_err(|_| err(format!("odd process id {pid}")))?,
                (_, Some(false)) => 0,
                _ => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            return Ok(DetachedProcess {
                docker: self.docker.clone(),
                exec_id: exec.id,
                pid,
                container_id: c.id().to_string(),
            });
        }
        Err(err(format!("the process started in the tools container of {} has no pid after 1 s", key.image)))
    }

    /// [`ToolBox::locate`] in the container for `key`.
    pub(crate) async fn locate_in(&self, key: &ContainerKey, program: &str, hint: &str) -> Result<PathBuf> {
        let cache_key = (key.clone(), program.to_string());
        if let Some(p) = self.located.lock().ok().and_then(|m| m.get(&cache_key).cloned()) {
            return Ok(p);
        }
        let c = self.container(key).await?;
        let mut res = c
            .exec(ExecCommand::new(["/bin/sh", "-c", "command -v \"$1\"", "sh", program]))
            .await
            .map_err(|e| err(format!("looking for {program} in {}", key.image)).with_source(e))?;
        let out = res.stdout_to_vec().await.unwrap_or_default();
        let found = String::from_utf8_lossy(&out).trim().to_string();
        if !found.starts_with('/') {
            return Err(missing_program(program, &key.image, hint));
        }
        let p = PathBuf::from(found);
        if let Ok(mut m) = self.located.lock() {
            m.insert(cache_key, p.clone());
        }
        Ok(p)
    }

    /// [`ToolBox::prepare`] in the container for `key`.
    pub(crate) async fn prepare_in(&self, key: &ContainerKey, cmd: &ToolCommand) -> Result<Prepared> {
        let c = self.container(key).await?;
        let (uid, gid) = self.user_of(cmd.run_as);
        let mut args: Vec<OsString> =
            vec!["exec".into(), "-i".into(), "-u".into(), format!("{uid}:{gid}").into(), c.id().into()];
        if cmd.env.0.is_empty() {
            args.push(cmd.program.clone().into_os_string());
        } else {
            let dir = self.new_env_dir(&cmd.env.0, cmd.run_as)?;
            for a in ["/bin/sh", "-c", crate::toolbox::ENV_LOADER, "restorecheck-tool"] {
                args.push(a.into());
            }
            args.push(dir.into_os_string());
            args.push(cmd.program.clone().into_os_string());
        }
        Ok(Prepared::host_command(self.cli.clone(), args))
    }

    /// Writes `env` into a fresh folder of the work dir owned by the user of `run_as`.
    fn new_env_dir(&self, env: &[(String, String)], run_as: RunAs) -> Result<PathBuf> {
        let n = self.next_env.fetch_add(1, Ordering::SeqCst);
        let dir = self.spec.work_dir.join(format!("tool-env-{n}"));
        let owner = match run_as {
            RunAs::Server => Some(&self.spec.server),
            RunAs::Tester => None,
        };
        crate::toolbox::write_env_dir(&dir, env, owner)?;
        if let Ok(mut l) = self.env_dirs.lock() {
            l.push(dir.clone());
        }
        Ok(dir)
    }

    /// Removes the environment folders written so far (before the work dir is given to the
    /// server's OS user, and once the tools that needed them finished).
    pub(crate) fn remove_env_dirs(&self) -> Result<()> {
        let dirs = self.env_dirs.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
        for d in dirs {
            match std::fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing a tool's environment", &d, e)),
            }
        }
        Ok(())
    }

    /// True when `path` is visible inside the tools containers already (under the work dir or
    /// a read-only mount at the same path).
    pub(crate) fn sees(&self, path: &Path) -> bool {
        path.starts_with(&self.spec.work_dir)
            || self.spec.read_only.iter().any(|(s, t)| s == t && path.starts_with(s))
            || self.spec.private_write.iter().any(|p| path.starts_with(p))
    }

    /// A view of this toolbox that runs everything in the container for `key`.
    pub(crate) fn in_container(self: &Arc<Self>, key: ContainerKey) -> Arc<dyn ToolBox> {
        Arc::new(ImageTools { tools: self.clone(), key })
    }
}

/// The error for a program an image lacks: names the image and what builds one that has it.
fn missing_program(program: &str, image: &str, hint: &str) -> Error {
    let name = Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let build = if name == "pgbackrest" {
        "build docker/Dockerfile.pgbackrest".to_string()
    } else if name.starts_with("barman") {
        "build docker/Dockerfile.barman".to_string()
    } else if name == "wal-e" || name == "envdir" {
        "build docker/Dockerfile.wale".to_string()
    } else if name == "postgres" || name == "initdb" || name == "psql" || name.starts_with("pg_") {
        "build the PostgreSQL images with docker/build-images.sh".to_string()
    } else {
        format!("use an image that has it ({hint})")
    };
    Error::Tooling {
        what: format!("{program} not found in image {image}"),
        hint: format!("{build} or set [check.target] image"),
        source: None,
    }
}

#[async_trait]
impl ToolBox for ContainerTools {
    fn describe(&self) -> String {
        format!("a container of image {}", self.spec.images.template)
    }

    async fn locate(&self, program: &str, hint: &str, major: Option<u32>) -> Result<PathBuf> {
        let image = self.image_for(major).await?;
        self.locate_in(&ContainerKey::image(image), program, hint).await
    }

    async fn prepare(&self, cmd: &ToolCommand) -> Result<Prepared> {
        let image = self.image_for(cmd.major).await?;
        self.prepare_in(&ContainerKey::image(image), cmd).await
    }

    fn work_dir(&self) -> Option<PathBuf> {
        Some(self.spec.work_dir.clone())
    }

    async fn close(&self) -> Result<()> {
        let list = {
            let mut l = self.containers.lock().await;
            self.closed.store(true, Ordering::SeqCst);
            std::mem::take(&mut *l)
        };
        let mut first_error = None;
        // All at once: each removal waits for the engine to kill and clean up its container.
        let removals = list.into_iter().filter_map(|(key, c)| match Arc::try_unwrap(c) {
            Ok(c) => Some(async move {
                c.rm().await.map_err(|e| err(format!("removing the tools container of {}", key.image)).with_source(e))
            }),
            // Still in use (a dropped exec): the sweep below removes it.
            Err(_) => None,
        });
        for r in futures::future::join_all(removals).await {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        // Whatever else this check started and did not remove (a server container after an
        // error, a container whose start failed half-way).
        if let Err(e) = engine::remove_check_containers(&self.docker, &self.spec.work_dir).await {
            first_error.get_or_insert(e);
        }
        // The overlays, once no container uses them (their layers go with the work dir).
        let volumes = self.overlays.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
        for volume in volumes {
            engine::remove_volume(&self.docker, &volume).await;
        }
        let _ = self.remove_env_dirs();
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// [`ContainerTools`] fixed to one container (an image, plus the mounts one step needs):
/// what the target's own PostgreSQL programs run in.
#[derive(Debug)]
struct ImageTools {
    tools: Arc<ContainerTools>,
    key: ContainerKey,
}

#[async_trait]
impl ToolBox for ImageTools {
    fn describe(&self) -> String {
        format!("image {}", self.key.image)
    }

    async fn locate(&self, program: &str, hint: &str, _major: Option<u32>) -> Result<PathBuf> {
        self.tools.locate_in(&self.key, program, hint).await
    }

    async fn prepare(&self, cmd: &ToolCommand) -> Result<Prepared> {
        self.tools.prepare_in(&self.key, cmd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_image_and_what_builds_one() {
        let e = missing_program("wal-e", "restorecheck/postgres:15", "pip install wal-e").to_string();
        assert!(e.contains("wal-e not found in image restorecheck/postgres:15"), "{e}");
        assert!(e.contains("build docker/Dockerfile.wale or set [check.target] image"), "{e}");
        assert!(missing_program("barman-wal-restore", "x", "").to_string().contains("docker/Dockerfile.barman"));
        assert!(missing_program("pgbackrest", "x", "").to_string().contains("docker/Dockerfile.pgbackrest"));
        assert!(missing_program("pg_verifybackup", "x", "").to_string().contains("docker/build-images.sh"));
        assert!(missing_program("wal-g", "x", "see wal-g docs").to_string().contains("(see wal-g docs)"));
    }

    #[test]
    fn the_startup_script_adds_missing_users_once() {
        let d = tempfile::tempdir().unwrap();
        let passwd = d.path().join("passwd");
        let group = d.path().join("group");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(&group, "root:x:0:\n").unwrap();
        let script = STARTUP
            .replace("/etc/passwd", &passwd.display().to_string())
            .replace("/etc/group", &group.display().to_string())
            .replace("exec tail -f /dev/null", "");
        for _ in 0..2 {
            let out =
                std::process::Command::new("/bin/sh").args(["-c", &script, "x", "0:0", "999:995"]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "restorecheck-tools-ready");
        }
        assert_eq!(
            std::fs::read_to_string(&passwd).unwrap(),
            "root:x:0:0:root:/root:/bin/sh\nrc999:x:999:995:restorecheck:/tmp:/bin/sh\n"
        );
        assert_eq!(std::fs::read_to_string(&group).unwrap(), "root:x:0:\nrc995:x:995:\n");
    }
}
