//! Source `pgbackrest`: backups in a pgBackRest repository, restored with the real
//! `pgbackrest restore` (which verifies every file's checksum) and recovered with WAL from the
//! repository through `pgbackrest archive-get`.
//!
//! Everything pgBackRest is asked to do only reads the repository: `info`, `restore` and
//! `archive-get`. What it could otherwise write outside the work dir is switched off on the
//! command line, which beats `pgbackrest.conf`: its file log (`--log-level-file=off`; a restore
//! run as root would leave a root-owned log in the shared log folder), its lock folder (kept in
//! the work dir), asynchronous archive-get (it would write into the production spool path),
//! links and tablespaces restored to their production paths (`--no-link-all`,
//! `--reset-link-map`, `--tablespace-map-all` into the work dir) and partial restores
//! (`--reset-db-include`/`--reset-db-exclude`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::Lsn;
use crate::report::Phase;
use crate::source::{
    Artifact, BackupInfo, BackupSource, ExpectedEnd, FetchRequest, FetchedBackup, RecoveryTarget, WalFetch, WalSupply,
};
use crate::sources::tool;
use crate::wal_archive::shell_quote;

const KIND: &str = "pgbackrest";
const INSTALL_HINT: &str = "install pgBackRest (Debian/Ubuntu: apt-get install pgbackrest) in a version that reads \
                            the repository, or put it on PATH";

/// pgBackRest exit codes that mean the repository's copy of the backup is damaged or
/// incomplete (`src/build/error/error.yaml`): checksum (26), file-invalid (28), format (29),
/// file-read (42), backup-mismatch (51), file-missing (55), backup-set-invalid (75),
/// crypto (95), json-format (99).
const DEFECT_CODES: &[i32] = &[26, 28, 29, 42, 51, 55, 75, 95, 99];

/// Exit codes that say what the repository holds is wrong, not that reading it failed: a retry
/// reads the same bytes again. All of [`DEFECT_CODES`] but file-read (42), which a storage
/// hiccup also causes.
const DAMAGE_CODES: &[i32] = &[26, 28, 29, 51, 55, 75, 95, 99];

/// How often a failed `pgbackrest restore` is run again when the failure may be transient,
/// and the pause before each retry. pgBackRest's own per-file retries (`job-retry`, default 2,
/// the second after `job-retry-interval` = 15 s) are switched off for the restore, because
/// they also retry a checksum error and so delayed the verdict on a damaged file by ~38 s.
const RESTORE_RETRIES: &[std::time::Duration] =
    &[std::time::Duration::from_secs(2), std::time::Duration::from_secs(10)];

/// True when a `pgbackrest restore` that exited with `code` is worth running again: it did
/// not die of a signal (cancellation, OOM) and did not report damage.
fn retryable(code: Option<i32>) -> bool {
    code.is_some_and(|c| c != 0 && !DAMAGE_CODES.contains(&c))
}

/// Empties `dir` (a folder of the work dir) without following links, for a clean retry.
fn empty_dir(dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for e in rd.flatten() {
        let p = e.path();
        let is_dir = std::fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
        let r = if is_dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        r.map_err(|e| Error::io("removing", &p, e))?;
    }
    Ok(())
}

/// Options that restorecheck sets itself and that `options` therefore may not carry.
const RESERVED_OPTIONS: &[&str] = &[
    "stanza",
    "config",
    "repo",
    "set",
    "type",
    "target",
    "target-action",
    "target-exclusive",
    "target-timeline",
    "archive-mode",
    "pg1-path",
    "pg1-host",
    "tablespace-map",
    "tablespace-map-all",
    "link-all",
    "link-map",
    "db-include",
    "db-exclude",
    "lock-path",
    "log-level-file",
    "output",
];

/// Options of source `pgbackrest` (`[check.source] kind = "pgbackrest"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct PgBackRestConfig {
    /// The stanza (`--stanza`).
    pub stanza: String,
    /// `pgbackrest.conf` to use (`--config`; default: pgBackRest's own default).
    pub config: Option<PathBuf>,
    /// Repository number to restore from (`--repo`; default: pgBackRest searches them in order).
    #[setters(into = false)]
    pub repo: Option<u32>,
    /// Further pgBackRest options (`repo1-path = "/backups/pgbackrest"`, `job-retry = 0`). They
    /// reach every pgBackRest command as `PGBACKREST_*` environment variables, so an option only
    /// some commands know is no error. Keep secrets in the config file: options are visible in
    /// the restored server's `restore_command`.
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// `latest` (default), `oldest`, or a backup label (`20261126-030000F`).
    pub backup: Option<String>,
    /// How far to recover (default `latest`: all archived WAL).
    #[serde(default)]
    pub recovery_target: RecoveryTarget,
    /// Which timeline recovery follows (`"latest"`, default: the newest in the archive, as
    /// after a failover; `"current"`: the backup's own; or a timeline number).
    #[serde(default)]
    pub recovery_target_timeline: crate::source::RecoveryTargetTimeline,
}

