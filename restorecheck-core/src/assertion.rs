//! The [`Assertion`] trait: what must be true of a restored database.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::source::BackupInfo;
use crate::target::{Connection, RecoveryInfo};

/// The result of an assertion that could run. "Could not check" is an `Err` instead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    /// The restored data is as expected.
    Pass {
        /// What was observed (for the report and trends).
        observed: Option<serde_json::Value>,
    },
    /// Checked, and wrong.
    Fail {
        /// What was observed.
        observed: Option<serde_json::Value>,
        /// What was expected, in words (`>= 1`, `younger than 24h`).
        expected: Option<String>,
        /// Why it failed, for a person.
        message: String,
    },
}

impl Outcome {
    /// A pass observing `v`.
    pub fn pass(v: impl Into<serde_json::Value>) -> Self {
        Outcome::Pass { observed: Some(v.into()) }
    }
    /// True for [`Outcome::Pass`].
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass { .. })
    }
}

/// What an assertion gets to look at.
#[derive(Debug, Clone)]
pub struct AssertionContext {
    /// How to reach the restored server.
    pub connection: Connection,
    /// The check's default database.
    pub database: String,
    /// The backup that was restored.
    pub backup: BackupInfo,
    /// Where recovery ended.
    pub recovery: RecoveryInfo,
}

impl AssertionContext {
    /// Connects to `database`, or to the check's default database when `None`.
    pub async fn connect(&self, database: Option<&str>) -> Result<tokio_postgres::Client> {
        self.connection.connect(database.unwrap_or(&self.database)).await
    }
}

/// A check of a restored database.
///
/// # Contract
/// - Returns `Ok(Outcome::Fail{..})` when it checked and the data is wrong (verdict `fail`);
///   returns `Err` when it could not check (verdict `error`).
/// - Must not modify data other assertions may read. Runs after recovery finished; the runner
///   enforces the check's deadline and catches panics (a panic is an `error`).
#[async_trait]
pub trait Assertion: Send + Sync + Debug {
    /// Name shown in reports.
    fn name(&self) -> String;

    /// What it expects, in words, for reports of passing runs too (`>= 1`).
    fn expected(&self) -> Option<String> {
        None
    }

    /// Runs the check.
    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome>;

    /// Called once the check's verdict is known (e.g. to remember state only after a pass).
    fn check_finished(&self, _verdict: crate::report::Verdict) {}
}
