//! The [`BackupSource`] trait: where backups come from.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::RunContext;
use crate::error::Result;
use crate::postgres::Lsn;

/// One backup as a source sees it, before anything is fetched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupInfo {
    /// Identifier unique within the source (a folder name, a tool's backup label).
    pub id: String,
    /// When the backup was taken (its start time), if the source can tell.
    pub taken_at: Option<DateTime<Utc>>,
    /// Size in bytes as stored, if known.
    pub size_bytes: Option<u64>,
    /// What kind of backup this is (`plain`, `tar`, `tar.gz`, …).
    pub kind: String,
    /// Human description of where it lives (`basebackup:/backups/base/2026-11-26`).
    pub location: String,
    /// The backup's PostgreSQL major version, if known without fetching.
    pub pg_major: Option<u32>,
    /// Free-form label recorded with the backup (pg_basebackup `LABEL`).
    pub label: Option<String>,
    /// The timeline the backup was taken on, if the source can tell without fetching.
    pub timeline: Option<u32>,
}

/// Options for [`BackupSource::fetch`]. New options become new fields, never new parameters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchRequest {
    /// Empty directory (mode 0700, owned by the tester) to write the data directory into.
    pub data_dir: PathBuf,
    /// Empty directory to put tablespaces into, one subfolder per tablespace OID.
    pub tablespace_dir: PathBuf,
    /// Scratch space the source may use; removed by the runner afterwards.
    pub scratch_dir: PathBuf,
    /// Where recovery must stop when the check sets it ([`crate::CheckSpec::recovery_target`]);
    /// it overrides the source's own option. `None`: the source's option (default latest).
    pub recovery_target: Option<RecoveryTarget>,
    /// Whether the check verifies `backup_manifest` (`[check.integrity] verify_manifest`,
    /// default on): a source that can check files against it while writing them does so.
    pub verify_manifest: bool,
}

impl FetchRequest {
    /// A request writing into the given directories.
    pub fn new(data_dir: PathBuf, tablespace_dir: PathBuf, scratch_dir: PathBuf) -> Self {
        Self { data_dir, tablespace_dir, scratch_dir, recovery_target: None, verify_manifest: true }
    }

    /// Sets the check's recovery target.
    pub fn with_recovery_target(mut self, target: Option<RecoveryTarget>) -> Self {
        self.recovery_target = target;
        self
    }

    /// Sets whether the check verifies `backup_manifest`.
    pub fn with_verify_manifest(mut self, verify: bool) -> Self {
        self.verify_manifest = verify;
        self
    }

    /// The recovery target to use: the check's, else the source's `configured` one.
    pub fn recovery_target_or(&self, configured: &RecoveryTarget) -> RecoveryTarget {
        self.recovery_target.clone().unwrap_or_else(|| configured.clone())
    }
}

/// How recovery gets further WAL after the backup's own.
#[derive(Debug, Clone, PartialEq)]
pub enum WalSupply {
    /// The backup carries all the WAL it needs (`-X stream`/`fetch`): crash recovery to its end.
    SelfContained,
    /// Archive recovery: PostgreSQL runs this program for each file it needs.
    Fetch(WalFetch),
}

/// The program archive recovery runs to get one WAL file, as a structure rather than a shell
/// string, so that each target turns it into its own `restore_command`: with host paths for a
/// server on this host, with the same paths mounted for a container, run by the target's own
/// OS user (which the target checks can read `read_only_paths`).
///
/// Contract for the program: it must only read (never write into a backup or an archive);
/// exit 0 when the file was restored to its second argument, 1 when it does not exist, and
/// more than 125 on real errors (which stops recovery instead of ending it early).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WalFetch {
    /// The program (an absolute host path: a script the source wrote into the work dir, or a
    /// tool such as `/bin/sh`).
    pub program: PathBuf,
    /// Its arguments; `%f` (file name wanted) and `%p` (where to put it) are replaced by
    /// PostgreSQL. A source-written script conventionally takes `%f %p` last.
    pub args: Vec<String>,
    /// Environment the program needs (credentials of a backup tool); kept out of logs.
    pub env: SecretEnv,
    /// Files and folders the program reads: a target makes them readable to (and, for a
    /// container, mounts read-only for) its server's OS user.
    pub read_only_paths: Vec<PathBuf>,
}

