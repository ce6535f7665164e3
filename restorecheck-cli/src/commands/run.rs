//! `restorecheck run`.

use std::io::Write as _;
use std::path::Path;

use restorecheck_core::fleet::{self, Results, Shard};
use restorecheck_core::history::{self, History, Row};
use restorecheck_core::outputs::write_atomic;
use restorecheck_core::{runner, ExitStatus, Report, RunOptions};

use crate::cli::{RunArgs, RunFormat};
use crate::evidence::{self, Signer};

pub async fn run(args: RunArgs, quiet: bool) -> ExitStatus {
    let config = match super::load(&args.config) {
        Ok(c) => c,
        Err(st) => return st,
    };
    // Everything that can be refused is refused before any restore starts.
    let shard = match args.shard.as_deref().map(|s| Shard::parse(s, std::env::var(fleet::INDEX_ENV).ok().as_deref())) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return super::report_error(&e),
    };
    let results = match results_target(args.results.as_deref(), args.run_key) {
        Ok(r) => r,
        Err(st) => return st,
    };
    let signer = match load_signer(args.sign_key.as_deref(), args.output.is_some() || results.is_some()) {
        Ok(s) => s,
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
    if let Some(s) = shard {
        let all = checks.len();
        checks.retain(|c| s.contains(&c.name));
        if checks.is_empty() {
            eprintln!(
                "note: shard {}/{} holds none of the {all} checks selected (FNV-1a of the name mod {}); nothing to run, the shard passes",
                s.index, s.count, s.count
            );
        } else {
            tracing::info!("shard {}/{}: {} of {all} checks", s.index, s.count, checks.len());
        }
    }
    if let Some(b) = &args.backup {
        if checks.len() != 1 {
            eprintln!("error: --backup needs exactly one check; add --check NAME");
            return ExitStatus::Error;
        }
        checks[0].backup = Some(b.clone());
    }
    let path = if args.no_history { None } else { args.history.or(config.history).or_else(history::default_path) };
    load_tested(&mut checks, path.as_deref());
    let opts = RunOptions { work_root: args.work_dir.or(config.work_dir) };
    let mut ctx = super::context(quiet);
    if let Some((_, key)) = &results {
        ctx = ctx.with_run_key(key.clone());
    }
    let mut report = runner::run_parallel(&checks, &opts, &ctx, usize::from(args.jobs)).await;
    let mode = args.output_mode;
    let rto = checks.iter().filter_map(|c| Some((c.name.clone(), c.rto?))).collect();
    let earlier = record(&mut report, path, &rto, mode);
    report.signed_by = signer.as_ref().map(Signer::fingerprint);
    let outputs = Outputs {
        format: args.format,
        output: args.output.as_deref(),
        metrics: args.metrics_file.as_deref(),
        mode,
        signer: signer.as_ref(),
    };
    let mut status = deliver(&report, &outputs, &earlier);
    if let Some((results, key)) = &results {
        let name = shard.map_or_else(|| fleet::ALL.to_string(), |s| s.name());
        if publish(&report, results, key, &name, &outputs).await.is_err() {
            status = ExitStatus::Error;
        }
    }
    push(&report, args.pushgateway, args.pushgateway_env, args.metrics_file.as_deref()).await;
    notify(&config.notify, &report).await;
    status
}

/// Hands each check that rotates or judges coverage what the history says was tested. Without
/// a history (or with `--no-history`) every backup counts as never tested, and the check says so.
fn load_tested(checks: &mut [runner::Check], path: Option<&std::path::Path>) {
    if !checks.iter().any(runner::Check::needs_listing) {
        return;
    }
    let store = match path.filter(|p| p.exists()).map(History::open) {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            eprintln!("warning: {}; backup = \"rotate\" and coverage treat every backup as never tested", e.chain());
            None
        }
        None => None,
    };
    for c in checks.iter_mut().filter(|c| c.needs_listing()) {
        let rows = store.as_ref().map(|h| h.query(Some(&c.name), usize::MAX)).transpose();
        match rows {
            Ok(Some(rows)) => {
                *c = c.clone().tested(restorecheck_core::coverage::TestedBackups::from_rows(&rows));
            }
            Ok(None) => eprintln!(
                "note: check {:?}: no history, so backup = \"rotate\" and coverage count every backup as never tested",
                c.name
            ),
            Err(e) => eprintln!("warning: check {:?}: {}; every backup counts as never tested", c.name, e.chain()),
        }
    }
}

