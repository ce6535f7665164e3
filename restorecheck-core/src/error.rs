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

/// The underlying cause an [`Error`] may carry: any error of a library or of the OS.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

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
        /// The underlying error (an unreadable file, a parser's complaint), when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// The tester's own tooling is missing or unusable (PostgreSQL binaries, OS user, disk).
    #[error("{what}; {hint}")]
    Tooling {
        /// What is missing.
        what: String,
        /// How to fix it.
        hint: String,
        /// The underlying error (the OS's reason a program could not start, …).
        #[source]
        source: Option<Cause>,
    },

    /// The backup itself is defective: truncated, incomplete, unreadable as an archive, or
    /// PostgreSQL could not recover it. This is a *failed* check, not an error of the tester.
    #[error("{message}")]
    BackupDefect {
        /// What is wrong with the backup, with file names and LSNs where known.
        message: String,
        /// The last lines of the server log, when the server was involved.
        log_tail: Option<String>,
        /// The underlying error (the decompressor's or parser's complaint), when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// A source could not list or read backups (missing path, permission denied, tool failed).
    #[error("source {source_kind}: {message}")]
    Source {
        /// The source kind (`basebackup`, …).
        source_kind: &'static str,
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Cause>,
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
        /// The underlying error, when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// An assertion could not be evaluated ("could not check", as opposed to "checked and wrong").
    #[error("assertion {name:?} could not be checked: {message}")]
    Assertion {
        /// The assertion's name.
        name: String,
        /// Why it could not run.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Cause>,
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
    #[error("{context} ({})", path.display())]
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
        /// The underlying error (the decryptor's complaint), when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// Object storage could not be listed or read (unreachable, denied, gone mid-download).
    #[error("object storage {location}: {message}")]
    Storage {
        /// The location (`s3://bucket/prefix`), never with credentials.
        location: String,
        /// What failed, after retries.
        message: String,
        /// The underlying error (the object store's last answer), when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// Talking to the restored PostgreSQL server failed. The server's message (with its
    /// SQLSTATE) is the cause: [`Error::chain`] shows it as [`pg_message`] words it.
    #[error("{context}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A bug of restorecheck itself: a state the code believed impossible. Not a backup defect,
    /// so the check *errors*; please report it.
    #[error("internal error: {message}")]
    Internal {
        /// What was found in an impossible state.
        message: String,
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
    /// A bug of restorecheck itself.
    Internal,
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
            Error::Internal { .. } => ErrorKind::Internal,
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
        Error::BackupDefect { message: message.into(), log_tail: None, source: None }
    }

    /// A configuration error (no line).
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into(), line: None, source: None }
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

    /// Shorthand for an [`Error::Source`] without a cause.
    pub fn source_error(source_kind: &'static str, message: impl Into<String>) -> Self {
        Error::Source { source_kind, message: message.into(), source: None }
    }

    /// Shorthand for an [`Error::Tooling`] without a cause.
    pub fn tooling(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Tooling { what: what.into(), hint: hint.into(), source: None }
    }

    /// Shorthand for an [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal { message: message.into() }
    }

    /// This error with `cause` as its underlying error ([`std::error::Error::source`]).
    ///
    /// The variants with an optional cause (`Config`, `Tooling`, `BackupDefect`, `Source`,
    /// `Target`, `Assertion`, `Decryption`, `Storage`) take it; `Io` and `Postgres` always
    /// have their own and the others have none, so for them this returns the error unchanged.
    pub fn with_source(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            Error::Config { source, .. }
            | Error::Tooling { source, .. }
            | Error::BackupDefect { source, .. }
            | Error::Source { source, .. }
            | Error::Target { source, .. }
            | Error::Assertion { source, .. }
            | Error::Decryption { source, .. }
            | Error::Storage { source, .. } => *source = Some(cause.into()),
            Error::Timeout { .. } | Error::Cancelled { .. } | Error::Io { .. } | Error::Postgres { .. } => {}
            Error::Internal { .. } => {}
        }
        self
    }

    /// The causes of this error, outermost first, each once and each on one line.
    ///
    /// Many libraries print their own cause in their message (`tokio-postgres`, `ureq`,
    /// `object_store`); a cause whose text the previous link already ends with is not repeated.
    /// A PostgreSQL error is worded by [`pg_message`] (the server's message and SQLSTATE).
    pub fn causes(&self) -> Vec<CauseText<'_>> {
        let mut out = Vec::new();
        let mut prev = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
                // Its own Display says "db error"; its source repeats what pg_message says.
                let text = one_line(&pg_message(pg));
                if !prev.ends_with(&text) {
                    out.push(CauseText { text, error: cause });
                }
                break;
            }
            let text = one_line(&cause.to_string());
            if !text.is_empty() && !prev.ends_with(&text) {
                out.push(CauseText { text: text.clone(), error: cause });
            }
            prev = text;
            next = cause.source();
        }
        out
    }

    /// The message and every cause on one line, `message: cause: cause`, each once: the text
    /// of reports (`failure.message`), warnings and Python exceptions.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        for c in self.causes() {
            text.push_str(": ");
            text.push_str(&c.text);
        }
        text
    }
}

