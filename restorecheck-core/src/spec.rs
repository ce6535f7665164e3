//! [`CheckSpec`]: the one description of a check's settings, and the one way a [`Check`] is
//! built from them.
//!
//! The TOML parser ([`crate::Config::parse`]), the Python binding (`rc.Check(**kwargs)`) and
//! Rust callers all fill a `CheckSpec` and call [`CheckSpec::build`], so the same settings give
//! the same check — the same check-level assertions (`max_backup_age`, amcheck, `read_all`,
//! `compare_to_previous`), the same deadline, the same RTO — and so the same verdict, whichever
//! front end spelled it.
//!
//! ```
//! use std::time::Duration;
//! use restorecheck_core::CheckSpec;
//!
//! let spec = CheckSpec::new("app")
//!     .database("app")
//!     .max_backup_age(Duration::from_secs(26 * 3600))
//!     .rto(Duration::from_secs(3600));
//! assert_eq!(spec.name, "app");
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::assertion::Assertion;
use crate::assertions::{AmcheckAssertion, BackupAgeAssertion, ReadAllAssertion};
use crate::config::opt_duration;
use crate::error::{Error, Result};
use crate::runner::Check;
use crate::source::{BackupSource, RecoveryTarget};
use crate::target::RestoreTarget;

/// Default deadline of a check.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The settings of one check, without its source, target and own assertions: the keys of a
/// `[[check]]` table other than `source`, `target` and `assert`, with the same names, meanings
/// and defaults. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CheckSpec {
    /// Name in reports; unique in a configuration.
    pub name: String,
    /// Database assertions run in unless they name their own (default `postgres`).
    pub database: Option<String>,
    /// Database role the check's own assertions (`sql`, `canary`, Python, custom) run as, via
    /// `SET ROLE` (default: the target's superuser). Built-in integrity checks run as superuser.
    pub role: Option<String>,
    /// The restored backup must be younger than this (an assertion named `max_backup_age`).
    #[serde(default, with = "opt_duration")]
    pub max_backup_age: Option<Duration>,
    /// Deadline for the whole check, teardown excluded (default 30 minutes).
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Recovery time objective: a check that restored but took longer than this (total time)
    /// fails with an assertion named `rto` ([`crate::rto`]).
    #[serde(default, with = "opt_duration")]
    pub rto: Option<Duration>,
    /// Coverage window: the check also fails (assertion `coverage`) when a backup older than
    /// this that the source still lists never passed a restore test ([`crate::coverage`]).
    #[serde(default, with = "opt_duration")]
    pub coverage: Option<Duration>,
    /// `[check.integrity]`: built-in integrity checks (defaults on).
    #[serde(default)]
    pub integrity: IntegrityConfig,
    /// Backup id to test instead of the newest (overrides the source's own `backup` option).
    /// `"rotate"`: the listed backup tested longest ago (never tested first, [`crate::coverage`]).
    pub backup: Option<String>,
    /// Where recovery of a physical backup stops (overrides the source's `recovery_target`).
    pub recovery_target: Option<RecoveryTarget>,
}

/// `[check.integrity]`: integrity checks beyond the application's own assertions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct IntegrityConfig {
    /// Run `pg_verifybackup` against `backup_manifest` before starting (default true).
    pub verify_manifest: bool,
    /// amcheck over every database after recovery (default true).
    pub amcheck: bool,
    /// Page checksums verified after a clean shutdown, when the cluster has checksums (default
    /// true): every page amcheck and `read_all` did not already read through the server.
    pub checksums: bool,
    /// amcheck's `heapallindexed` (default false: about 4× slower).
    pub heapallindexed: bool,
    /// Read every table in full (default false; true where amcheck is unavailable).
    pub read_all: bool,
    /// Parallel connections for amcheck (default 2), the work spread by relation size.
    pub jobs: usize,
    /// Check only a deterministic part of the data per run with the expensive checks
    /// (`heapallindexed`, `read_all`): `"10%"` of the relations, or a byte budget `"20GB"`;
    /// a rotation over run keys covers everything ([`crate::assertions::sample`]). Default: all.
    pub sample: Option<crate::assertions::Sample>,
    /// Row counts may not drop by more than `max_drop` since the last passing run.
    pub compare_to_previous: Option<crate::assertions::CompareConfig>,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            verify_manifest: true,
            amcheck: true,
            checksums: true,
            heapallindexed: false,
            read_all: false,
            jobs: 2,
            sample: None,
            compare_to_previous: None,
        }
    }
}

