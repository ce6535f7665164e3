//! `restorecheck validate`: the same parsing path as `run`, plus a tooling check; restores nothing.

use restorecheck_core::{ExitStatus, RunContext};

use crate::cli::ConfigArgs;

pub async fn run(args: ConfigArgs) -> ExitStatus {
    let config = match super::load(&args.config) {
        Ok(c) => c,
        Err(st) => return st,
    };
    let ctx = RunContext::new();
    let mut worst = ExitStatus::Success;
    for check in &config.checks {
        let mut problems = Vec::new();
        let backups = check.source.list(&ctx).await;
        let major = match &backups {
            // A dump loads into its own major or a newer one: check only that some binaries exist.
            Ok(b) => b
                .first()
                .filter(|b| !restorecheck_core::sources::pg_dump::is_dump_kind(&b.kind))
                .and_then(|b| b.pg_major),
            Err(e) => {
                problems.push(e.chain());
                None
            }
        };
        if let Err(e) = check.target.preflight(major).await {
            problems.push(e.chain());
        }
        if problems.is_empty() {
            let n = backups.as_ref().map(|b| b.len()).unwrap_or(0);
            println!(
                "ok    {}: source {} ({n} backups), target {}, {} assertions",
                check.name,
                check.source.describe(),
                check.target.kind(),
                check.assertions.len()
            );
        } else {
            worst = ExitStatus::Error;
            println!("error {}:", check.name);
            for p in problems {
                println!("      {p}");
            }
        }
    }
    worst
}
