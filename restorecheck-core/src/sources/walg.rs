//! Source `walg`: base backups in WAL-G storage, fetched with the real `wal-g backup-fetch` and
//! recovered with WAL through `wal-g wal-fetch`.
//!
//! Everything WAL-G is asked to do only reads the storage: `backup-list`, `st cat` (the
//! backup's sentinel, to learn its tablespaces), `backup-fetch`, `wal-show` and `wal-fetch`.
//! Tablespaces are restored into the work dir through a `--restore-spec` (without one WAL-G
//! writes them to the paths recorded in the backup), and the result is checked before start.
//!
//! `wal-fetch` exits 74 when a file is not in the storage and 1 on every other error; the
//! `restore_command` maps 74 to 1 ("not found", the normal end of archive recovery) and any
//! other failure to 200, which makes PostgreSQL stop recovery with an error instead of
//! mistaking a storage failure for the end of the WAL (WAL-G `docs/PostgreSQL.md`).
//!
//! Where recovery must get to: the backup's `finish_lsn` and the end of the newest timeline
//! `wal-g wal-show --detailed-json` reports (its `missing_segments` are quoted in the failure).
//!
//! The environment (`env`, `env_file`) reaches every `wal-g` run and the restored server; for
//! the server, WAL prefetching is off (`WALG_DOWNLOAD_CONCURRENCY=1`) unless you set that
//! variable, because prefetch processes would outlive the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::physical::check_physical;
use crate::postgres::Lsn;
use crate::report::Phase;
use crate::source::{
    Artifact, BackupInfo, BackupSource, ExpectedEnd, FetchRequest, FetchedBackup, RecoveryTarget, WalFetch, WalSupply,
};
use crate::sources::environment;
use crate::sources::tool;
use crate::wal_archive::shell_quote;

const KIND: &str = "walg";
const INSTALL_HINT: &str = "install WAL-G for PostgreSQL (its `wal-g-pg` release binary, or `make pg_build` from \
                            source; Debian has no package) and put it on PATH, or set binary = \"/path/to/wal-g\"";

/// `wal-g wal-fetch` exit code for "the file is not in the storage" (EX_IOERR).
pub(crate) const WAL_FETCH_NOT_FOUND: i32 = 74;

/// Options of source `walg` (`[check.source] kind = "walg"`).
#[derive(Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct WalgConfig {
    /// The `wal-g` program (default: `wal-g` on PATH).
    pub binary: Option<String>,
    /// Environment for WAL-G (`WALG_S3_PREFIX`, `WALG_FILE_PREFIX`, …); avoid secrets here,
    /// use `env_file`. It reaches every `wal-g` run and the restored server's `restore_command`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// File of `KEY=VALUE` lines added to the environment (for secrets such as
    /// `AWS_SECRET_ACCESS_KEY`), read fresh on every use.
    pub env_file: Option<PathBuf>,
    /// `"latest"` (default), `"oldest"` or a backup name (`base_000000010000000000000004`).
    pub backup: Option<String>,
    /// How far to recover (default `latest`: all WAL in the storage).
    #[serde(default)]
    pub recovery_target: RecoveryTarget,
    /// Which timeline recovery follows (`"latest"`, default: the newest in the archive, as
    /// after a failover; `"current"`: the backup's own; or a timeline number).
    #[serde(default)]
    pub recovery_target_timeline: crate::source::RecoveryTargetTimeline,
}

impl std::fmt::Debug for WalgConfig {
    // Environment values may be secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalgConfig")
            .field("binary", &self.binary)
            .field("env", &self.env.keys().map(|k| format!("{k}=***")).collect::<Vec<_>>())
            .field("env_file", &self.env_file)
            .field("backup", &self.backup)
            .field("recovery_target", &self.recovery_target)
            .field("recovery_target_timeline", &self.recovery_target_timeline)
            .finish()
    }
}

/// Source `walg`.
#[derive(Debug, Clone)]
pub struct WalgSource {
    cfg: WalgConfig,
}

fn source_err(message: impl Into<String>) -> Error {
    Error::Source { source_kind: KIND, message: message.into(), source: None }
}

