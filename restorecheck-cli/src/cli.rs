//! Command-line types (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Prove PostgreSQL backups can be restored: restore the newest backup into a throwaway
/// server, wait until recovery really finished, run assertions, report, clean up.
#[derive(Debug, Parser)]
#[command(name = "restorecheck", version, about)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RESTORECHECK_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every [[check]] in the config. Exit 0 all passed, 1 a check failed, 2 could not run.
    Run(RunArgs),
    /// List the backups each check's source sees, newest first.
    List(ConfigArgs),
    /// Parse and check the config and the tooling; restores nothing.
    Validate(ConfigArgs),
    /// Write an annotated restorecheck.toml to start from.
    Init(InitArgs),
    /// Build a sample database, back it up with pg_basebackup, restore-test it, clean up.
    Demo(DemoArgs),
    /// Prove the restore tests catch damage: restore good and deliberately broken sample
    /// backups through your own PostgreSQL binaries and target, and print the table.
    Selftest(SelftestArgs),
}

/// Options of `selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Use the target of the first check in this config (default: local).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Run every case (about a minute) instead of a quick subset.
    #[arg(long)]
    pub full: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Folder for the sample clusters and work directories.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// For people (and cron mails).
    Text,
    /// The versioned JSON report.
    Json,
}

/// `-c FILE` and `--format`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "restorecheck.toml")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Formats of the `run` report.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum RunFormat {
    /// For people (and cron mails).
    Text,
    /// The versioned JSON report.
    Json,
    /// JUnit XML: a test suite per check, a test case per phase and assertion.
    Junit,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "restorecheck.toml")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
    /// Write the report to FILE (atomically, by rename) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write a Prometheus textfile (node_exporter textfile collector) to PATH, atomically.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Only run the named check (repeatable).
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Test this backup id instead of the newest (with one check).
    #[arg(long)]
    pub backup: Option<String>,
    /// Folder for work directories (overrides work_dir in the config).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Options of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write.
    #[arg(short, long, default_value = "restorecheck.toml")]
    pub output: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Folder for the sample cluster and work directories (default: TMPDIR or /var/tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}
