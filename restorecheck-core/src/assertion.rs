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
///
/// Two kinds of sessions:
/// - [`connect`](AssertionContext::connect) is for **the user's own code** (`sql` and `canary`
///   assertions, Python callables, custom assertions): the database's normal `search_path`,
///   as the target's superuser, or as the check's [`role`](AssertionContext::role) when set.
/// - [`tool_connect`](AssertionContext::tool_connect) is for **restorecheck's own queries**
///   (amcheck, read_all, compare_to_previous): always superuser, `search_path = pg_catalog,
///   pg_temp`, so nothing the restored database defines runs in them.
///
/// On PostgreSQL 17+ both start with `event_triggers = off`: no login trigger of the restored
/// database fires when restorecheck connects.
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
    /// The check's `role`: user assertions run `SET ROLE` to it after connecting.
    pub role: Option<String>,
    /// The run's key (what `sample` rotates by).
    pub run_key: String,
    /// What restorecheck's own assertions read in full through the server (shared by every
    /// clone): the offline checksum verification skips it.
    pub(crate) read_coverage: std::sync::Arc<std::sync::Mutex<crate::target::ReadCoverage>>,
}

impl AssertionContext {
    /// Records that assertion `by` read the main fork of `relation` (its
    /// `pg_relation_filepath`) in full through the server without an error.
    pub(crate) fn record_read(&self, relation: String, by: &str) {
        if let Ok(mut c) = self.read_coverage.lock() {
            c.insert(relation, by);
        }
    }

    /// A copy of what [`record_read`](Self::record_read) recorded so far.
    pub(crate) fn read_coverage(&self) -> crate::target::ReadCoverage {
        self.read_coverage.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// A session for the user's own assertion code in `database` (the check's default database
    /// when `None`), switched to the check's `role` when it has one. A role that does not exist
    /// in the restored cluster is an [`Error::Config`](crate::Error::Config) (verdict error).
    pub async fn connect(&self, database: Option<&str>) -> Result<tokio_postgres::Client> {
        let db = database.unwrap_or(&self.database);
        let client = self
            .user_session(Some(db))
            .await
            .map_err(|e| crate::Error::postgres(format!("connecting to database {db:?}"), e))?;
        self.apply_role(&client).await?;
        Ok(client)
    }

    /// Like [`connect`](AssertionContext::connect) but without `SET ROLE` and with the raw
    /// driver error, for callers that tell "the database is missing" (a failed check) from
    /// other connection errors. Call [`apply_role`](AssertionContext::apply_role) next.
    pub async fn user_session(
        &self,
        database: Option<&str>,
    ) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
        let db = database.unwrap_or(&self.database);
        let major = self.recovery.server_major();
        let open = |major: Option<u32>| {
            let mut c = self.connection.config(db);
            let o = crate::target::session_options(false, major);
            if !o.is_empty() {
                c.options(&o);
            }
            async move {
                let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection closed: {e}");
                    }
                });
                Ok(client)
            }
        };
        match open(major).await {
            Err(e) if major.is_none() && crate::target::rejects_event_triggers(&e) => open(Some(16)).await,
            other => other,
        }
    }

    /// Switches a user session to the check's `role` (`SET ROLE`); nothing without one.
    pub async fn apply_role(&self, client: &tokio_postgres::Client) -> Result<()> {
        let Some(role) = &self.role else { return Ok(()) };
        client.batch_execute(&format!("SET ROLE {}", crate::postgres::quote_ident(role))).await.map_err(|e| {
            match e.as_db_error() {
                Some(d) if *d.code() == tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE => crate::Error::Config {
                    message: format!(
                        "check.role {role:?}: {}; the role must exist in the restored cluster (create it in production, \
                         or fix the name)",
                        d.message()
                    ),
                    line: None,
                    source: None,
                },
                _ => crate::Error::postgres(format!("switching to role {role:?} (check.role)"), e),
            }
        })
    }

    /// A session for restorecheck's own queries in `database` (the check's default database when
    /// `None`): superuser, `search_path = pg_catalog, pg_temp`, no event triggers on 17+. See
    /// [`Connection::tool_config`].
    pub async fn tool_connect(&self, database: Option<&str>) -> Result<tokio_postgres::Client> {
        self.connection.tool_connect(database.unwrap_or(&self.database), self.recovery.server_major()).await
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

#[cfg(test)]
mod tests {
    use crate::target::{session_options, RecoveryInfo};

    #[test]
    fn tool_sessions_pin_the_search_path_and_turn_event_triggers_off_where_the_server_has_the_setting() {
        const T: &str = "-c search_path=pg_catalog,pg_temp -c ignore_checksum_failure=off -c zero_damaged_pages=off";
        assert_eq!(session_options(true, Some(15)), T);
        assert_eq!(session_options(true, Some(17)), format!("{T} -c event_triggers=off"));
        // Unknown major: ask for it (fail safe); the connect helpers retry without on refusal.
        assert_eq!(session_options(true, None), format!("{T} -c event_triggers=off"));
        assert_eq!(session_options(false, Some(13)), "");
        assert_eq!(session_options(false, Some(18)), "-c event_triggers=off");
    }

    #[test]
    fn server_major_from_server_version() {
        let v = |s: &str| RecoveryInfo { server_version: Some(s.into()), ..Default::default() }.server_major();
        assert_eq!(v("15.18 (Debian 15.18-1.pgdg120+1)"), Some(15));
        assert_eq!(v("17.2"), Some(17));
        assert_eq!(v("18beta1"), Some(18));
        assert_eq!(RecoveryInfo::default().server_major(), None);
    }
}