impl PgBackRestConfig {
    /// Options for `stanza`, everything else at its default.
    pub fn new(stanza: impl Into<String>) -> Self {
        Self { stanza: stanza.into(), ..Self::default() }
    }
}

/// Source `pgbackrest`.
#[derive(Debug, Clone)]
pub struct PgBackRestSource {
    cfg: PgBackRestConfig,
    /// `options` as environment variables.
    env: Vec<(String, String)>,
}

fn source_err(message: impl Into<String>) -> Error {
    Error::Source { source_kind: KIND, message: message.into(), source: None }
}

impl PgBackRestSource {
    /// A source over `cfg`; rejects option names that are not pgBackRest options or that
    /// restorecheck sets itself.
    pub fn new(cfg: PgBackRestConfig) -> Result<Self> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                && !s.starts_with('-')
        };
        if !name_ok(&cfg.stanza) {
            return Err(Error::config(format!(
                "source pgbackrest: stanza {:?} is not a valid stanza name (letters, digits, - _ .)",
                cfg.stanza
            )));
        }
        if cfg.repo == Some(0) {
            return Err(Error::config("source pgbackrest: repo numbers start at 1"));
        }
        let mut env = Vec::new();
        for (key, value) in &cfg.options {
            let key_ok = !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !key.starts_with('-');
            if !key_ok {
                return Err(Error::config(format!(
                    "source pgbackrest: options.{key} is not a pgBackRest option name (write them as in pgbackrest.conf, e.g. repo1-path)"
                )));
            }
            if RESERVED_OPTIONS.contains(&key.as_str()) {
                return Err(Error::config(format!(
                    "source pgbackrest: options.{key} cannot be set: restorecheck sets it itself (stanza, config and repo have their own keys)"
                )));
            }
            let value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => if *b { "y" } else { "n" }.to_string(),
                other => {
                    return Err(Error::config(format!(
                        "source pgbackrest: options.{key} must be a string, number or boolean, not {other}"
                    )))
                }
            };
            env.push((format!("PGBACKREST_{}", key.to_ascii_uppercase().replace('-', "_")), value));
        }
        Ok(Self { cfg, env })
    }

    /// `pgbackrest` where the check's tools run.
    async fn program(&self, ctx: &RunContext, major: Option<u32>) -> Result<PathBuf> {
        ctx.tools.locate("pgbackrest", INSTALL_HINT, major).await
    }

    /// `pgbackrest --stanza=… [--config=…] [--repo=…]` with `options` in the environment.
    async fn command(&self, ctx: &RunContext, exe: &Path, major: Option<u32>) -> Result<tokio::process::Command> {
        let mut cmd = tool::command(ctx, exe, &self.env, major).await?;
        cmd.args(self.common_args());
        Ok(cmd)
    }

    fn common_args(&self) -> Vec<String> {
        let mut args = vec![format!("--stanza={}", self.cfg.stanza)];
        if let Some(c) = &self.cfg.config {
            args.push(format!("--config={}", c.display()));
        }
        if let Some(r) = self.cfg.repo {
            args.push(format!("--repo={r}"));
        }
        args
    }

    /// `pgbackrest info` for the stanza.
    async fn info(&self, ctx: &RunContext, phase: Phase, major: Option<u32>) -> Result<StanzaInfo> {
        let exe = self.program(ctx, major).await?;
        let mut cmd = self.command(ctx, &exe, major).await?;
        cmd.args(["--output=json", "--log-level-file=off", "info"]);
        let out = tool::run(ctx, phase, cmd, "pgbackrest info").await?;
        if !out.status.success() {
            return Err(source_err(format!(
                "`pgbackrest --stanza={} info` failed ({}): {}",
                self.cfg.stanza,
                out.status,
                out.message()
            )));
        }
        // pgBackRest 2.45 copies raw control characters into JSON strings (the text of an info
        // file it could not decrypt), which is invalid JSON: blank them and try again.
        let all: Vec<StanzaInfo> = serde_json::from_str(&out.stdout)
            .or_else(|_| serde_json::from_str(&out.stdout.replace(|c: char| c.is_control(), " ")))
            .map_err(|e| {
                source_err("cannot read the output of `pgbackrest info --output=json` (pgBackRest too old?)")
                    .with_source(e)
            })?;
        let stanza = all
            .into_iter()
            .find(|s| s.name == self.cfg.stanza)
            .ok_or_else(|| source_err(format!("`pgbackrest info` does not report stanza {:?}", self.cfg.stanza)))?;
        if stanza.backup.is_empty() && !matches!(stanza.status.code, 0 | 2) {
            if let Some(e) = self.wrong_cipher_pass(&stanza) {
                return Err(e);
            }
            return Err(source_err(format!(
                "stanza {:?}: {} (pgBackRest status {}); check `stanza`, `config` and the repository path \
                 (options.repo1-path), and that this host can read the repository",
                self.cfg.stanza, stanza.status.message, stanza.status.code
            )));
        }
        Ok(stanza)
    }

    /// An [`Error::Decryption`] when a repository is encrypted (`repoN-cipher-type` set) and
    /// its info files cannot be read: pgBackRest 2.45 then reports `[FormatError] unable to load
    /// info file '…/backup.info' or '…/backup.info.copy'` (the wrong key turns them into
    /// garbage) and `info` exits 0 with status 99. Both copies failing the same way means the
    /// key, not the files. Never quotes what pgBackRest read (decrypted garbage).
    fn wrong_cipher_pass(&self, stanza: &StanzaInfo) -> Option<Error> {
        let r = stanza.repo.iter().find(|r| {
            r.cipher != "none"
                && !r.cipher.is_empty()
                && (r.status.message.contains("[FormatError] unable to load info file")
                    || r.status.message.contains("[CryptoError]"))
        })?;
        let file = r
            .status
            .message
            .split('\'')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| format!("the info files of stanza {}", self.cfg.stanza));
        Some(Error::Decryption {
            file,
            message: format!(
                "the key is wrong: repo{key} is encrypted ({cipher}) and pgBackRest cannot decrypt its info files \
                 with the configured repo{key}-cipher-pass (both copies read as garbage; the repository itself may \
                 be fine)",
                key = r.key,
                cipher = r.cipher
            ),
            hint: format!(
                "set repo{key}-cipher-pass (in pgbackrest.conf or the source's options) to the passphrase the \
                 repository was created with, as in the pgbackrest.conf of the database host",
                key = r.key
            ),
            source: None,
        })
    }

    fn backup_info(&self, stanza: &StanzaInfo, b: &Backup) -> BackupInfo {
        let mut kind = format!("pgbackrest-{}", b.kind);
        if b.error {
            kind.push_str(" (error: pgBackRest found page checksum errors while taking it)");
        }
        let repo = b.database.repo_key.map(|k| format!(", repo{k}")).unwrap_or_default();
        BackupInfo {
            id: b.label.clone(),
            taken_at: DateTime::<Utc>::from_timestamp(b.timestamp.start, 0),
            size_bytes: b.info.as_ref().and_then(|i| i.repository.as_ref().and_then(|r| r.size).or(i.size)),
            kind,
            location: format!("pgbackrest:stanza {}{repo}, backup {}", self.cfg.stanza, b.label),
            pg_major: stanza.db_of(&b.database).and_then(|d| d.version.split('.').next()?.parse().ok()),
            label: None,
            timeline: b.archive.as_ref().and_then(|a| a.start.as_deref()).and_then(crate::source::timeline_of_segment),
        }
    }

    /// The repository folder the restored server's `archive-get` reads, when it is local.
    async fn repo_path(&self, ctx: &RunContext, exe: &Path, key: u32, major: Option<u32>) -> Option<PathBuf> {
        if key != 1 {
            let ini = self.config_file().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
            return self.configured_repo_path(&ini, key);
        }
        // `help` reports the effective value (command line, environment, config and includes).
        // The three at once: each is a process (a `docker exec` in a container).
        let one = |name: &'static str| async move {
            let mut cmd = self.command(ctx, exe, major).await.ok()?;
            cmd.args(["help", "restore", name]);
            let out = tool::run(ctx, Phase::Fetch, cmd, "pgbackrest help").await.ok()?;
            let current = |p: &str| out.stdout.lines().find_map(|l| l.strip_prefix(p).map(|s| s.trim().to_string()));
            Some(current("current: ").or_else(|| current("default: ")))
        };
        let (path, kind, host) = tokio::join!(one("repo-path"), one("repo-type"), one("repo-host"));
        local_repo(path?, kind?.as_deref(), host?.as_deref())
    }

    /// Whether this pgBackRest has restore option `name` (`pgbackrest help restore NAME`
    /// fails for an option it does not know).
    async fn knows_restore_option(&self, ctx: &RunContext, exe: &Path, name: &str, major: Option<u32>) -> bool {
        let Ok(mut cmd) = self.command(ctx, exe, major).await else { return false };
        cmd.args(["help", "restore", name]);
        tool::run(ctx, Phase::Fetch, cmd, "pgbackrest help").await.is_ok_and(|o| o.status.success())
    }

    /// `options.<name>` as pgBackRest gets it.
    fn option(&self, name: &str) -> Option<String> {
        self.cfg.options.get(name).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The folder of repository `key` when it is local, from `options` and the configuration
    /// text `ini` (the stanza's section, then `[global]`; default `/var/lib/pgbackrest`).
    fn configured_repo_path(&self, ini: &str, key: u32) -> Option<PathBuf> {
        let get = |name: &str| {
            self.option(&format!("repo{key}-{name}"))
                .or_else(|| ini_value(ini, &[&self.cfg.stanza, "global"], &format!("repo{key}-{name}")))
        };
        local_repo(
            get("path").or_else(|| Some("/var/lib/pgbackrest".into())),
            get("type").as_deref(),
            get("host").as_deref(),
        )
    }

    /// The configuration file pgBackRest reads.
    fn config_file(&self) -> Option<PathBuf> {
        if let Some(c) = &self.cfg.config {
            return Some(c.clone());
        }
        ["/etc/pgbackrest/pgbackrest.conf", "/etc/pgbackrest.conf"].iter().map(PathBuf::from).find(|p| p.is_file())
    }

    /// Writes the `restore_command` script: `archive-get` exits 0 (restored) or 1 (not in the
    /// archive); any other exit is a real error that must stop recovery (200) instead of being
    /// mistaken by PostgreSQL for the end of the WAL.
    fn write_restore_script(&self, exe: &Path, req: &FetchRequest) -> Result<PathBuf> {
        let mut script = String::from(
            "#!/bin/sh\n# written by restorecheck: fetches WAL with `pgbackrest archive-get`, which only reads the repository\n",
        );
        for (k, v) in &self.env {
            script.push_str(&format!("{k}={}; export {k}\n", shell_quote(v)));
        }
        let mut args: Vec<String> = self.common_args();
        args.extend([
            format!("--pg1-path={}", req.data_dir.display()),
            "--reset-pg1-host".into(),
            "--no-archive-async".into(),
            "--log-level-file=off".into(),
            format!("--lock-path={}", req.scratch_dir.join("pgbackrest-lock").display()),
        ]);
        let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        script.push_str(&format!(
            "{} {} archive-get \"$1\" \"$2\"\nrc=$?\n[ \"$rc\" -le 1 ] && exit \"$rc\"\n\
             echo \"restorecheck: pgbackrest archive-get $1 failed with exit code $rc\" >&2\nexit 200\n",
            shell_quote(&exe.display().to_string()),
            args.join(" ")
        ));
        let path = req.scratch_dir.join("pgbackrest_archive_get.sh");
        std::fs::write(&path, script).map_err(|e| Error::io("writing restore script", &path, e))?;
        use std::os::unix::fs::PermissionsExt;
        // Only the server's OS user (which the target gives the work dir to) runs it: it may
        // carry `options` values.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("chmod", &path, e))?;
        Ok(path)
    }

    /// When running as root, the restored server's OS user must be able to read the config file
    /// for `archive-get`; say so now, before the restore, instead of failing in recovery. This
    /// early check assumes the default server user; the target checks again with its own
    /// (`target.os_user`) before starting, through the WAL supply's read-only paths.
    async fn check_config_readable(&self) -> Result<()> {
        let Some(conf) = self.config_file() else { return Ok(()) };
        let Ok(user) = crate::postgres::user::OsUser::resolve(None) else { return Ok(()) };
        if user.switched && !tool::user_can_read_file(&user, &conf).await {
            return Err(Error::Tooling {
                what: format!(
                    "OS user {:?}, which runs the restored server and its `pgbackrest archive-get`, cannot read {}",
                    user.name,
                    conf.display()
                ),
                hint: "make the pgBackRest configuration readable by that user (Debian: owner postgres, mode 0640)"
                    .into(),
                source: None,
            });
        }
        Ok(())
    }
}

