//! Dumps made by other PostgreSQL majors than the host's: by the PostgreSQL 13 and 17 binaries
//! inside the images `docker/build-images.sh` builds (`restorecheck/postgres:{13,17}`), restored
//! on this host (PostgreSQL 15 only). An older dump loads with the newer binaries and says so;
//! a newer one is an *error* (exit 2) naming the major to install, never a *fail*.

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

/// Makes, inside the image of `major`, a cluster with database `app` (120 registrations) and
/// dumps it as `app.custom`, `app.sql`, `app.custom.zst` and (pg_dumpall) `cluster.sql` into
/// `<dir>/dumps`.
async fn dumps_made_in_container(major: u32) -> (TestDir, PathBuf) {
    let dir = TestDir::new(&format!("dump-major{major}"));
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
    let (dir, dumps) = dumps_made_in_container(13).await;
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
    let (dir, dumps) = dumps_made_in_container(17).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn postgres_17_dump_on_the_docker_target_is_refused_clearly() {
    let (dir, dumps) = dumps_made_in_container(17).await;
    let target = DockerTarget::new(DockerTargetConfig::default().image(IMAGE)).unwrap();
    let r = run(&dir, dump_check(&dumps.join("app.custom"), Arc::new(target))).await;
    // The docker target does not load logical dumps yet (issue 15): its capabilities say so,
    // and the runner refuses the pair before anything is listed or fetched: an error, never a fail.
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.failure);
    let failure = r.failure.as_ref().unwrap();
    assert_eq!(failure.phase, restorecheck_core::Phase::Select);
    assert!(
        failure.message.contains("target docker cannot restore logical dumps (source pg_dump)"),
        "{}",
        failure.message
    );
    assert_eq!(r.backup.id, None, "nothing was selected");
    assert_eq!(r.timings.fetch, None, "nothing was fetched");
}