impl WalFetch {
    /// Runs `program` with `args`.
    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        WalFetch {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: SecretEnv::default(),
            read_only_paths: Vec::new(),
        }
    }

    /// A source-written script taking `%f %p`.
    pub fn script(path: impl Into<PathBuf>) -> Self {
        WalFetch::new(path, ["%f", "%p"])
    }

    /// A shell command line from the (trusted) configuration, run by `/bin/sh -c`.
    pub fn shell(command: impl Into<String>) -> Self {
        WalFetch::new("/bin/sh", ["-c".to_string(), command.into()])
    }

    /// Adds paths the program reads.
    pub fn reading(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.read_only_paths.extend(paths);
        self
    }

    /// Sets the program's environment.
    pub fn with_env(mut self, env: impl Into<SecretEnv>) -> Self {
        self.env = env.into();
        self
    }

    /// The `restore_command` setting for a server that sees this host's paths: program and
    /// arguments quoted for `/bin/sh`.
    pub fn restore_command(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .map(|a| crate::wal_archive::shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where recovery must get to for the restore to count as complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedEnd {
    /// Recovery must replay at least up to here.
    pub lsn: Option<Lsn>,
    /// …or at least into this WAL segment (turned into an LSN once the segment size is known).
    pub wal_segment: Option<String>,
    /// Where this expectation comes from ("newest segment in the WAL archive 0000…").
    pub reason: String,
}

/// How far recovery of a physical backup goes (`recovery_target` in a source's config).
///
/// TOML: `"latest"` (default: replay all archived WAL), `"immediate"` (stop at consistency),
/// `{ time = "2026-11-26 03:00:00+00" }`, `{ lsn = "0/3000000" }`, `{ name = "before_migration" }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryTarget {
    /// Replay everything available.
    #[default]
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// Stop before the first commit after this time (PostgreSQL timestamp syntax).
    Time(String),
    /// Stop at this WAL position.
    Lsn(Lsn),
    /// Stop at this restore point (`pg_create_restore_point`).
    Name(String),
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("latest"),
            RecoveryTarget::Immediate => f.write_str("immediate"),
            RecoveryTarget::Time(t) => write!(f, "time {t}"),
            RecoveryTarget::Lsn(l) => write!(f, "lsn {l}"),
            RecoveryTarget::Name(n) => write!(f, "restore point {n}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for RecoveryTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Table(std::collections::BTreeMap<String, String>),
        }
        let bad = || {
            D::Error::custom(
                "recovery_target must be \"latest\", \"immediate\", { time = \"…\" }, { lsn = \"X/Y\" } or { name = \"…\" }",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "latest" => Ok(RecoveryTarget::Latest),
            Raw::Word(w) if w == "immediate" => Ok(RecoveryTarget::Immediate),
            Raw::Word(_) => Err(bad()),
            Raw::Table(t) if t.len() == 1 => {
                let (k, v) = t.into_iter().next().ok_or_else(bad)?;
                match k.as_str() {
                    "time" => Ok(RecoveryTarget::Time(v)),
                    "lsn" => v.parse().map(RecoveryTarget::Lsn).map_err(D::Error::custom),
                    "name" => Ok(RecoveryTarget::Name(v)),
                    _ => Err(bad()),
                }
            }
            Raw::Table(_) => Err(bad()),
        }
    }
}

/// Which timeline archive recovery follows (`recovery_target_timeline` in a source's config,
/// next to `recovery_target`); the completeness proof follows the same one.
///
/// TOML: `"latest"` (default, as PostgreSQL 12+: the newest timeline whose `.history` file the
/// archive holds, and its ancestry), `"current"` (stay on the backup's own timeline) or a
/// timeline number (`2`, or `"2"`: that timeline and its ancestry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryTargetTimeline {
    /// The newest timeline in the archive.
    #[default]
    Latest,
    /// The timeline the backup was taken on.
    Current,
    /// This timeline (1 or higher).
    Id(u32),
}