/// `path` when the repository is on this file system (type `posix` or `cifs`, no repository host).
fn local_repo(path: Option<String>, kind: Option<&str>, host: Option<&str>) -> Option<PathBuf> {
    let local = kind.is_none_or(|k| k == "posix" || k == "cifs") && host.is_none();
    path.filter(|_| local).map(PathBuf::from)
}

/// The segments and timeline history files of the archive ids `ids` of `stanza` in a local
/// (posix) repository: `archive/<stanza>/<id>/<NNNNNNNN>.history` and
/// `archive/<stanza>/<id>/<16 hex>/<segment>-<sha1>[.gz|.lz4|.zst|.bz2]`. `None` when it cannot
/// be listed or a history file cannot be read (an encrypted repository): the caller then falls
/// back to pgBackRest's `archive.max`.
fn list_repo_archive(repo: &Path, stanza: &str, ids: &[&str]) -> Option<crate::wal_archive::ArchiveContents> {
    let mut contents = crate::wal_archive::ArchiveContents {
        described: format!("the pgBackRest archive (stanza {stanza}, archive {})", ids.join(", ")),
        ..Default::default()
    };
    if ids.is_empty() {
        return None;
    }
    for id in ids {
        let dir = repo.join("archive").join(stanza).join(id);
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e.file_type().ok()?;
            if ft.is_dir() && name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                for f in std::fs::read_dir(e.path()).ok()?.flatten() {
                    let n = f.file_name().to_string_lossy().into_owned();
                    let seg = n.split('-').next().unwrap_or("");
                    if tool::is_segment_name(seg) {
                        contents.segments.push(seg.to_ascii_uppercase());
                    }
                }
            } else if ft.is_file() {
                let Some(tli) = name
                    .strip_suffix(".history")
                    .filter(|t| t.len() == 8)
                    .and_then(|t| u32::from_str_radix(t, 16).ok())
                else {
                    continue;
                };
                let mut text = String::new();
                use std::io::Read;
                std::fs::File::open(e.path()).ok()?.take(1 << 20).read_to_string(&mut text).ok()?;
                let h = crate::wal_archive::parse_history(&text).ok()?;
                contents.histories.insert(tli, h);
            }
        }
    }
    Some(contents)
}

