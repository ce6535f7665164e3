//! Source `wale`: base backups in WAL-E storage (`basebackups_005/`, `wal_005/`), fetched with
//! the real `wal-e backup-fetch` and recovered with WAL through `wal-e wal-fetch`.
//!
//! Everything WAL-E is asked to do only reads the storage: `backup-list`, `backup-fetch` and
//! `wal-fetch` (with prefetching off: its prefetch daemons would outlive the restored server).
//!
//! WAL-E facts this relies on (WAL-E 1.1.1, its final release; verified with a real WAL-E and
//! `file://` storage unless noted):
//! - `backup-list --detail` prints tab-separated text with a header row.
//! - With object stores, `backup-fetch` refuses a backup with tablespaces unless their
//!   `pg_tblspc/<oid>` links exist ("Symlinks for the following tablespaces were not found: …",
//!   from the source); restorecheck then links them into its work dir and fetches again. With
//!   `file://` storage WAL-E never reads the backup's sentinel: it extracts each tablespace as a
//!   plain folder in `pg_tblspc/`, which restorecheck moves into its tablespace dir and links.
//!   Either way tablespaces never go to their production paths. (`file://` also leaves the
//!   `--detail` columns of `backup-list` empty, for the same reason.)
//! - A damaged stored file makes `backup-fetch` retry with exponential backoff (up to
//!   `WALE_RETRIES`, default 100: hours). restorecheck sets `WALE_RETRIES=5` unless you do.
//! - `wal-fetch` exits 1 both when a segment is not in the storage and on errors it handles
//!   (a corrupt segment: "pipeline process did not exit gracefully"); the object stores log
//!   "could no longer locate object while performing wal restore" for the first (from the
//!   source, not run here). With `file://` storage a missing segment is an unhandled exception
//!   (exit 2). The `restore_command` therefore answers "not found" (1) only when WAL-E said so,
//!   or, with `file://` storage, when the segment file is absent; every other failure exits 200
//!   so PostgreSQL stops recovery with an error instead of ending it early.
//! - Backups taken with `backup-push --while-offline` carry no `backup_label`: they start from
//!   the shutdown checkpoint in `pg_control` (state "shut down"). Their recorded stop segment is
//!   wrong (WAL-E misparses PostgreSQL 10+ `pg_controldata` positions), so it is not used.
//!
//! Where recovery must get to: for an online backup, its stop segment; with `file://` storage,
//! also the newest segment in `wal_005/`. Other storages cannot be listed here, so a gap in the
//! WAL after the backup's end is then only caught by your assertions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::report::Phase;
use crate::source::{
    Artifact, BackupInfo, BackupSource, ExpectedEnd, FetchRequest, FetchedBackup, RecoveryTarget, WalFetch, WalSupply,
};
use crate::sources::environment;
use crate::sources::tool;
use crate::sources::walg::{check_server_user_can_run, check_tablespaces_inside};
use crate::wal_archive::shell_quote;

const KIND: &str = "wale";
const INSTALL_HINT: &str =
    "install WAL-E 1.1.1 in a virtualenv (`python3 -m venv /opt/wal-e && /opt/wal-e/bin/pip install \
                            wal-e==1.1.1`) with lzop and pv (Debian: apt-get install lzop pv), then set binary = \
                            \"/opt/wal-e/bin/wal-e\"";

/// What WAL-E logs (on every object store) when `wal-fetch` finds no such segment.
const NOT_FOUND_LOG: &str = "could no longer locate object while performing wal restore";

/// `WALE_RETRIES` restorecheck uses unless the environment sets it.
const DEFAULT_RETRIES: &str = "5";

/// Options of source `wale` (`[check.source] kind = "wale"`).
#[derive(Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct WaleConfig {
    /// The `wal-e` program (default: `wal-e` on PATH).
    pub binary: Option<String>,
    /// A daemontools-style envdir (one file per variable, as used with `envdir DIR wal-e …`),
    /// read fresh on every use.
    pub envdir: Option<PathBuf>,
    /// Further environment; wins over `envdir`. Avoid secrets here, use `envdir`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `"latest"` (default), `"oldest"` or a backup name (`base_000000010000000000000002_00000040`).
    pub backup: Option<String>,
    /// How far to recover (default `latest`: all WAL in the storage).
    #[serde(default)]
    pub recovery_target: RecoveryTarget,
    /// Which timeline recovery follows (`"latest"`, default: the newest in the archive, as
    /// after a failover; `"current"`: the backup's own; or a timeline number).
    #[serde(default)]
    pub recovery_target_timeline: crate::source::RecoveryTargetTimeline,
}

