//! Dumps made by other PostgreSQL majors than the host's: by the PostgreSQL 13, 15 and 17
//! binaries inside the images `docker/build-images.sh` builds (`restorecheck/postgres:{13,15,17}`).
//! On this host (PostgreSQL 15 only, target `local`) an older dump loads with the newer binaries
//! and says so; a newer one is an *error* (exit 2) naming the major to install, never a *fail*.
//! Target `docker` loads each in the image of its own major (`initdb`, `pg_restore`, `psql` of
//! that image), with the same verdicts as `local`; when no image is new enough, an *error*
//! naming the image to build.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use restorecheck_core::postgres::binaries;
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::sources::{PgDumpConfig, PgDumpSource};
use restorecheck_core::target::RestoreTarget;
use restorecheck_core::targets::docker::{self, DockerTarget, DockerTargetConfig};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

const IMAGE: &str = "restorecheck/postgres:{major}";

/// Makes (in a test dir named after `test`), inside the image of `major`, a cluster with database `app` (120 registrations) and
/// dumps it as `app.custom`, `app.sql`, `app.custom.zst` and (pg_dumpall) `cluster.sql` into
/// `<dir>/dumps`.
async fn dumps_made_in_container(major: u32, test: &str) -> (TestDir, PathBuf) {
    let dir = TestDir::new(&format!("dump-major{major}-{test}"));
    for d in ["dumps", "sock"] {
        dir.sub(d);
    }
    // The image's own postgres user writes here.
    std::process::Command::new("chmod").args(["-R", "0777"]).arg(dir.path()).status().unwrap();
    let d = dir.path().display();
    let script = format!(
        r#"set -e
D={d}/cluster; S={d}/sock; O={d}/dumps
initdb -D $D -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pg_ctl -D $D -w -l {d}/source.log -o "-c listen_addresses= -c unix_socket_directories=$S" start >/dev/null
q() {{ psql -X -q -v ON_ERROR_STOP=1 -h $S -U postgres "$@"; }}
q -c "create database app"
q -d app -c "create table registrations (id bigserial primary key, email text); insert into registrations (email) select 'u' || g from generate_series(1, 120) g"
pg_dump -h $S -U postgres -Fc -f $O/app.custom app
pg_dump -h $S -U postgres -Fp -f $O/app.sql app
zstd -q -c $O/app.custom > $O/app.custom.zst
pg_dumpall -h $S -U postgres -f $O/cluster.sql
pg_ctl -D $D -m fast -w stop >/dev/null
pg_dump --version"#
    );
    let image = IMAGE.replace("{major}", &major.to_string());
    let out = docker::run_script(&image, "postgres", &[(dir.path(), false)], &script)
        .await
        .expect("dumps inside the container");
    assert!(out.contains(&format!("(PostgreSQL) {major}.")), "{out}");
    std::process::Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path().join("dumps")).status().unwrap();
    let dumps = dir.path().join("dumps");
    (dir, dumps)
}

fn dump_check(path: &Path, target: Arc<dyn RestoreTarget>) -> Check {
    let source = PgDumpSource::new(PgDumpConfig::new(path.to_path_buf()));
    Check::new("major", Arc::new(source), target)
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", 120))
}

fn local() -> Arc<dyn RestoreTarget> {
    Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap())
}

/// The tests below assume this host has PostgreSQL 15 and nothing newer.
fn require_only_15_installed() {
    let found: Vec<u32> = binaries::discover().into_keys().collect();
    assert_eq!(found.last(), Some(&15), "these tests need PostgreSQL 15 as the newest local major; found {found:?}");
}

