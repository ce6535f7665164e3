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
    /// Show past runs from the history file: verdict, backup age, time per phase, assertion values.
    History(HistoryArgs),
    /// Merge the shard reports of one run (`run --shard … --results …`) into one report.
    /// Exit 0 all passed, 1 a check failed, 2 a shard or a configured check is missing.
    Report(ReportArgs),
    /// Check a report's Ed25519 signature (FILE.sig). Exit 0 valid, 1 invalid, 2 could not check.
    VerifyReport(VerifyReportArgs),
}

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Where the shards wrote their reports (`run --results`): a folder, s3://, gs:// or az://.
    #[arg(long, value_name = "LOCATION")]
    pub results: String,
    /// The run to merge (default: today's UTC date, as `run` uses).
    #[arg(long, value_name = "KEY")]
    pub run_key: Option<String>,
    /// The config the shards ran: every check in it that no shard reported makes the verdict error.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
    /// Write the merged report to FILE (atomically, by rename) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// File mode (octal) of the files written (default 0600).
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_output_mode)]
    pub output_mode: u32,
    /// Sign the --output file with this Ed25519 private key (PKCS#8 PEM): writes FILE.sig.
    #[arg(long, value_name = "FILE", requires = "output")]
    pub sign_key: Option<PathBuf>,
}

/// Options of `verify-report`.
#[derive(Debug, Args)]
pub struct VerifyReportArgs {
    /// The report file (any format) whose signature to check.
    pub file: PathBuf,
    /// The signer's Ed25519 public key (PEM, `openssl pkey -pubout`).
    #[arg(long, value_name = "PEM")]
    pub public_key: PathBuf,
    /// The signature file (default: FILE.sig).
    #[arg(long, value_name = "SIG")]
    pub signature: Option<PathBuf>,
}

/// Formats of `history`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum HistoryFormat {
    /// A table for people.
    Text,
    /// A JSON array of runs, oldest first.
    Json,
}

/// Options of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this check.
    #[arg(long)]
    pub check: Option<String>,
    /// Show the newest N check results.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Text)]
    pub format: HistoryFormat,
    /// History file (default: `history` in the config given with -c, else
    /// $XDG_STATE_HOME/restorecheck/history.sqlite or ~/.local/state/restorecheck/history.sqlite).
    #[arg(long, value_name = "PATH")]
    pub history: Option<PathBuf>,
    /// Read the `history = "…"` key of this config.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Per check of the config (-c), every backup its source lists now, with when it was last
    /// restore-tested and the verdict ("never" when it was not): what `coverage = "7d"` judges.
    #[arg(long, requires = "config")]
    pub coverage: bool,
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
    /// One self-contained HTML file: the report plus charts of restore time and backup age
    /// over the history (inline SVG, no external assets).
    Html,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "restorecheck.toml")]
    pub config: PathBuf,
    /// Also push the metrics to this Prometheus Pushgateway (base URL; credentials in it are
    /// never shown). Prefer --pushgateway-env to keep it out of the process list.
    #[arg(long)]
    pub pushgateway: Option<String>,
    /// Read the Pushgateway URL from this environment variable.
    #[arg(long, conflicts_with = "pushgateway")]
    pub pushgateway_env: Option<String>,
    /// Run up to N checks at the same time (each with its own work dir and server).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
    /// Write the report to FILE (atomically, by rename) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write a Prometheus textfile (node_exporter textfile collector) to PATH, atomically.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// File mode (octal) of the report, metrics and history files restorecheck creates
    /// (default 0600: owner only). E.g. 0640 for a node_exporter in the file's group.
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_output_mode)]
    pub output_mode: u32,
    /// Only run the named check (repeatable).
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Test this backup id instead of the newest (with one check).
    #[arg(long)]
    pub backup: Option<String>,
    /// Folder for work directories (overrides work_dir in the config).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Append this run to the history file PATH (overrides `history` in the config).
    #[arg(long, value_name = "PATH", conflicts_with = "no_history")]
    pub history: Option<PathBuf>,
    /// Do not read or write the run history (no RTO trend, charts show this run only).
    #[arg(long)]
    pub no_history: bool,
    /// Run only shard I of N: the checks whose name hashes (FNV-1a 64, mod N) to I.
    /// `auto/N` takes I from JOB_COMPLETION_INDEX (set in each pod of a Kubernetes Indexed Job).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Also write the JSON report to LOCATION/<run key>/<shard-I-of-N|all>.json, atomically
    /// (a folder, s3://, gs:// or az://; `restorecheck report` merges them).
    #[arg(long, value_name = "LOCATION")]
    pub results: Option<String>,
    /// The run the shards share in --results (default: today's UTC date, YYYY-MM-DD).
    #[arg(long, value_name = "KEY", requires = "results")]
    pub run_key: Option<String>,
    /// Sign the --output file and the --results report with this Ed25519 private key
    /// (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`): writes FILE.sig next to each.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
}

fn parse_output_mode(s: &str) -> Result<u32, String> {
    restorecheck_core::outputs::parse_mode(s).map_err(|e| e.chain())
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
