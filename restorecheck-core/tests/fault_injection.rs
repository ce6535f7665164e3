//! The fault-injection suite: good backups of every kind, then copies damaged in many distinct
//! ways (see `restorecheck_core::selftest`), each with the verdict and phase it must produce.
//! Good backups must PASS (no false alarms); every damaged one must be caught where it should
//! be. Prints a table case → expected → observed and fails on any mismatch.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use restorecheck_core::selftest::{self, SelftestOptions};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::RunContext;

#[tokio::test(flavor = "multi_thread")]
async fn every_good_backup_passes_and_every_damaged_one_is_caught() {
    let dir = TestDir::new("faults");
    let opts = SelftestOptions {
        root: dir.path().join("selftest"),
        full: true,
        target: Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    };
    let results = selftest::run(&opts, &RunContext::new()).await.unwrap();
    let table = selftest::table(&results);
    println!("\n{table}");
    assert!(results.len() >= 20, "{table}");
    assert!(results.iter().filter(|r| r.case.starts_with("good")).count() >= 4);
    let bad: Vec<_> = results.iter().filter(|r| !r.ok).map(|r| format!("{}: {:?}", r.case, r.message)).collect();
    assert!(bad.is_empty(), "cases that did not end as they must:\n{}\n{table}", bad.join("\n"));
    assert_no_server_under(dir.path());
}
