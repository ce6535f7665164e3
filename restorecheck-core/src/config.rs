//! The TOML configuration: parsing with line numbers, validation, and the [`Registry`] that
//! turns `kind = "…"` tables into trait objects. `validate` and `run` share this path exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::assertion::Assertion;
use crate::assertions::{SqlAssertion, SqlAssertionConfig};
use crate::error::{Error, Result};
use crate::runner::Check;
use crate::source::BackupSource;
use crate::sources::{BaseBackupConfig, BaseBackupSource, CommandConfig, CommandSource, PgDumpConfig, PgDumpSource};
use crate::spec::CheckSpec;
use crate::target::RestoreTarget;
#[cfg(feature = "docker")]
use crate::targets::DockerTarget;
use crate::targets::{DockerTargetConfig, LocalTarget, LocalTargetConfig};

pub(crate) use crate::spec::IntegrityConfig;

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Where work directories go (default: the system temp dir).
    pub(crate) work_dir: Option<PathBuf>,
    /// The run history file (default [`crate::history::default_path`]).
    pub(crate) history: Option<PathBuf>,
    /// The checks, run in order.
    #[serde(default)]
    pub(crate) check: Vec<CheckConfig>,
    /// `[[notify]]`: where reports go after a run ([`crate::notify`]).
    #[serde(default)]
    pub(crate) notify: Vec<crate::notify::NotifyTarget>,
    /// URL pinged (GET) after a fully passing run: a dead man's switch.
    pub(crate) heartbeat: Option<crate::notify::Heartbeat>,
}

/// One `[[check]]`: the [`CheckSpec`] keys (see there for their meaning) plus the `source`,
/// `target` and `assert` tables, kept with their spans for line numbers in errors. (The spec
/// keys are spelled out here rather than flattened: serde's `flatten` loses both the spans and
/// `deny_unknown_fields`.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckConfig {
    /// [`CheckSpec::name`].
    pub(crate) name: String,
    /// [`CheckSpec::database`].
    pub(crate) database: Option<String>,
    /// [`CheckSpec::role`].
    pub(crate) role: Option<String>,
    /// [`CheckSpec::max_backup_age`].
    #[serde(default, with = "opt_duration")]
    pub(crate) max_backup_age: Option<Duration>,
    /// [`CheckSpec::timeout`].
    #[serde(default, with = "opt_duration")]
    pub(crate) timeout: Option<Duration>,
    /// [`CheckSpec::rto`].
    #[serde(default, with = "opt_duration")]
    pub(crate) rto: Option<Duration>,
    /// [`CheckSpec::coverage`].
    #[serde(default, with = "opt_duration")]
    pub(crate) coverage: Option<Duration>,
    /// [`CheckSpec::backup`].
    pub(crate) backup: Option<String>,
    /// [`CheckSpec::recovery_target`].
    pub(crate) recovery_target: Option<crate::source::RecoveryTarget>,
    /// `[check.integrity]`: [`CheckSpec::integrity`].
    #[serde(default)]
    pub(crate) integrity: IntegrityConfig,
    /// `[check.source]`.
    pub(crate) source: Spanned<toml::Table>,
    /// `[check.target]` (default: `kind = "local"`).
    pub(crate) target: Option<Spanned<toml::Table>>,
    /// `[[check.assert]]`.
    #[serde(default)]
    pub(crate) assert: Vec<Spanned<toml::Table>>,
}

impl CheckConfig {
    /// The check's settings.
    pub(crate) fn spec(&self) -> CheckSpec {
        let CheckConfig {
            name,
            database,
            role,
            max_backup_age,
            timeout,
            rto,
            coverage,
            backup,
            recovery_target,
            integrity,
            source: _,
            target: _,
            assert: _,
        } = self.clone();
        CheckSpec { name, database, role, max_backup_age, timeout, rto, coverage, integrity, backup, recovery_target }
    }
}

/// Serde helper for optional human durations (`"24h"`, `"90s"`, `"1h 30m"`).
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserializes `Option<Duration>` from a human string.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
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

/// A kind built from its own options table: its config struct (serde, unknown keys are errors)
/// and the constructor that validates it. Implemented by every built-in source, target and
/// assertion; register one with [`Registry::register_source_type`] (and the target/assertion
/// twins) instead of writing a closure.
pub trait FromOptions: Sized {
    /// The options of `[check.source]`/`[check.target]`/`[[check.assert]]` without `kind`.
    type Options: serde::de::DeserializeOwned;
    /// Builds the value from its options (validating them).
    fn from_options(options: Self::Options) -> Result<Self>;
}

