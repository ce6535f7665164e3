//! `restorecheck`: daily proof that PostgreSQL backups restore.

mod cli;
mod commands;
mod evidence;
mod progress;

use clap::Parser;
use restorecheck_core::ExitStatus;

fn main() {
    let args = cli::Cli::parse();
    init_logging(args.verbose, args.quiet);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(ExitStatus::Error.code());
        }
    };
    let status = rt.block_on(commands::dispatch(args));
    log_peak_rss();
    // Drop the runtime before exiting so background tasks end cleanly.
    drop(rt);
    std::process::exit(status.code());
}

/// Logs this process's own peak memory (RUSAGE_SELF excludes the PostgreSQL children, which
/// external tools such as `/usr/bin/time` count in).
fn log_peak_rss() {
    if let Ok(u) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        tracing::info!("peak RSS of restorecheck itself: {:.1} MB", u.max_rss() as f64 / 1024.0);
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESTORECHECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