/// One link of an error's cause chain (see [`Error::causes`]).
#[derive(Debug, Clone)]
pub struct CauseText<'a> {
    /// The cause's text, on one line.
    pub text: String,
    /// The cause itself, for callers that map it further (the Python binding).
    pub error: &'a (dyn std::error::Error + 'static),
}

fn one_line(text: &str) -> String {
    text.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error that, like many, prints its own cause in its message.
    #[derive(Debug, thiserror::Error)]
    #[error("request failed: {0}")]
    struct Wrapper(#[source] std::io::Error);

    fn occurrences(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn io_display_leaves_the_cause_to_the_chain() {
        let e = Error::io("reading", "/etc/x.toml", std::io::Error::new(std::io::ErrorKind::NotFound, "gone away"));
        assert_eq!(e.to_string(), "reading (/etc/x.toml)");
        assert!(!e.to_string().contains("gone away"), "{e}");
        assert_eq!(e.chain(), "reading (/etc/x.toml): gone away");
        let causes: Vec<String> = e.causes().into_iter().map(|c| c.text).collect();
        assert_eq!(causes, ["gone away"]);
        // A real OS error keeps its words in the chain.
        let os = Error::io("opening", "/nonexistent", std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(os.chain().contains("No such file or directory"), "{}", os.chain());
        assert!(!os.to_string().contains("No such file"), "{os}");
    }

    #[test]
    fn general_variants_carry_an_optional_source_shown_once() {
        let cause = std::io::Error::other("permission denied on envdir");
        let e = Error::source_error("walg", "cannot read envdir /e").with_source(cause);
        assert_eq!(e.to_string(), "source walg: cannot read envdir /e");
        assert_eq!(e.chain(), "source walg: cannot read envdir /e: permission denied on envdir");
        assert!(std::error::Error::source(&e).is_some());

        let plain = Error::defect("base.tar is damaged");
        assert!(std::error::Error::source(&plain).is_none());
        assert_eq!(plain.chain(), plain.to_string());

        let e = Error::tooling("cannot start pg_ctl", "check the PostgreSQL installation")
            .with_source(std::io::Error::other("exec format error"));
        assert_eq!(e.to_string(), "cannot start pg_ctl; check the PostgreSQL installation");
        assert_eq!(occurrences(&e.chain(), "exec format error"), 1, "{}", e.chain());
    }

    #[test]
    fn chain_names_each_cause_once_even_when_a_cause_repeats_its_own() {
        let inner = std::io::Error::other("connection reset by peer");
        let e = Error::Storage {
            location: "s3://b/p".into(),
            message: "reading base.tar".into(),
            source: Some(Box::new(Wrapper(inner))),
        };
        let chain = e.chain();
        assert_eq!(chain, "object storage s3://b/p: reading base.tar: request failed: connection reset by peer");
        assert_eq!(occurrences(&chain, "connection reset by peer"), 1, "{chain}");
        assert_eq!(e.causes().len(), 1);
        // A core error as the cause of another: both messages, each cause once.
        let nested = Error::config("history /h: cannot open").with_source(e);
        let chain = nested.chain();
        assert_eq!(occurrences(&chain, "reading base.tar"), 1, "{chain}");
        assert_eq!(occurrences(&chain, "connection reset by peer"), 1, "{chain}");
        assert!(!nested.to_string().contains("reading base.tar"), "{nested}");
    }

    #[test]
    fn multi_line_causes_become_one_line() {
        let e = Error::defect("psql failed").with_source("first line\n  second line\n");
        assert_eq!(e.chain(), "psql failed: first line; second line");
    }

    #[test]
    fn internal_errors_are_errors_not_failures() {
        let e = Error::internal("server vanished");
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert_eq!(e.to_string(), "internal error: server vanished");
        assert_eq!(ExitStatus::from(&e).code(), 2);
        assert_eq!(ExitStatus::from(&Error::defect("x")).code(), 1);
    }
}
