//! `restorecheck report`: merge the shard reports of one run into one report.

use restorecheck_core::{fleet, ExitStatus};

use super::run::{deliver, load_signer, results_target, Outputs};
use crate::cli::ReportArgs;

pub async fn run(args: ReportArgs) -> ExitStatus {
    let configured = match &args.config {
        Some(path) => match super::load(path) {
            Ok(c) => Some(c.checks.into_iter().map(|c| c.name).collect::<Vec<_>>()),
            Err(st) => return st,
        },
        None => None,
    };
    let (results, key) = match results_target(Some(&args.results), args.run_key) {
        Ok(Some(r)) => r,
        Ok(None) => return ExitStatus::Error,
        Err(st) => return st,
    };
    let signer = match load_signer(args.sign_key.as_deref(), args.output.is_some()) {
        Ok(s) => s,
        Err(st) => return st,
    };
    let names = match results.list(&key).await {
        Ok(n) => n,
        Err(e) => return super::report_error(&e),
    };
    if names.is_empty() {
        eprintln!("warning: no reports under {}; the merged verdict is error", results.display_of(&key, ""));
    }
    let mut reports = Vec::new();
    let mut unreadable = Vec::new();
    for name in names {
        match results.read(&key, &name).await {
            Ok(r) => reports.push((name, r)),
            Err(e) => {
                eprintln!("warning: {}; counted as missing", e.chain());
                unreadable.push(name);
            }
        }
    }
    let mut report = fleet::merge(&key, reports, &unreadable, configured.as_deref());
    report.signed_by = signer.as_ref().map(|s| s.fingerprint());
    let outputs = Outputs {
        format: args.format,
        output: args.output.as_deref(),
        metrics: None,
        mode: args.output_mode,
        signer: signer.as_ref(),
    };
    deliver(&report, &outputs, &[])
}