impl std::fmt::Debug for WaleConfig {
    // Environment values may be secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaleConfig")
            .field("binary", &self.binary)
            .field("envdir", &self.envdir)
            .field("env", &self.env.keys().map(|k| format!("{k}=***")).collect::<Vec<_>>())
            .field("backup", &self.backup)
            .field("recovery_target", &self.recovery_target)
            .field("recovery_target_timeline", &self.recovery_target_timeline)
            .finish()
    }
}

/// Source `wale`.
#[derive(Debug, Clone)]
pub struct WaleSource {
    cfg: WaleConfig,
}

fn source_err(message: impl Into<String>) -> Error {
    Error::Source { source_kind: KIND, message: message.into(), source: None }
}

/// One row of `wal-e backup-list --detail`.
#[derive(Debug, Clone, Default, PartialEq)]
struct WaleBackup {
    name: String,
    last_modified: Option<DateTime<Utc>>,
    expanded_size_bytes: Option<u64>,
    wal_segment_backup_stop: Option<String>,
}

/// Parses the tab-separated `backup-list` output (csv `excel-tab`: CRLF line ends, header row).
fn parse_backup_list(stdout: &str) -> Result<Vec<WaleBackup>> {
    let mut lines = stdout.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else { return Ok(Vec::new()) };
    let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let name_col = col("name").ok_or_else(|| {
        source_err(format!("`wal-e backup-list --detail` printed no header row with a `name` column: {header:?}"))
    })?;
    let (modified, size, stop) = (col("last_modified"), col("expanded_size_bytes"), col("wal_segment_backup_stop"));
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').map(str::trim).collect();
        let get = |i: Option<usize>| i.and_then(|i| f.get(i)).copied().filter(|s| !s.is_empty());
        let Some(name) = get(Some(name_col)) else { continue };
        out.push(WaleBackup {
            name: name.to_string(),
            last_modified: get(modified).and_then(parse_time),
            expanded_size_bytes: get(size).and_then(|s| s.parse().ok()),
            wal_segment_backup_stop: get(stop).filter(|s| tool::is_segment_name(s)).map(|s| s.to_ascii_uppercase()),
        });
    }
    Ok(out)
}

/// `last_modified` is RFC 3339 from the object stores and a zone-less UTC time from `file://`.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|n| DateTime::from_naive_utc_and_offset(n, Utc))
    })
}

/// The absolute folder of a `file://host/abs/path` prefix (the host part is ignored by WAL-E).
fn file_prefix_path(prefix: &str) -> Option<PathBuf> {
    let rest = prefix.strip_prefix("file://")?;
    let path = &rest[rest.find('/')?..];
    Some(PathBuf::from(path)).filter(|p| p.is_absolute())
}

/// The newest WAL segment under `wal_005/` of a `file://` storage (files are `<segment>.lzo`).
fn newest_stored_segment(store: &Path) -> Option<String> {
    let rd = std::fs::read_dir(store.join("wal_005")).ok()?;
    rd.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".lzo").map(str::to_ascii_uppercase))
        .filter(|n| tool::is_segment_name(n))
        .max_by_key(|n| tool::segment_order_key(n))
}