/// One entry of `wal-g backup-list --json --detail` (`BackupTime` + `ExtendedMetadataDto`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct WalgBackup {
    backup_name: String,
    /// Modification time of the sentinel.
    time: Option<String>,
    wal_file_name: Option<String>,
    start_time: Option<String>,
    finish_time: Option<String>,
    hostname: Option<String>,
    /// `150004` for 15.4.
    pg_version: Option<u64>,
    #[serde(default, deserialize_with = "de_lsn")]
    start_lsn: Option<u64>,
    #[serde(default, deserialize_with = "de_lsn")]
    finish_lsn: Option<u64>,
    #[serde(default)]
    is_permanent: bool,
    uncompressed_size: Option<i64>,
    compressed_size: Option<i64>,
}

/// LSNs are integers (uint64) in WAL-G's JSON; an `X/Y` string is accepted too.
fn de_lsn<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) => s
            .parse::<Lsn>()
            .map(|l| l.0)
            .or_else(|_| s.parse::<u64>())
            .map(Some)
            .map_err(|_| D::Error::custom(format!("not an LSN: {s:?}"))),
    }
}

/// A Go `time.Time` in JSON (RFC 3339); Go's zero time (year 1) means "not set".
fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s?.trim()).ok()?.with_timezone(&Utc);
    (t.year() > 1).then_some(t)
}

impl WalgBackup {
    fn timeline(&self) -> Option<u32> {
        self.wal_file_name.as_deref().and_then(|w| w.get(0..8)).and_then(|t| u32::from_str_radix(t, 16).ok())
    }
}

/// One timeline of `wal-g wal-show --detailed-json` (`TimelineInfo`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct TimelineInfo {
    id: u32,
    end_segment: String,
    #[serde(default)]
    missing_segments: Option<Vec<String>>,
}

/// The point recovery must reach according to `wal-show`: the end of the timeline recovery
/// ends on: the newest at or after the backup's own (`latest`), the backup's own (`current`),
/// or the one asked for.
fn expected_from_timelines(
    timelines: &[TimelineInfo],
    backup_timeline: Option<u32>,
    target: crate::source::RecoveryTargetTimeline,
) -> Option<ExpectedEnd> {
    use crate::source::RecoveryTargetTimeline as T;
    let wanted = match target {
        T::Latest => None,
        T::Current => backup_timeline,
        T::Id(n) => Some(n),
    };
    let t = timelines
        .iter()
        .filter(|t| backup_timeline.is_none_or(|b| t.id >= b))
        .filter(|t| wanted.is_none_or(|w| t.id == w))
        .filter(|t| tool::is_segment_name(&t.end_segment))
        .max_by_key(|t| t.id)?;
    let missing = t.missing_segments.as_deref().unwrap_or_default();
    let gap = if missing.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        format!(
            "; wal-show reports {} missing segment(s) on that timeline: {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() { ", …" } else { "" }
        )
    };
    Some(ExpectedEnd {
        lsn: None,
        wal_segment: Some(t.end_segment.to_ascii_uppercase()),
        reason: format!(
            "WAL-G's WAL storage (`wal-g wal-show`) continues to segment {} on timeline {}{gap}",
            t.end_segment, t.id
        ),
    })
}

/// Words in `wal-g backup-fetch` errors that mean the stored backup itself is damaged (WAL-G
/// exits 1 for every error, so the message is all there is to go by).
const DAMAGE_MARKERS: &[&str] = &[
    "unexpected EOF",
    "invalid tar header",
    "Expect pg_control archive, but not found",
    "corrupt",
    "checksum mismatch",
];

impl WalgSource {
    /// A source over `cfg`.
    pub fn new(cfg: WalgConfig) -> Self {
        Self { cfg }
    }

    fn binary(&self) -> &str {
        self.cfg.binary.as_deref().unwrap_or("wal-g")
    }

    /// The `wal-g` program where the check's tools run, as an absolute path (the restored
    /// server runs it too).
    async fn program(&self, ctx: &RunContext, major: Option<u32>) -> Result<PathBuf> {
        ctx.tools.locate(self.binary(), INSTALL_HINT, major).await
    }

    /// `env` plus `env_file`, read fresh each time (a rotated secret takes effect at once).
    fn environment(&self) -> Result<Vec<(String, String)>> {
        let mut vars: Vec<(String, String)> = self.cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(f) = &self.cfg.env_file {
            vars.extend(environment::read_env_file(f, KIND)?);
        }
        Ok(environment::last_wins(vars))
    }

