//! Real pg_dump output in every format, restored into a fresh cluster by the `local` target;
//! damaged dumps fail in the restore phase.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::sources::{PgDumpConfig, PgDumpSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

fn dump_check(path: &Path, no_owner: bool) -> Check {
    let source = PgDumpSource::new(PgDumpConfig::new(path.to_path_buf()).no_owner(no_owner));
    Check::new("dump", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", 250))
}

/// A cluster whose `registrations` table (250 rows) is owned by a role the fresh cluster lacks.
async fn source_cluster(dir: &TestDir) -> restorecheck_core::fixture::SampleCluster {
    let c = cluster(dir, 250).await;
    c.exec("postgres", "create role appowner").await.unwrap();
    c.exec("app", "alter table registrations owner to appowner; create index on registrations (created_at)")
        .await
        .unwrap();
    c
}

async fn pg_dump(c: &restorecheck_core::fixture::SampleCluster, name: &str, opts: &[&str]) -> PathBuf {
    let out = c.backups_dir().join(name);
    let mut args = client_args(c);
    args.extend(opts.iter().map(|s| s.to_string()));
    args.extend(["-f".into(), out.display().to_string(), "app".into()]);
    c.tool("pg_dump", &args).await.unwrap();
    out
}

fn assert_pass(r: &CheckReport) {
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.recovery.mode.as_deref(), Some("logical"));
}

fn assert_fail_in_restore(r: &CheckReport) {
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.failure);
    assert_eq!(r.failure.as_ref().unwrap().phase, Phase::Restore, "{:?}", r.failure);
}

#[tokio::test]
async fn every_dump_format_restores_and_missing_roles_are_created() {
    let dir = TestDir::new("dump-formats");
    let c = source_cluster(&dir).await;
    for (name, opts) in [
        ("app.custom", vec!["-Fc"]),
        ("app.dir", vec!["-Fd", "-j", "2"]),
        ("app.tar", vec!["-Ft"]),
        ("app.sql", vec!["-Fp"]),
    ] {
        let p = pg_dump(&c, name, &opts).await;
        let r = run(&dir, dump_check(&p, false)).await;
        assert_pass(&r);
        assert!(r.notes.iter().any(|n| n.contains("appowner")), "{name}: {:?}", r.notes);
    }
}

#[tokio::test]
async fn whole_file_compressed_dumps_restore_and_no_owner_skips_roles() {
    let dir = TestDir::new("dump-compressed");
    let c = source_cluster(&dir).await;
    let plain = pg_dump(&c, "app.sql", &["-Fp"]).await;
    let custom = pg_dump(&c, "app.custom", &["-Fc"]).await;
    let sh = |cmd: String| assert!(std::process::Command::new("sh").arg("-c").arg(cmd).status().unwrap().success());
    let out = dir.sub("compressed");
    sh(format!("gzip -c {} > {}/app.sql.gz", plain.display(), out.display()));
    sh(format!("zstd -q -c {} > {}/app.custom.zst", custom.display(), out.display()));
    for f in ["app.sql.gz", "app.custom.zst"] {
        let r = run(&dir, dump_check(&out.join(f), false)).await;
        assert_pass(&r);
    }
    let r = run(&dir, dump_check(&custom, true)).await;
    assert_pass(&r);
    assert!(!r.notes.iter().any(|n| n.contains("created roles")), "{:?}", r.notes);
}

#[tokio::test]
async fn truncated_custom_dump_fails_although_its_table_of_contents_reads() {
    let dir = TestDir::new("dump-truncated");
    let c = source_cluster(&dir).await;
    c.add_rows(20000).await.unwrap();
    let p = pg_dump(&c, "app.custom", &["-Fc", "-Z0"]).await;
    let broken = dir.sub("broken").join("app.custom");
    std::fs::copy(&p, &broken).unwrap();
    let len = std::fs::metadata(&broken).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&broken).unwrap().set_len(len * 2 / 3).unwrap();
    // `pg_restore -l` still accepts it: only a full read catches it.
    let st = std::process::Command::new("pg_restore").arg("-l").arg(&broken).output().unwrap();
    assert!(st.status.success());
    let r = run(&dir, dump_check(&broken, false)).await;
    assert_fail_in_restore(&r);
}

#[tokio::test]
async fn directory_dump_with_a_missing_data_file_fails() {
    let dir = TestDir::new("dump-dir-missing");
    let c = source_cluster(&dir).await;
    let p = pg_dump(&c, "app.dir", &["-Fd"]).await;
    let broken = dir.sub("broken").join("app.dir");
    copy(&p, &broken);
    let data: Vec<PathBuf> = std::fs::read_dir(&broken)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".dat.gz"))
        .collect();
    assert!(!data.is_empty());
    for f in data {
        std::fs::remove_file(f).unwrap();
    }
    let r = run(&dir, dump_check(&broken, false)).await;
    assert_fail_in_restore(&r);
}

#[tokio::test]
async fn plain_dump_cut_at_a_statement_boundary_fails() {
    let dir = TestDir::new("dump-plain-cut");
    let c = source_cluster(&dir).await;
    let p = pg_dump(&c, "app.sql", &["-Fp"]).await;
    let text = std::fs::read_to_string(&p).unwrap();
    let cut = text.find("-- PostgreSQL database dump complete").unwrap();
    let broken = dir.sub("broken").join("app.sql");
    std::fs::write(&broken, &text[..cut]).unwrap();
    let r = run(&dir, dump_check(&broken, false)).await;
    assert_fail_in_restore(&r);
    assert!(r.failure.unwrap().message.contains("truncated"));
}

#[tokio::test]
async fn empty_dump_table_fails_the_assertion() {
    let dir = TestDir::new("dump-empty");
    let c = cluster(&dir, 0).await;
    let p = pg_dump(&c, "app.custom", &["-Fc"]).await;
    let r = run(&dir, dump_check(&p, false)).await;
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.failure.unwrap().phase, Phase::Assert);
}

#[tokio::test]
async fn a_globals_file_runs_first_and_its_roles_own_the_objects() {
    let dir = TestDir::new("dump-globals");
    let c = source_cluster(&dir).await;
    let p = pg_dump(&c, "app.custom", &["-Fc"]).await;
    let globals = c.backups_dir().join("globals.sql");
    let args: Vec<String> = [
        "-h",
        &c.socket_dir().display().to_string(),
        "-p",
        &c.port().to_string(),
        "-U",
        "postgres",
        "--globals-only",
        "-f",
        &globals.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.tool("pg_dumpall", &args).await.unwrap();
    let source = PgDumpSource::new(PgDumpConfig::new(p).globals(globals));
    let ch = Check::new("dump", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
        .database("app")
        .assert(sql_eq("select count(*) from registrations", 250))
        .assert(sql_eq(
            "select count(*) from pg_tables where tablename = 'registrations' and tableowner = 'appowner'",
            1,
        ));
    let r = run(&dir, ch).await;
    assert_pass(&r);
    assert!(r.notes.iter().any(|n| n.contains("ran globals file")), "{:?}", r.notes);
    assert!(!r.notes.iter().any(|n| n.contains("created roles")), "roles came from the globals file: {:?}", r.notes);
}