fn assert_error_naming_17(r: &CheckReport) {
    assert_eq!(r.verdict, Verdict::Error, "a dump newer than the host's tools is not a bad backup: {:?}", r.failure);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.phase, Phase::Restore, "{f:?}");
    assert!(f.message.contains("PostgreSQL 17 binaries not found"), "{}", f.message);
    assert!(f.message.contains("install postgresql-17") && f.message.contains("target.bin_dir"), "{}", f.message);
    assert!(f.message.contains("this host has: 15"), "{}", f.message);
    assert_eq!(r.backup.pg_major, Some(17));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_13_dumps_restore_with_the_newer_local_binaries_and_say_so() {
    require_only_15_installed();
    let (dir, dumps) = dumps_made_in_container(13, "local").await;
    for name in ["app.custom", "app.custom.zst", "app.sql", "cluster.sql"] {
        let r = run(&dir, dump_check(&dumps.join(name), local())).await;
        assert_pass(&r);
        assert_eq!(r.backup.pg_major, Some(13), "{name}");
        assert!(r.recovery.server_version.as_deref().unwrap().starts_with("15."), "{name}: {:?}", r.recovery);
        assert!(
            r.notes.iter().any(|n| n.contains("dump from PostgreSQL 13") && n.contains("newer PostgreSQL 15")),
            "{name}: {:?}",
            r.notes
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_17_dumps_are_an_error_naming_17_on_a_host_with_only_15() {
    require_only_15_installed();
    let (dir, dumps) = dumps_made_in_container(17, "local").await;
    // pg_restore 15 cannot even read the header: this used to FAIL in fetch.
    let out = std::process::Command::new("pg_restore").arg("-l").arg(dumps.join("app.custom")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported version (1.16)"), "{out:?}");
    for name in ["app.custom", "app.custom.zst"] {
        let r = run(&dir, dump_check(&dumps.join(name), local())).await;
        assert_error_naming_17(&r);
        assert!(r.failure.as_ref().unwrap().message.contains("archive format 1.16"), "{:?}", r.failure);
    }
    // A plain dump of a PostgreSQL 17 server: loading it into an older server is not something
    // PostgreSQL supports (pg_dump 17 writes `SET transaction_timeout`, unknown to 15).
    let text = std::fs::read_to_string(dumps.join("app.sql")).unwrap();
    assert!(text.contains("SET transaction_timeout = 0;"), "the premise of this case changed");
    for name in ["app.sql", "cluster.sql"] {
        let r = run(&dir, dump_check(&dumps.join(name), local())).await;
        assert_error_naming_17(&r);
    }
}

fn docker_target(image: &str) -> Arc<dyn RestoreTarget> {
    Arc::new(DockerTarget::new(DockerTargetConfig::default().image(image)).unwrap())
}

/// Runs a check with its own run id; asserts the work dir is gone and no container of the run
/// is left (by its label).
async fn run_docker(dir: &TestDir, check: Check) -> CheckReport {
    let ctx = restorecheck_core::RunContext::new();
    let work = dir.sub("work");
    let r = restorecheck_core::runner::run_check(&check, &work, 0, &ctx).await;
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(std::fs::read_dir(&work).unwrap().next().is_none(), "work dir left behind");
    assert_no_containers(&ctx.run_id).await;
    r
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

/// Copies of `app.custom` and `app.sql` cut in half (`damaged.custom`, `damaged.sql`).
fn damaged_copies(dumps: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (from, to) in [("app.custom", "damaged.custom"), ("app.sql", "damaged.sql")] {
        let bytes = std::fs::read(dumps.join(from)).unwrap();
        let p = dumps.join(to);
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        out.push(p);
    }
    out
}

/// Dumps made by PostgreSQL `major` in its image load through the docker target into a cluster
/// of that image (custom, compressed custom, plain, pg_dumpall); damaged ones FAIL in the restore
/// phase. Where this host's PostgreSQL can load them too, the local target's verdicts match.
async fn dumps_restore_in_docker_like_local(major: u32) {
    let (dir, dumps) = dumps_made_in_container(major, "docker").await;
    let local_can = major <= 15;
    for name in ["app.custom", "app.custom.zst", "app.sql", "cluster.sql"] {
        let r = run_docker(&dir, dump_check(&dumps.join(name), docker_target(IMAGE))).await;
        assert_pass(&r);
        assert_eq!(r.backup.pg_major, Some(major), "{name}");
        assert_eq!(r.recovery.mode.as_deref(), Some("logical"), "{name}");
        let version = r.recovery.server_version.as_deref().unwrap();
        assert!(version.starts_with(&format!("{major}.")), "{name}: loaded into {version}");
        assert!(
            r.notes.iter().any(|n| n.contains(&format!("restored in container image restorecheck/postgres:{major}"))),
            "{name}: {:?}",
            r.notes
        );
        if local_can {
            assert_eq!(run(&dir, dump_check(&dumps.join(name), local())).await.verdict, r.verdict, "{name}");
        }
    }
    for damaged in damaged_copies(&dumps) {
        let r = run_docker(&dir, dump_check(&damaged, docker_target(IMAGE))).await;
        assert_fail_in(&r, Phase::Restore);
        if local_can {
            let l = run(&dir, dump_check(&damaged, local())).await;
            assert_eq!((l.verdict, l.failure.map(|f| f.phase)), (r.verdict, r.failure.map(|f| f.phase)));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_13_dumps_restore_in_docker_like_local() {
    dumps_restore_in_docker_like_local(13).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_15_dumps_restore_in_docker_like_local() {
    dumps_restore_in_docker_like_local(15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_17_dumps_restore_in_docker() {
    dumps_restore_in_docker_like_local(17).await;
}

/// Tags the images of `majors` as `<repo>:<major>` (local tags, nothing pulled), removed on drop.
struct Tags(Vec<String>);

impl Tags {
    fn new(repo: &str, majors: &[u32]) -> Self {
        let tags: Vec<String> = majors.iter().map(|m| format!("{repo}:{m}")).collect();
        for (m, t) in majors.iter().zip(&tags) {
            let st = std::process::Command::new("docker")
                .args(["tag", &format!("restorecheck/postgres:{m}"), t])
                .status()
                .unwrap();
            assert!(st.success(), "docker tag {t}");
        }
        Tags(tags)
    }
}

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = std::process::Command::new("docker").args(["rmi", t]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dump_loads_in_the_oldest_newer_image_or_is_an_error_naming_the_image_to_build() {
    let (dir, dumps) = dumps_made_in_container(15, "pick").await;
    let repo = format!("restorecheck-test/pick-{}", std::process::id());
    let template = format!("{repo}:{{major}}");
    // No image of 15: the oldest newer one present (17, not 13) loads it, and the report says so.
    let tags = Tags::new(&repo, &[13, 17]);
    let r = run_docker(&dir, dump_check(&dumps.join("app.custom"), docker_target(&template))).await;
    assert_pass(&r);
    assert!(r.recovery.server_version.as_deref().unwrap().starts_with("17."), "{:?}", r.recovery);
    assert!(
        r.notes.iter().any(|n| n.contains("dump from PostgreSQL 15")
            && n.contains(&format!("newer PostgreSQL 17 of image {repo}:17"))
            && n.contains(&format!("image {repo}:15 is not present"))),
        "{:?}",
        r.notes
    );
    drop(tags);
    // Only an older one: an error (never a fail) naming the image to build.
    let _tags = Tags::new(&repo, &[13]);
    for name in ["app.custom", "app.sql"] {
        let r = run_docker(&dir, dump_check(&dumps.join(name), docker_target(&template))).await;
        assert_eq!(r.verdict, Verdict::Error, "{name}: {:?}", r.failure);
        let f = r.failure.as_ref().unwrap();
        assert_eq!(f.phase, Phase::Restore, "{f:?}");
        assert!(f.message.contains(&format!("Docker image {repo}:15 is not present on this host")), "{}", f.message);
        assert!(f.message.contains(&format!("present: {repo}:13")), "{}", f.message);
        assert!(f.message.contains("docker/build-images.sh 15") && f.message.contains("never pulls"), "{}", f.message);
    }
}
