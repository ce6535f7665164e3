//! The TOML configuration: parsing with line numbers, validation, and the [`Registry`] that
//! turns `kind = "…"` tables into trait objects. `validate` and `run` share this path exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::assertion::Assertion;
use crate::assertions::{AmcheckAssertion, BackupAgeAssertion, ReadAllAssertion, SqlAssertion, SqlAssertionConfig};
use crate::error::{Error, Result};
use crate::runner::Check;
use crate::source::BackupSource;
use crate::sources::{BaseBackupConfig, BaseBackupSource, CommandConfig, CommandSource, PgDumpConfig, PgDumpSource};
use crate::target::RestoreTarget;
use crate::targets::{DockerTarget, DockerTargetConfig, LocalTarget, LocalTargetConfig};

/// Default deadline of a check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where work directories go (default: the system temp dir).
    pub work_dir: Option<PathBuf>,
    /// The run history file (default [`crate::history::default_path`]).
    pub history: Option<PathBuf>,
    /// The checks, run in order.
    #[serde(default)]
    pub check: Vec<CheckConfig>,
    /// `[[notify]]`: where reports go after a run ([`crate::notify`]).
    #[serde(default)]
    pub notify: Vec<crate::notify::NotifyTarget>,
    /// URL pinged (GET) after a fully passing run: a dead man's switch.
    pub heartbeat: Option<crate::notify::Heartbeat>,
}

/// One `[[check]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Name in reports; unique in the file.
    pub name: String,
    /// Database assertions run in unless they name their own (default `postgres`).
    pub database: Option<String>,
    /// Database role the check's own assertions (`sql`, `canary`, Python, custom) run as, via
    /// `SET ROLE` (default: the target's superuser). Built-in integrity checks run as superuser.
    pub role: Option<String>,
    /// The restored backup must be younger than this.
    #[serde(default, with = "opt_duration")]
    pub max_backup_age: Option<Duration>,
    /// Deadline for the whole check (default 30m).
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Recovery time objective: a restore slower than this fails ([`crate::rto`]).
    #[serde(default, with = "opt_duration")]
    pub rto: Option<Duration>,
    /// `[check.source]`.
    pub source: Spanned<toml::Table>,
    /// `[check.target]` (default: `kind = "local"`).
    pub target: Option<Spanned<toml::Table>>,
    /// `[[check.assert]]`.
    #[serde(default)]
    pub assert: Vec<Spanned<toml::Table>>,
    /// `[check.integrity]`: built-in integrity checks (defaults on).
    #[serde(default)]
    pub integrity: IntegrityConfig,
}

/// `[check.integrity]`: integrity checks beyond the application's own assertions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrityConfig {
    /// Run `pg_verifybackup` against `backup_manifest` before starting (default true).
    pub verify_manifest: bool,
    /// amcheck over every database after recovery (default true).
    pub amcheck: bool,
    /// `pg_checksums --check` after a clean shutdown, when the cluster has checksums (default true).
    pub checksums: bool,
    /// amcheck's `heapallindexed` (default false: about 4× slower).
    pub heapallindexed: bool,
    /// Read every table in full (default false; true where amcheck is unavailable).
    pub read_all: bool,
    /// Parallel connections for amcheck (default 2).
    pub jobs: usize,
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
            compare_to_previous: None,
        }
    }
}

/// Serde helper for optional human durations (`"24h"`, `"90s"`, `"1h 30m"`).
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserializes `Option<Duration>` from a human string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            humantime::parse_duration(&s).map_err(|e| {
                serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write e.g. \"90s\", \"30m\", \"24h\""))
            })
        })
        .transpose()
    }
}

type SourceFactory = Arc<dyn Fn(toml::Table) -> Result<Arc<dyn BackupSource>> + Send + Sync>;
type TargetFactory = Arc<dyn Fn(toml::Table) -> Result<Arc<dyn RestoreTarget>> + Send + Sync>;
type AssertionFactory = Arc<dyn Fn(toml::Table) -> Result<Arc<dyn Assertion>> + Send + Sync>;

