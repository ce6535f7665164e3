//! # restorecheck-core
//!
//! Proves PostgreSQL backups can be restored. A [`Check`] composes a [`BackupSource`] (where
//! backups come from), a [`RestoreTarget`] (where one is brought up, cut off from production)
//! and [`Assertion`]s (what must hold afterwards); [`run`] drives the pipeline
//! select → fetch → restore → wait → assert → report → teardown and returns a [`Report`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use restorecheck_core::{run, Assertion, CheckSpec, RunContext, RunOptions};
//! use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
//! use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
//! use restorecheck_core::assertions::SqlAssertion;
//!
//! # async fn demo() -> Result<(), restorecheck_core::Error> {
//! let source = BaseBackupConfig::default().path("/backups/base").wal_archive("/backups/wal");
//! let target = LocalTarget::new(LocalTargetConfig::default())?;
//! let assertions: Vec<Arc<dyn Assertion>> =
//!     vec![Arc::new(SqlAssertion::min("select count(*) from registrations", 1.0))];
//! let check = CheckSpec::new("app").database("app").rto(Duration::from_secs(3600)).build(
//!     Arc::new(BaseBackupSource::new(source)),
//!     Arc::new(target),
//!     assertions,
//! )?;
//! let report = run(&[check], &RunOptions::default(), &RunContext::new()).await;
//! println!("{}", report.to_text());
//! std::process::exit(report.exit_status().code());
//! # }
//! ```
//!
//! The library never prints, never installs a logger or signal handler and never builds its
//! own runtime: front ends do that (the CLI cancels [`RunContext::cancel`] on SIGINT/SIGTERM).
//!
//! ## Cargo features
//!
//! All on by default; with `default-features = false` the core needs about a third of the
//! crates. A configuration that uses a part this build lacks parses as usual and then fails
//! with a configuration error naming the feature, never silently.
//!
//! - `object-storage`: `s3://`, `gs://` and `az://` backup locations (object_store).
//! - `encryption`: `decrypt = { kind = "age" | "gpg" }` on a source (age; gpg as a child process).
//! - `docker`: the `docker` restore target (testcontainers).
//! - `notify`: `[[notify]]` webhooks and email, the heartbeat, the Pushgateway (ureq, lettre);
//!   command notifications work without it.
//! - `history`: the SQLite run history (rusqlite, bundled SQLite).

#![warn(unreachable_pub)]

// The built-in kinds, by name.
pub mod assertions;
pub mod sources;
pub mod targets;

// The data model and the configuration.
pub mod config;
pub mod coverage;
pub mod decrypt;
pub mod report;
pub mod source;
pub mod storage;
pub mod target;
pub mod toolbox;

// What the front ends (CLI, Python binding) and the integration tests build on besides the
// contract: notifications, the history and its renderings, the self-test and fixtures, and a
// few PostgreSQL and file helpers. Everything else in these modules is crate-private.
pub mod fixture;
pub mod fleet;
pub mod history;
pub mod notify;
pub mod outputs;
pub mod postgres;
pub mod render;
pub mod rto;
pub mod runner;
pub mod selftest;
pub mod wal_archive;
pub mod workdir;

// Internals.
pub(crate) mod archive;
pub(crate) mod assertion;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod process;
pub(crate) mod safefs;
pub(crate) mod spec;

// The contract: what a source, target or assertion implements and exchanges, and what a front
// end drives. The built-in kinds are in `sources`, `targets` and `assertions`.
pub use archive::Compression;
pub use assertion::{Assertion, AssertionContext, Outcome};
pub use config::{Config, Registry};
pub use context::{Progress, RunContext};
pub use error::{Cause, CauseText, Error, ErrorKind, ExitStatus, Result};
pub use report::{Phase, Report, Verdict};
pub use runner::{run, run_parallel, Check, RunOptions};
pub use source::{
    Artifact, ArtifactKind, BackupInfo, BackupSource, DumpFormat, ExpectedEnd, FetchRequest, FetchedBackup,
    LogicalDump, PhysicalBackup, RecoveryTarget, RecoveryTargetTimeline, SecretEnv, WalFetch, WalSupply,
};
pub use spec::{CheckSpec, IntegrityConfig};
pub use target::{
    Capabilities, Connection, ReadCoverage, RecoveryInfo, RestoreRequest, RestoreTarget, RunPassword, RunningServer,
};
pub use toolbox::{HostTools, RunAs, ToolBox, ToolCommand};
