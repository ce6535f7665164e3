//! The one error type of the core, and how errors map to verdicts and exit codes.
//!
//! An [`Error`] always means "the check could not be carried out as asked" *or* "the backup
//! proved defective before any assertion could run". [`Error::kind`] tells the two apart:
//! [`ErrorKind::BackupDefect`] turns into a `fail` verdict (exit code 1), every other kind into
//! an `error` verdict (exit code 2). A failed assertion is not an error at all: it is an
//! [`crate::assertion::Outcome`].

use std::path::PathBuf;
use std::time::Duration;

use crate::report::Phase;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in a few meaningful groups.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (unknown key, bad value, missing field).
    #[error("configuration error{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Config {
        /// What is wrong and what to write instead.
        message: String,
        /// 1-based line in the TOML file, when known.
        line: Option<usize>,
    },

    /// The tester's own tooling is missing or unusable (PostgreSQL binaries, OS user, disk).
    #[error("{what}; {hint}")]
    Tooling {
        /// What is missing.
        what: String,
        /// How to fix it.
        hint: String,
    },

    /// The backup itself is defective: truncated, incomplete, unreadable as an archive, or
    /// PostgreSQL could not recover it. This is a *failed* check, not an error of the tester.
    #[error("{message}")]
    BackupDefect {
        /// What is wrong with the backup, with file names and LSNs where known.
        message: String,
        /// The last lines of the server log, when the server was involved.
        log_tail: Option<String>,
    },

    /// A source could not list or read backups (missing path, permission denied, tool failed).
    #[error("source {source_kind}: {message}")]
    Source {
        /// The source kind (`basebackup`, …).
        source_kind: &'static str,
        /// What failed.
        message: String,
    },

    /// A target could not start or stop PostgreSQL for a reason unrelated to the backup.
    #[error("target {target_kind}: {message}")]
    Target {
        /// The target kind (`local`, …).
        target_kind: &'static str,
        /// What failed.
        message: String,
        /// The last lines of the server log, when there is one.
        log_tail: Option<String>,
    },

    /// An assertion could not be evaluated ("could not check", as opposed to "checked and wrong").
    #[error("assertion {name:?} could not be checked: {message}")]
    Assertion {
        /// The assertion's name.
        name: String,
        /// Why it could not run.
        message: String,
    },

    /// The check ran past its deadline.
    #[error("timed out after {} during the {phase} phase", humantime::format_duration(*after))]
    Timeout {
        /// The phase that was running.
        phase: Phase,
        /// The configured deadline.
        after: Duration,
    },

    /// The run was cancelled (SIGINT, SIGTERM, KeyboardInterrupt).
    #[error("cancelled during the {phase} phase")]
    Cancelled {
        /// The phase that was running.
        phase: Phase,
    },

    /// A file-system operation failed.
    #[error("{context} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        context: String,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An encrypted backup file could not be decrypted with the configured key: the key is
    /// wrong or missing. Not a backup defect (the backup may be fine), so the check *errors*.
    /// A file that decrypts with the right key but is damaged is a [`Error::BackupDefect`].
    #[error("cannot decrypt {file}: {message}; {hint}")]
    Decryption {
        /// The encrypted file or object.
        file: String,
        /// What went wrong ("the key is wrong: …").
        message: String,
        /// What to do.
        hint: String,
    },

    /// Object storage could not be listed or read (unreachable, denied, gone mid-download).
    #[error("object storage {location}: {message}")]
    Storage {
        /// The location (`s3://bucket/prefix`), never with credentials.
        location: String,
        /// What failed, after retries.
        message: String,
    },

    /// Talking to the restored PostgreSQL server failed.
    #[error("{context}: {}", pg_message(source))]
    Postgres {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// The server's own words for a database error (tokio-postgres' Display says only "db error").
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut m = format!("{} (SQLSTATE {})", d.message(), d.code().code());
            if let Some(detail) = d.detail() {
                m.push_str(&format!("; {detail}"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// Coarse classification of an [`Error`], used for verdicts, exit codes and Python exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid configuration.
    Config,
    /// Missing or unusable tooling on the testing host.
    Tooling,
    /// The backup is defective (→ verdict `fail`).
    BackupDefect,
    /// A source failed to list or read.
    Source,
    /// A target failed for reasons unrelated to the backup.
    Target,
    /// An assertion could not be evaluated.
    Assertion,
    /// The deadline passed.
    Timeout,
    /// The run was cancelled.
    Cancelled,
    /// File-system trouble on the testing host.
    Io,
    /// Talking to PostgreSQL failed.
    Postgres,
    /// An encrypted backup could not be decrypted with the configured key.
    Decryption,
    /// Object storage could not be read.
    Storage,
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Tooling { .. } => ErrorKind::Tooling,
            Error::BackupDefect { .. } => ErrorKind::BackupDefect,
            Error::Source { .. } => ErrorKind::Source,
            Error::Target { .. } => ErrorKind::Target,
            Error::Assertion { .. } => ErrorKind::Assertion,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::Io { .. } => ErrorKind::Io,
            Error::Postgres { .. } => ErrorKind::Postgres,
            Error::Decryption { .. } => ErrorKind::Decryption,
            Error::Storage { .. } => ErrorKind::Storage,
        }
    }

    /// True when this error proves the backup bad (the check *fails*) rather than showing that
    /// the tester could not do its job (the check *errors*).
    pub fn is_backup_defect(&self) -> bool {
        self.kind() == ErrorKind::BackupDefect
    }

    /// The server log tail attached to this error, if any.
    pub fn log_tail(&self) -> Option<&str> {
        match self {
            Error::BackupDefect { log_tail, .. } | Error::Target { log_tail, .. } => log_tail.as_deref(),
            _ => None,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(context: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), path: path.into(), source }
    }

    /// Shorthand for an [`Error::BackupDefect`] without a log tail.
    pub fn defect(message: impl Into<String>) -> Self {
        Error::BackupDefect { message: message.into(), log_tail: None }
    }

    /// A bug in restorecheck or a plugin breaking a trait's contract (exit code 2).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::config(format!("internal: {}", message.into()))
    }

    /// A configuration error (no line).
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into(), line: None }
    }

    /// `what` needs the Cargo feature `feature` of restorecheck-core, which this build lacks:
    /// "object storage (s3://b/p) needs restorecheck-core's `object-storage` feature; this build
    /// has it off". A configuration error: the same file works with a full build.
    #[cfg(not(all(
        feature = "object-storage",
        feature = "encryption",
        feature = "docker",
        feature = "notify",
        feature = "history"
    )))]
    pub(crate) fn feature_off(feature: &str, what: impl std::fmt::Display) -> Self {
        Error::config(feature_off_message(feature, what))
    }

    /// Shorthand for an [`Error::Postgres`].
    pub fn postgres(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Postgres { context: context.into(), source }
    }
}

/// The process exit code for a finished run: 0 all passed, 1 a check failed, 2 could not run.
///
/// This is the single place that maps outcomes to exit codes; the CLI and the Python binding use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every check passed.
    Success = 0,
    /// At least one check failed: a backup or its data is bad.
    Failure = 1,
    /// The run could not be carried out (usage, configuration, tooling, cancellation).
    Error = 2,
}

impl ExitStatus {
    /// The numeric exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<&Error> for ExitStatus {
    fn from(e: &Error) -> Self {
        if e.is_backup_defect() {
            ExitStatus::Failure
        } else {
            ExitStatus::Error
        }
    }
}

/// The text of [`Error::feature_off`], for callers that report a `String` (notifications).
#[cfg(not(all(
    feature = "object-storage",
    feature = "encryption",
    feature = "docker",
    feature = "notify",
    feature = "history"
)))]
pub(crate) fn feature_off_message(feature: &str, what: impl std::fmt::Display) -> String {
    format!("{what} needs restorecheck-core's `{feature}` feature; this build has it off")
}
