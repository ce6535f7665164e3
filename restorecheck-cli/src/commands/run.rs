//! `restorecheck run`.

use std::io::Write as _;
use std::path::Path;

use restorecheck_core::history::{self, History, Row};
use restorecheck_core::outputs::write_atomic;
use restorecheck_core::{runner, ExitStatus, Report, RunOptions};

use crate::cli::{RunArgs, RunFormat};

pub async fn run(args: RunArgs, quiet: bool) -> ExitStatus {
    let config = match super::load(&args.config) {
        Ok(c) => c,
        Err(st) => return st,
    };
    let mut checks = config.checks;
    if !args.checks.is_empty() {
        for wanted in &args.checks {
            if !checks.iter().any(|c| &c.name == wanted) {
                eprintln!(
                    "error: no check named {wanted:?} in {}; checks: {}",
                    args.config.display(),
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
    let mut report = runner::run_parallel(&checks, &opts, &ctx, usize::from(args.jobs)).await;
    let path = if args.no_history { None } else { args.history.or(config.history).or_else(history::default_path) };
    let mode = args.output_mode;
    let rto = checks.iter().filter_map(|c| Some((c.name.clone(), c.rto?))).collect();
    let earlier = record(&mut report, path, &rto, mode);
    let status = deliver(&report, args.format, args.output.as_deref(), args.metrics_file.as_deref(), &earlier, mode);
    push(&report, args.pushgateway, args.pushgateway_env, args.metrics_file.as_deref()).await;
    notify(&config.notify, &report).await;
    status
}

/// Earlier history rows kept per check for the RTO trend and the HTML charts.
const HISTORY_ROWS: usize = 100;

/// Adds the RTO trend warnings (over the earlier runs in the history at `path`) and
/// appends the run there. Returns the earlier rows. History problems are warnings: they never
/// change the verdict.
fn record(
    report: &mut Report,
    path: Option<std::path::PathBuf>,
    rto: &std::collections::BTreeMap<String, std::time::Duration>,
    mode: u32,
) -> Vec<Row> {
    let mut store = path.and_then(|p| match History::open_with_mode(&p, mode) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("warning: {}; this run is not recorded in the history", e.chain());
            None
        }
    });
    let mut earlier = Vec::new();
    if let Some(h) = &store {
        for c in &report.checks {
            match h.query(Some(&c.name), HISTORY_ROWS) {
                Ok(rows) => earlier.extend(rows),
                Err(e) => eprintln!("warning: {}", e.chain()),
            }
        }
    }
    restorecheck_core::rto::trend(report, rto, &earlier);
    if let Some(h) = &mut store {
        if let Err(e) = h.append(report) {
            eprintln!("warning: {}; this run is not recorded in the history", e.chain());
        }
    }
    earlier
}

/// Sends notifications and the heartbeat once the report is out. Failures are warnings on
/// stderr (their messages never hold secrets) and never change the exit code.
async fn notify(config: &restorecheck_core::notify::NotifyConfig, report: &Report) {
    use restorecheck_core::notify::NotifyStatus;
    for o in restorecheck_core::notify::deliver(config, report).await {
        match o.status {
            NotifyStatus::Failed(m) => eprintln!("warning: notification {}: {m}", o.target),
            NotifyStatus::Sent => tracing::info!("notification {}: sent", o.target),
            NotifyStatus::Skipped(why) => tracing::debug!("notification {}: skipped ({why})", o.target),
        }
    }
}

/// Writes the report (stdout or `output`) and the metrics file; the report's exit status, or
/// `Error` when an output could not be written (a lost result must not look like a pass).
/// Pushes the metrics to a Pushgateway, when asked. A failed push is a warning: it never turns
/// a result into another. The previous `last_success` comes from the metrics file, if any.
async fn push(report: &Report, url: Option<String>, url_env: Option<String>, metrics: Option<&Path>) {
    let url = match (url, url_env) {
        (Some(u), _) => u,
        (None, Some(var)) => match std::env::var(&var) {
            Ok(u) => u,
            Err(_) => {
                eprintln!("warning: --pushgateway-env {var}: the variable is not set; metrics not pushed");
                return;
            }
        },
        (None, None) => return,
    };
    let previous = metrics.and_then(|p| restorecheck_core::outputs::read_nofollow(p).ok());
    let body = report.to_prometheus(previous.as_deref());
    if let Err(e) = restorecheck_core::notify::push_metrics(restorecheck_core::notify::Secret::new(url), body).await {
        eprintln!("warning: {e}");
    }
}

fn deliver(
    report: &Report,
    format: RunFormat,
    output: Option<&Path>,
    metrics: Option<&Path>,
    history: &[Row],
    mode: u32,
) -> ExitStatus {
    let mut status = report.exit_status();
    let mut write_failed = |what: &str, path: &Path, e: std::io::Error| {
        eprintln!("error: cannot write the {what} to {}: {e}", path.display());
        status = ExitStatus::Error;
    };
    if let Some(path) = metrics {
        let previous = match restorecheck_core::outputs::read_nofollow(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                eprintln!("warning: cannot read the previous metrics file {}: {e}", path.display());
                None
            }
        };
        if let Err(e) = write_atomic(path, report.to_prometheus(previous.as_deref()).as_bytes(), mode) {
            write_failed("metrics", path, e);
        }
    }
    let text = match format {
        RunFormat::Text => report.to_text(),
        RunFormat::Json => format!("{}\n", report.to_json()),
        RunFormat::Junit => report.to_junit(),
        RunFormat::Html => restorecheck_core::render::html::render(report, history),
    };
    match output {
        Some(path) => {
            if let Err(e) = write_atomic(path, text.as_bytes(), mode) {
                write_failed("report", path, e);
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                eprintln!("error: cannot write the report to stdout: {e}");
                status = ExitStatus::Error;
            }
        }
    }
    status
}