    /// The storage location named by a `WALG_*_PREFIX` variable (for reports, without
    /// credentials).
    fn storage(&self) -> Option<String> {
        let vars = self.environment().unwrap_or_else(|_| self.cfg.env.clone().into_iter().collect());
        vars.iter()
            .rev()
            .find(|(k, v)| k.starts_with("WALG_") && k.ends_with("_PREFIX") && !v.is_empty())
            .map(|(_, v)| environment::redact_url(v))
    }

    async fn wal_g(
        &self,
        ctx: &RunContext,
        phase: Phase,
        exe: &Path,
        env: &[(String, String)],
        args: &[&std::ffi::OsStr],
        major: Option<u32>,
    ) -> Result<tool::ToolOutput> {
        let mut cmd = tool::command(ctx, exe, env, major).await?;
        cmd.args(args);
        let what = format!("wal-g {}", args.first().map(|a| a.to_string_lossy()).unwrap_or_default());
        tool::run(ctx, phase, cmd, &what).await
    }

    /// `wal-g backup-list --json --detail`.
    async fn backups(&self, ctx: &RunContext, phase: Phase, major: Option<u32>) -> Result<Vec<WalgBackup>> {
        let exe = self.program(ctx, major).await?;
        let env = self.environment()?;
        let args: [&std::ffi::OsStr; 3] = ["backup-list".as_ref(), "--json".as_ref(), "--detail".as_ref()];
        let out = self.wal_g(ctx, phase, &exe, &env, &args, major).await?;
        if !out.status.success() {
            return Err(source_err(format!(
                "`wal-g backup-list --json --detail` failed ({}): {}; check the storage settings in env/env_file \
                 (WALG_*_PREFIX and credentials)",
                out.status,
                out.message()
            )));
        }
        parse_backup_list(&out.stdout)
    }

    fn info(&self, b: &WalgBackup, storage: Option<&str>) -> BackupInfo {
        let mut kind = if b.backup_name.contains("_D_") { "walg-delta" } else { "walg-full" }.to_string();
        if b.is_permanent {
            kind.push_str(" (permanent)");
        }
        let size = b.compressed_size.filter(|s| *s > 0).or(b.uncompressed_size.filter(|s| *s > 0));
        BackupInfo {
            id: b.backup_name.clone(),
            taken_at: parse_time(b.start_time.as_deref())
                .or_else(|| parse_time(b.finish_time.as_deref()))
                .or_else(|| parse_time(b.time.as_deref())),
            size_bytes: size.and_then(|s| u64::try_from(s).ok()),
            kind,
            location: match storage {
                Some(s) => format!("walg:{s}, backup {}", b.backup_name),
                None => format!("walg:backup {}", b.backup_name),
            },
            pg_major: b.pg_version.filter(|v| *v >= 90000).map(|v| (v / 10000) as u32),
            label: b.hostname.as_ref().filter(|h| !h.is_empty()).map(|h| format!("taken on {h}")),
            timeline: b.timeline(),
        }
    }

    /// The tablespaces (symlink names under `pg_tblspc`) the backup's sentinel records.
    async fn tablespaces(
        &self,
        ctx: &RunContext,
        exe: &Path,
        env: &[(String, String)],
        name: &str,
        major: Option<u32>,
    ) -> Result<Vec<String>> {
        let key = format!("basebackups_005/{name}_backup_stop_sentinel.json");
        let args: [&std::ffi::OsStr; 3] = ["st".as_ref(), "cat".as_ref(), key.as_ref()];
        let out = self.wal_g(ctx, Phase::Fetch, exe, env, &args, major).await?;
        if !out.status.success() {
            return Err(Error::Tooling {
                what: format!("`wal-g st cat {key}` failed ({}): {}", out.status, out.message()),
                hint:
                    "restorecheck reads the backup's sentinel to restore its tablespaces into the work dir instead of \
                       their production paths; it needs a WAL-G with the storage tools (`wal-g st`)"
                        .into(),
                source: None,
            });
        }
        sentinel_tablespaces(&out.stdout)
    }