/// A value of `key` in the first of `sections` of an INI text that has it.
fn ini_value(text: &str, sections: &[&str], key: &str) -> Option<String> {
    for wanted in sections {
        let mut current = String::new();
        for line in text.lines() {
            let l = line.trim();
            if l.starts_with('#') || l.is_empty() {
                continue;
            }
            if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                current = s.trim().to_string();
                continue;
            }
            if current == *wanted {
                if let Some((k, v)) = l.split_once('=') {
                    if k.trim() == key {
                        return Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    None
}

/// One stanza in `pgbackrest info --output=json` (field names from `src/command/info/info.c`).
#[derive(Debug, Deserialize)]
struct StanzaInfo {
    name: String,
    status: Status,
    #[serde(default)]
    db: Vec<Db>,
    #[serde(default)]
    archive: Vec<Archive>,
    #[serde(default)]
    backup: Vec<Backup>,
    #[serde(default)]
    repo: Vec<RepoInfo>,
}

/// One repository's status in `pgbackrest info --output=json`.
#[derive(Debug, Deserialize)]
struct RepoInfo {
    key: u32,
    #[serde(default)]
    cipher: String,
    status: Status,
}

impl StanzaInfo {
    fn db_of(&self, r: &DbRef) -> Option<&Db> {
        self.db
            .iter()
            .find(|d| d.id == r.id && (d.repo_key.is_none() || r.repo_key.is_none() || d.repo_key == r.repo_key))
    }
}

#[derive(Debug, Deserialize)]
struct Status {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Db {
    id: u64,
    #[serde(rename = "repo-key")]
    repo_key: Option<u64>,
    version: String,
}

#[derive(Debug, Deserialize, Clone, Copy)]
struct DbRef {
    id: u64,
    #[serde(rename = "repo-key")]
    repo_key: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Archive {
    database: DbRef,
    id: String,
    max: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Backup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: Timestamps,
    archive: Option<WalRange>,
    lsn: Option<LsnRange>,
    info: Option<Sizes>,
    database: DbRef,
    #[serde(default)]
    error: bool,
}

#[derive(Debug, Deserialize)]
struct Timestamps {
    start: i64,
}

#[derive(Debug, Deserialize)]
struct WalRange {
    start: Option<String>,
    stop: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LsnRange {
    stop: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sizes {
    size: Option<u64>,
    repository: Option<RepoSize>,
}

#[derive(Debug, Deserialize)]
struct RepoSize {
    size: Option<u64>,
}

#[async_trait]
impl BackupSource for PgBackRestSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn describe(&self) -> String {
        let mut s = format!("pgbackrest:stanza {}", self.cfg.stanza);
        if let Some(r) = self.cfg.repo {
            s.push_str(&format!(", repo{r}"));
        }
        if let Some(c) = &self.cfg.config {
            s.push_str(&format!(" ({})", c.display()));
        }
        s
    }

    async fn list(&self, ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let stanza = self.info(ctx, Phase::Select, None).await?;
        let mut out: Vec<BackupInfo> = stanza.backup.iter().map(|b| self.backup_info(&stanza, b)).collect();
        crate::source::sort_newest_first(&mut out);
        Ok(out)
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    /// What `pgbackrest` reads: its configuration file, its include folder
    /// (`config-include-path`, default `/etc/pgbackrest/conf.d`) and every local (posix, cifs)
    /// repository the options and configuration name (only `repo` when it is set). A remote
    /// repository (object store, repository host) is reached over the network instead.
    fn read_only_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.config_file().into_iter().collect();
        let mut ini = self.config_file().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let include =
            PathBuf::from(self.option("config-include-path").unwrap_or_else(|| "/etc/pgbackrest/conf.d".into()));
        if let Ok(rd) = std::fs::read_dir(&include) {
            let mut files: Vec<PathBuf> =
                rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
            files.sort();
            for f in files {
                ini.push('\n');
                ini.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
            }
            paths.push(include);
        }
        let keys: std::collections::BTreeSet<u32> = match self.cfg.repo {
            Some(r) => [r].into(),
            None => {
                let key_of = |k: &str| k.trim().strip_prefix("repo")?.split_once('-')?.0.parse::<u32>().ok();
                let in_ini = ini.lines().filter_map(|l| key_of(l.split('=').next().unwrap_or_default()));
                std::iter::once(1).chain(self.cfg.options.keys().filter_map(|k| key_of(k))).chain(in_ini).collect()
            }
        };
        paths.extend(keys.into_iter().filter_map(|k| self.configured_repo_path(&ini, k)));
        tool::existing_roots(paths)
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        crate::workdir::ensure_room_for(req, backup)?;
        let major = backup.pg_major;
        let exe = self.program(ctx, major).await?;
        // Fresh facts: the archive may have grown since the listing.
        let stanza = self.info(ctx, Phase::Fetch, major).await?;
        let b = stanza.backup.iter().find(|b| b.label == backup.id).ok_or_else(|| {
            Error::defect(format!(
                "backup {} is no longer in the pgBackRest repository (stanza {}); it was expired or removed",
                backup.id, self.cfg.stanza
            ))
        })?;
        self.check_config_readable().await?;

        let mut args: Vec<String> = vec![
            format!("--pg1-path={}", req.data_dir.display()),
            format!("--set={}", b.label),
            "--type=default".into(),
            // Also reaches the server as a setting; here so that pgBackRest's own
            // postgresql.auto.conf agrees.
            format!("--target-timeline={}", self.cfg.recovery_target_timeline),
            "--archive-mode=off".into(),
            format!("--tablespace-map-all={}", req.tablespace_dir.display()),
            "--no-link-all".into(),
            "--reset-link-map".into(),
            "--reset-db-include".into(),
            "--reset-pg1-host".into(),
            "--log-level-file=off".into(),
            format!("--lock-path={}", req.scratch_dir.join("pgbackrest-lock").display()),
        ];
        // `db-exclude` is newer than some pgBackRest still in use (Debian bullseye's 2.33 does
        // not know it, and refuses any --reset- of it): reset it only where it exists.
        if self.knows_restore_option(ctx, &exe, "db-exclude", major).await {
            args.push("--reset-db-exclude".into());
        }
        // Fail fast on damage: no per-file retries inside pgBackRest (unless the user set
        // them); restorecheck retries the whole restore itself, and only on errors that may be
        // transient. archive-get (the restore_command) keeps pgBackRest's retries.
        let own_retries = !self.cfg.options.contains_key("job-retry");
        if own_retries {
            args.push("--job-retry=0".into());
        }
        args.push("restore".into());
        let mut attempt = 0;
        let out = loop {
            let mut cmd = self.command(ctx, &exe, major).await?;
            cmd.args(&args);
            ctx.progress.begin(&format!("pgbackrest restore {}", b.label), None);
            let out = tool::run(ctx, Phase::Fetch, cmd, "pgbackrest restore").await;
            ctx.progress.end();
            let out = out?;
            let pause = RESTORE_RETRIES.get(attempt).filter(|_| own_retries && retryable(out.code()));
            let Some(pause) = pause else { break out };
            attempt += 1;
            tracing::warn!(
                "`pgbackrest restore` of backup {} failed with exit code {:?}; retrying in {}s ({attempt} of {}): {}",
                b.label,
                out.code(),
                pause.as_secs(),
                RESTORE_RETRIES.len(),
                out.message()
            );
            tokio::select! {
                _ = tokio::time::sleep(*pause) => {}
                _ = ctx.cancel.cancelled() => return Err(Error::Cancelled { phase: Phase::Fetch }),
            }
            empty_dir(&req.data_dir)?;
            empty_dir(&req.tablespace_dir)?;
        };
        if !out.status.success() {
            let msg = format!(
                "`pgbackrest restore` of backup {} (stanza {}) failed with exit code {}: {}",
                b.label,
                self.cfg.stanza,
                out.code().map(|c| c.to_string()).unwrap_or_else(|| "none (killed)".into()),
                out.message()
            );
            return Err(if out.code().is_some_and(|c| DEFECT_CODES.contains(&c)) {
                Error::defect(format!("the repository's copy of the backup is damaged or incomplete: {msg}"))
            } else {
                source_err(msg)
            });
        }

        let pg_major = tool::pg_version(&req.data_dir).ok_or_else(|| {
            Error::defect(format!("backup {}: PG_VERSION is missing after `pgbackrest restore`", b.label))
        })?;
        let script = self.write_restore_script(&exe, req)?;
        let repo_key = self.cfg.repo.or(b.database.repo_key.and_then(|k| u32::try_from(k).ok())).unwrap_or(1);
        let readable_paths: Vec<PathBuf> = self.repo_path(ctx, &exe, repo_key, major).await.into_iter().collect();
        // `archive-get` reads the configuration too: the target checks its own server user can.
        let wal_reads: Vec<PathBuf> = readable_paths.iter().cloned().chain(self.config_file()).collect();

        let mut expected_end = Vec::new();
        let backup_end_lsn: Option<Lsn> = b.lsn.as_ref().and_then(|l| l.stop.as_deref()).and_then(|s| s.parse().ok());
        if backup_end_lsn.is_none() {
            if let Some(stop) = b.archive.as_ref().and_then(|a| a.stop.clone()) {
                expected_end.push(ExpectedEnd {
                    lsn: None,
                    wal_segment: Some(stop.clone()),
                    reason: format!("backup {} ends in WAL segment {stop}", b.label),
                });
            }
        }
        let same_db = |a: &Archive| {
            a.database.id == b.database.id
                && (a.database.repo_key.is_none()
                    || b.database.repo_key.is_none()
                    || a.database.repo_key == b.database.repo_key)
        };
        // A local repository is listed, so that the proof follows the timeline recovery follows
        // (after a failover `archive.max` may be an old primary's segment past the fork).
        let listed = match readable_paths.first() {
            Some(repo) => {
                let ids: Vec<&str> = stanza.archive.iter().filter(|a| same_db(a)).map(|a| a.id.as_str()).collect();
                list_repo_archive(repo, &self.cfg.stanza, &ids)
            }
            None => None,
        };
        for a in stanza.archive.iter().filter(|a| same_db(a) && listed.is_none()) {
            if let Some(max) = &a.max {
                expected_end.push(ExpectedEnd {
                    lsn: None,
                    wal_segment: Some(max.clone()),
                    reason: format!(
                        "the pgBackRest archive (stanza {}, archive {}) continues to segment {max}",
                        self.cfg.stanza, a.id
                    ),
                });
            }
        }

        let mut fetched = FetchedBackup::new(
            req.data_dir.clone(),
            pg_major,
            WalSupply::Fetch(WalFetch::script(script).reading(wal_reads)),
        );
        fetched.backup_end_lsn = backup_end_lsn;
        fetched.expected_end = expected_end;
        fetched.archive = listed;
        fetched.bytes_restored = b
            .info
            .as_ref()
            .and_then(|i| i.size)
            .unwrap_or_else(|| tool::tree_size(&req.data_dir) + tool::tree_size(&req.tablespace_dir));
        fetched.recovery_target = req.recovery_target_or(&self.cfg.recovery_target);
        fetched.recovery_target_timeline = self.cfg.recovery_target_timeline;
        Ok(Artifact::Physical(fetched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(options: &str) -> Result<PgBackRestSource> {
        let t: toml::Table = toml::from_str(&format!("stanza = \"main\"\noptions = {{ {options} }}")).unwrap();
        PgBackRestSource::new(crate::config::options::<PgBackRestConfig>("source pgbackrest", t)?)
    }

    #[test]
    fn options_become_environment_variables() {
        let s = cfg("repo1-path = \"/b\", job-retry = 0, repo1-retention-full = 2, start-fast = true").unwrap();
        assert!(s.env.contains(&("PGBACKREST_REPO1_PATH".into(), "/b".into())));
        assert!(s.env.contains(&("PGBACKREST_JOB_RETRY".into(), "0".into())));
        assert!(s.env.contains(&("PGBACKREST_START_FAST".into(), "y".into())));
    }

    #[test]
    fn reserved_and_malformed_options_are_config_errors() {
        for bad in
            ["stanza = \"x\"", "pg1-path = \"/prod\"", "tablespace-map-all = \"/x\"", "\"--x\" = 1", "\"a b\" = 1"]
        {
            let e = cfg(bad).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}: {e}");
        }
        let t: toml::Table = toml::from_str("stanza = \"main\"\nstanzaa = 1").unwrap();
        assert!(crate::config::options::<PgBackRestConfig>("source pgbackrest", t).is_err());
    }

    #[test]
    fn info_json_of_2_45_parses() {
        let json = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000007","min":"000000010000000000000001"}],
          "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"backrest":{"format":5,"version":"2.45"},
          "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":22992566,"repository":{"delta":3056878,"size":3056878},"size":22992566},
          "label":"20261126-052438F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,
          "timestamp":{"start":1795670678,"stop":1795670681},"type":"full"}],
          "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7712346825449337766,"version":"15"}],"name":"demo",
          "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;
        let v: Vec<StanzaInfo> = serde_json::from_str(json).unwrap();
        let s = cfg("").unwrap();
        let i = s.backup_info(&v[0], &v[0].backup[0]);
        assert_eq!(i.id, "20261126-052438F");
        assert_eq!(i.kind, "pgbackrest-full");
        assert_eq!(i.pg_major, Some(15));
        assert_eq!(i.size_bytes, Some(3056878));
        assert_eq!(i.taken_at.unwrap().timestamp(), 1795670678);
    }

    #[test]
    fn undecryptable_info_files_of_an_encrypted_repo_are_a_key_error() {
        // As 2.45 prints it for a wrong repo1-cipher-pass (garbage shortened, raw control chars kept).
        let msg = "[FormatError] unable to load info file '/r/backup/rc/backup.info' or '/r/backup/rc/backup.info.copy':\n\
                   FormatError: key/value found outside of section at line 1: \u{8}\u{c}garbage\nHINT: has a stanza-create been performed?";
        let v = serde_json::json!([{"archive":[],"backup":[],"cipher":"aes-256-cbc","db":[],"name":"rc",
            "repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":99,"message":msg}}],
            "status":{"code":99,"message":"other"}}]);
        // Raw control characters inside a JSON string, as pgBackRest writes them.
        let raw = v.to_string().replace("\\b", "\u{8}").replace("\\f", "\u{c}");
        assert!(serde_json::from_str::<Vec<StanzaInfo>>(&raw).is_err());
        let all: Vec<StanzaInfo> = serde_json::from_str(&raw.replace(|c: char| c.is_control(), " ")).unwrap();
        let e = cfg("").unwrap().wrong_cipher_pass(&all[0]).unwrap();
        assert!(matches!(&e, Error::Decryption { file, .. } if file == "/r/backup/rc/backup.info"), "{e:?}");
        assert!(e.to_string().contains("the key is wrong") && !e.to_string().contains("key/value"), "{e}");
        let plain: Vec<StanzaInfo> =
            serde_json::from_str(&raw.replace("aes-256-cbc", "none").replace(|c: char| c.is_control(), " ")).unwrap();
        assert!(cfg("").unwrap().wrong_cipher_pass(&plain[0]).is_none());
    }

    #[test]
    fn a_local_repository_archive_is_listed_with_its_timeline_history() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("archive/main/15-1");
        std::fs::create_dir_all(a.join("0000000100000000")).unwrap();
        std::fs::create_dir_all(a.join("0000000200000000")).unwrap();
        for f in [
            "0000000100000000/00000001000000000000000E-0123456789abcdef0123456789abcdef01234567.gz",
            "0000000100000000/00000001000000000000000B.partial-0123456789abcdef0123456789abcdef01234567.gz",
            "0000000200000000/00000002000000000000000C-0123456789abcdef0123456789abcdef01234567.lz4",
        ] {
            std::fs::write(a.join(f), b"x").unwrap();
        }
        std::fs::write(a.join("00000002.history"), "1\t0/B00A3C8\tno recovery target specified\n").unwrap();
        std::fs::write(a.join("archive.info"), "[db]\n").unwrap();
        let c = list_repo_archive(d.path(), "main", &["15-1"]).unwrap();
        let mut segs = c.segments.clone();
        segs.sort();
        assert_eq!(segs, ["00000001000000000000000E", "00000002000000000000000C"]);
        let p = c.path(crate::source::RecoveryTargetTimeline::Latest, 1);
        assert_eq!(p.timelines, vec![1, 2]);
        assert_eq!(c.newest_on(&p, 16 << 20).as_deref(), Some("00000002000000000000000C"));
        // An encrypted history file cannot be read: fall back to pgBackRest's archive.max.
        std::fs::write(a.join("00000003.history"), b"Salted__\x01\x02garbage").unwrap();
        assert!(list_repo_archive(d.path(), "main", &["15-1"]).is_none());
        assert!(list_repo_archive(d.path(), "other", &["15-1"]).is_none());
    }

    #[test]
    fn only_failures_that_may_be_transient_are_retried() {
        // checksum, format, file-missing, crypto: the repository's bytes are wrong.
        for damage in [26, 28, 29, 55, 95] {
            assert!(!retryable(Some(damage)), "{damage}");
        }
        // file-read (a storage hiccup or a truncated file), host connect, service errors.
        for transient in [42, 39, 104, 103] {
            assert!(retryable(Some(transient)), "{transient}");
        }
        assert!(!retryable(Some(0)));
        assert!(!retryable(None), "killed by a signal (cancelled): not retried");
    }

    #[test]
    fn read_only_paths_are_the_configuration_and_the_local_repositories() {
        let d = tempfile::tempdir().unwrap();
        let (r1, r3, inc) = (d.path().join("r1"), d.path().join("r3"), d.path().join("conf.d"));
        for p in [&r1, &r3, &inc] {
            std::fs::create_dir_all(p).unwrap();
        }
        let conf = d.path().join("pgbackrest.conf");
        std::fs::write(&conf, format!("[global]\nrepo1-path={}\nrepo2-type=s3\nrepo2-path=/bucket\n", r1.display()))
            .unwrap();
        std::fs::write(inc.join("r3.conf"), format!("[main]\nrepo3-path = {}\n", r3.display())).unwrap();
        let mut options = BTreeMap::new();
        options.insert("config-include-path".to_string(), toml::Value::String(inc.display().to_string()));
        let s =
            PgBackRestSource::new(PgBackRestConfig::new("main").config(conf.clone()).options(options.clone())).unwrap();
        let mut want = vec![conf.clone(), inc.clone(), r1.clone(), r3.clone()];
        want.sort();
        assert_eq!(s.read_only_paths(), want);
        // Only the repository asked for; a repository host is remote.
        let mut cfg = PgBackRestConfig::new("main").config(conf.clone()).options(options.clone());
        cfg.repo = Some(3);
        let mut want = vec![conf.clone(), inc.clone(), r3.clone()];
        want.sort();
        assert_eq!(PgBackRestSource::new(cfg).unwrap().read_only_paths(), want);
        options.insert("repo3-host".to_string(), toml::Value::String("backup-host".into()));
        let mut cfg = PgBackRestConfig::new("main").config(conf.clone()).options(options);
        cfg.repo = Some(3);
        let mut want = vec![conf, inc];
        want.sort();
        assert_eq!(PgBackRestSource::new(cfg).unwrap().read_only_paths(), want);
    }

    #[test]
    fn ini_lookup_prefers_the_stanza_section() {
        let ini = "[global]\nrepo2-path=/g\nrepo2-type = posix\n# c\n[main]\nrepo2-path = /s\n";
        assert_eq!(ini_value(ini, &["main", "global"], "repo2-path").as_deref(), Some("/s"));
        assert_eq!(ini_value(ini, &["main", "global"], "repo2-type").as_deref(), Some("posix"));
        assert_eq!(ini_value(ini, &["main", "global"], "repo2-host"), None);
    }
}