macro_rules! from_options {
    ($($ty:ty => $opts:ty, |$cfg:ident| $build:expr;)*) => {$(
        impl FromOptions for $ty {
            type Options = $opts;
            fn from_options($cfg: $opts) -> Result<Self> {
                $build
            }
        }
    )*};
}

from_options! {
    BaseBackupSource => BaseBackupConfig, |cfg| { cfg.validate()?; Ok(BaseBackupSource::new(cfg)) };
    PgDumpSource => PgDumpConfig, |cfg| { cfg.validate()?; Ok(PgDumpSource::new(cfg)) };
    crate::sources::PgBackRestSource => crate::sources::PgBackRestConfig, |cfg| crate::sources::PgBackRestSource::new(cfg);
    crate::sources::BarmanSource => crate::sources::BarmanConfig, |cfg| crate::sources::BarmanSource::new(cfg);
    CommandSource => CommandConfig, |cfg| Ok(CommandSource::new(cfg));
    crate::sources::WalgSource => crate::sources::WalgConfig, |cfg| Ok(crate::sources::WalgSource::new(cfg));
    crate::sources::WaleSource => crate::sources::WaleConfig, |cfg| Ok(crate::sources::WaleSource::new(cfg));
    LocalTarget => LocalTargetConfig, |cfg| LocalTarget::new(cfg);
    SqlAssertion => SqlAssertionConfig, |cfg| SqlAssertion::new(cfg);
    crate::assertions::CanaryAssertion => SqlAssertionConfig, |cfg| crate::assertions::CanaryAssertion::new(cfg);
}

#[cfg(feature = "docker")]
impl FromOptions for DockerTarget {
    type Options = DockerTargetConfig;
    fn from_options(cfg: DockerTargetConfig) -> Result<Self> {
        DockerTarget::new(cfg)
    }
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Registry { sources: BTreeMap::new(), targets: BTreeMap::new(), assertions: BTreeMap::new() };
        r.register_source_type::<BaseBackupSource>("basebackup");
        r.register_source_type::<PgDumpSource>("pg_dump");
        r.register_source_type::<crate::sources::PgBackRestSource>("pgbackrest");
        r.register_source_type::<crate::sources::BarmanSource>("barman");
        r.register_source_type::<CommandSource>("command");
        r.register_source_type::<crate::sources::WalgSource>("walg");
        r.register_source_type::<crate::sources::WaleSource>("wale");
        r.register_target_type::<LocalTarget>("local");
        #[cfg(feature = "docker")]
        r.register_target_type::<DockerTarget>("docker");
        r.register_assertion_type::<crate::assertions::CanaryAssertion>("canary");
        r.register_assertion_type::<SqlAssertion>("sql");
        r
    }
}

