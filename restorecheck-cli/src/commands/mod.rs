//! One file per subcommand; this file dispatches and holds what they share.

mod demo;
mod history;
mod init;
mod list;
mod report;
mod run;
mod selftest;
mod validate;
mod verify_report;

use std::sync::Arc;

use restorecheck_core::{Config, Error, ExitStatus, Report, RunContext};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, Format};
use crate::progress::StderrProgress;

/// Runs the chosen command and returns the exit status.
pub async fn dispatch(cli: Cli) -> ExitStatus {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run(a) => run::run(a, quiet).await,
        Command::List(a) => list::run(a).await,
        Command::Validate(a) => validate::run(a).await,
        Command::Init(a) => init::run(a),
        Command::Demo(a) => demo::run(a, quiet).await,
        Command::Selftest(a) => selftest::run(a, quiet).await,
        Command::History(a) if a.coverage => history::coverage(a).await,
        Command::History(a) => history::run(a),
        Command::Report(a) => report::run(a).await,
        Command::VerifyReport(a) => verify_report::run(a),
    }
}

/// Prints an error the uv way: `error: <message>` (for tooling problems the hint is in the
/// text), then one `  Caused by: <cause>` line per underlying error, each once.
pub fn report_error(e: &Error) -> ExitStatus {
    eprintln!("error: {e}");
    for cause in e.causes() {
        eprintln!("  Caused by: {}", cause.text);
    }
    ExitStatus::from(e)
}

/// Loads the config or says exactly what is wrong.
pub fn load(path: &std::path::Path) -> Result<Config, ExitStatus> {
    Config::load(path).map_err(|e| {
        let st = report_error(&e);
        if !path.exists() {
            eprintln!("hint: `restorecheck init -o {}` writes an annotated example", path.display());
        }
        st
    })
}

/// A run context whose token is cancelled on SIGINT or SIGTERM.
pub fn context(quiet: bool) -> RunContext {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        eprintln!("restorecheck: received {name}; stopping the restored server and removing the work dir");
        c.cancel();
    });
    RunContext::new().with_cancel(cancel).with_progress(Arc::new(StderrProgress::new(quiet)))
}

/// Prints a report in the chosen format and returns its exit status.
pub fn print_report(report: &Report, format: Format) -> ExitStatus {
    match format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!("{}", report.to_json()),
    }
    report.exit_status()
}
