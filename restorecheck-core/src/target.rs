//! The [`RestoreTarget`] trait: where a fetched backup is brought up as a PostgreSQL server.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::RunContext;
use crate::error::Result;
use crate::postgres::Lsn;
use crate::source::{Artifact, ArtifactKind, PhysicalBackup};

/// Options for [`RestoreTarget::start`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestoreRequest {
    /// The run's private work directory (the fetched data dir lives inside it).
    pub work_dir: PathBuf,
    /// Short directory for the server's Unix socket (must fit in 107 bytes with the file name).
    pub socket_dir: PathBuf,
    /// The check's database: where a logical dump is loaded when it names none.
    pub database: String,
}

impl RestoreRequest {
    /// A request for the given work and socket directories.
    pub fn new(work_dir: PathBuf, socket_dir: PathBuf) -> Self {
        Self { work_dir, socket_dir, database: "postgres".into() }
    }

    /// Sets the check's database.
    pub fn with_database(mut self, db: impl Into<String>) -> Self {
        self.database = db.into();
        self
    }
}

/// Where recovery ended, as reported by the restored server.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RecoveryInfo {
    /// Last WAL position replayed (`pg_last_wal_replay_lsn()` or the log's `redo done at`).
    pub end_lsn: Option<Lsn>,
    /// Commit time of the last replayed transaction.
    pub last_replayed_at: Option<DateTime<Utc>>,
    /// Timeline the server runs on after recovery.
    pub timeline: Option<u32>,
    /// `server_version` of the restored server.
    pub server_version: Option<String>,
    /// How recovery ran: `crash` (self-contained backup) or `archive` (restore_command).
    pub mode: Option<String>,
    /// What recovery was required to reach, and whether it did.
    pub expected_end: Vec<crate::source::ExpectedEnd>,
    /// WAL segment size of the cluster, in bytes.
    pub wal_segment_size: Option<u64>,
}

/// How to reach a restored server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Socket directory (host starting with `/`) or host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// A superuser role that exists in the restored cluster.
    pub user: String,
    /// The per-run password of `user`, once the target switched the copy from peer to
    /// password authentication (after promotion). Never printed: `Debug` shows `***`.
    pub password: Option<RunPassword>,
}

/// A per-run random password for the restored copy's superuser role. `Debug` and `Display`
/// never show it; [`expose`](RunPassword::expose) hands it to a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct RunPassword(String);

impl RunPassword {
    /// A fresh password: 32 random bytes from the kernel, as 64 hex digits.
    pub fn generate() -> Result<Self> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| crate::Error::io("reading random bytes", "/dev/urandom", e))?;
        Ok(RunPassword(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The password itself, for a connection (never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SCRAM-SHA-256 verifier, to set with `ALTER ROLE … PASSWORD` without the password
    /// itself ever reaching the server (or its log).
    pub fn scram_verifier(&self) -> String {
        postgres_protocol::password::scram_sha_256(self.0.as_bytes())
    }
}

impl std::fmt::Debug for RunPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Connection {
    /// A tokio-postgres config for `database` (with the run's password once there is one).
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            c.host_path(&self.host);
        } else {
            c.host(&self.host);
        }
        c.port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("restorecheck")
            .connect_timeout(std::time::Duration::from_secs(5));
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }

    /// Connects to `database`, driving the connection on a background task.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client> {
        spawn_connection(self.config(database), database).await
    }

    /// A config for **restorecheck's own queries** on a restored (untrusted) database: the
    /// session starts with `search_path = pg_catalog, pg_temp` (it beats `ALTER DATABASE/ROLE …
    /// SET search_path`, so nothing the database defines can shadow a catalog function,
    /// operator, type or table) and, on PostgreSQL 17+ (`server_major` ≥ 17 or unknown), with
    /// `event_triggers = off`, so no event or login trigger fires on the session. Older servers
    /// reject that setting at startup; [`Connection::tool_connect`] retries without it when the
    /// major is unknown.
    pub fn tool_config(&self, database: &str, server_major: Option<u32>) -> tokio_postgres::Config {
        let mut c = self.config(database);
        c.options(session_options(true, server_major));
        c
    }

    /// Connects to `database` for restorecheck's own queries (see [`Connection::tool_config`]).
    pub async fn tool_connect(&self, database: &str, server_major: Option<u32>) -> Result<tokio_postgres::Client> {
        match spawn_connection(self.tool_config(database, server_major), database).await {
            Err(crate::Error::Postgres { source, .. }) if server_major.is_none() && rejects_event_triggers(&source) => {
                spawn_connection(self.tool_config(database, Some(16)), database).await
            }
            other => other,
        }
    }
}

/// `search_path` of restorecheck's own sessions.
pub(crate) const TOOL_SEARCH_PATH: &str = "pg_catalog,pg_temp";