/// Opens `--results` and checks the run key (default: today's UTC date).
pub(super) fn results_target(
    location: Option<&str>,
    run_key: Option<String>,
) -> Result<Option<(Results, String)>, ExitStatus> {
    let Some(location) = location else { return Ok(None) };
    let key = run_key.unwrap_or_else(fleet::default_run_key);
    fleet::check_run_key(&key).map_err(|e| super::report_error(&e))?;
    let results = Results::open(location).map_err(|e| super::report_error(&e))?;
    Ok(Some((results, key)))
}

/// Loads `--sign-key`, which needs a file to sign (`has_file`).
pub(super) fn load_signer(path: Option<&Path>, has_file: bool) -> Result<Option<Signer>, ExitStatus> {
    let Some(path) = path else { return Ok(None) };
    if !has_file {
        eprintln!("error: --sign-key signs a file: add --output FILE (or --results LOCATION)");
        return Err(ExitStatus::Error);
    }
    match Signer::load(path) {
        Ok(s) => Ok(Some(s)),
        Err(m) => {
            eprintln!("error: {m}");
            Err(ExitStatus::Error)
        }
    }
}

/// Writes the JSON report (and its signature) to `<results>/<key>/<name>.json`.
async fn publish(report: &Report, results: &Results, key: &str, name: &str, out: &Outputs<'_>) -> Result<(), ()> {
    let file = format!("{name}.json");
    let bytes = format!("{}\n", report.to_json()).into_bytes();
    let mut files = vec![(file.clone(), bytes)];
    if let Some(s) = out.signer {
        let sig = s.sign(&files[0].1).to_vec();
        files.push((format!("{file}.sig"), sig));
    }
    for (f, bytes) in files {
        if let Err(e) = results.write(key, &f, &bytes, out.mode).await {
            eprintln!("error: cannot write the report to {}: {}", results.display_of(key, &f), e.chain());
            return Err(());
        }
    }
    tracing::info!("report written to {}", results.display_of(key, &file));
    Ok(())
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

/// Where and how a report goes out (shared by `run` and `report`).
pub(super) struct Outputs<'a> {
    /// The format of the report.
    pub format: RunFormat,
    /// The report file (else stdout).
    pub output: Option<&'a Path>,
    /// The Prometheus textfile.
    pub metrics: Option<&'a Path>,
    /// Mode of the files written.
    pub mode: u32,
    /// Signs the report file (`FILE.sig`).
    pub signer: Option<&'a Signer>,
}

/// Writes the report (stdout or `output`, plus `output`.sig when signing) and the metrics file; the report's exit status, or
/// `Error` when an output could not be written (a lost result must not look like a pass).
pub(super) fn deliver(report: &Report, out: &Outputs<'_>, history: &[Row]) -> ExitStatus {
    let mode = out.mode;
    let mut status = report.exit_status();
    let mut write_failed = |what: &str, path: &Path, e: std::io::Error| {
        eprintln!("error: cannot write the {what} to {}: {e}", path.display());
        status = ExitStatus::Error;
    };
    if let Some(path) = out.metrics {
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
    let text = match out.format {
        RunFormat::Text => report.to_text(),
        RunFormat::Json => format!("{}\n", report.to_json()),
        RunFormat::Junit => report.to_junit(),
        RunFormat::Html => restorecheck_core::render::html::render(report, history),
    };
    match out.output {
        Some(path) => {
            if let Err(e) = write_atomic(path, text.as_bytes(), mode) {
                write_failed("report", path, e);
            } else if let Some(s) = out.signer {
                let sig = evidence::sig_path(path);
                if let Err(e) = write_atomic(&sig, &s.sign(text.as_bytes()), mode) {
                    write_failed("signature", &sig, e);
                }
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
                eprintln!("error: cannot write the report to stdout: {e}");
                status = ExitStatus::Error;
            }
        }
    }
    status
}