impl IntegrityConfig {
    /// Every built-in integrity check off (the application's assertions only).
    pub fn none() -> Self {
        IntegrityConfig {
            verify_manifest: false,
            amcheck: false,
            checksums: false,
            heapallindexed: false,
            read_all: false,
            jobs: 2,
            sample: None,
            compare_to_previous: None,
        }
    }

    /// Sets `verify_manifest`.
    pub fn verify_manifest(mut self, on: bool) -> Self {
        self.verify_manifest = on;
        self
    }

    /// Sets `amcheck`.
    pub fn amcheck(mut self, on: bool) -> Self {
        self.amcheck = on;
        self
    }

    /// Sets `checksums`.
    pub fn checksums(mut self, on: bool) -> Self {
        self.checksums = on;
        self
    }

    /// Sets `heapallindexed`.
    pub fn heapallindexed(mut self, on: bool) -> Self {
        self.heapallindexed = on;
        self
    }

    /// Sets `read_all`.
    pub fn read_all(mut self, on: bool) -> Self {
        self.read_all = on;
        self
    }

    /// Sets `jobs` (parallel amcheck connections).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// Sets `sample`.
    pub fn sample(mut self, sample: crate::assertions::Sample) -> Self {
        self.sample = Some(sample);
        self
    }

    /// Sets `compare_to_previous`.
    pub fn compare_to_previous(mut self, cfg: crate::assertions::CompareConfig) -> Self {
        self.compare_to_previous = Some(cfg);
        self
    }
}

impl CheckSpec {
    /// A check named `name` with every default (database `postgres`, 30 minute deadline, the
    /// built-in integrity checks on).
    pub fn new(name: impl Into<String>) -> Self {
        CheckSpec { name: name.into(), ..Default::default() }
    }

    /// Reads a spec from a serde value with the keys of a `[[check]]` table (no `source`,
    /// `target` or `assert`), as the Python binding's keyword arguments arrive.
    pub fn from_table(table: toml::Table) -> Result<Self> {
        CheckSpec::deserialize(toml::Value::Table(table)).map_err(|e| Error::config(e.message().to_string()))
    }

