//! Without a reachable Docker engine the docker target fails fast with a clear error.
//! (Its own test binary: it changes DOCKER_HOST for the whole process.)

#![allow(clippy::unwrap_used)]

use restorecheck_core::targets::docker;

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_engine_is_an_error_not_a_hang() {
    // A socket path where no engine listens.
    std::env::set_var("DOCKER_HOST", "unix:///var/tmp/restorecheck-no-docker.sock");
    let e = docker::engine().await.unwrap_err();
    std::env::remove_var("DOCKER_HOST");
    assert!(e.to_string().contains("no Docker engine reachable"), "{e}");
}
