//! The Docker engine side of the `docker` target: reaching the engine, the images present on
//! this host (restorecheck never pulls), the labels every container carries, and removing
//! containers: those of a killed run, and every container of a check at its end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testcontainers::bollard::Docker;
use testcontainers::core::{AccessMode, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use crate::context::RunContext;
use crate::error::{Error, Result};

/// Label keys on every container restorecheck starts.
pub const LABEL_RUN: &str = "org.restorecheck.run";
/// Label: pid of the restorecheck process that owns the container.
pub const LABEL_PID: &str = "org.restorecheck.pid";
/// Label: host name of that process.
pub const LABEL_HOST: &str = "org.restorecheck.host";
/// Label: the work dir of the check the container belongs to (its tools and its server):
/// what the end of a check removes, whatever went wrong before.
pub const LABEL_WORK: &str = "org.restorecheck.workdir";

pub(super) fn err(message: impl Into<String>) -> Error {
    Error::Target { target_kind: "docker", message: message.into(), log_tail: None, source: None }
}

/// Connects to the Docker engine and checks it answers, within a few seconds.
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

/// The `docker` command-line client on this host (tools run through `docker exec`).
pub(super) fn docker_cli() -> Result<PathBuf> {
    crate::sources::tool::find_program(
        "docker",
        "install the Docker command-line client (Debian: apt-get install docker.io or docker-ce-cli): the docker \
         target runs the check's tools with `docker exec`",
    )
}

/// Fails unless `image` exists locally (restorecheck never pulls).
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

/// The images of `template` (`restorecheck/postgres:{major}`) present on this host, by major.
/// Empty when the template has no `{major}`.
pub(super) async fn present_majors(docker: &Docker, template: &str) -> Result<BTreeMap<u32, String>> {
    use testcontainers::bollard::query_parameters::ListImagesOptionsBuilder;
    let Some((prefix, suffix)) = template.split_once("{major}") else { return Ok(BTreeMap::new()) };
    let list = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(false).build()))
        .await
        .map_err(|e| err("listing the images on this host").with_source(e))?;
    let mut found = BTreeMap::new();
    for tag in list.iter().flat_map(|i| i.repo_tags.iter()) {
        let Some(middle) = tag.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix)) else { continue };
        if let Ok(m) = middle.parse::<u32>() {
            // Same text back: `{major}` stands for exactly the number.
            if template.replace("{major}", &m.to_string()) == *tag {
                found.insert(m, tag.clone());
            }
        }
    }
    Ok(found)
}

pub(super) fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// Removes containers started by restorecheck processes on this host that no longer run.
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
    // Overlay volumes of such runs (their containers are gone now).
    use testcontainers::bollard::query_parameters::ListVolumesOptionsBuilder;
    if let Ok(v) = docker.list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build())).await {
        for vol in v.volumes.unwrap_or_default() {
            let labels = vol.labels;
            let pid: i32 = labels.get(LABEL_PID).and_then(|p| p.parse().ok()).unwrap_or(0);
            if labels.get(LABEL_HOST).map(String::as_str) != Some(me.as_str())
                || pid <= 0
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            {
                continue;
            }
            remove_volume(docker, &vol.name).await;
            notes.push(format!("removed overlay volume {} left by a killed run (pid {pid})", vol.name));
        }
    }
    notes
}

/// Removes (forcibly) every container of this process labelled with the work dir `work_dir`;
/// returns how many there were.
pub(super) async fn remove_check_containers(docker: &Docker, work_dir: &Path) -> Result<usize> {
    use testcontainers::bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_WORK}={}", work_dir.display()), format!("{LABEL_PID}={}", std::process::id())],
    )]);
    let list = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .map_err(|e| err("listing the check's containers").with_source(e))?;
    let mut removed = 0;
    for id in list.into_iter().filter_map(|c| c.id) {
        let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match docker.remove_container(&id, Some(opts)).await {
            Ok(()) => removed += 1,
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(err(format!("removing container {id}")).with_source(e)),
        }
    }
    Ok(removed)
}

