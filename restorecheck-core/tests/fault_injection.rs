//! The fault-injection suite: good backups of every kind, then copies damaged in many distinct
//! ways, each with the verdict and phase it must produce. Good backups must PASS (no false
//! alarms); every damaged one must be caught where it should be. Prints a table
//! case → expected → observed and fails on any mismatch.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use restorecheck_core::assertions::{AmcheckAssertion, ReadAllAssertion, SqlAssertion};
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::sources::{PgDumpConfig, PgDumpSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

const ROWS: i64 = 2000;

struct Case {
    name: &'static str,
    check: Check,
    verdict: Verdict,
    phase: Option<Phase>,
}

fn integrity(ch: Check) -> Check {
    ch.assert(AmcheckAssertion { heapallindexed: true })
        .assert(ReadAllAssertion)
        .assert(SqlAssertion::min("select count(*) from registrations", 1.0))
        .assert(SqlAssertion::max_age(
            "select max(created_at) from registrations",
            std::time::Duration::from_secs(3600),
        ))
}

fn physical(path: &Path, archive: Option<&Path>) -> Check {
    integrity(check(path, archive))
}

fn no_manifest_check(path: &Path) -> Check {
    let mut c = physical(path, None);
    c.verify_manifest = false;
    c
}

fn dump(path: &Path) -> Check {
    let source = PgDumpSource::new(PgDumpConfig {
        path: path.into(),
        backup: None,
        database: None,
        globals: None,
        no_owner: false,
        jobs: None,
    });
    integrity(
        Check::new("dump", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
            .database("app"),
    )
}

fn flip_byte(file: &Path, offset: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x10]).unwrap();
}