/// The segments and timeline history files under `wal_005/` of a `file://` storage (history
/// files are `NNNNNNNN.history.lzo`, read with `lzop -dc`), so that the proof follows the
/// timeline recovery follows. `None` when a history file cannot be read: the caller falls back
/// to the newest segment of any timeline.
async fn stored_contents(
    ctx: &RunContext,
    store: &Path,
    major: Option<u32>,
) -> Option<crate::wal_archive::ArchiveContents> {
    let dir = store.join("wal_005");
    let mut contents = crate::wal_archive::ArchiveContents {
        described: format!("the WAL-E storage {}", dir.display()),
        ..Default::default()
    };
    let mut histories = Vec::new();
    for e in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(base) = name.strip_suffix(".lzo") else { continue };
        if tool::is_segment_name(base) {
            contents.segments.push(base.to_ascii_uppercase());
        } else if let Some(tli) =
            base.strip_suffix(".history").filter(|t| t.len() == 8).and_then(|t| u32::from_str_radix(t, 16).ok())
        {
            histories.push((tli, e.path()));
        }
    }
    if !histories.is_empty() {
        let lzop = ctx.tools.locate("lzop", "install lzop (Debian: apt-get install lzop)", major).await.ok()?;
        for (tli, path) in histories {
            let mut cmd = tool::command(ctx, &lzop, &[], major).await.ok()?;
            cmd.arg("-dc").arg(&path);
            let out = tool::run(ctx, Phase::Fetch, cmd, "lzop -dc").await.ok()?;
            if !out.status.success() {
                return None;
            }
            contents.histories.insert(tli, crate::wal_archive::parse_history(&out.stdout).ok()?);
        }
    }
    Some(contents)
}

/// `pg_control`'s `state` (a `DBState`, right after system identifier, control and catalog
/// versions: the same place in every supported version). 1 = shut down, 2 = shut down in
/// recovery.
fn pg_control_state(data: &Path) -> Option<u32> {
    let bytes = std::fs::read(data.join("global/pg_control")).ok()?;
    Some(u32::from_ne_bytes(bytes.get(16..20)?.try_into().ok()?))
}

/// Markers of a damaged stored backup in `backup-fetch` output.
const DAMAGE_MARKERS: &[&str] = &[
    "ReadError",
    "unexpected end of data",
    "FileNotFoundError",
    "pipeline process did not exit gracefully",
    "not a valid tar file",
];

/// What WAL-E said, without its tracebacks: the `MSG:`/`DETAIL:` lines of its log and the
/// final exception lines, at most the last six; else the tool's plain output.
fn summary(out: &tool::ToolOutput) -> String {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let mut keep: Vec<&str> = Vec::new();
    for l in text.lines().map(str::trim) {
        let logged = (l.contains("MSG: ") || l.starts_with("DETAIL: ")) && !l.contains("Traceback");
        let exception = l
            .split_once(": ")
            .is_some_and(|(head, _)| !head.contains(' ') && (head.ends_with("Error") || head.ends_with("Exception")));
        if (logged || exception) && !keep.contains(&l) {
            keep.push(l);
        }
    }
    if keep.is_empty() {
        out.message()
    } else {
        keep[keep.len().saturating_sub(6)..].join("\n")
    }
}

