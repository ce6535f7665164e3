//! Without a reachable Docker engine (or without the `docker` client) the docker target fails
//! fast with a clear error, before anything runs. (Its own test binary: it changes DOCKER_HOST
//! and PATH for the whole process.)

#![allow(clippy::unwrap_used)]

use restorecheck_core::target::RestoreTarget;
use restorecheck_core::targets::docker::{self, DockerTarget, DockerTargetConfig};
use restorecheck_core::toolbox::ToolboxRequest;

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_engine_or_a_missing_client_is_an_error_not_a_hang() {
    let target = DockerTarget::new(DockerTargetConfig::default().image("restorecheck/postgres:{major}")).unwrap();
    let ctx = restorecheck_core::RunContext::new();
    let work = tempfile::tempdir().unwrap();
    let req = ToolboxRequest::new(work.path(), Vec::new());

    // A socket path where no engine listens.
    std::env::set_var("DOCKER_HOST", "unix:///var/tmp/restorecheck-no-docker.sock");
    let e = docker::engine().await.unwrap_err();
    assert!(e.to_string().contains("no Docker engine reachable"), "{e}");
    let e = target.toolbox(&ctx, &req).await.unwrap_err();
    assert!(e.to_string().contains("no Docker engine reachable"), "{e}");
    std::env::remove_var("DOCKER_HOST");

    // No `docker` client on PATH: the tools cannot be run with `docker exec`.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::set_var("PATH", "/var/tmp/restorecheck-no-such-dir");
    let e = target.toolbox(&ctx, &req).await.unwrap_err().to_string();
    let p = target.preflight(None).await.unwrap_err().to_string();
    std::env::set_var("PATH", path);
    for e in [e, p] {
        assert!(e.contains("`docker` is not installed") && e.contains("docker exec"), "{e}");
    }

    // A declared mount whose source does not exist is refused before anything starts.
    let missing = DockerTarget::new(
        DockerTargetConfig::default()
            .mounts(vec![docker::DockerMount::new("/var/tmp/restorecheck-no-such-mount", "/etc/wal-e")]),
    )
    .unwrap();
    let e = missing.preflight(None).await.unwrap_err().to_string();
    assert!(e.contains("target.mounts: source /var/tmp/restorecheck-no-such-mount does not exist"), "{e}");
}