fn truncate(file: &Path, keep: f64) {
    let len = std::fs::metadata(file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len((len as f64 * keep) as u64).unwrap();
}

/// A damaged copy of a folder (or file) under `dir/damaged/<name>`.
fn damaged_copy(dir: &TestDir, name: &str, original: &Path) -> PathBuf {
    let to = dir.sub("damaged").join(name);
    copy(original, &to);
    to
}

async fn pg_dump(c: &SampleCluster, name: &str, format: &str) -> PathBuf {
    let out = c.backups_dir().join(name);
    let args: Vec<String> = [
        "-h",
        &c.socket_dir().display().to_string(),
        "-p",
        &c.port().to_string(),
        "-U",
        "postgres",
        format,
        "-f",
        &out.display().to_string(),
        "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.tool("pg_dump", &args).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_good_backup_passes_and_every_damaged_one_is_caught() {
    let dir = TestDir::new("faults");
    let c = SampleCluster::create(&dir.path().join("cluster"), SampleOptions { checksums: true, ..Default::default() })
        .await
        .unwrap();
    c.create_app(ROWS as u32).await.unwrap();
    let cl = c.client("app").await.unwrap();
    let heap: String = cl.query_one("select pg_relation_filepath('registrations')", &[]).await.unwrap().get(0);
    let index: String = cl.query_one("select pg_relation_filepath('registrations_pkey')", &[]).await.unwrap().get(0);

    // Good backups: plain with its own WAL (no writes during it, so no full-page images
    // repair injected damage), tar.gz without WAL plus an archive with later writes, dumps.
    let plain = c.basebackup("plain", &["-Fp", "-Xstream"]).await.unwrap();
    let targz = c.basebackup("targz", &["-Ft", "-z", "-Xnone"]).await.unwrap();
    let mut later = Vec::new();
    for _ in 0..3 {
        c.add_rows(100).await.unwrap();
        later.push(c.switch_and_archive().await.unwrap());
    }
    let custom = pg_dump(&c, "app.custom", "-Fc").await;
    let dirdump = pg_dump(&c, "app.dir", "-Fd").await;
    let archive = c.archive_dir();
    let targz_only = dir.sub("targz-only");
    copy(&targz, &targz_only.join("targz"));

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name, check, verdict, phase| cases.push(Case { name, check, verdict, phase });
    add("good: plain, WAL streamed", physical(&plain, None), Verdict::Pass, None);
    add("good: tar.gz + WAL archive", physical(&targz_only, Some(&archive)), Verdict::Pass, None);
    add("good: custom dump", dump(&custom), Verdict::Pass, None);
    add("good: directory dump", dump(&dirdump), Verdict::Pass, None);

    // WAL archive damage.
    let out = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(targz.join("base.tar.gz"))
        .arg("backup_label")
        .output()
        .unwrap();
    let targz_first = start_segment(&String::from_utf8_lossy(&out.stdout));
    let a = damaged_copy(&dir, "wal-no-first", &archive);
    std::fs::remove_file(a.join(&targz_first)).unwrap();
    add(
        "missing WAL segment before consistency",
        physical(&targz_only, Some(&a)),
        Verdict::Fail,
        Some(Phase::Recovery),
    );
    let a = damaged_copy(&dir, "wal-gap", &archive);
    std::fs::remove_file(a.join(&later[1])).unwrap();
    add("missing WAL segment after consistency", physical(&targz_only, Some(&a)), Verdict::Fail, Some(Phase::Recovery));
    let a = damaged_copy(&dir, "wal-truncated", &archive);
    truncate(&a.join(&later[1]), 0.5);
    add("truncated WAL segment", physical(&targz_only, Some(&a)), Verdict::Fail, Some(Phase::Recovery));
    let a = damaged_copy(&dir, "wal-timeline", &archive);
    std::fs::write(a.join("00000002.history"), "1\t0/1000000\tno recovery target specified\n").unwrap();
    add("wrong timeline history", physical(&targz_only, Some(&a)), Verdict::Fail, Some(Phase::Recovery));

    // Archive-file damage.
    let b = damaged_copy(&dir, "tar-truncated", &targz_only);
    truncate(&b.join("targz/base.tar.gz"), 0.6);
    add("truncated tar", physical(&b, Some(&archive)), Verdict::Fail, Some(Phase::Fetch));
    let b = damaged_copy(&dir, "gzip-corrupt", &targz_only);
    let gz = b.join("targz/base.tar.gz");
    let len = std::fs::metadata(&gz).unwrap().len();
    for k in 1..8 {
        flip_byte(&gz, len * k / 10);
    }
    add("corrupted gzip stream", physical(&b, Some(&archive)), Verdict::Fail, Some(Phase::Fetch));

    // Data-file damage in a plain backup: caught by the manifest before start, and — with the
    // manifest check off — by amcheck / reading every page after recovery.
    let b = damaged_copy(&dir, "rel-deleted", &plain);
    std::fs::remove_file(b.join(&heap)).unwrap();
    add("deleted relation file", physical(&b, None), Verdict::Fail, Some(Phase::Fetch));
    let b = damaged_copy(&dir, "rel-deleted-nomanifest", &plain);
    std::fs::remove_file(b.join(&heap)).unwrap();
    add("deleted relation file, manifest check off", no_manifest_check(&b), Verdict::Fail, Some(Phase::Assert));
    let b = damaged_copy(&dir, "heap-bit", &plain);
    flip_byte(&b.join(&heap), 8000);
    add("flipped bit in a heap page", physical(&b, None), Verdict::Fail, Some(Phase::Fetch));
    let b = damaged_copy(&dir, "heap-bit-nomanifest", &plain);
    flip_byte(&b.join(&heap), 8000);
    add("flipped bit in a heap page, manifest check off", no_manifest_check(&b), Verdict::Fail, Some(Phase::Assert));
    let b = damaged_copy(&dir, "index-bit-nomanifest", &plain);
    flip_byte(&b.join(&index), 8192 + 4000);
    add("flipped bit in an index page, manifest check off", no_manifest_check(&b), Verdict::Fail, Some(Phase::Assert));
    let b = damaged_copy(&dir, "no-label", &plain);
    std::fs::remove_file(b.join("backup_label")).unwrap();
    add("removed backup_label", physical(&b, None), Verdict::Fail, Some(Phase::Fetch));
    let b = damaged_copy(&dir, "altered", &plain);
    std::fs::write(b.join("postgresql.conf"), "# changed after the backup\n").unwrap();
    add("file altered after the backup (manifest)", physical(&b, None), Verdict::Fail, Some(Phase::Fetch));

    // Dump damage.
    let d = damaged_copy(&dir, "custom-truncated", &custom);
    truncate(&d, 0.7);
    add("truncated custom dump", dump(&d), Verdict::Fail, Some(Phase::Restore));
    let d = damaged_copy(&dir, "dir-missing-data", &dirdump);
    for e in std::fs::read_dir(&d).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".dat.gz") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    add("missing data file in a directory dump", dump(&d), Verdict::Fail, Some(Phase::Restore));

    // Data that restores fine but is wrong for the application.
    let empty = SampleCluster::create(&dir.path().join("empty-cluster"), SampleOptions::default()).await.unwrap();
    empty.create_app(0).await.unwrap();
    empty.basebackup("b", &["-Ft", "-Xstream"]).await.unwrap();
    add("empty application table", physical(&empty.backups_dir(), None), Verdict::Fail, Some(Phase::Assert));
    let stale = SampleCluster::create(&dir.path().join("stale-cluster"), SampleOptions::default()).await.unwrap();
    stale.create_app(5).await.unwrap();
    stale.exec("app", "update registrations set created_at = now() - interval '2 days'").await.unwrap();
    stale.basebackup("b", &["-Ft", "-Xstream"]).await.unwrap();
    add("stale data", physical(&stale.backups_dir(), None), Verdict::Fail, Some(Phase::Assert));

    let mut rows = Vec::new();
    let mut mismatches = 0;
    for case in cases {
        let r: CheckReport = run(&dir, case.check).await;
        let phase = r.failure.as_ref().map(|f| f.phase);
        let ok = r.verdict == case.verdict && phase == case.phase;
        if !ok {
            mismatches += 1;
        }
        let show = |v: Verdict, p: Option<Phase>| match p {
            Some(p) => format!("{v} in {p}"),
            None => v.to_string(),
        };
        let why = r.failure.as_ref().map(|f| f.message.chars().take(90).collect::<String>()).unwrap_or_default();
        rows.push(format!(
            "{:<50} {:<18} {:<18} {} {}",
            case.name,
            show(case.verdict, case.phase),
            show(r.verdict, phase),
            if ok { "ok " } else { "MISMATCH" },
            why
        ));
    }
    println!("\n{:<50} {:<18} {:<18}", "case", "expected", "observed");
    for r in &rows {
        println!("{r}");
    }
    assert_eq!(mismatches, 0, "{mismatches} cases did not end as they must:\n{}", rows.join("\n"));
}
