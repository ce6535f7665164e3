//! Source `wale` against the REAL WAL-E 1.1.1 (installed by scripts/setup.sh into
//! /opt/restorecheck/wal-e; `RESTORECHECK_WALE` points elsewhere) with `file://` storage.
//!
//! WAL-E cannot take an online backup of PostgreSQL 15 (it calls the removed exclusive
//! `pg_start_backup`), so every backup here is `backup-push --while-offline` of the stopped
//! sample cluster, whose WAL the real `wal-e wal-push` archives before and after.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::sources::{WaleConfig, WaleSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{BackupSource, Check};

fn wale_bin() -> PathBuf {
    let p = std::env::var_os("RESTORECHECK_WALE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/restorecheck/wal-e/bin/wal-e"));
    assert!(p.is_file(), "WAL-E is not installed at {} (scripts/setup.sh installs it)", p.display());
    p
}

/// A sample cluster archiving with the real `wal-e wal-push` into `store`, backed up offline by
/// the real `wal-e backup-push --while-offline`, running again afterwards.
struct Fixture {
    dir: TestDir,
    c: SampleCluster,
    store: PathBuf,
    envdir: PathBuf,
}

async fn fixture(name: &str, rows: u32, with_tablespace: bool) -> Fixture {
    let wale = wale_bin();
    let dir = TestDir::new(name);
    let store = dir.sub("store");
    let envdir = dir.sub("wale.env");
    std::fs::write(envdir.join("WALE_FILE_PREFIX"), format!("file://localhost{}\n", store.display())).unwrap();
    std::fs::write(envdir.join("WALE_LOG_DESTINATION"), "stderr\n").unwrap();
    // Written by the sample cluster's archive_command, as its OS user.
    let owner = restorecheck_core::postgres::user::OsUser::resolve(None).unwrap().name;
    let st = std::process::Command::new("chown").arg("-R").arg(&owner).arg(&store).status().unwrap();
    assert!(st.success());
    let opts = SampleOptions {
        extra_conf: vec![format!("archive_command = 'envdir {} {} wal-push %p'", envdir.display(), wale.display())],
        ..Default::default()
    };
    let mut c = SampleCluster::create(&dir.path().join("cluster"), opts).await.expect("sample cluster");
    c.create_app(rows).await.unwrap();
    if with_tablespace {
        let ts = dir.sub("ts-original");
        c.os_user().chown_tree(&ts).unwrap();
        c.exec("app", &format!("create tablespace extra location '{}'", ts.display())).await.unwrap();
        c.exec("app", "create table far (x int) tablespace extra; insert into far select generate_series(1, 77);")
            .await
            .unwrap();
    }
    switch_and_push(&c, &store).await;
    c.stop().await.unwrap();
    let mut cmd = tokio::process::Command::new("envdir");
    cmd.arg(&envdir).arg(&wale).args(["backup-push", "--while-offline"]).arg(c.pgdata());
    c.os_user().apply(&mut cmd);
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "backup-push failed: {}", String::from_utf8_lossy(&out.stderr));
    c.start().await.unwrap();
    Fixture { dir, c, store, envdir }
}