impl RecoveryTargetTimeline {
    /// The value for PostgreSQL's `recovery_target_timeline` setting.
    pub fn setting(&self) -> String {
        self.to_string()
    }

    /// Parses `latest`, `current` or a timeline number (decimal, or hex with `0x`, as
    /// PostgreSQL accepts).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "recovery_target_timeline must be \"latest\", \"current\" or a timeline number (1, 2, …), not {s:?}"
            )
        };
        match t {
            "latest" => Ok(Self::Latest),
            "current" => Ok(Self::Current),
            _ => {
                let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => t.parse::<u32>().ok(),
                };
                n.filter(|n| *n >= 1).map(Self::Id).ok_or_else(bad)
            }
        }
    }
}

impl std::fmt::Display for RecoveryTargetTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Current => f.write_str("current"),
            Self::Id(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for RecoveryTargetTimeline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Id(n) => s.serialize_u32(*n),
            other => s.collect_str(other),
        }
    }
}

impl<'de> serde::Deserialize<'de> for RecoveryTargetTimeline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Word(String),
            Other(serde::de::IgnoredAny),
        }
        match Raw::deserialize(d)? {
            Raw::Other(_) => Err(D::Error::custom(
                "recovery_target_timeline must be \"latest\", \"current\" or a timeline number (1, 2, …)",
            )),
            Raw::Word(w) => Self::parse(&w).map_err(D::Error::custom),
            Raw::Number(n) => u32::try_from(n).ok().filter(|n| *n >= 1).map(Self::Id).ok_or_else(|| {
                D::Error::custom(format!("recovery_target_timeline {n} is not a timeline (they start at 1)"))
            }),
        }
    }
}

/// Format of a logical dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// `pg_dump -Fc`.
    Custom,
    /// `pg_dump -Fd`.
    Directory,
    /// `pg_dump -Ft`.
    Tar,
    /// Plain SQL (`pg_dump -Fp`), restored with psql.
    Plain,
    /// Plain SQL of a whole cluster (`pg_dumpall`, also `--globals-only`): roles, tablespaces
    /// and every database, restored with psql.
    #[serde(rename = "dumpall")]
    DumpAll,
}

impl std::fmt::Display for DumpFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Directory => "directory",
            DumpFormat::Tar => "tar",
            DumpFormat::Plain => "plain",
            DumpFormat::DumpAll => "dumpall",
        })
    }
}

/// A logical dump to load into a fresh cluster the target creates.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalDump {
    /// The dump file or `-Fd` folder (read only).
    pub path: PathBuf,
    /// Empty folder where the target creates the fresh cluster it loads the dump into (the
    /// request's data dir).
    pub data_dir: PathBuf,
    /// Major of the server the dump was taken from (0: the dump does not say).
    pub server_major: u32,
    /// Its format.
    pub format: DumpFormat,
    /// Whole-file compression still to undo while reading (plain SQL only).
    pub compression: crate::archive::Compression,
    /// Database to create and restore into (`None`: the check's database).
    pub database: Option<String>,
    /// `pg_dumpall --globals-only` output to run first.
    pub globals: Option<PathBuf>,
    /// Skip ownership instead of creating the roles the dump references.
    pub no_owner: bool,
    /// Archives: create the tablespaces the dump's objects live in (as fresh folders in the work
    /// dir) and restore into them, instead of `pg_restore --no-tablespaces`.
    pub restore_tablespaces: bool,
    /// `pg_restore -j` jobs.
    pub jobs: u32,
    /// The lowest PostgreSQL major whose tools and server can load this dump: the major of the
    /// server it was dumped from, raised to what the archive format needs (format 1.15 needs
    /// pg_restore 16, 1.16 needs 17). 0 when the dump does not say.
    pub min_major: u32,
    /// What made the dump, for messages ("pg_dump 17.2, archive format 1.16"), when known.
    pub made_by: Option<String>,
}