/// Maps `kind` names to constructors. [`Registry::default`] knows the built-in kinds;
/// applications register their own without touching the core.
#[derive(Clone)]
pub struct Registry {
    sources: BTreeMap<String, SourceFactory>,
    targets: BTreeMap<String, TargetFactory>,
    assertions: BTreeMap<String, AssertionFactory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("targets", &self.targets.keys().collect::<Vec<_>>())
            .field("assertions", &self.assertions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Deserializes a kind's options table into its config struct (unknown keys are errors).
pub fn options<T: serde::de::DeserializeOwned>(what: &str, table: toml::Table) -> Result<T> {
    T::deserialize(toml::Value::Table(table)).map_err(|e| Error::config(format!("{what}: {}", e.message())))
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Registry { sources: BTreeMap::new(), targets: BTreeMap::new(), assertions: BTreeMap::new() };
        r.register_source("basebackup", |t| {
            let cfg = options::<BaseBackupConfig>("source basebackup", t)?;
            cfg.validate()?;
            Ok(Arc::new(BaseBackupSource::new(cfg)) as Arc<dyn BackupSource>)
        });
        r.register_source("pg_dump", |t| {
            let cfg = options::<PgDumpConfig>("source pg_dump", t)?;
            cfg.validate()?;
            Ok(Arc::new(PgDumpSource::new(cfg)) as Arc<dyn BackupSource>)
        });
        r.register_source("pgbackrest", |t| {
            Ok(Arc::new(crate::sources::PgBackRestSource::new(options::<crate::sources::PgBackRestConfig>(
                "source pgbackrest",
                t,
            )?)?) as Arc<dyn BackupSource>)
        });
        r.register_source("barman", |t| {
            Ok(Arc::new(crate::sources::BarmanSource::new(options::<crate::sources::BarmanConfig>(
                "source barman",
                t,
            )?)?) as Arc<dyn BackupSource>)
        });
        r.register_source("command", |t| {
            Ok(Arc::new(CommandSource::new(options::<CommandConfig>("source command", t)?)) as Arc<dyn BackupSource>)
        });
        r.register_source("walg", |t| {
            Ok(Arc::new(crate::sources::WalgSource::new(options::<crate::sources::WalgConfig>("source walg", t)?))
                as Arc<dyn BackupSource>)
        });
        r.register_source("wale", |t| {
            Ok(Arc::new(crate::sources::WaleSource::new(options::<crate::sources::WaleConfig>("source wale", t)?))
                as Arc<dyn BackupSource>)
        });
        r.register_target("local", |t| {
            Ok(Arc::new(LocalTarget::new(options::<LocalTargetConfig>("target local", t)?)?) as Arc<dyn RestoreTarget>)
        });
        r.register_target("docker", |t| {
            Ok(Arc::new(DockerTarget::new(options::<DockerTargetConfig>("target docker", t)?)?)
                as Arc<dyn RestoreTarget>)
        });
        r.register_assertion("canary", |t| {
            Ok(
                Arc::new(crate::assertions::CanaryAssertion::new(options::<SqlAssertionConfig>(
                    "assertion canary",
                    t,
                )?)?) as Arc<dyn Assertion>,
            )
        });
        r.register_assertion("sql", |t| {
            Ok(Arc::new(SqlAssertion::new(options::<SqlAssertionConfig>("assertion sql", t)?)?) as Arc<dyn Assertion>)
        });
        r
    }
}

impl Registry {
    /// Registers a source kind.
    pub fn register_source(
        &mut self,
        kind: &str,
        f: impl Fn(toml::Table) -> Result<Arc<dyn BackupSource>> + Send + Sync + 'static,
    ) {
        self.sources.insert(kind.to_string(), Arc::new(f));
    }

