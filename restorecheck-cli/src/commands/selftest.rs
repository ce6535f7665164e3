//! `restorecheck selftest`: restore good and deliberately damaged sample backups through your
//! own PostgreSQL binaries and target, and show that each damage is caught where it must be.

use std::sync::Arc;

use restorecheck_core::selftest::{self, SelftestOptions};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{ExitStatus, RunOptions};

use crate::cli::{Format, SelftestArgs};

pub async fn run(args: SelftestArgs, quiet: bool) -> ExitStatus {
    let (target, work_dir) = match &args.config {
        Some(path) => match super::load(path) {
            Ok(c) => match c.checks.first() {
                Some(ch) => (ch.target.clone(), args.work_dir.clone().or(c.work_dir.clone())),
                None => return ExitStatus::Error,
            },
            Err(st) => return st,
        },
        None => match LocalTarget::new(LocalTargetConfig::default()) {
            Ok(t) => (Arc::new(t) as Arc<dyn restorecheck_core::RestoreTarget>, args.work_dir.clone()),
            Err(e) => return super::report_error(&e),
        },
    };
    let root =
        RunOptions { work_root: work_dir }.work_root().join(format!("restorecheck-selftest-{}", std::process::id()));
    if !quiet {
        eprintln!(
            "selftest: making sample backups and {} damaged copies in {}; restoring each through target {}",
            if args.full { "every kind of" } else { "a few" },
            root.display(),
            target.kind()
        );
    }
    let opts = SelftestOptions { root: root.clone(), full: args.full, target };
    let ctx = super::context(quiet);
    let result = selftest::run(&opts, &ctx).await;
    let _ = std::fs::remove_dir_all(&root);
    match result {
        Ok(results) => {
            match args.format {
                Format::Text => print!("{}", selftest::table(&results)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&results).unwrap_or_default()),
            }
            if results.iter().all(|r| r.ok) {
                ExitStatus::Success
            } else {
                ExitStatus::Failure
            }
        }
        Err(e) => super::report_error(&e),
    }
}
