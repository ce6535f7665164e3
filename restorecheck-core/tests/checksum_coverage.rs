//! The offline page checksum verification does not read again what amcheck read in full
//! through the server (which verified those checksums as it read them), and a bad page in such
//! a relation is still caught: amcheck fails it through the server, and a relation whose check
//! failed is not counted as read, so the offline verification reads it too.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use restorecheck_core::assertions::{AmcheckAssertion, ReadAllAssertion};
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{CheckReport, Verdict};

fn assertion<'a>(r: &'a CheckReport, name: &str) -> &'a restorecheck_core::report::AssertionReport {
    r.assertions.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no {name} result in {r:?}"))
}

fn observed(r: &CheckReport, name: &str) -> serde_json::Value {
    serde_json::to_value(assertion(r, name)).unwrap()["observed"].clone()
}

/// A checksummed sample cluster (after `prepare` ran on it; it removes its folder, backups
/// included, when dropped) and a plain backup of it: the cluster, the backup and the file of
/// table `registrations`. No writes during the backup: no full-page
/// image in its WAL repairs the damage [`damaged`] makes.
async fn backed_up(dir: &TestDir, prepare: &[&str]) -> (SampleCluster, std::path::PathBuf, String) {
    let c = SampleCluster::create(&dir.path().join("cluster"), SampleOptions { checksums: true, ..Default::default() })
        .await
        .unwrap();
    c.create_app(2000).await.unwrap();
    for sql in prepare {
        c.exec("postgres", sql).await.unwrap();
    }
    let heap: String = c
        .client("app")
        .await
        .unwrap()
        .query_one("select pg_catalog.pg_relation_filepath('registrations')", &[])
        .await
        .unwrap()
        .get(0);
    let good = c.basebackup("good", &["-Fp", "-Xstream"]).await.unwrap();
    (c, good, heap)
}

/// A copy of `good` with one bad page in `heap` (and no manifest, so nothing catches it
/// before the server reads it).
fn damaged(dir: &TestDir, good: &std::path::Path, heap: &str) -> std::path::PathBuf {
    let bad = dir.sub("damaged").join("bad");
    copy(good, &bad);
    std::fs::remove_file(bad.join("backup_manifest")).unwrap();
    let file = bad.join(heap);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8000] ^= 0x10;
    std::fs::write(&file, bytes).unwrap();
    bad
}

fn amcheck() -> AmcheckAssertion {
    AmcheckAssertion { heapallindexed: false, jobs: 1, sample: None }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_page_in_a_relation_amcheck_reads_fails_and_the_checksums_skip_only_what_amcheck_read_cleanly() {
    let dir = TestDir::new("checksum-coverage");
    let (_cluster, good, heap) = backed_up(&dir, &[]).await;
    let r = run(&dir, check(&good, None).assert(amcheck())).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    let sums = observed(&r, "checksums");
    let skipped = sums["skipped"]["files"].as_u64().unwrap();
    assert!(skipped > 0, "{sums}");
    assert_eq!(sums["skipped"]["covered_by"]["amcheck"].as_u64(), Some(skipped), "{sums}");
    assert!(sums["blocks_scanned"].as_u64().unwrap() > 0, "{sums}");
    assert_eq!(sums["bad_checksums"].as_u64(), Some(0), "{sums}");

    // One bad page in the table amcheck reads.
    let bad = damaged(&dir, &good, &heap);
    let r = run(&dir, check(&bad, None).assert(amcheck())).await;
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.failure);
    let am = assertion(&r, "amcheck");
    assert_eq!(am.verdict, Verdict::Fail, "{am:?}");
    assert!(am.message.as_deref().unwrap_or("").contains("registrations"), "{am:?}");
    // Its check failed, so it is not counted as read: the offline verification reads it.
    let sums_report = assertion(&r, "checksums");
    assert_eq!(sums_report.verdict, Verdict::Fail, "{sums_report:?}");
    assert!(sums_report.message.as_deref().unwrap_or("").contains(&format!("\"{heap}\", block 0")), "{sums_report:?}");
    let sums = observed(&r, "checksums");
    assert_eq!(sums["skipped"]["files"].as_u64(), Some(skipped - 1), "{sums}");
    assert_eq!(sums["bad_checksums"].as_u64(), Some(1), "{sums}");

    // read_all's sequential scans count too; the damaged table's failed read does not.
    let r = run(&dir, check(&bad, None).assert(ReadAllAssertion::default())).await;
    assert_eq!(assertion(&r, "read_all").verdict, Verdict::Fail, "{r:?}");
    assert_eq!(assertion(&r, "checksums").verdict, Verdict::Fail, "{r:?}");
    let sums = observed(&r, "checksums");
    let by_read_all = sums["skipped"]["covered_by"]["read_all"].as_u64().unwrap_or(0);
    assert!(by_read_all > 0 && sums["skipped"]["covered_by"]["amcheck"].is_null(), "{sums}");
}

/// A restored database that turns checksum failures into warnings (`ALTER DATABASE … SET
/// ignore_checksum_failure = on`, and `zero_damaged_pages`) beats the server's command line, but
/// not restorecheck's own sessions: amcheck FAILs on the bad page's checksum through the server
/// (without them it saw a zeroed page, or the damaged bytes), and its clean reads of that
/// database count as checksum-verified.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_ignores_checksum_failures_cannot_hide_a_bad_page_from_amcheck() {
    let dir = TestDir::new("checksum-hostile-db");
    let (_cluster, good, heap) = backed_up(
        &dir,
        &["alter database app set ignore_checksum_failure = on", "alter database app set zero_damaged_pages = on"],
    )
    .await;
    // The user's own sessions do get the database's settings.
    let r = run(
        &dir,
        check(&good, None)
            .assert(amcheck())
            .assert(sql_eq("select (current_setting('zero_damaged_pages') = 'on')::int", 1)),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    let sums = observed(&r, "checksums");
    assert!(sums["skipped"]["covered_by"]["amcheck"].as_u64().unwrap_or(0) > 0, "{sums}");

    let bad = damaged(&dir, &good, &heap);
    let r = run(&dir, check(&bad, None).assert(amcheck())).await;
    let am = assertion(&r, "amcheck");
    assert_eq!(am.verdict, Verdict::Fail, "{am:?}");
    // The checksum failure itself, not what a zeroed or accepted page happens to look like.
    let msg = am.message.as_deref().unwrap_or("");
    assert!(msg.contains("registrations") && msg.contains("invalid page in block 0"), "{am:?}");
}