impl Registry {
    /// Registers source type `T` as `kind = "<kind>"`: its options table is deserialized into
    /// `T::Options` (errors name `source <kind>`) and built with [`FromOptions::from_options`].
    pub fn register_source_type<T: BackupSource + FromOptions + 'static>(&mut self, kind: &str) {
        let what = format!("source {kind}");
        self.register_source(
            kind,
            move |t| Ok(Arc::new(T::from_options(options(&what, t)?)?) as Arc<dyn BackupSource>),
        );
    }

    /// Registers target type `T` as `kind = "<kind>"` (see [`Self::register_source_type`]).
    pub fn register_target_type<T: RestoreTarget + FromOptions + 'static>(&mut self, kind: &str) {
        let what = format!("target {kind}");
        self.register_target(kind, move |t| {
            Ok(Arc::new(T::from_options(options(&what, t)?)?) as Arc<dyn RestoreTarget>)
        });
    }

    /// Registers assertion type `T` as `kind = "<kind>"` (see [`Self::register_source_type`]).
    pub fn register_assertion_type<T: Assertion + FromOptions + 'static>(&mut self, kind: &str) {
        let what = format!("assertion {kind}");
        self.register_assertion(
            kind,
            move |t| Ok(Arc::new(T::from_options(options(&what, t)?)?) as Arc<dyn Assertion>),
        );
    }

    /// Registers a source kind with a constructor of its own.
    pub fn register_source(
        &mut self,
        kind: &str,
        f: impl Fn(toml::Table) -> Result<Arc<dyn BackupSource>> + Send + Sync + 'static,
    ) {
        self.sources.insert(kind.to_string(), Arc::new(f));
    }

    /// Registers a target kind with a constructor of its own.
    pub fn register_target(
        &mut self,
        kind: &str,
        f: impl Fn(toml::Table) -> Result<Arc<dyn RestoreTarget>> + Send + Sync + 'static,
    ) {
        self.targets.insert(kind.to_string(), Arc::new(f));
    }

    /// Registers an assertion kind with a constructor of its own.
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
        let Some(f) = self.targets.get(&kind) else {
            #[cfg(not(feature = "docker"))]
            if kind == "docker" {
                // The options still parse as in a full build, so their errors read the same.
                options::<DockerTargetConfig>("target docker", table)?;
                return Err(Error::feature_off("docker", "target kind \"docker\""));
            }
            return Err(unknown_kind("target", &kind, self.targets.keys()));
        };
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
            let source = registry.source(c.source.get_ref().clone()).map_err(at(span))?;
            let target = match &c.target {
                Some(t) => {
                    let span = t.span();
                    registry.target(t.get_ref().clone()).map_err(at(span))?
                }
                None => registry.target(toml::Table::new())?,
            };
            let mut assertions: Vec<Arc<dyn Assertion>> = Vec::new();
            for a in &c.assert {
                let span = a.span();
                assertions.push(registry.assertion(a.get_ref().clone()).map_err(at(span))?);
            }
            checks.push(c.spec().build(source, target, assertions)?);
        }
        let notify = crate::notify::NotifyConfig { targets: file.notify, heartbeat: file.heartbeat };
        notify.validate()?;
        Ok(Config { work_dir: file.work_dir, checks, history: file.history, notify })
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
        assert_eq!(c.checks[0].rto, Some(Duration::from_secs(7200)));
        assert_eq!(Config::parse(GOOD, &Registry::default()).unwrap().checks[0].rto, None);
    }

    /// A target of physical backups only (the default capabilities).
    #[derive(Debug)]
    struct PhysicalOnly;

    #[async_trait::async_trait]
    impl RestoreTarget for PhysicalOnly {
        fn kind(&self) -> &'static str {
            "physical_only"
        }
        async fn preflight(&self, _pg_major: Option<u32>) -> Result<()> {
            Ok(())
        }
        async fn start(
            &self,
            _ctx: &crate::RunContext,
            _artifact: &crate::Artifact,
            _req: &crate::RestoreRequest,
        ) -> Result<Box<dyn crate::RunningServer>> {
            Err(Error::internal("not started in this test"))
        }
    }

    #[test]
    fn a_target_that_cannot_take_the_sources_artifact_is_refused_at_parse_time() {
        let text = r#"
[[check]]
name = "dump"
[check.source]
kind = "pg_dump"
path = "/backups/app.dump"
[check.target]
kind = "physical_only"
"#;
        let mut registry = Registry::default();
        registry.register_target("physical_only", |_| Ok(Arc::new(PhysicalOnly) as Arc<dyn RestoreTarget>));
        let e = Config::parse(text, &registry).unwrap_err();
        assert!(e.to_string().contains("target physical_only cannot restore logical dumps (source pg_dump)"), "{e}");
        Config::parse(&text.replace("kind = \"physical_only\"", "kind = \"local\""), &registry).unwrap();
        // The docker target loads dumps too.
        #[cfg(feature = "docker")]
        Config::parse(&text.replace("kind = \"physical_only\"", "kind = \"docker\""), &registry).unwrap();
    }

    #[test]
    #[cfg(not(feature = "docker"))]
    fn the_docker_target_names_its_feature() {
        let text = GOOD.replace("kind = \"local\"", "kind = \"docker\"");
        let e = Config::parse(&text, &Registry::default()).unwrap_err();
        assert!(e.to_string().contains("target kind \"docker\" needs restorecheck-core's `docker` feature"), "{e}");
        // Its options are still checked as in a full build.
        let bad = GOOD.replace("kind = \"local\"", "kind = \"docker\"\nimage_name = \"x\"");
        let e = Config::parse(&bad, &Registry::default()).unwrap_err();
        assert!(e.to_string().contains("unknown field `image_name`"), "{e}");
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