/// Environment variables the restored server needs (for its `restore_command`), possibly
/// secrets: `Debug` shows only the names.
#[derive(Clone, Default, PartialEq)]
pub struct SecretEnv(pub Vec<(String, String)>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| format!("{k}=***"))).finish()
    }
}

impl From<Vec<(String, String)>> for SecretEnv {
    fn from(v: Vec<(String, String)>) -> Self {
        SecretEnv(v)
    }
}

/// What [`BackupSource::fetch`] hands to a [`crate::RestoreTarget`]: a physical cluster to start
/// and recover, or a logical dump to load into a fresh cluster. A target says which it takes
/// ([`crate::target::Capabilities`]); the runner checks before anything is fetched.
#[derive(Debug, Clone)]
#[non_exhaustive]
// One per check, moved once: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Artifact {
    /// A data directory (with its WAL supply) to start and recover.
    Physical(PhysicalBackup),
    /// A dump to load into a fresh cluster.
    Logical(LogicalDump),
}

/// Which kind of [`Artifact`] a source produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// [`Artifact::Physical`].
    Physical,
    /// [`Artifact::Logical`].
    Logical,
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArtifactKind::Physical => "physical backups",
            ArtifactKind::Logical => "logical dumps",
        })
    }
}

impl Artifact {
    /// Its kind.
    pub fn kind(&self) -> ArtifactKind {
        match self {
            Artifact::Physical(_) => ArtifactKind::Physical,
            Artifact::Logical(_) => ArtifactKind::Logical,
        }
    }

    /// The PostgreSQL major of the backup (a dump's: the server it was dumped from, 0 unknown).
    pub fn pg_major(&self) -> u32 {
        match self {
            Artifact::Physical(p) => p.pg_major,
            Artifact::Logical(d) => d.server_major,
        }
    }

    /// The physical backup, if it is one.
    pub fn physical(&self) -> Option<&PhysicalBackup> {
        match self {
            Artifact::Physical(p) => Some(p),
            Artifact::Logical(_) => None,
        }
    }
}

impl From<PhysicalBackup> for Artifact {
    fn from(p: PhysicalBackup) -> Self {
        Artifact::Physical(p)
    }
}

impl From<LogicalDump> for Artifact {
    fn from(d: LogicalDump) -> Self {
        Artifact::Logical(d)
    }
}

/// The former name of [`PhysicalBackup`].
pub type FetchedBackup = PhysicalBackup;

/// A physical backup, fetched: a data directory and how recovery gets its WAL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PhysicalBackup {
    /// The data directory, ready for a target to prepare and start.
    pub data_dir: PathBuf,
    /// The PostgreSQL major version of the data directory (`PG_VERSION`).
    pub pg_major: u32,
    /// How recovery gets further WAL.
    pub wal: WalSupply,
    /// LSN at which the backup became consistent (manifest `WAL-Ranges` end), if known.
    pub backup_end_lsn: Option<Lsn>,
    /// Further points recovery must reach (e.g. the newest archived segment).
    pub expected_end: Vec<ExpectedEnd>,
    /// Database role names likely to be superusers, tried in order to connect after the target's
    /// own configured user (e.g. the OS owner recorded in the backup).
    pub superuser_hints: Vec<String>,
    /// Bytes written into the data directory and tablespaces.
    pub bytes_restored: u64,
    /// How far recovery goes (archive recovery only; self-contained backups stop at their end).
    pub recovery_target: RecoveryTarget,
    /// Which timeline archive recovery follows.
    pub recovery_target_timeline: RecoveryTargetTimeline,
    /// The timeline the backup was taken on (`backup_label`), if known; the runner reads it
    /// from `backup_label` before start when the source leaves it unset.
    pub backup_timeline: Option<u32>,
    /// What the WAL archive holds, by timeline, when the source can list it: the runner then
    /// requires recovery to reach the newest segment on the timeline path recovery follows
    /// (instead of an `expected_end` entry for the archive's newest segment).
    pub archive: Option<crate::wal_archive::ArchiveContents>,
    /// Set when the source checked every file `backup_manifest` lists against its size and
    /// checksum while writing it: targets then run `pg_verifybackup --skip-checksums` (file
    /// list, sizes, the manifest's own checksum, WAL) instead of reading everything again.
    pub manifest_stream_verified: Option<crate::postgres::manifest::StreamVerified>,
}

