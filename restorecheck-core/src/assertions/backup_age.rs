//! Assertion `max_backup_age`: the restored backup itself is recent enough (from the source's
//! metadata, e.g. `backup_label` START TIME).

use std::time::Duration;

use async_trait::async_trait;

use crate::assertion::{Assertion, AssertionContext, Outcome};
use crate::error::{Error, Result};
use crate::report::human_secs;

/// The backup must be younger than a limit.
#[derive(Debug, Clone)]
pub struct BackupAgeAssertion {
    /// The limit.
    pub max_age: Duration,
}

#[async_trait]
impl Assertion for BackupAgeAssertion {
    fn name(&self) -> String {
        "max_backup_age".into()
    }

    fn expected(&self) -> Option<String> {
        Some(format!("younger than {}", humantime::format_duration(self.max_age)))
    }

    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome> {
        let Some(taken) = ctx.backup.taken_at else {
            return Err(Error::Assertion {
                name: self.name(),
                message: format!("the source does not say when backup {} was taken", ctx.backup.id),
                source: None,
            });
        };
        let age = (chrono::Utc::now() - taken).num_milliseconds() as f64 / 1000.0;
        let observed = serde_json::json!({"taken_at": taken.to_rfc3339(), "age_seconds": age});
        if age > self.max_age.as_secs_f64() {
            return Ok(Outcome::Fail {
                observed: Some(observed),
                expected: Some(format!("younger than {}", humantime::format_duration(self.max_age))),
                message: format!(
                    "the newest backup ({}) is {} old, more than {}: backups may have stopped",
                    ctx.backup.id,
                    human_secs(age),
                    humantime::format_duration(self.max_age)
                ),
            });
        }
        Ok(Outcome::Pass { observed: Some(observed) })
    }
}