    /// `wal-g wal-show --detailed-json --without-backups`.
    async fn timelines(
        &self,
        ctx: &RunContext,
        exe: &Path,
        env: &[(String, String)],
        major: Option<u32>,
    ) -> Result<Vec<TimelineInfo>> {
        let args: [&std::ffi::OsStr; 3] =
            ["wal-show".as_ref(), "--detailed-json".as_ref(), "--without-backups".as_ref()];
        let out = self.wal_g(ctx, Phase::Fetch, exe, env, &args, major).await?;
        if !out.status.success() {
            return Err(source_err(format!(
                "`wal-g wal-show --detailed-json` failed ({}): {}; restorecheck needs it to know where the archived \
                 WAL ends (without that a gap in the WAL would go unnoticed)",
                out.status,
                out.message()
            )));
        }
        let text = out.stdout.trim();
        if text.is_empty() || text == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(text)
            .map_err(|e| source_err("cannot read the output of `wal-g wal-show --detailed-json`").with_source(e))
    }

    /// Writes the `restore_command` script: `wal-fetch` exit 0 → 0, 74 (not in the storage) →
    /// 1, anything else → 200 so that PostgreSQL stops instead of ending recovery early.
    fn write_restore_script(&self, exe: &Path, req: &FetchRequest) -> Result<PathBuf> {
        let script = format!(
            "#!/bin/sh\n# written by restorecheck: fetches WAL with `wal-g wal-fetch`, which only reads the storage\n\
             {} wal-fetch \"$1\" \"$2\"\nrc=$?\n\
             [ \"$rc\" -eq 0 ] && exit 0\n\
             [ \"$rc\" -eq {WAL_FETCH_NOT_FOUND} ] && exit 1\n\
             echo \"restorecheck: wal-g wal-fetch $1 failed with exit code $rc; stopping recovery\" >&2\nexit 200\n",
            shell_quote(&exe.display().to_string()),
        );
        let path = req.scratch_dir.join("walg_wal_fetch.sh");
        std::fs::write(&path, script).map_err(|e| Error::io("writing restore script", &path, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &path, e))?;
        Ok(path)
    }
}

fn parse_backup_list(stdout: &str) -> Result<Vec<WalgBackup>> {
    let text = stdout.trim();
    // An empty storage: WAL-G logs "No backups found" and prints nothing.
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| {
        source_err("cannot read the output of `wal-g backup-list --json --detail` (WAL-G too old?)").with_source(e)
    })
}

/// The tablespace names in a backup sentinel's `Spec` (`{"base_prefix": …, "tablespaces": […]}`).
fn sentinel_tablespaces(text: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Sentinel {
        #[serde(rename = "Spec")]
        spec: Option<Spec>,
    }
    #[derive(Deserialize)]
    struct Spec {
        #[serde(default)]
        tablespaces: Option<Vec<String>>,
    }
    let s: Sentinel = serde_json::from_str(text.trim())
        .map_err(|e| Error::defect("the backup's sentinel is not valid JSON").with_source(e))?;
    let names = s.spec.and_then(|s| s.tablespaces).unwrap_or_default();
    if let Some(bad) = names.iter().find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) {
        return Err(Error::defect(format!("the backup's sentinel names a tablespace {bad:?}, which is not an OID")));
    }
    Ok(names)
}

/// Writes a WAL-G `--restore-spec` that puts every tablespace under `tablespace_dir/<oid>`.
fn write_restore_spec(req: &FetchRequest, tablespaces: &[String]) -> Result<PathBuf> {
    let mut spec = serde_json::Map::new();
    spec.insert("base_prefix".into(), req.data_dir.display().to_string().into());
    spec.insert("tablespaces".into(), tablespaces.to_vec().into());
    for oid in tablespaces {
        let loc = req.tablespace_dir.join(oid);
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&loc)
            .map_err(|e| Error::io("creating", &loc, e))?;
        spec.insert(
            oid.clone(),
            serde_json::json!({"loc": format!("{}/", loc.display()), "link": format!("pg_tblspc/{oid}")}),
        );
    }
    let path = req.scratch_dir.join("walg_restore_spec.json");
    std::fs::write(&path, serde_json::Value::Object(spec).to_string())
        .map_err(|e| Error::io("writing restore spec", &path, e))?;
    Ok(path)
}

/// Refuses a fetched data directory whose tablespaces (`pg_tblspc` links, `tablespace_map`)
/// lead outside the work dir: the shared check of every source.
pub(crate) fn check_tablespaces_inside(req: &FetchRequest) -> Result<()> {
    crate::postgres::datadir::check_tablespaces(&req.data_dir, req.data_dir.parent().unwrap_or(&req.data_dir))
}