impl PhysicalBackup {
    /// A fetched backup with the given data directory and version and no further facts.
    pub fn new(data_dir: PathBuf, pg_major: u32, wal: WalSupply) -> Self {
        Self {
            data_dir,
            pg_major,
            wal,
            backup_end_lsn: None,
            expected_end: Vec::new(),
            superuser_hints: Vec::new(),
            bytes_restored: 0,
            recovery_target: RecoveryTarget::Latest,
            recovery_target_timeline: RecoveryTargetTimeline::Latest,
            backup_timeline: None,
            archive: None,
            manifest_stream_verified: None,
        }
    }
}

/// A place backups come from.
///
/// # Contract
/// - [`list`](BackupSource::list) returns every backup the source can see, **newest first**;
///   an empty list is not an error (the runner turns it into a failed check).
/// - [`fetch`](BackupSource::fetch) writes one backup's data directory into
///   [`FetchRequest::data_dir`] (and tablespaces under `tablespace_dir`), never writing,
///   renaming or deleting anything at the backup's location. It returns
///   [`Error::BackupDefect`](crate::Error::BackupDefect) when the backup is unreadable as a
///   backup (truncated archive, missing files) and another error kind when the tester could not
///   read it (permissions, missing tool).
/// - Both honour [`RunContext::cancel`]: on cancellation they return promptly; partial output is
///   removed by the runner.
#[async_trait]
pub trait BackupSource: Send + Sync + Debug {
    /// Short kind name used in config and reports (`basebackup`).
    fn kind(&self) -> &'static str;

    /// Human description of the location, for reports (never containing credentials).
    fn describe(&self) -> String;

    /// The backups this source sees, newest first.
    async fn list(&self, ctx: &RunContext) -> Result<Vec<BackupInfo>>;

    /// The backup the source's own configuration asks for (`backup = "…"`), if any.
    fn configured_backup(&self) -> Option<&str> {
        None
    }

    /// Picks the backup to test: `wanted` (a run's override), else [`configured_backup`],
    /// else the newest; `"latest"` and `"oldest"` are understood. The default implementation
    /// lists and selects; sources with a cheaper lookup may override it.
    ///
    /// [`configured_backup`]: BackupSource::configured_backup
    async fn select(&self, ctx: &RunContext, wanted: Option<&str>) -> Result<BackupInfo> {
        let all = self.list(ctx).await?;
        select_from(self.kind(), &self.describe(), all, wanted.or(self.configured_backup()))
    }