/// The tablespace OIDs `backup-fetch` wants linked, from its "not found" message.
fn missing_tablespace_links(message: &str) -> Vec<String> {
    const MARK: &str = "Symlinks for the following tablespaces were not found:";
    let Some(at) = message.find(MARK) else { return Vec::new() };
    let rest = &message[at + MARK.len()..];
    rest.lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

impl WaleSource {
    /// A source over `cfg`.
    pub fn new(cfg: WaleConfig) -> Self {
        Self { cfg }
    }

    fn binary(&self) -> &str {
        self.cfg.binary.as_deref().unwrap_or("wal-e")
    }

    /// The `wal-e` program where the check's tools run, as an absolute path (the restored
    /// server runs it too).
    async fn program(&self, ctx: &RunContext, major: Option<u32>) -> Result<PathBuf> {
        ctx.tools.locate(self.binary(), INSTALL_HINT, major).await
    }

    /// [`environment`](Self::environment) for the tools of `ctx`: elsewhere than on this host
    /// (a container) they do not inherit restorecheck's own environment, so its defaults apply
    /// whatever that environment holds.
    fn environment_for(&self, ctx: &RunContext) -> Result<Vec<(String, String)>> {
        self.environment_with(ctx.tools.on_this_host())
    }

    /// `envdir`, then `env`, then restorecheck's defaults for what neither sets: logs to stderr
    /// only (not syslog) and a bounded number of retries.
    fn environment(&self) -> Result<Vec<(String, String)>> {
        self.environment_with(true)
    }

    /// [`environment`](Self::environment); `inherited`: the tools also see restorecheck's own
    /// environment (a default is then only added when that does not set the variable either).
    fn environment_with(&self, inherited: bool) -> Result<Vec<(String, String)>> {
        let mut vars = match &self.cfg.envdir {
            Some(d) => environment::read_envdir(d, KIND)?,
            None => Vec::new(),
        };
        vars.extend(self.cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (k, v) in [("WALE_LOG_DESTINATION", "stderr"), ("WALE_RETRIES", DEFAULT_RETRIES)] {
            if environment::lookup(&vars, k).is_none() && !(inherited && std::env::var_os(k).is_some()) {
                vars.push((k.into(), v.into()));
            }
        }
        Ok(environment::last_wins(vars))
    }

    /// The storage prefix (`WALE_S3_PREFIX`, `WALE_FILE_PREFIX`, …).
    fn prefix(vars: &[(String, String)]) -> Option<String> {
        ["WALE_S3_PREFIX", "WALE_FILE_PREFIX", "WALE_WABS_PREFIX", "WALE_GS_PREFIX", "WALE_SWIFT_PREFIX"]
            .iter()
            .find_map(|k| environment::lookup(vars, k).filter(|v| !v.is_empty()).map(str::to_string))
    }

    fn storage(&self) -> Option<String> {
        let vars = self.environment().unwrap_or_else(|_| self.cfg.env.clone().into_iter().collect());
        Self::prefix(&vars).map(|p| environment::redact_url(&p))
    }

    async fn wal_e(
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
        let what = format!(
            "wal-e {}",
            args.iter()
                .find(|a| !a.to_string_lossy().starts_with('-'))
                .map(|a| a.to_string_lossy())
                .unwrap_or_default()
        );
        tool::run(ctx, phase, cmd, &what).await
    }

    async fn backups(&self, ctx: &RunContext, phase: Phase, major: Option<u32>) -> Result<Vec<WaleBackup>> {
        let exe = self.program(ctx, major).await?;
        let env = self.environment_for(ctx)?;
        let args: [&std::ffi::OsStr; 3] = ["--terse".as_ref(), "backup-list".as_ref(), "--detail".as_ref()];
        let out = self.wal_e(ctx, phase, &exe, &env, &args, major).await?;
        if !out.status.success() {
            return Err(source_err(format!(
                "`wal-e backup-list --detail` failed ({}): {}; check the storage settings in envdir/env \
                 (WALE_*_PREFIX and credentials)",
                out.status,
                summary(&out)
            )));
        }
        parse_backup_list(&out.stdout)
    }

    fn info(&self, b: &WaleBackup, storage: Option<&str>) -> BackupInfo {
        BackupInfo {
            id: b.name.clone(),
            taken_at: b.last_modified,
            size_bytes: b.expanded_size_bytes,
            kind: "wale".into(),
            location: match storage {
                Some(s) => format!("wale:{s}, backup {}", b.name),
                None => format!("wale:backup {}", b.name),
            },
            pg_major: None,
            label: None,
            // `base_<start segment>_<offset>`.
            timeline: b
                .name
                .strip_prefix("base_")
                .and_then(|n| n.get(0..24))
                .and_then(crate::source::timeline_of_segment),
        }
    }

    /// Writes the `restore_command` script (see the module docs for the exit codes).
    fn write_restore_script(&self, exe: &Path, store: Option<&Path>, req: &FetchRequest) -> Result<PathBuf> {
        let precheck = match store {
            Some(s) => format!(
                "# file:// storage: WAL-E crashes (exit 2) on a missing segment, so look first\n\
                 [ -f {}/\"$f\".lzo ] || exit 1\n",
                shell_quote(&s.join("wal_005").display().to_string())
            ),
            None => String::new(),
        };
        let script = format!(
            "#!/bin/sh\n# written by restorecheck: fetches WAL with `wal-e wal-fetch`, which only reads the storage\n\
             f=\"$1\"; p=\"$2\"; log=\"$p.restorecheck-wal-e.log\"\n\
             {precheck}\
             {exe} wal-fetch --prefetch 0 \"$f\" \"$p\" 2>\"$log\"\nrc=$?\n\
             if [ \"$rc\" -eq 0 ]; then rm -f \"$log\"; exit 0; fi\n\
             cat \"$log\" >&2\n\
             if [ \"$rc\" -eq 1 ] && grep -q '{NOT_FOUND_LOG}' \"$log\"; then rm -f \"$log\"; exit 1; fi\n\
             rm -f \"$log\"\n\
             echo \"restorecheck: wal-e wal-fetch $f failed with exit code $rc; stopping recovery\" >&2\nexit 200\n",
            exe = shell_quote(&exe.display().to_string()),
        );
        let path = req.scratch_dir.join("wale_wal_fetch.sh");
        std::fs::write(&path, script).map_err(|e| Error::io("writing restore script", &path, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &path, e))?;
        Ok(path)
    }

    async fn backup_fetch(
        &self,
        ctx: &RunContext,
        exe: &Path,
        env: &[(String, String)],
        name: &str,
        req: &FetchRequest,
        major: Option<u32>,
    ) -> Result<tool::ToolOutput> {
        let args: [&std::ffi::OsStr; 4] =
            ["--terse".as_ref(), "backup-fetch".as_ref(), req.data_dir.as_os_str(), name.as_ref()];
        self.wal_e(ctx, Phase::Fetch, exe, env, &args, major).await
    }
}

/// Links `pg_tblspc/<oid>` to `tablespace_dir/<oid>` for each tablespace.
fn link_tablespaces(req: &FetchRequest, oids: &[String]) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let tbl = req.data_dir.join("pg_tblspc");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&tbl).map_err(|e| Error::io("creating", &tbl, e))?;
    for oid in oids {
        let dest = req.tablespace_dir.join(oid);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dest)
            .map_err(|e| Error::io("creating", &dest, e))?;
        let link = tbl.join(oid);
        std::os::unix::fs::symlink(&dest, &link).map_err(|e| Error::io("linking tablespace", &link, e))?;
    }
    Ok(())
}