/// When running as root, the restored server's OS user runs `exe` (through the
/// `restore_command`); say now if it cannot, instead of failing in recovery. Only for tools on
/// this host: an image's tools are the image's business, and its target checks its own server.
pub(crate) async fn check_server_user_can_run(ctx: &RunContext, exe: &Path) -> Result<()> {
    if !ctx.tools.on_this_host() {
        return Ok(());
    }
    let Ok(user) = crate::postgres::user::OsUser::resolve(None) else { return Ok(()) };
    if !user.switched {
        return Ok(());
    }
    let mut cmd = tokio::process::Command::new("test");
    cmd.arg("-x").arg(exe).stdin(std::process::Stdio::null());
    user.apply(&mut cmd);
    if cmd.status().await.map(|s| s.success()).unwrap_or(false) {
        return Ok(());
    }
    Err(Error::Tooling {
        what: format!(
            "OS user {:?}, which runs the restored server and its restore_command, cannot execute {}",
            user.name,
            exe.display()
        ),
        hint: "install the tool where that user can run it (e.g. /usr/local/bin, mode 0755, or a world-readable \
               virtualenv)"
            .into(),
        source: None,
    })
}

#[async_trait]
impl BackupSource for WalgSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn describe(&self) -> String {
        match self.storage() {
            Some(s) => format!("walg:{s}"),
            None => format!("walg:{}", self.binary()),
        }
    }

    async fn list(&self, ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let storage = self.storage();
        let mut out: Vec<BackupInfo> =
            self.backups(ctx, Phase::Select, None).await?.iter().map(|b| self.info(b, storage.as_deref())).collect();
        crate::source::sort_newest_first(&mut out);
        Ok(out)
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    /// What `wal-g` reads: the storage folder of `WALG_FILE_PREFIX`, the files its environment
    /// names (variables ending in `_PATH` or `_FILE`, such as `WALG_PGP_KEY_PATH` or
    /// `AWS_SHARED_CREDENTIALS_FILE`, and `GOOGLE_APPLICATION_CREDENTIALS`) and
    /// `~/.walg.json`. The `env_file` is not among them: restorecheck reads it and hands its
    /// values to the tool.
    fn read_only_paths(&self) -> Vec<PathBuf> {
        let env = self.environment().unwrap_or_else(|_| self.cfg.env.clone().into_iter().collect());
        let mut paths = tool::file_vars(&env);
        if let Some(p) = environment::lookup(&env, "WALG_FILE_PREFIX").filter(|p| p.starts_with('/')) {
            paths.push(PathBuf::from(p));
        }
        paths.extend(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".walg.json")));
        tool::existing_roots(paths)
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        crate::workdir::ensure_room_for(req, backup)?;
        let major = backup.pg_major;
        let exe = self.program(ctx, major).await?;
        let env = self.environment()?;
        // Fresh facts: the backup may have been deleted since the listing.
        let all = self.backups(ctx, Phase::Fetch, major).await?;
        let b = all.iter().find(|b| b.backup_name == backup.id).ok_or_else(|| {
            Error::defect(format!("backup {} is no longer in the WAL-G storage; it was deleted", backup.id))
        })?;
        check_server_user_can_run(ctx, &exe).await?;
        let tablespaces = self.tablespaces(ctx, &exe, &env, &b.backup_name, major).await?;

        let mut args: Vec<std::ffi::OsString> =
            vec!["backup-fetch".into(), req.data_dir.clone().into(), b.backup_name.clone().into()];
        if !tablespaces.is_empty() {
            args.push("--restore-spec".into());
            args.push(write_restore_spec(req, &tablespaces)?.into());
        }
        ctx.progress.begin(&format!("wal-g backup-fetch {}", b.backup_name), None);
        let arg_refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = self.wal_g(ctx, Phase::Fetch, &exe, &env, &arg_refs, major).await;
        ctx.progress.end();
        let out = out?;
        if !out.status.success() {
            let said = out.message();
            let msg = format!("`wal-g backup-fetch` of backup {} failed ({}): {said}", b.backup_name, out.status);
            return Err(if DAMAGE_MARKERS.iter().any(|m| said.contains(m)) {
                Error::defect(format!("the stored backup is damaged or incomplete: {msg}"))
            } else {
                source_err(msg)
            });
        }

        let (pg_major, manifest_end) = check_physical(&req.data_dir, Path::new(&backup.location))?;
        check_tablespaces_inside(req)?;
        let script = self.write_restore_script(&exe, req)?;
        let mut readable_paths = Vec::new();
        if let Some(p) = environment::lookup(&env, "WALG_FILE_PREFIX").filter(|p| p.starts_with('/')) {
            readable_paths.push(PathBuf::from(p));
        }
        let timelines = self.timelines(ctx, &exe, &env, major).await?;
        let backup_timeline = b.timeline();

        let mut server_env = env;
        // WAL-G's prefetch runs `wal-g wal-prefetch` processes in the background that would
        // outlive the restored server and write into the removed work dir; 1 turns it off.
        if environment::lookup(&server_env, "WALG_DOWNLOAD_CONCURRENCY").is_none()
            && std::env::var_os("WALG_DOWNLOAD_CONCURRENCY").is_none()
        {
            server_env.push(("WALG_DOWNLOAD_CONCURRENCY".into(), "1".into()));
        }
        let wal = WalFetch::script(script).reading(readable_paths).with_env(server_env);
        let mut fetched = FetchedBackup::new(req.data_dir.clone(), pg_major, WalSupply::Fetch(wal));
        fetched.backup_end_lsn = b.finish_lsn.filter(|l| *l > 0).map(Lsn).or(manifest_end);
        fetched.expected_end = expected_from_timelines(&timelines, backup_timeline, self.cfg.recovery_target_timeline)
            .into_iter()
            .collect();
        fetched.bytes_restored = tool::tree_size(&req.data_dir) + tool::tree_size(&req.tablespace_dir);
        fetched.recovery_target = req.recovery_target_or(&self.cfg.recovery_target);
        fetched.recovery_target_timeline = self.cfg.recovery_target_timeline;
        Ok(Artifact::Physical(fetched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like WAL-G's documented `backup-list --json --detail` output (`BackupTime` plus
    /// `ExtendedMetadataDto`; LSNs as integers).
    const LIST: &str = r#"[{"backup_name":"base_000000010000000000000002","time":"2026-11-25T03:00:05.5Z","wal_file_name":"000000010000000000000002","storage_name":"default","start_time":"2026-11-25T03:00:00.123456Z","finish_time":"2026-11-25T03:00:05Z","date_fmt":"%Y-%m-%dT%H:%M:%S.%fZ","hostname":"db1","data_dir":"/var/lib/postgresql/15/main","pg_version":150004,"start_lsn":33554472,"finish_lsn":33554720,"is_permanent":false,"system_identifier":7312345678901234567,"uncompressed_size":23000000,"compressed_size":3000000},
      {"backup_name":"base_000000010000000000000009_D_000000010000000000000002","time":"2026-11-26T03:00:05Z","wal_file_name":"000000010000000000000009","start_time":"2026-11-26T03:00:00Z","finish_time":"2026-11-26T03:00:05Z","hostname":"db1","data_dir":"/d","pg_version":150004,"start_lsn":"0/9000028","finish_lsn":150995200,"is_permanent":true,"uncompressed_size":0,"compressed_size":0,"user_data":{"x":1}}]"#;

    fn source() -> WalgSource {
        WalgSource::new(
            toml::from_str("env = { WALG_FILE_PREFIX = \"/backups/walg\", AWS_SECRET_ACCESS_KEY = \"hunter2\" }")
                .unwrap(),
        )
    }

    #[test]
    fn backup_list_json_parses() {
        let v = parse_backup_list(LIST).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].finish_lsn, Some(33554720));
        assert_eq!(v[1].start_lsn, Some(0x9000028));
        let s = source();
        let i = s.info(&v[0], s.storage().as_deref());
        assert_eq!(i.pg_major, Some(15));
        assert_eq!(i.kind, "walg-full");
        assert_eq!(i.size_bytes, Some(3000000));
        assert_eq!(i.taken_at.unwrap().to_rfc3339(), "2026-11-25T03:00:00.123456+00:00");
        assert_eq!(i.location, "walg:/backups/walg, backup base_000000010000000000000002");
        let i = s.info(&v[1], None);
        assert_eq!(i.kind, "walg-delta (permanent)");
        assert_eq!(i.size_bytes, None);
        assert!(parse_backup_list("").unwrap().is_empty());
        assert!(parse_backup_list("null\n").unwrap().is_empty());
        assert!(parse_backup_list("INFO: garbage").is_err());
        assert_eq!(parse_time(Some("0001-01-01T00:00:00Z")), None);
    }

    #[test]
    fn expected_end_is_the_newest_timeline_and_names_gaps() {
        let json = r#"[{"id":1,"parent_id":0,"switch_point_lsn":0,"start_segment":"000000010000000000000001","end_segment":"000000010000000000000009","segments_count":8,"missing_segments":["000000010000000000000005"],"segment_range_size":9,"status":"LOST_SEGMENTS"},
                       {"id":2,"parent_id":1,"switch_point_lsn":150995200,"start_segment":"000000020000000000000009","end_segment":"00000002000000000000000B","segments_count":3,"missing_segments":[],"segment_range_size":3,"status":"OK"}]"#;
        let t: Vec<TimelineInfo> = serde_json::from_str(json).unwrap();
        let e = expected_from_timelines(&t, Some(1), Default::default()).unwrap();
        assert_eq!(e.wal_segment.as_deref(), Some("00000002000000000000000B"));
        let e = expected_from_timelines(&t[..1], Some(1), Default::default()).unwrap();
        assert!(e.reason.contains("1 missing segment(s) on that timeline: 000000010000000000000005"), "{}", e.reason);
        assert!(expected_from_timelines(&t, Some(3), Default::default()).is_none());
        assert!(expected_from_timelines(&[], None, Default::default()).is_none());
    }

    #[test]
    fn sentinel_tablespaces_are_read() {
        let s = r#"{"LSN":33554472,"Spec":{"base_prefix":"/var/lib/pg","tablespaces":["16400"],"16400":{"loc":"/ts/","link":"pg_tblspc/16400"}},"PgVersion":150004}"#;
        assert_eq!(sentinel_tablespaces(s).unwrap(), vec!["16400".to_string()]);
        assert!(sentinel_tablespaces(r#"{"LSN":1,"Spec":null}"#).unwrap().is_empty());
        assert!(sentinel_tablespaces(r#"{"Spec":{"base_prefix":"/x","tablespaces":["../x"]}}"#).is_err());
    }

    #[test]
    fn read_only_paths_are_the_file_storage_and_the_files_the_environment_names() {
        let d = tempfile::tempdir().unwrap();
        let (store, key) = (d.path().join("store"), d.path().join("pgp.key"));
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(&key, "k").unwrap();
        let env_file = d.path().join("walg.env");
        std::fs::write(&env_file, format!("WALG_PGP_KEY_PATH={}\nAWS_SECRET_ACCESS_KEY=x\n", key.display())).unwrap();
        let s = WalgSource::new(
            toml::from_str(&format!(
                "env_file = \"{}\"\nenv = {{ WALG_FILE_PREFIX = \"{}\", WALG_S3_CA_CERT_FILE = \"/no/such\" }}",
                env_file.display(),
                store.display()
            ))
            .unwrap(),
        );
        let got: Vec<PathBuf> = s.read_only_paths().into_iter().filter(|p| p.starts_with(d.path())).collect();
        assert_eq!(got, vec![key, store]);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_describe() {
        let s = source();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.describe(), "walg:/backups/walg");
    }

    #[test]
    fn tablespaces_outside_the_work_dir_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (data, ts) = (d.path().join("data"), d.path().join("ts"));
        std::fs::create_dir_all(data.join("pg_tblspc")).unwrap();
        std::fs::create_dir_all(ts.join("16400")).unwrap();
        std::os::unix::fs::symlink(ts.join("16400"), data.join("pg_tblspc/16400")).unwrap();
        let req = FetchRequest::new(data.clone(), ts.clone(), d.path().join("scratch"));
        check_tablespaces_inside(&req).unwrap();
        std::os::unix::fs::symlink("/srv/prod/ts", data.join("pg_tblspc/16401")).unwrap();
        assert!(check_tablespaces_inside(&req).is_err());
        std::fs::remove_file(data.join("pg_tblspc/16401")).unwrap();
        std::fs::write(data.join("tablespace_map"), "16400 /srv/prod/ts\n").unwrap();
        assert!(check_tablespaces_inside(&req).is_err());
    }
}