/// Startup options (`-c name=value …`) of a session restorecheck opens: with `tool`, the
/// hardened `search_path`, and checksum failures that stay errors (`ignore_checksum_failure`
/// and `zero_damaged_pages` off: a restored database's or role's `ALTER … SET` would beat the
/// server's command line, but not these); on PostgreSQL 17+ (or an unknown major),
/// `event_triggers=off`.
pub(crate) fn session_options(tool: bool, server_major: Option<u32>) -> String {
    let mut o = Vec::new();
    if tool {
        o.push(format!("-c search_path={TOOL_SEARCH_PATH}"));
        o.push("-c ignore_checksum_failure=off -c zero_damaged_pages=off".to_string());
    }
    if server_major.is_none_or(|m| m >= 17) {
        o.push("-c event_triggers=off".to_string());
    }
    o.join(" ")
}

/// True when a server older than 17 refused the session because it has no `event_triggers`
/// setting (`FATAL: unrecognized configuration parameter "event_triggers"`).
pub(crate) fn rejects_event_triggers(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == tokio_postgres::error::SqlState::UNDEFINED_OBJECT && d.message().contains("\"event_triggers\"")
    })
}

/// Connects with `config`, driving the connection on a background task.
pub(crate) async fn spawn_connection(config: tokio_postgres::Config, database: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| crate::Error::postgres(format!("connecting to database {database:?}"), e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(client)
}

impl RecoveryInfo {
    /// The restored server's major version, from [`RecoveryInfo::server_version`] (`"15.18 (Debian …)"` → 15).
    pub fn server_major(&self) -> Option<u32> {
        let v = self.server_version.as_deref()?;
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

/// Relation files that assertions read in full through the restored server, which verified
/// each page's data checksum as it read it (with `ignore_checksum_failure` and
/// `zero_damaged_pages` off), so [`RunningServer::verify_checksums`] need not read them again.
///
/// Keys are relation paths relative to the data dir as `pg_relation_filepath` gives them
/// (`base/5/16384`, `global/1262`, `pg_tblspc/16390/PG_15_202209061/5/16391`) and stand for
/// every segment of the relation's main fork; the value names the assertion that read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCoverage {
    files: std::collections::BTreeMap<String, String>,
}

impl ReadCoverage {
    /// Nothing covered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that assertion `by` read every block of the main fork of `relation` (a
    /// `pg_relation_filepath`) through the server without an error. The first record wins.
    pub fn insert(&mut self, relation: impl Into<String>, by: &str) {
        self.files.entry(relation.into()).or_insert_with(|| by.to_string());
    }

    /// The assertion that read `relation` in full, if one did.
    pub fn covered_by(&self, relation: &str) -> Option<&str> {
        self.files.get(relation).map(String::as_str)
    }

    /// Relations covered.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// A PostgreSQL server brought up by a target on a fetched backup.
///
/// # Contract
/// - [`wait_recovered`](RunningServer::wait_recovered) returns once recovery has really
///   finished (the server left recovery and accepts connections), never after a fixed sleep.
///   A server that dies during recovery is [`Error::BackupDefect`](crate::Error::BackupDefect)
///   with the log tail when the log shows recovery was under way.
/// - [`teardown`](RunningServer::teardown) stops the server and removes what the target
///   created; it is idempotent and must be safe to call in any state.
#[async_trait]
pub trait RunningServer: Send + Sync + Debug {
    /// Waits until recovery has finished; reports where it ended.
    async fn wait_recovered(&mut self, ctx: &RunContext) -> Result<RecoveryInfo>;

    /// How to connect (valid after `wait_recovered` succeeded).
    fn connection(&self) -> Connection;

    /// The last lines of the server log.
    fn log_tail(&self, lines: usize) -> Option<String>;

    /// Notes for the report gathered while starting (user switched, files removed).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Stops the server cleanly and verifies every page's data checksum offline (what
    /// `pg_checksums --check` reads), when the cluster has data checksums and the target can,
    /// except the main forks of the relations in `covered`: assertions read those in full
    /// through this server, which verified each page's checksum as it read it. Their other
    /// forks (`_fsm`, `_vm`, `_init`) are still read. `Ok(None)`: not applicable here. A bad
    /// checksum is an [`Outcome::Fail`](crate::Outcome::Fail) naming the first bad pages;
    /// malformed files (a partial block, a link leaving the work dir) are an `Err`. Stops with
    /// [`Error::Cancelled`](crate::Error::Cancelled) when `ctx.cancel` fires. The server is not
    /// usable afterwards.
    async fn verify_checksums(
        &mut self,
        _ctx: &RunContext,
        _covered: &ReadCoverage,
    ) -> Result<Option<crate::assertion::Outcome>> {
        Ok(None)
    }

    /// Stops the server and removes what the target created. Idempotent.
    async fn teardown(&mut self) -> Result<()>;
}

/// A place to run PostgreSQL on fetched backup files.
///
/// # Contract
/// [`start`](RestoreTarget::start) prepares the data directory (ownership, modes, signal
/// files) and starts the server **cut off from production**: no archiving, no replication
/// connections, no listening on the network, its own authentication file. It returns as soon
/// as the server was started; the runner then calls [`RunningServer::wait_recovered`].
#[async_trait]
pub trait RestoreTarget: Send + Sync + Debug {
    /// Short kind name used in config and reports (`local`).
    fn kind(&self) -> &'static str;

    /// What this target can restore. The runner (and [`crate::CheckSpec::build`], so also
    /// `validate`) refuses a source whose artifact kind the target does not take, before
    /// anything is fetched. The default: physical backups only.
    fn capabilities(&self) -> Capabilities {
        Capabilities::PHYSICAL
    }

    /// Where the check's external tools (the source's backup tools, and the target's own
    /// PostgreSQL programs where it uses them) run, set up once per check after the work dir
    /// exists and closed by the runner before it is removed. The default: this host, with
    /// [`RunAs::Server`](crate::RunAs::Server) as the invoking user.
    async fn toolbox(
        &self,
        _ctx: &RunContext,
        req: &crate::toolbox::ToolboxRequest,
    ) -> Result<std::sync::Arc<dyn crate::toolbox::ToolBox>> {
        Ok(std::sync::Arc::new(crate::toolbox::HostTools { server_user: None, work_dir: Some(req.work_dir.clone()) }))
    }

    /// Checks the target can serve a backup of `pg_major` (binaries, OS user), without starting
    /// anything. Used by `validate` with `None` (any version) and before fetching.
    async fn preflight(&self, pg_major: Option<u32>) -> Result<()>;

    /// Checks the fetched files against the backup's `backup_manifest` with the target's own
    /// `pg_verifybackup`, before anything starts (missing, extra or altered files are a
    /// [`Error::BackupDefect`](crate::Error::BackupDefect)). Returns a note for the report.
    /// The default says the target cannot verify.
    async fn verify_backup(&self, _ctx: &RunContext, _backup: &PhysicalBackup) -> Result<String> {
        Ok(format!("backup_manifest not verified: target {} has no pg_verifybackup step", self.kind()))
    }

    /// Starts PostgreSQL on `artifact`: recovery of a physical backup, or a fresh cluster with
    /// a dump loaded (the restore phase ends when it is loaded). Only called with kinds
    /// [`capabilities`](Self::capabilities) accepts.
    async fn start(
        &self,
        ctx: &RunContext,
        artifact: &Artifact,
        req: &RestoreRequest,
    ) -> Result<Box<dyn RunningServer>>;
}

/// What a [`RestoreTarget`] can restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Artifact::Physical`]: data directories with archive or crash recovery.
    pub physical: bool,
    /// [`Artifact::Logical`]: dumps loaded into a fresh cluster.
    pub logical: bool,
    /// The source's tools run on this host (false: elsewhere, e.g. in a container of the
    /// check's image, where a source that cannot run there is refused,
    /// [`crate::BackupSource::tools_run_elsewhere`]).
    pub tools_on_host: bool,
}

impl Capabilities {
    /// Physical backups only.
    pub const PHYSICAL: Capabilities = Capabilities { physical: true, logical: false, tools_on_host: true };
    /// Physical backups and logical dumps.
    pub const ALL: Capabilities = Capabilities { physical: true, logical: true, tools_on_host: true };

    /// The same, with the source's tools run elsewhere than this host.
    pub const fn tools_elsewhere(self) -> Capabilities {
        Capabilities { tools_on_host: false, ..self }
    }

    /// Whether `kind` can be restored.
    pub fn accepts(&self, kind: ArtifactKind) -> bool {
        match kind {
            ArtifactKind::Physical => self.physical,
            ArtifactKind::Logical => self.logical,
        }
    }
}

/// Refuses a source/target pair whose artifact the target cannot restore, with what to do.
/// A source that decides per backup (`artifact_kind() == None`) passes here; the runner checks
/// its artifact with [`check_artifact`] after the fetch.
pub(crate) fn check_compatible(source: &dyn crate::BackupSource, target: &dyn RestoreTarget) -> Result<()> {
    if !target.capabilities().tools_on_host {
        if let Err(why) = source.tools_run_elsewhere() {
            return Err(crate::Error::config(format!(
                "source {} cannot run its tool where target {} runs tools (in the container image): {why}; \
                 use [check.target] kind = \"local\" for this source",
                source.kind(),
                target.kind()
            )));
        }
    }
    match source.artifact_kind() {
        Some(kind) => check_artifact(kind, source, target),
        None => Ok(()),
    }
}

/// Refuses an artifact of `kind` the target cannot restore.
pub(crate) fn check_artifact(
    kind: ArtifactKind,
    source: &dyn crate::BackupSource,
    target: &dyn RestoreTarget,
) -> Result<()> {
    if target.capabilities().accepts(kind) {
        return Ok(());
    }
    Err(crate::Error::config(format!(
        "target {} cannot restore {kind} (source {}); use a target that can, e.g. [check.target] kind = \"local\"",
        target.kind(),
        source.kind()
    )))
}