    /// Registers a target kind.
    pub fn register_target(
        &mut self,
        kind: &str,
        f: impl Fn(toml::Table) -> Result<Arc<dyn RestoreTarget>> + Send + Sync + 'static,
    ) {
        self.targets.insert(kind.to_string(), Arc::new(f));
    }

    /// Registers an assertion kind.
    pub fn register_assertion(
        &mut self,
        kind: &str,
        f: impl Fn(toml::Table) -> Result<Arc<dyn Assertion>> + Send + Sync + 'static,
    ) {
        self.assertions.insert(kind.to_string(), Arc::new(f));
    }

    /// Names of the registered source, target and assertion kinds.
    pub fn kinds(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            self.sources.keys().cloned().collect(),
            self.targets.keys().cloned().collect(),
            self.assertions.keys().cloned().collect(),
        )
    }

    /// Builds the source a table describes.
    pub fn source(&self, mut table: toml::Table) -> Result<Arc<dyn BackupSource>> {
        let kind = take_kind(&mut table, None, "check.source")?;
        let f = self.sources.get(&kind).ok_or_else(|| unknown_kind("source", &kind, self.sources.keys()))?;
        f(table)
    }

    /// Builds the target a table describes (`kind` defaults to `local`).
    pub fn target(&self, mut table: toml::Table) -> Result<Arc<dyn RestoreTarget>> {
        let kind = take_kind(&mut table, Some("local"), "check.target")?;
        let f = self.targets.get(&kind).ok_or_else(|| unknown_kind("target", &kind, self.targets.keys()))?;
        f(table)
    }

    /// Builds the assertion a table describes (`kind` defaults to `sql`).
    pub fn assertion(&self, mut table: toml::Table) -> Result<Arc<dyn Assertion>> {
        let kind = take_kind(&mut table, Some("sql"), "check.assert")?;
        let f = self.assertions.get(&kind).ok_or_else(|| unknown_kind("assertion", &kind, self.assertions.keys()))?;
        f(table)
    }
}

fn take_kind(table: &mut toml::Table, default: Option<&str>, what: &str) -> Result<String> {
    match table.remove("kind") {
        Some(toml::Value::String(s)) => Ok(s),
        Some(other) => Err(Error::config(format!("{what}.kind must be a string, not {other}"))),
        None => default.map(str::to_string).ok_or_else(|| Error::config(format!("{what} needs kind = \"…\""))),
    }
}

fn unknown_kind<'a>(what: &str, kind: &str, known: impl Iterator<Item = &'a String>) -> Error {
    Error::config(format!(
        "unknown {what} kind {kind:?}; known: {}",
        known.map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    ))
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at.min(text.len())).map(|s| s.matches('\n').count() + 1).unwrap_or(1)
}

/// Best line for an error inside the table spanning `span`: the line of the key the message
/// names (`unknown field \`x\``), else the table's first line.
fn line_in(text: &str, span: std::ops::Range<usize>, message: &str) -> usize {
    let key = message.split('`').nth(1).filter(|k| !k.is_empty());
    if let (Some(key), Some(body)) = (key, text.get(span.clone())) {
        let mut off = 0;
        for l in body.split_inclusive('\n') {
            let t = l.trim_start();
            if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                return line_of(text, span.start + off);
            }
            off += l.len();
        }
    }
    line_of(text, span.start)
}

/// A parsed, validated configuration: checks ready to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where work directories go.
    pub work_dir: Option<PathBuf>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Notification targets and heartbeat, for [`crate::notify::deliver`].
    pub notify: crate::notify::NotifyConfig,
    /// The run history file from `history = "…"`.
    pub history: Option<PathBuf>,
    /// Recovery time objectives by check name (`rto = "…"`), applied by [`crate::rto::apply`].
    pub rto: BTreeMap<String, Duration>,
}