/// Creates a `local` volume that mounts an overlay: `lower` (a real folder, never written) under
/// `upper` (where every write lands) with `work` (the overlay's scratch), all labelled like the
/// check's containers. Returns its name.
pub(super) async fn create_overlay(
    docker: &Docker,
    run_id: &str,
    work_dir: &Path,
    lower: &Path,
    upper: &Path,
    work: &Path,
) -> Result<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The kernel's option syntax has no quoting: a path with one of these cannot be named.
    for p in [lower, upper, work] {
        let text = p.to_str().unwrap_or(",");
        if text.contains([',', ':', '\\']) || !p.is_absolute() {
            return Err(Error::config(format!(
                "docker target: {} cannot be mounted as an overlay (an absolute path without ',', ':' or '\\' is \
                 needed)",
                p.display()
            )));
        }
    }
    let name = format!("restorecheck-overlay-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let opts = HashMap::from([
        ("type".to_string(), "overlay".to_string()),
        ("device".to_string(), "overlay".to_string()),
        (
            "o".to_string(),
            format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display()),
        ),
    ]);
    let labels = HashMap::from([
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
        (LABEL_HOST.to_string(), host_name()),
        (LABEL_WORK.to_string(), work_dir.display().to_string()),
    ]);
    let req = testcontainers::bollard::models::VolumeCreateRequest {
        name: Some(name.clone()),
        driver: Some("local".into()),
        driver_opts: Some(opts),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_volume(req)
        .await
        .map_err(|e| err(format!("creating an overlay volume over {}", lower.display())).with_source(e))?;
    Ok(name)
}

/// Removes volume `name` (forcibly); a failure is logged, not returned.
pub(super) async fn remove_volume(docker: &Docker, name: &str) {
    use testcontainers::bollard::query_parameters::RemoveVolumeOptionsBuilder;
    match docker.remove_volume(name, Some(RemoveVolumeOptionsBuilder::default().force(true).build())).await {
        Ok(()) | Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => tracing::warn!("could not remove docker volume {name}: {e}"),
    }
}

pub(super) fn split_image(image: &str) -> (String, String) {
    // The tag is after the last ':' that comes after the last '/' (registry ports have ':' too).
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (image[..slash + i].to_string(), image[slash + i + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// A bind mount of `source` at `target`, read-only unless `writable`.
pub(super) fn bind(source: &Path, target: &Path, writable: bool) -> Mount {
    let m = Mount::bind_mount(source.display().to_string(), target.display().to_string());
    if writable {
        m
    } else {
        m.with_access_mode(AccessMode::ReadOnly)
    }
}

/// Bind mounts for `(source, target, writable)` in order, each target once: Docker refuses two
/// mounts at one path (a declared `mounts` entry that is also a path the source's tool reads,
/// say); the first one listed wins.
pub(super) fn binds(list: impl IntoIterator<Item = (PathBuf, PathBuf, bool)>) -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter()
        .filter(|(_, target, _)| seen.insert(target.clone()))
        .map(|(source, target, writable)| bind(&source, &target, writable))
        .collect()
}

/// A container of `image` with restorecheck's labels (run, pid, host, the check's work dir),
/// `LC_ALL=C` as its only environment, no new privileges, and no network unless `network`
/// names one; started once `wait` is satisfied.
pub(super) fn labelled(
    image: &str,
    run_id: &str,
    work_dir: &Path,
    network: Option<&str>,
    wait: WaitFor,
) -> testcontainers::ContainerRequest<GenericImage> {
    let (name, tag) = split_image(image);
    GenericImage::new(name, tag)
        .with_entrypoint("sh")
        .with_wait_for(wait)
        .with_network(network.unwrap_or("none"))
        .with_security_opt("no-new-privileges")
        .with_env_var("LC_ALL", "C")
        .with_label(LABEL_RUN, run_id.to_string())
        .with_label(LABEL_PID, std::process::id().to_string())
        .with_label(LABEL_HOST, host_name())
        .with_label(LABEL_WORK, work_dir.display().to_string())
}

/// Runs a shell script in a fresh container of `image` as `user` with `mounts`, waits for it
/// and returns its stdout; used by tests and fixtures to make backups with an image's own tools.
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
        r = r.with_mount(bind(p, p, !*ro));
    }
    let c = r.start().await.map_err(|e| err(format!("running a script in {image}")).with_source(e))?;
    let out = c.stdout_to_vec().await.unwrap_or_default();
    let errs = c.stderr_to_vec().await.unwrap_or_default();
    let code = c.exit_code().await.ok().flatten();
    let _ = c.rm().await;
    if code != Some(0) {
        return Err(err(format!(
            "script in {image} exited {code:?}: {}",
            crate::postgres::server::last_lines(&String::from_utf8_lossy(&errs), 15)
        )));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(split_image("postgres:15"), ("postgres".into(), "15".into()));
        assert_eq!(split_image("registry:5000/pg/postgres:17"), ("registry:5000/pg/postgres".into(), "17".into()));
        assert_eq!(split_image("postgres"), ("postgres".into(), "latest".into()));
    }
}
