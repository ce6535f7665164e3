//! Target `docker` across PostgreSQL major versions: each version's own pg_basebackup (run in
//! its image) makes the backup, the `docker` target restores it in the same image. Good backups
//! pass; a missing WAL segment fails in the recovery phase. Needs the images that
//! `docker/build-images.sh` builds (`restorecheck/postgres:{13,15,17}`) and a Docker engine.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use restorecheck_core::report::{Phase, Verdict};
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
use restorecheck_core::targets::docker::{self, DockerTarget, DockerTargetConfig};
use restorecheck_core::Check;

const IMAGE: &str = "restorecheck/postgres:{major}";

/// Makes, inside the image of `major`, a cluster with archiving, a tar backup without WAL and
/// later writes that only the archive holds. Returns the test dir.
async fn backup_in_container(major: u32) -> TestDir {
    let dir = TestDir::new(&format!("docker{major}"));
    for d in ["backups", "archive", "sock"] {
        dir.sub(d);
    }
    // The image's own postgres user writes here.
    std::process::Command::new("chmod").args(["-R", "0777"]).arg(dir.path()).status().unwrap();
    let d = dir.path().display();
    let script = format!(
        r#"set -e
D={d}/cluster; S={d}/sock
initdb -D $D -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
cat >> $D/postgresql.conf <<EOC
listen_addresses = ''
unix_socket_directories = '$S'
wal_level = replica
archive_mode = on
archive_command = 'cp %p {d}/archive/%f'
max_connections = 60
EOC
pg_ctl -D $D -w -l {d}/source.log start >/dev/null
q() {{ psql -X -q -v ON_ERROR_STOP=1 -h $S -U postgres "$@"; }}
q -c "create database app"
q -d app -c "create table registrations (id bigserial primary key, email text, created_at timestamptz default now()); insert into registrations (email) select 'u' || g from generate_series(1, 100) g"
pg_basebackup -h $S -U postgres -D {d}/backups/b1 -Ft -Xnone -c fast
q -d app -c "insert into registrations (email) select 'later' || g from generate_series(1, 50) g"
seg=$(q -tA -c "select pg_walfile_name(pg_switch_wal())")
i=0; while [ ! -f {d}/archive/$seg ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.1; done
test -f {d}/archive/$seg
pg_ctl -D $D -m fast -w stop >/dev/null
echo $seg"#
    );
    let image = IMAGE.replace("{major}", &major.to_string());
    let out = docker::run_script(&image, "postgres", &[(dir.path(), false)], &script)
        .await
        .expect("backup inside the container");
    assert!(out.trim().len() >= 24, "{out}");
    // The image's postgres user wrote 0600 files; the server's OS user must be able to read them.
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path().join("backups"))
        .arg(dir.path().join("archive"))
        .status()
        .unwrap();
    dir
}

fn docker_check(dir: &TestDir, archive: &std::path::Path) -> Check {
    let source =
        BaseBackupSource::new(BaseBackupConfig::new(dir.path().join("backups")).wal_archive(archive.to_path_buf()));
    let target = DockerTarget::new(DockerTargetConfig::default().image(IMAGE)).unwrap();
    Check::new("docker", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", 150))
}

/// Runs a check and asserts no container of its run is left.
async fn run_docker(dir: &TestDir, check: Check) -> restorecheck_core::report::CheckReport {
    let ctx = restorecheck_core::RunContext::new();
    let work = dir.sub("work");
    let r = restorecheck_core::runner::run_check(&check, &work, 0, &ctx).await;
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(std::fs::read_dir(&work).unwrap().next().is_none(), "work dir left behind");
    assert_no_containers(&ctx.run_id).await;
    r
}

async fn version_round_trip(major: u32) {
    let dir = backup_in_container(major).await;
    let r = run_docker(&dir, docker_check(&dir, &dir.path().join("archive"))).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert!(r.recovery.server_version.as_deref().unwrap().starts_with(&major.to_string()));
    assert_eq!(r.recovery.timeline, Some(2));
    assert_eq!(r.backup.pg_major, Some(major));

    // The same backup with the first WAL segment it needs missing must fail in recovery.
    let label = String::from_utf8(
        std::process::Command::new("tar")
            .args(["-xOf"])
            .arg(dir.path().join("backups/b1/base.tar"))
            .arg("backup_label")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let broken = dir.sub("broken-archive");
    for s in segments(&dir.path().join("archive")) {
        std::fs::copy(dir.path().join("archive").join(&s), broken.join(&s)).unwrap();
    }
    std::fs::remove_file(broken.join(start_segment(&label))).unwrap();
    let r = run_docker(&dir, docker_check(&dir, &broken)).await;
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.failure);
    assert_eq!(r.failure.as_ref().unwrap().phase, Phase::Recovery);
    assert!(r.failure.unwrap().log_tail.is_some());
}

async fn assert_no_containers(run_id: &str) {
    use std::collections::HashMap;
    use testcontainers::bollard::query_parameters::ListContainersOptionsBuilder;
    let d = docker::engine().await.unwrap();
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_string(), vec![format!("{}={run_id}", docker::LABEL_RUN)])]);
    let list = d
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .unwrap();
    assert!(list.is_empty(), "containers left behind: {:?}", list.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_13_backup_restores_in_docker_and_missing_wal_fails() {
    version_round_trip(13).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_15_backup_restores_in_docker_and_missing_wal_fails() {
    version_round_trip(15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_17_backup_restores_in_docker_and_missing_wal_fails() {
    version_round_trip(17).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_a_clear_error_and_nothing_is_pulled() {
    let dir = TestDir::new("noimage");
    let c = cluster(&dir, 1).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    let source = BaseBackupSource::new(BaseBackupConfig::new(c.backups_dir()));
    let target = DockerTarget::new(DockerTargetConfig::default().image("restorecheck/no-such-image:{major}")).unwrap();
    let r = run_docker(&dir, Check::new("x", Arc::new(source), Arc::new(target))).await;
    assert_eq!(r.verdict, Verdict::Error);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("restorecheck/no-such-image:15") && msg.contains("never pulls"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_left_by_a_killed_run_are_removed_by_the_next() {
    use std::collections::HashMap;
    use testcontainers::bollard::models::ContainerCreateBody;
    use testcontainers::bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};
    let d = docker::engine().await.unwrap();
    // A container labelled as restorecheck's, owned by a process that no longer exists.
    let dead_pid = "999999";
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let labels = HashMap::from([
        (docker::LABEL_RUN.to_string(), "killedrun".to_string()),
        (docker::LABEL_PID.to_string(), dead_pid.to_string()),
        (docker::LABEL_HOST.to_string(), host),
    ]);
    let body = ContainerCreateBody {
        image: Some("restorecheck/postgres:15".into()),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let created = d.create_container(Some(CreateContainerOptionsBuilder::default().build()), body).await.unwrap();
    d.start_container(&created.id, None::<testcontainers::bollard::query_parameters::StartContainerOptions>)
        .await
        .unwrap();
    let notes = docker::remove_stale_containers(&d).await;
    assert!(notes.iter().any(|n| n.contains("left by a killed run")), "{notes:?}");
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_string(), vec![format!("{}=killedrun", docker::LABEL_RUN)])]);
    let list = d
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .unwrap();
    assert!(list.is_empty(), "the stale container is still there");
}