impl Config {
    /// Reads and validates a file with the default registry.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            message: format!("cannot read config {}", path.display()),
            line: None,
            source: Some(e.into()),
        })?;
        Self::parse(&text, &Registry::default())
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str, registry: &Registry) -> Result<Self> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| Error::Config {
            message: e.message().to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
            source: None,
        })?;
        if file.check.is_empty() {
            return Err(Error::config("no [[check]] in the configuration; `restorecheck init` writes an example"));
        }
        let mut checks = Vec::new();
        let mut rto = BTreeMap::new();
        let mut names = std::collections::HashSet::new();
        for c in file.check {
            if !names.insert(c.name.clone()) {
                return Err(Error::config(format!("two checks are named {:?}; names must be unique", c.name)));
            }
            let at = |span: std::ops::Range<usize>| {
                move |e: Error| match e {
                    Error::Config { message, line: None, source } => {
                        let line = Some(line_in(text, span.clone(), &message));
                        Error::Config { message, line, source }
                    }
                    other => other,
                }
            };
            let span = c.source.span();
            let source = registry.source(c.source.into_inner()).map_err(at(span))?;
            let target = match c.target {
                Some(t) => {
                    let span = t.span();
                    registry.target(t.into_inner()).map_err(at(span))?
                }
                None => registry.target(toml::Table::new())?,
            };
            if c.role.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(Error::config(format!("check {:?}: role must not be empty", c.name)));
            }
            let mut assertions: Vec<Arc<dyn Assertion>> = Vec::new();
            if let Some(r) = c.rto {
                rto.insert(c.name.clone(), r);
            }
            if let Some(age) = c.max_backup_age {
                assertions.push(Arc::new(BackupAgeAssertion { max_age: age }));
            }
            if c.integrity.amcheck {
                assertions.push(Arc::new(AmcheckAssertion {
                    heapallindexed: c.integrity.heapallindexed,
                    jobs: c.integrity.jobs,
                }));
            }
            if c.integrity.read_all {
                assertions.push(Arc::new(ReadAllAssertion));
            }
            if let Some(cmp) = &c.integrity.compare_to_previous {
                assertions.push(Arc::new(crate::assertions::CompareToPrevious::new(&c.name, cmp)?));
            }
            for a in c.assert {
                let span = a.span();
                assertions.push(registry.assertion(a.into_inner()).map_err(at(span))?);
            }
            checks.push(Check {
                name: c.name,
                database: c.database.unwrap_or_else(|| "postgres".into()),
                source,
                target,
                assertions,
                timeout: c.timeout.unwrap_or(DEFAULT_TIMEOUT),
                backup: None,
                verify_manifest: c.integrity.verify_manifest,
                verify_checksums: c.integrity.checksums,
                role: c.role,
            });
        }
        let notify = crate::notify::NotifyConfig { targets: file.notify, heartbeat: file.heartbeat };
        notify.validate()?;
        Ok(Config { work_dir: file.work_dir, checks, history: file.history, rto, notify })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[check]]
name = "app"
database = "app"
max_backup_age = "26h"
timeout = "30m"

[check.source]
kind = "basebackup"
path = "/backups/base"
wal_archive = "/backups/wal"

[check.target]
kind = "local"

[[check.assert]]
name = "registrations present"
sql = "select count(1) from registrations"
min = 1