/// WAL-E's `file://` storage never reads the backup's sentinel, so `backup-fetch` neither
/// checks nor creates tablespace links and extracts each tablespace as a plain folder
/// `pg_tblspc/<oid>` (PostgreSQL 15 then panics in recovery: "unexpected directory entry").
/// Such folders are moved to `tablespace_dir/<oid>` and linked, as pg_basebackup would.
fn move_in_place_tablespaces(req: &FetchRequest) -> Result<()> {
    let tbl = req.data_dir.join("pg_tblspc");
    let Ok(rd) = std::fs::read_dir(&tbl) else { return Ok(()) };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        std::fs::create_dir_all(&req.tablespace_dir).map_err(|er| Error::io("creating", &req.tablespace_dir, er))?;
        let dest = req.tablespace_dir.join(&name);
        std::fs::rename(e.path(), &dest).map_err(|er| Error::io("moving tablespace", e.path(), er))?;
        std::os::unix::fs::symlink(&dest, e.path()).map_err(|er| Error::io("linking tablespace", e.path(), er))?;
    }
    Ok(())
}

#[async_trait]
impl BackupSource for WaleSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn describe(&self) -> String {
        match self.storage() {
            Some(s) => format!("wale:{s}"),
            None => format!("wale:{}", self.binary()),
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

    /// What `wal-e` (and `lzop`) read: the storage folder of a `file://` `WALE_FILE_PREFIX`
    /// and the files its environment names (variables ending in `_PATH` or `_FILE`, and
    /// `GOOGLE_APPLICATION_CREDENTIALS`). The `envdir` is not among them: restorecheck reads
    /// it and hands its values to the tool.
    fn read_only_paths(&self) -> Vec<PathBuf> {
        let env = self.environment().unwrap_or_else(|_| self.cfg.env.clone().into_iter().collect());
        let mut paths = tool::file_vars(&env);
        paths.extend(Self::prefix(&env).as_deref().and_then(file_prefix_path));
        tool::existing_roots(paths)
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        crate::workdir::ensure_room_for(req, backup)?;
        let major = backup.pg_major;
        let exe = self.program(ctx, major).await?;
        let env = self.environment_for(ctx)?;
        let all = self.backups(ctx, Phase::Fetch, major).await?;
        let b = all.iter().find(|b| b.name == backup.id).ok_or_else(|| {
            Error::defect(format!("backup {} is no longer in the WAL-E storage; it was deleted", backup.id))
        })?;
        check_server_user_can_run(ctx, &exe).await?;

        ctx.progress.begin(&format!("wal-e backup-fetch {}", b.name), None);
        let mut out = self.backup_fetch(ctx, &exe, &env, &b.name, req, major).await;
        if let Ok(o) = &out {
            let oids = missing_tablespace_links(&o.stderr);
            if !o.status.success() && !oids.is_empty() {
                // WAL-E checked the links before writing anything: link into the work dir, again.
                link_tablespaces(req, &oids)?;
                out = self.backup_fetch(ctx, &exe, &env, &b.name, req, major).await;
            }
        }
        ctx.progress.end();
        let out = out?;
        if !out.status.success() {
            let all = format!("{}\n{}", out.stdout, out.stderr);
            let msg = format!("`wal-e backup-fetch` of backup {} failed ({}): {}", b.name, out.status, summary(&out));
            return Err(if DAMAGE_MARKERS.iter().any(|m| all.contains(m)) {
                Error::defect(format!("the stored backup is damaged or incomplete: {msg}"))
            } else {
                source_err(msg)
            });
        }

        let origin = Path::new(&backup.location);
        let online = req.data_dir.join("backup_label").is_file();
        let pg_major = if online {
            crate::postgres::physical::check_physical(&req.data_dir, origin)?.0
        } else {
            // An offline backup (`backup-push --while-offline`) needs no label, but only if the
            // cluster really was shut down cleanly; otherwise the label is missing.
            match pg_control_state(&req.data_dir) {
                Some(1 | 2) => {}
                Some(state) => {
                    return Err(Error::defect(format!(
                        "{}: backup_label is missing but pg_control says the cluster was running (state {state}); \
                         without the label PostgreSQL would start from the wrong checkpoint and silently corrupt the copy",
                        origin.display()
                    )))
                }
                None => {
                    return Err(Error::defect(format!(
                        "{}: global/pg_control is missing or unreadable after `wal-e backup-fetch`",
                        origin.display()
                    )))
                }
            }
            tool::pg_version(&req.data_dir)
                .ok_or_else(|| Error::defect(format!("{}: PG_VERSION is missing or unreadable", origin.display())))?
        };
        move_in_place_tablespaces(req)?;
        check_tablespaces_inside(req)?;

        let store = Self::prefix(&env).as_deref().and_then(file_prefix_path);
        let script = self.write_restore_script(&exe, store.as_deref(), req)?;
        let mut expected_end = Vec::new();
        if online {
            if let Some(stop) = &b.wal_segment_backup_stop {
                expected_end.push(ExpectedEnd {
                    lsn: None,
                    wal_segment: Some(stop.clone()),
                    reason: format!("backup {} ends in WAL segment {stop}", b.name),
                });
            }
        }
        let listed = match &store {
            Some(store) => stored_contents(ctx, store, major).await,
            None => None,
        };
        if let Some(store) = store.as_ref().filter(|_| listed.is_none()) {
            if let Some(seg) = newest_stored_segment(store) {
                expected_end.push(ExpectedEnd {
                    lsn: None,
                    wal_segment: Some(seg.clone()),
                    reason: format!("the WAL-E storage {}/wal_005 continues to segment {seg}", store.display()),
                });
            }
        }
        let readable_paths: Vec<PathBuf> = store.iter().cloned().collect();
        let mut fetched = FetchedBackup::new(
            req.data_dir.clone(),
            pg_major,
            WalSupply::Fetch(WalFetch::script(script).reading(readable_paths).with_env(env)),
        );
        fetched.expected_end = expected_end;
        fetched.bytes_restored = tool::tree_size(&req.data_dir) + tool::tree_size(&req.tablespace_dir);
        fetched.recovery_target = req.recovery_target_or(&self.cfg.recovery_target);
        fetched.recovery_target_timeline = self.cfg.recovery_target_timeline;
        fetched.archive = listed;
        Ok(Artifact::Physical(fetched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_list_tsv_parses() {
        // What WAL-E 1.1.1 printed here, CRLF line ends included.
        let out = "name\tlast_modified\texpanded_size_bytes\twal_segment_backup_start\twal_segment_offset_backup_start\twal_segment_backup_stop\twal_segment_offset_backup_stop\r\n\
                   base_000000010000000000000020_00000020\t2026-11-26T05:34:24.882693\t\t000000010000000000000020\t00000020\t\t\r\n\
                   base_000000010000000000000004_00000040\t2026-11-27T03:00:00.000Z\t23218540\t000000010000000000000004\t00000040\t000000010000000000000004\t00000138\r\n";
        let v = parse_backup_list(out).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].last_modified.unwrap().to_rfc3339(), "2026-11-26T05:34:24.882693+00:00");
        assert_eq!(v[0].expanded_size_bytes, None);
        assert_eq!(v[0].wal_segment_backup_stop, None);
        assert_eq!(v[1].expanded_size_bytes, Some(23218540));
        assert_eq!(v[1].wal_segment_backup_stop.as_deref(), Some("000000010000000000000004"));
        assert!(parse_backup_list("").unwrap().is_empty());
        assert!(parse_backup_list("garbage\n").is_err());
    }

    #[test]
    fn file_prefixes() {
        assert_eq!(file_prefix_path("file://localhost/var/b/"), Some(PathBuf::from("/var/b/")));
        assert_eq!(file_prefix_path("file:///var/b"), Some(PathBuf::from("/var/b/")));
        assert_eq!(file_prefix_path("s3://bucket/x"), None);
    }

    #[test]
    fn tablespace_links_from_the_message() {
        let m = "wal_e.main ERROR MSG: Symlinks for some tablespaces not found or created.\n        DETAIL: Symlinks for the following tablespaces were not found: 16400, 16401\n        HINT: …";
        assert_eq!(missing_tablespace_links(m), vec!["16400".to_string(), "16401".to_string()]);
        assert!(missing_tablespace_links("other").is_empty());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_defaults_apply() {
        let s = WaleSource::new(
            toml::from_str("env = { AWS_SECRET_ACCESS_KEY = \"hunter2\", WALE_S3_PREFIX = \"s3://k:s@bucket/p\" }")
                .unwrap(),
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.describe(), "wale:s3://bucket/p");
        let env = s.environment().unwrap();
        assert_eq!(environment::lookup(&env, "WALE_LOG_DESTINATION"), Some("stderr"));
    }

    #[test]
    fn read_only_paths_are_the_file_storage_and_the_files_the_environment_names() {
        let d = tempfile::tempdir().unwrap();
        let (store, envdir, creds) = (d.path().join("store"), d.path().join("env"), d.path().join("gcs.json"));
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(&envdir).unwrap();
        std::fs::write(&creds, "{}").unwrap();
        std::fs::write(envdir.join("WALE_FILE_PREFIX"), format!("file://localhost{}/\n", store.display())).unwrap();
        std::fs::write(envdir.join("GOOGLE_APPLICATION_CREDENTIALS"), creds.display().to_string()).unwrap();
        let s = WaleSource::new(toml::from_str(&format!("envdir = \"{}\"", envdir.display())).unwrap());
        assert_eq!(s.read_only_paths(), vec![creds, store]);
        // Tools in a container do not inherit restorecheck's environment: the defaults are set.
        let env = s.environment_with(false).unwrap();
        assert_eq!(environment::lookup(&env, "WALE_RETRIES"), Some(DEFAULT_RETRIES));
    }

    #[test]
    fn newest_stored_segment_by_position() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("wal_005")).unwrap();
        for n in ["000000010000000000000003.lzo", "000000010000000000000004.lzo", "00000002.history.lzo"] {
            std::fs::write(d.path().join("wal_005").join(n), b"x").unwrap();
        }
        assert_eq!(newest_stored_segment(d.path()).as_deref(), Some("000000010000000000000004"));
    }
}
