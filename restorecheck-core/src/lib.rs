//! # restorecheck-core
//!
//! Proves PostgreSQL backups can be restored. A [`Check`] composes a [`BackupSource`] (where
//! backups come from), a [`RestoreTarget`] (where one is brought up, cut off from production)
//! and [`Assertion`]s (what must hold afterwards); [`run`] drives the pipeline
//! select → fetch → restore → wait → assert → report → teardown and returns a [`Report`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use restorecheck_core::{run, Check, RunContext, RunOptions};
//! use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
//! use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
//! use restorecheck_core::assertions::SqlAssertion;
//!
//! # async fn demo() -> Result<(), restorecheck_core::Error> {
//! let source = BaseBackupSource::new(BaseBackupConfig {
//!     path: "/backups/base".into(), backup: None, wal_archive: Some("/backups/wal".into()),
//!     recovery_target: Default::default(),
//!     ..Default::default()
//! });
//! let check = Check::new("app", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default())?))
//!     .database("app")
//!     .assert(SqlAssertion::min("select count(*) from registrations", 1.0));
//! let report = run(&[check], &RunOptions::default(), &RunContext::new()).await;
//! println!("{}", report.to_text());
//! std::process::exit(report.exit_status().code());
//! # }
//! ```
//!
//! The library never prints, never installs a logger or signal handler and never builds its
//! own runtime: front ends do that (the CLI cancels [`RunContext::cancel`] on SIGINT/SIGTERM).

pub mod archive;
pub mod assertion;
pub mod assertions;
pub mod config;
pub mod context;
pub mod decrypt;
pub mod error;
pub mod fixture;
pub mod fleet;
pub mod history;
pub mod notify;
pub mod outputs;
pub mod postgres;
pub mod process;
pub mod render;
pub mod report;
pub mod rto;
pub mod runner;
pub(crate) mod safefs;
pub mod selftest;
pub mod source;
pub mod sources;
pub mod spec;
pub mod storage;
pub mod target;
pub mod targets;
pub mod wal_archive;
pub mod workdir;

pub use assertion::{Assertion, AssertionContext, Outcome};
pub use config::{Config, Registry};
pub use context::{Progress, RunContext};
pub use error::{Cause, CauseText, Error, ErrorKind, ExitStatus, Result};
pub use report::{Phase, Report, Verdict};
pub use runner::{run, run_parallel, Check, RunOptions};
pub use source::{
    Artifact, ArtifactKind, BackupInfo, BackupSource, FetchRequest, FetchedBackup, LogicalDump, PhysicalBackup,
    WalFetch, WalSupply,
};
pub use spec::{CheckSpec, IntegrityConfig};
pub use target::{Capabilities, RestoreRequest, RestoreTarget, RunningServer};