[[check.assert]]
sql = "select max(created_at) from registrations"
max_age = "24h"
"#;

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(GOOD, &Registry::default()).unwrap();
        assert_eq!(c.checks.len(), 1);
        let ch = &c.checks[0];
        assert_eq!(ch.database, "app");
        assert_eq!(ch.timeout, Duration::from_secs(1800));
        assert_eq!(ch.assertions.len(), 4, "max_backup_age, amcheck, two sql assertions");
        assert_eq!(ch.assertions[1].name(), "amcheck");
        assert_eq!(ch.assertions[2].name(), "registrations present");
        assert!(ch.verify_manifest);
    }

    #[test]
    fn recovery_target_timeline_is_a_source_option_and_bad_values_are_clear_errors() {
        for good in ["\"latest\"", "\"current\"", "2"] {
            let text = GOOD.replace(
                "wal_archive = \"/backups/wal\"",
                &format!("wal_archive = \"/backups/wal\"\nrecovery_target_timeline = {good}"),
            );
            Config::parse(&text, &Registry::default()).unwrap();
        }
        for bad in ["\"newest\"", "0", "true"] {
            let text = GOOD.replace(
                "wal_archive = \"/backups/wal\"",
                &format!("wal_archive = \"/backups/wal\"\nrecovery_target_timeline = {bad}"),
            );
            match Config::parse(&text, &Registry::default()) {
                Err(Error::Config { message, .. }) => {
                    assert!(message.contains("recovery_target_timeline"), "{bad}: {message}")
                }
                other => panic!("{bad}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_line_numbers() {
        let bad = GOOD.replace("wal_archive =", "wal_archiv =");
        match Config::parse(&bad, &Registry::default()) {
            Err(Error::Config { message, line, .. }) => {
                assert!(message.contains("wal_archiv"), "{message}");
                assert_eq!(line, Some(11), "{message}");
            }
            other => panic!("expected config error, got {other:?}"),
        }
        let bad = GOOD.replace("timeout =", "timeot =");
        match Config::parse(&bad, &Registry::default()) {
            Err(Error::Config { message, line, .. }) => {
                assert!(message.contains("timeot"), "{message}");
                assert_eq!(line, Some(6));
            }
            other => panic!("expected config error, got {other:?}"),
        }
        let bad = GOOD.replace("min = 1", "minimum = 1");
        match Config::parse(&bad, &Registry::default()) {
            Err(Error::Config { line, .. }) => assert_eq!(line, Some(19)),
            other => panic!("expected config error, got {other:?}"),
        }
    }

    #[test]
    fn role_key_is_kept_and_must_not_be_empty() {
        let c = Config::parse(
            &GOOD.replace("database = \"app\"", "database = \"app\"\nrole = \"app_reader\""),
            &Registry::default(),
        )
        .unwrap();
        assert_eq!(c.checks[0].role.as_deref(), Some("app_reader"));
        assert_eq!(Config::parse(GOOD, &Registry::default()).unwrap().checks[0].role, None);
        let e = Config::parse(
            &GOOD.replace("database = \"app\"", "database = \"app\"\nrole = \" \""),
            &Registry::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("role must not be empty"), "{e}");
    }

    #[test]
    fn history_and_rto_keys() {
        let text = format!("history = \"/var/lib/rc/h.sqlite\"\n{}", GOOD.replace("timeout = \"30m\"", "rto = \"2h\""));
        let c = Config::parse(&text, &Registry::default()).unwrap();
        assert_eq!(c.history, Some(PathBuf::from("/var/lib/rc/h.sqlite")));
        assert_eq!(c.rto.get("app"), Some(&Duration::from_secs(7200)));
        assert!(Config::parse(GOOD, &Registry::default()).unwrap().rto.is_empty());
    }

    #[test]
    fn bad_values_are_explained() {
        let bad = GOOD.replace("\"30m\"", "\"thirty minutes\"");
        let e = Config::parse(&bad, &Registry::default()).unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
        let bad = GOOD.replace("kind = \"basebackup\"", "kind = \"tape\"");
        let e = Config::parse(&bad, &Registry::default()).unwrap_err();
        assert!(e.to_string().contains("unknown source kind \"tape\""), "{e}");
        let bad =
            GOOD.replace("kind = \"local\"", "kind = \"local\"\nsettings = { archive_command = \"cp %p /prod\" }");
        let e = Config::parse(&bad, &Registry::default()).unwrap_err();
        assert!(e.to_string().contains("archive_command cannot be changed"), "{e}");
        assert!(Config::parse("", &Registry::default()).is_err());
    }
}