/// Switches WAL and waits (bounded) until WAL-E has pushed the finished segment.
async fn switch_and_push(c: &SampleCluster, store: &Path) -> String {
    let client = c.client("postgres").await.unwrap();
    let seg: String = client.query_one("select pg_walfile_name(pg_switch_wal())", &[]).await.unwrap().get(0);
    let pushed = store.join("wal_005").join(format!("{seg}.lzo"));
    let until = Instant::now() + Duration::from_secs(60);
    while !pushed.exists() {
        assert!(Instant::now() < until, "wal-e wal-push did not push {seg} within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seg
}

fn wale_check(f: &Fixture, extra: &str) -> Check {
    let cfg: WaleConfig =
        toml::from_str(&format!("binary = \"{}\"\nenvdir = \"{}\"\n{extra}", wale_bin().display(), f.envdir.display()))
            .unwrap();
    Check::new(
        "wale",
        Arc::new(WaleSource::new(cfg)),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    )
    .database("app")
    .timeout(Duration::from_secs(120))
}

fn assert_fail_in(r: &CheckReport, phase: Phase) {
    assert_eq!(r.verdict, Verdict::Fail, "expected FAIL, got {:?} {:?}", r.verdict, r.failure);
    assert_eq!(r.failure.as_ref().map(|f| f.phase), Some(phase), "{:?}", r.failure);
}

/// Adds rows and pushes a segment, `n` times; returns the pushed segments.
async fn later_writes(f: &Fixture, n: usize, rows: u32) -> Vec<String> {
    let mut segs = Vec::new();
    for _ in 0..n {
        f.c.add_rows(rows).await.unwrap();
        segs.push(switch_and_push(&f.c, &f.store).await);
    }
    segs
}

#[tokio::test]
async fn real_wale_offline_backup_with_later_writes_passes() {
    let f = fixture("wale-good", 30, false).await;
    later_writes(&f, 2, 6).await;
    // wal-e runs through the check's toolbox, with the envdir's variables handed over to it;
    // the storage is what a container would mount, the envdir (restorecheck reads it) is not.
    let cfg: WaleConfig =
        toml::from_str(&format!("binary = \"{}\"\nenvdir = \"{}\"\n", wale_bin().display(), f.envdir.display()))
            .unwrap();
    let src = WaleSource::new(cfg);
    let ro = src.read_only_paths();
    assert!(ro.contains(&f.store) && !ro.iter().any(|p| f.envdir.starts_with(p)), "{ro:?}");
    let tools = RecordingTools::new();
    assert_eq!(src.list(&RecordingTools::context(&tools)).await.unwrap().len(), 1);
    let prepared = tools.prepared();
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    assert_eq!(prepared[0].0, std::path::absolute(wale_bin()).unwrap());
    for k in ["WALE_FILE_PREFIX", "WALE_LOG_DESTINATION", "WALE_RETRIES"] {
        assert!(prepared[0].1.iter().any(|e| e == k), "{k} not in {prepared:?}");
    }
    let r = run(&f.dir, wale_check(&f, "").assert(sql_eq("select count(*) from registrations", 42))).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    assert!(r.backup.id.as_deref().unwrap().starts_with("base_"), "{:?}", r.backup.id);
    assert!(
        r.recovery.expected_end.iter().any(|e| e.reason.contains("wal_005 continues to segment")),
        "{:?}",
        r.recovery.expected_end
    );
}

#[tokio::test]
async fn real_wale_missing_wal_segment_mid_archive_fails_in_recovery() {
    let f = fixture("wale-gap", 10, false).await;
    let segs = later_writes(&f, 3, 10).await;
    std::fs::remove_file(f.store.join("wal_005").join(format!("{}.lzo", segs[1]))).unwrap();
    let r = run(&f.dir, wale_check(&f, "").assert(sql_eq("select count(*) from registrations", 40))).await;
    assert_fail_in(&r, Phase::Recovery);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("recovery stopped at") && msg.contains(&segs[2]), "{msg}");
    assert!(r.assertions.is_empty(), "no assertion may run on a short recovery");
}

#[tokio::test]
async fn real_wale_corrupt_wal_segment_stops_recovery_instead_of_passing_with_old_data() {
    let f = fixture("wale-corrupt-wal", 10, false).await;
    let segs = later_writes(&f, 3, 10).await;
    // A damaged object: wal-fetch exits 1 like for "not found"; the wrapper must not say so.
    let victim = f.store.join("wal_005").join(format!("{}.lzo", segs[1]));
    std::fs::OpenOptions::new().write(true).open(&victim).unwrap().set_len(300).unwrap();
    let r = run(&f.dir, wale_check(&f, "").assert(sql_eq("select count(*) from registrations", 40))).await;
    assert_ne!(r.verdict, Verdict::Pass, "a damaged WAL segment must never pass");
    assert_eq!(r.failure.as_ref().map(|f| f.phase), Some(Phase::Recovery), "{:?}", r.failure);
    let log = r.failure.unwrap().log_tail.unwrap_or_default();
    assert!(log.contains("failed with exit code 1; stopping recovery"), "{log}");
}

#[tokio::test]
async fn real_wale_truncated_base_backup_fails_in_fetch() {
    let f = fixture("wale-truncated", 10, false).await;
    let parts = f.store.join("basebackups_005");
    let base = std::fs::read_dir(&parts).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    let part = base.join("tar_partitions/part_00000000.tar.lzo");
    let len = std::fs::metadata(&part).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&part).unwrap().set_len(len / 3).unwrap();
    // WALE_RETRIES: WAL-E retries a damaged file with exponential backoff; keep the test short.
    let r = run(&f.dir, wale_check(&f, "env = { WALE_RETRIES = \"2\" }")).await;
    assert_fail_in(&r, Phase::Fetch);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("damaged or incomplete"), "{msg}");
}

#[tokio::test]
async fn real_wale_tablespace_is_restored_into_the_work_dir_not_its_original_path() {
    let mut f = fixture("wale-ts", 5, true).await;
    f.c.add_rows(1).await.unwrap();
    switch_and_push(&f.c, &f.store).await;
    f.c.stop().await.unwrap();
    let ts = f.dir.path().join("ts-original");
    let before = tree_listing(&ts);
    let work = f.dir.path().join("work");
    let r = run(
        &f.dir,
        wale_check(&f, "")
            .assert(sql_eq("select count(*) from far", 77))
            .assert(sql_eq("select count(*) from registrations", 6))
            .assert(sql_eq(
                &format!(
                    "select count(*) from pg_tablespace where spcname = 'extra' and pg_tablespace_location(oid) like '{}/%'",
                    work.display()
                ),
                1,
            )),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?} {:?}", r.failure, r.assertions);
    assert_eq!(tree_listing(&ts), before, "the original tablespace folder was changed by the restore");
}

/// Every path under `root` with its size and modification time.
fn tree_listing(root: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}