    /// Sets the default database.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.database = Some(db.into());
        self
    }

    /// Runs the check's own assertions as database role `role` (`SET ROLE`).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The restored backup must be younger than `age`.
    pub fn max_backup_age(mut self, age: Duration) -> Self {
        self.max_backup_age = Some(age);
        self
    }

    /// Sets the deadline.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Sets the recovery time objective.
    pub fn rto(mut self, rto: Duration) -> Self {
        self.rto = Some(rto);
        self
    }

    /// Sets the coverage window.
    pub fn coverage(mut self, window: Duration) -> Self {
        self.coverage = Some(window);
        self
    }

    /// Sets the built-in integrity checks.
    pub fn integrity(mut self, integrity: IntegrityConfig) -> Self {
        self.integrity = integrity;
        self
    }

    /// Tests backup `id` instead of the newest.
    pub fn backup(mut self, id: impl Into<String>) -> Self {
        self.backup = Some(id.into());
        self
    }

    /// Sets where recovery stops.
    pub fn recovery_target(mut self, target: RecoveryTarget) -> Self {
        self.recovery_target = Some(target);
        self
    }

    /// Checks the settings on their own (what [`build`](Self::build) checks first).
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::config("a check needs a name"));
        }
        if self.role.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(Error::config(format!("check {:?}: role must not be empty", self.name)));
        }
        if self.database.as_deref().is_some_and(|d| d.is_empty()) {
            return Err(Error::config(format!("check {:?}: database must not be empty", self.name)));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::config(format!("check {:?}: timeout must be longer than 0s", self.name)));
        }
        if self.integrity.jobs == 0 {
            return Err(Error::config(format!("check {:?}: integrity.jobs must be at least 1", self.name)));
        }
        Ok(())
    }

    /// The check-level assertions these settings add, in the order they run before the
    /// caller's: `max_backup_age`, amcheck, `read_all`, `compare_to_previous`.
    pub fn builtin_assertions(&self) -> Result<Vec<Arc<dyn Assertion>>> {
        let mut out: Vec<Arc<dyn Assertion>> = Vec::new();
        if let Some(age) = self.max_backup_age {
            out.push(Arc::new(BackupAgeAssertion { max_age: age }));
        }
        if self.integrity.amcheck {
            out.push(Arc::new(AmcheckAssertion {
                heapallindexed: self.integrity.heapallindexed,
                jobs: self.integrity.jobs,
                sample: self.integrity.sample,
            }));
        }
        if self.integrity.read_all {
            out.push(Arc::new(ReadAllAssertion { sample: self.integrity.sample }));
        }
        if let Some(cmp) = &self.integrity.compare_to_previous {
            out.push(Arc::new(crate::assertions::CompareToPrevious::new(&self.name, cmp)?));
        }
        Ok(out)
    }

    /// Composes the check: these settings, `source`, `target`, and the application's
    /// `assertions` (run in order after the built-in ones). Errors for invalid settings.
    pub fn build(
        self,
        source: Arc<dyn BackupSource>,
        target: Arc<dyn RestoreTarget>,
        assertions: Vec<Arc<dyn Assertion>>,
    ) -> Result<Check> {
        self.validate()?;
        crate::target::check_compatible(source.as_ref(), target.as_ref()).map_err(|e| match e {
            Error::Config { message, .. } => Error::config(format!("check {:?}: {message}", self.name)),
            other => other,
        })?;
        let mut all = self.builtin_assertions()?;
        all.extend(assertions);
        Ok(Check {
            database: self.database.unwrap_or_else(|| "postgres".into()),
            source,
            target,
            assertions: all,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            backup: self.backup,
            verify_manifest: self.integrity.verify_manifest,
            verify_checksums: self.integrity.checksums,
            role: self.role,
            rto: self.rto,
            coverage: self.coverage,
            tested: Default::default(),
            recovery_target: self.recovery_target,
            name: self.name,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_match_a_bare_check_table() {
        let spec = CheckSpec::from_table(toml::from_str("name = \"x\"").unwrap()).unwrap();
        assert_eq!(spec, CheckSpec::new("x"));
        let names: Vec<String> = spec.builtin_assertions().unwrap().iter().map(|a| a.name()).collect();
        assert_eq!(names, ["amcheck"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = CheckSpec::from_table(toml::from_str("name = \"x\"\nrtoo = \"1h\"").unwrap()).unwrap_err();
        assert!(e.to_string().contains("rtoo"), "{e}");
        let e = CheckSpec::from_table(toml::from_str("name = \"x\"\nrto = \"soon\"").unwrap()).unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
        assert!(CheckSpec::new("x").role(" ").validate().is_err());
        assert!(CheckSpec::new("x").timeout(Duration::ZERO).validate().is_err());
        assert!(CheckSpec::new(" ").validate().is_err());
    }

    #[test]
    fn builder_and_table_agree() {
        let table: toml::Table = toml::from_str(
            "name = \"app\"\ndatabase = \"app\"\nrto = \"1h\"\nmax_backup_age = \"26h\"\nbackup = \"b1\"\n\
             recovery_target = \"immediate\"\n[integrity]\nread_all = true\njobs = 3\n",
        )
        .unwrap();
        let built = CheckSpec::new("app")
            .database("app")
            .rto(Duration::from_secs(3600))
            .max_backup_age(Duration::from_secs(26 * 3600))
            .backup("b1")
            .recovery_target(RecoveryTarget::Immediate)
            .integrity(IntegrityConfig::default().read_all(true).jobs(3));
        assert_eq!(CheckSpec::from_table(table).unwrap(), built);
        let names: Vec<String> = built.builtin_assertions().unwrap().iter().map(|a| a.name()).collect();
        assert_eq!(names, ["max_backup_age", "amcheck", "read_all"]);
    }
}
