//! `restorecheck run`.

use restorecheck_core::{runner, ExitStatus, RunOptions};

use crate::cli::RunArgs;

pub async fn run(args: RunArgs, quiet: bool) -> ExitStatus {
    let config = match super::load(&args.common.config) {
        Ok(c) => c,
        Err(st) => return st,
    };
    let mut checks = config.checks;
    if !args.checks.is_empty() {
        for wanted in &args.checks {
            if !checks.iter().any(|c| &c.name == wanted) {
                eprintln!(
                    "error: no check named {wanted:?} in {}; checks: {}",
                    args.common.config.display(),
                    checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                );
                return ExitStatus::Error;
            }
        }
        checks.retain(|c| args.checks.contains(&c.name));
    }
    if let Some(b) = &args.backup {
        if checks.len() != 1 {
            eprintln!("error: --backup needs exactly one check; add --check NAME");
            return ExitStatus::Error;
        }
        checks[0].backup = Some(b.clone());
    }
    let opts = RunOptions { work_root: args.work_dir.or(config.work_dir) };
    let ctx = super::context(quiet);
    let report = runner::run(&checks, &opts, &ctx).await;
    super::print_report(&report, args.common.format)
}
