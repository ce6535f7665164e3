//! The README's library example, compiled in CI and run against a real backup by the Python
//! suite's three-way test (`restorecheck-py/tests/test_three_ways.py`): one check composed in
//! Rust with the same settings struct ([`CheckSpec`]) the TOML parser and the Python binding fill.
//!
//! ```text
//! cargo run -p restorecheck-examples --example library -- /backups/base [--wal /backups/wal] [--rto 1h] [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use restorecheck_core::assertions::SqlAssertion;
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{run, Assertion, CheckSpec, Report, RunContext, RunOptions};

// The README quotes this function as it reads best, one builder step a line: not rustfmt's layout.
#[rustfmt::skip]
// README: begin
/// Restores the newest base backup in `backups` (replaying `wal` when given) into a throwaway
/// local server and checks that `registrations` has rows, that the backup is younger than 26
/// hours and that the whole restore took less than `rto`; amcheck and the checksum check run
/// by default, as for a `[[check]]` table.
async fn check_app_backup(backups: PathBuf, wal: Option<PathBuf>, rto: Duration) -> restorecheck_core::Result<Report> {
    let mut source = BaseBackupConfig::default().path(backups);
    if let Some(wal) = wal {
        source = source.wal_archive(wal);
    }
    let target = LocalTarget::new(LocalTargetConfig::default())?;
    let assertions: Vec<Arc<dyn Assertion>> =
        vec![Arc::new(SqlAssertion::min("select count(1) from registrations", 1.0))];
    let check = CheckSpec::new("app")
        .database("app")
        .max_backup_age(Duration::from_secs(26 * 3600))
        .rto(rto)
        .build(Arc::new(BaseBackupSource::new(source)), Arc::new(target), assertions)?;
    Ok(run(&[check], &RunOptions::default(), &RunContext::new()).await)
}
// README: end

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut backups, mut wal, mut rto, mut json) = (None, None, Duration::from_secs(3600), false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--wal" => wal = args.next().map(PathBuf::from),
            "--rto" => match args.next().as_deref().map(humantime::parse_duration) {
                Some(Ok(d)) => rto = d,
                _ => return usage("--rto needs a duration such as 1h or 90s"),
            },
            "--json" => json = true,
            _ if backups.is_none() && !a.starts_with("--") => backups = Some(PathBuf::from(a)),
            _ => return usage(&format!("unexpected argument {a:?}")),
        }
    }
    let Some(backups) = backups else { return usage("the backup folder is missing") };
    match check_app_backup(backups, wal, rto).await {
        Ok(report) => {
            print!("{}", if json { report.to_json() } else { report.to_text() });
            ExitCode::from(report.exit_status().code() as u8)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\nusage: library BACKUP_FOLDER [--wal WAL_ARCHIVE] [--rto DURATION] [--json]");
    ExitCode::from(2)
}