    /// Files and folders the source's tools read (a repository, a catalog, a dump folder,
    /// `file://` storage, the tool's configuration file): a target that runs the tools
    /// elsewhere ([`crate::ToolBox`], e.g. in a container) makes them available read-only at
    /// the same paths. Default: none.
    fn read_only_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Folders among [`read_only_paths`](Self::read_only_paths) that the source's tool writes
    /// into as though it owned them, even to list backups (Barman's locks and its WAL index). A
    /// toolbox that runs the tools elsewhere gives the tool a private copy-on-write view of each
    /// (the `docker` target: an overlay whose writes land in the check's work dir); the real
    /// folder is never written. Default: none.
    fn private_write_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Whether the source's tools can run where the target runs them when that is not this
    /// host (a container of the check's image, whose mounts of the source's paths are
    /// read-only). `Err(why)`: they cannot, and the check is refused when it is built. Default:
    /// they can.
    fn tools_run_elsewhere(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Fetches `backup` into the request's directories.
    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact>;

    /// Which kind of artifact [`fetch`](Self::fetch) produces (default physical), so that a
    /// target that cannot take it is refused before anything is fetched; `None` when it depends
    /// on the backup (the `command` source: a data directory or a dump), in which case the
    /// runner checks after the fetch, before anything is restored.
    fn artifact_kind(&self) -> Option<ArtifactKind> {
        Some(ArtifactKind::Physical)
    }
}

/// The timeline in a 24-hex-digit WAL segment name (`000000020000000000000003` → 2).
pub(crate) fn timeline_of_segment(name: &str) -> Option<u32> {
    (name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(&name[0..8], 16).ok())
        .flatten()
}

/// Orders backups newest first (by `taken_at`, then id), as [`BackupSource::list`] promises.
pub(crate) fn sort_newest_first(backups: &mut [BackupInfo]) {
    backups.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then_with(|| b.id.cmp(&a.id)));
}

/// Picks `wanted` (by id) or the first (newest) of `all`; the errors say what exists.
pub(crate) fn select_from(
    kind: &'static str,
    location: &str,
    all: Vec<BackupInfo>,
    wanted: Option<&str>,
) -> Result<BackupInfo> {
    use crate::error::Error;
    match wanted {
        None | Some("latest") => all
            .into_iter()
            .next()
            .ok_or_else(|| Error::defect(format!("no backup found in {location}: nothing to restore"))),
        Some("oldest") => all
            .into_iter()
            .last()
            .ok_or_else(|| Error::defect(format!("no backup found in {location}: nothing to restore"))),
        Some(id) => {
            let ids: Vec<String> = all.iter().map(|b| b.id.clone()).collect();
            all.into_iter().find(|b| b.id == id).ok_or_else(|| Error::Source {
                source_kind: kind,
                message: format!(
                    "backup {id:?} not found in {location}; available: {}",
                    if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
                ),
                source: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[serde(default)]
        recovery_target_timeline: RecoveryTargetTimeline,
    }

    #[test]
    fn recovery_target_timeline_parses_words_and_numbers_and_rejects_the_rest() {
        let p = |s: &str| toml::from_str::<T>(s).map(|t| t.recovery_target_timeline);
        assert_eq!(p("").unwrap(), RecoveryTargetTimeline::Latest);
        assert_eq!(p("recovery_target_timeline = \"latest\"").unwrap(), RecoveryTargetTimeline::Latest);
        assert_eq!(p("recovery_target_timeline = \"current\"").unwrap(), RecoveryTargetTimeline::Current);
        assert_eq!(p("recovery_target_timeline = 2").unwrap(), RecoveryTargetTimeline::Id(2));
        assert_eq!(p("recovery_target_timeline = \"3\"").unwrap(), RecoveryTargetTimeline::Id(3));
        assert_eq!(p("recovery_target_timeline = \"0x1A\"").unwrap(), RecoveryTargetTimeline::Id(26));
        for bad in ["0", "-1", "\"newest\"", "\"\"", "4294967296", "1.5"] {
            let e = p(&format!("recovery_target_timeline = {bad}")).unwrap_err().to_string();
            assert!(e.contains("recovery_target_timeline"), "{bad}: {e}");
        }
        assert_eq!(RecoveryTargetTimeline::Id(2).setting(), "2");
        assert_eq!(serde_json::to_value(RecoveryTargetTimeline::Id(2)).unwrap(), serde_json::json!(2));
        assert_eq!(serde_json::to_value(RecoveryTargetTimeline::Current).unwrap(), serde_json::json!("current"));
        assert_eq!(timeline_of_segment("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of_segment("00000002.history"), None);
    }
}
