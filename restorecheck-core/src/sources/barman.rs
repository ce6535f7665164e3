//! Source `barman`: backups in a Barman catalog, restored with the real `barman recover`
//! (`barman restore` on Barman 3.12 and later).
//!
//! How Barman behaves, verified with Barman 3.4:
//! - Barman switches to its `barman_user` itself when started as root, so it can only write
//!   where that user may. restorecheck hands it the (empty) data, tablespace and staging folders
//!   for the copy, lets it traverse the private work dir for that time, and takes them back
//!   afterwards.
//! - Without a recovery target, `barman recover` copies every WAL file its catalog holds from
//!   the backup's start on into `pg_wal` and writes no `restore_command`: the copy recovers like
//!   a crashed server ([`WalSupply::SelfContained`]). With a `recovery_target`, Barman copies the
//!   WAL into `<data>/barman_wal` instead, and restorecheck serves that folder to
//!   `restore_command` read-only.
//! - `barman recover` first archives what is waiting in the server's incoming and streaming WAL
//!   folders (the step `barman cron` runs every minute): it renames the files into `wals/` and
//!   appends to `wals/xlog.db`, a write to the catalog that cannot be switched off. So
//!   restorecheck never runs `barman recover` on the real catalog: it runs it under a generated
//!   configuration (the user's `[barman]` and server sections with every folder, the lock folder
//!   and the log file replaced) against a private shadow of the server's catalog in the check's
//!   scratch space, where `xlog.db`, `identity.json` and each `backup.info` are copies and
//!   everything else is a symlink to the real file (see `barman_shadow.rs`). Barman's
//!   bookkeeping lands in the shadow; the real catalog is only read, and the WAL waiting in
//!   `incoming` is restored too. The configured `pre/post_recovery` hook scripts still run; the
//!   archive hook scripts do not (archiving into the shadow is no real archiving).
//! - A WAL file the catalog lists but that is missing on disk makes `barman recover` fail
//!   (rsync cannot copy it): the check fails in the fetch phase. WAL missing from the catalog
//!   itself shows up in recovery: the copy stops short of the newest WAL Barman holds.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::user::OsUser;
use crate::postgres::Lsn;
use crate::report::Phase;
use crate::source::{
    Artifact, BackupInfo, BackupSource, ExpectedEnd, FetchRequest, FetchedBackup, RecoveryTarget, WalSupply,
};
use crate::sources::tool;
use crate::wal_archive::WalArchive;

#[path = "barman_shadow.rs"]
mod shadow;

const KIND: &str = "barman";
const INSTALL_HINT: &str = "install Barman (Debian/Ubuntu: apt-get install barman) on the host that holds the catalog";

/// Options of source `barman` (`[check.source] kind = "barman"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct BarmanConfig {
    /// The Barman server name (the section in Barman's configuration).
    pub server: String,
    /// `barman.conf` to use (`barman -c`; default: Barman's own search order).
    pub config: Option<PathBuf>,
    /// `latest` (default), `oldest`, or a backup ID (`20261126T030000`).
    pub backup: Option<String>,
    /// How far to recover (default `latest`: all WAL Barman holds).
    #[serde(default)]
    pub recovery_target: RecoveryTarget,
    /// Which timeline recovery follows (`"latest"`, default: the newest in the archive, as
    /// after a failover; `"current"`: the backup's own; or a timeline number).
    #[serde(default)]
    pub recovery_target_timeline: crate::source::RecoveryTargetTimeline,
}

impl BarmanConfig {
    /// Options for Barman server `server`, everything else at its default.
    pub fn new(server: impl Into<String>) -> Self {
        Self { server: server.into(), ..Self::default() }
    }
}

/// Source `barman`.
#[derive(Debug, Clone)]
pub struct BarmanSource {
    cfg: BarmanConfig,
}

fn source_err(message: impl Into<String>) -> Error {
    Error::Source { source_kind: KIND, message: message.into(), source: None }
}

impl BarmanSource {
    /// A source over `cfg`.
    pub fn new(cfg: BarmanConfig) -> Result<Self> {
        let ok = !cfg.server.is_empty()
            && !cfg.server.starts_with('-')
            && cfg.server.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            return Err(Error::config(format!(
                "source barman: server {:?} is not a valid Barman server name (letters, digits, - _ .)",
                cfg.server
            )));
        }
        Ok(Self { cfg })
    }

    /// `barman` where the check's tools run.
    async fn program(&self, ctx: &RunContext, major: Option<u32>) -> Result<PathBuf> {
        ctx.tools.locate("barman", INSTALL_HINT, major).await
    }

    /// `barman [-c …]` plus `args`.
    async fn command(
        &self,
        ctx: &RunContext,
        exe: &Path,
        args: &[&str],
        major: Option<u32>,
    ) -> Result<tokio::process::Command> {
        command_with(ctx, self.cfg.config.as_deref(), exe, args, major).await
    }

    /// The `barman -c` file for listing and showing backups: where the check has a work dir
    /// (the runner's checks), one generated into it from the user's, with the folders
    /// unchanged but the lock folder and the log file in the work dir and no archive hooks,
    /// so that not even Barman's locks reach the real catalog. Where the tools run elsewhere
    /// (a container, which sees the catalog through a private overlay, see
    /// [`BackupSource::private_write_paths`]), it runs as the tools' user there; on this host
    /// as `barman_user`, which is handed the folder meanwhile (the returned [`Handover`]).
    /// Without a work dir: the user's own file.
    async fn config_for(&self, ctx: &RunContext, major: Option<u32>) -> Result<(Option<PathBuf>, Option<Handover>)> {
        let Some(work) = ctx.tools.work_dir() else {
            if !ctx.tools.on_this_host() {
                // Without a work dir there is no private view of the catalog either: Barman
                // would do its bookkeeping in the real one.
                return Err(Error::Tooling {
                    what: format!(
                        "Barman cannot run in {}: that toolbox has no work dir, so no private view of the catalog",
                        ctx.tools.describe()
                    ),
                    hint: "use a target whose toolbox overlays the source's private_write_paths (the docker target \
                           does) or the local target"
                        .into(),
                    source: None,
                });
            }
            return Ok((self.cfg.config.clone(), None));
        };
        let scratch = work.join("barman-run");
        let lock = scratch.join("lock");
        std::fs::create_dir_all(&lock).map_err(|e| Error::io("creating", &lock, e))?;
        let mut handover = None;
        let user = if ctx.tools.on_this_host() {
            if let Some(user) = self.barman_os_user()? {
                user.chown_tree(&scratch)?;
                handover = Some(Handover::give(&user, &[&scratch])?);
            }
            self.barman_user()
        } else if nix::unistd::Uid::effective().is_root() {
            "root".to_string()
        } else {
            let id = ctx.tools.locate("id", "Barman's user is looked up with `id` (coreutils)", major).await?;
            let mut cmd = tool::command(ctx, &id, &[], major).await?;
            cmd.arg("-un");
            let out = tool::run(ctx, Phase::Select, cmd, "id -un").await?;
            let name = out.stdout.trim().to_string();
            if !out.status.success() || name.is_empty() {
                return Err(source_err(format!("`id -un` failed in {}: {}", ctx.tools.describe(), out.message())));
            }
            name
        };
        let ini = shadow::BarmanIni::load(self.cfg.config.as_deref())?;
        let path = scratch.join("barman.conf");
        std::fs::write(&path, shadow::in_place_config(&ini, &self.cfg.server, &user, &scratch))
            .map_err(|e| Error::io("writing Barman's configuration", &path, e))?;
        Ok((Some(path), handover))
    }

    /// Runs a `barman -f json …` command and returns the server's entry of its output.
    async fn json(&self, ctx: &RunContext, phase: Phase, args: &[&str], major: Option<u32>) -> Result<Value> {
        let exe = self.program(ctx, major).await?;
        let mut all = vec!["-f", "json"];
        all.extend_from_slice(args);
        let what = format!("barman {}", args.join(" "));
        let (config, handover) = self.config_for(ctx, major).await?;
        let out = tool::run(ctx, phase, command_with(ctx, config.as_deref(), &exe, &all, major).await?, &what).await;
        drop(handover);
        let out = out?;
        // JSON, possibly after stray lines a hook or a warning printed first.
        let parsed: Option<Value> = serde_json::from_str(&out.stdout)
            .ok()
            .or_else(|| out.stdout.find('{').and_then(|at| serde_json::from_str(&out.stdout[at..]).ok()));
        if let Some(errors) = parsed.as_ref().and_then(|v| v.get("_ERROR")).and_then(Value::as_array) {
            let text: Vec<String> =
                errors.iter().map(|e| e.as_str().map(str::to_string).unwrap_or(e.to_string())).collect();
            return Err(source_err(format!("`{what}` failed: {}", text.join("; "))));
        }
        if !out.status.success() {
            return Err(not_run_as_barman(&out.message())
                .unwrap_or_else(|| source_err(format!("`{what}` failed ({}): {}", out.status, out.message()))));
        }
        let parsed = parsed.ok_or_else(|| source_err(format!("`{what}` did not print JSON: {}", out.message())))?;
        parsed
            .get(&self.cfg.server)
            .cloned()
            .ok_or_else(|| source_err(format!("`{what}` says nothing about server {:?}", self.cfg.server)))
    }

    async fn show_backup(&self, ctx: &RunContext, phase: Phase, id: &str, major: Option<u32>) -> Result<ShowBackup> {
        let v = self.json(ctx, phase, &["show-backup", &self.cfg.server, id], major).await?;
        Ok(ShowBackup::from_json(&v))
    }

    /// `restore` where Barman has it (3.12+), else `recover`.
    async fn restore_verb(&self, ctx: &RunContext, exe: &Path, major: Option<u32>) -> Result<&'static str> {
        let cmd = self.command(ctx, exe, &["--help"], major).await?;
        let out = tool::run(ctx, Phase::Fetch, cmd, "barman --help").await?;
        let verbs: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix('{').and_then(|l| l.split('}').next()))
            .flat_map(|l| l.split(','))
            .collect();
        if verbs.contains(&"restore") {
            Ok("restore")
        } else if verbs.contains(&"recover") {
            Ok("recover")
        } else {
            Err(Error::Tooling {
                what: format!("`{} --help` lists neither `restore` nor `recover`", exe.display()),
                hint: INSTALL_HINT.into(),
                source: None,
            })
        }
    }

    /// Runs `barman -c config verb args…`.
    async fn run_restore(
        &self,
        ctx: &RunContext,
        config: Option<&Path>,
        exe: &Path,
        args: &[String],
        verb: &str,
        major: Option<u32>,
    ) -> Result<tool::ToolOutput> {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = command_with(ctx, config, exe, &argv, major).await?;
        tool::run(ctx, Phase::Fetch, cmd, &format!("barman {verb}")).await
    }

    /// When restorecheck runs as root on this host: `barman_user` as an OS user Barman switches
    /// to, whom the folders it writes are handed (`None` when not root, or when it is root
    /// itself). An error when there is no such user.
    fn barman_os_user(&self) -> Result<Option<OsUser>> {
        if !nix::unistd::Uid::effective().is_root() {
            return Ok(None);
        }
        let name = self.barman_user();
        let (uid, gid) = user_ids(&name).ok_or_else(|| Error::Tooling {
            what: format!("Barman's OS user {name:?} (barman_user) does not exist"),
            hint: "install Barman's package (it creates the user) or set barman_user in barman.conf".into(),
            source: None,
        })?;
        Ok((uid != 0).then_some(OsUser { name, uid, gid, switched: true }))
    }

    /// A private shadow of the catalog under `scratch` for `barman recover` on this host (see
    /// [`shadow`]), its files handed with `handed` to Barman's OS user; returns the shadow and
    /// the handover (taken back on drop).
    async fn shadow_for(
        &self,
        ctx: &RunContext,
        scratch: &Path,
        begin_wal: Option<String>,
        handed: &[&Path],
    ) -> Result<(shadow::Shadow, Option<Handover>)> {
        let ini = shadow::BarmanIni::load(self.cfg.config.as_deref())?;
        let shadow_root = scratch.join("barman-shadow");
        match std::fs::remove_dir_all(&shadow_root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &shadow_root, e));
            }
            _ => {}
        }
        let shadow = {
            let (server, root, cancel) = (self.cfg.server.clone(), shadow_root.clone(), ctx.cancel.clone());
            tokio::task::spawn_blocking(move || {
                shadow::build(&ini, &server, &root, begin_wal.as_deref(), &|| cancel.is_cancelled())
            })
            .await
            .map_err(|e| source_err("building the shadow of Barman's catalog failed").with_source(e))??
        };
        // Barman writes as its own user: hand it the empty folders for the copy and the shadow.
        let handover = match self.barman_os_user()? {
            Some(user) => {
                user.chown_tree(&shadow.root)?;
                let mut dirs = handed.to_vec();
                dirs.push(&shadow.root);
                Some(Handover::give(&user, &dirs)?)
            }
            None => None,
        };
        Ok((shadow, handover))
    }

    /// The OS user Barman switches to (`barman_user` in its configuration, default `barman`).
    fn barman_user(&self) -> String {
        let files: Vec<PathBuf> = match &self.cfg.config {
            Some(c) => vec![c.clone()],
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".barman.conf"))
                .into_iter()
                .chain(["/etc/barman.conf", "/etc/barman/barman.conf"].map(PathBuf::from))
                .collect(),
        };
        files
            .iter()
            .find(|p| p.is_file())
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| ini_value(&t, "barman", "barman_user"))
            .unwrap_or_else(|| "barman".into())
    }
}

/// The uid and gid of this host's OS user `name`, which Barman switches to itself. `None` when
/// there is no such user.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    nix::unistd::User::from_name(name).ok().flatten().map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

/// `barman [-c config]` plus `args`, where the check's tools run.
async fn command_with(
    ctx: &RunContext,
    config: Option<&Path>,
    exe: &Path,
    args: &[&str],
    major: Option<u32>,
) -> Result<tokio::process::Command> {
    let mut cmd = tool::command(ctx, exe, &[], major).await?;
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    cmd.args(args);
    Ok(cmd)
}

/// A value of `key` in `[section]` of a Python ConfigParser file (`key = v` or `key: v`).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = s.trim().to_string();
            continue;
        }
        if current == section {
            let Some(at) = l.find(['=', ':']) else { continue };
            if l[..at].trim() == key {
                return Some(l[at + 1..].trim().to_string());
            }
        }
    }
    None
}

/// Number or numeric string (Barman prints time stamps as strings).
fn as_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

fn as_string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty() && s != "None")
}

/// What `barman show-backup` says about one backup.
#[derive(Debug, Clone, Default, PartialEq)]
struct ShowBackup {
    status: Option<String>,
    error: Option<String>,
    begin_time: Option<i64>,
    begin_wal: Option<String>,
    end_lsn: Option<Lsn>,
    end_wal: Option<String>,
    pg_version_num: Option<i64>,
    /// (oid, name).
    tablespaces: Vec<(u64, String)>,
    last_available_wal: Option<String>,
}

impl ShowBackup {
    fn from_json(v: &Value) -> Self {
        let base = v.get("base_backup_information");
        let field = |k: &str| base.and_then(|b| b.get(k));
        let tablespaces = v
            .get("tablespaces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter().filter_map(|t| Some((t.get("oid")?.as_u64()?, t.get("name")?.as_str()?.to_string()))).collect()
            })
            .unwrap_or_default();
        ShowBackup {
            status: as_string(v.get("status")),
            error: as_string(v.get("error")),
            begin_time: as_i64(field("begin_time_timestamp")),
            begin_wal: as_string(field("begin_wal")).filter(|s| tool::is_segment_name(s)),
            end_lsn: as_string(field("end_lsn")).and_then(|s| s.parse().ok()),
            end_wal: as_string(field("end_wal")),
            pg_version_num: as_i64(v.get("postgresql_version")),
            tablespaces,
            last_available_wal: as_string(v.get("wal_information").and_then(|w| w.get("last_available")))
                .filter(|s| tool::is_segment_name(s)),
        }
    }
}

/// The backup's end from the `backup_manifest` Barman restored (renamed `backup_manifest.<ID>`),
/// read like any manifest (no links, size-capped); an unreadable one gives no end.
fn manifest_end_lsn(data: &Path, id: &str) -> Option<Lsn> {
    // The id comes from Barman's catalog: only a plain name is joined to the data dir.
    let renamed = (!id.is_empty() && !id.contains('/') && id != "..").then(|| format!("backup_manifest.{id}"));
    renamed
        .into_iter()
        .chain(["backup_manifest".to_string()])
        .find_map(|name| crate::postgres::physical::manifest_end_lsn(&data.join(name)).ok().flatten())
}

/// Backup states that are not (yet) a backup: a copy in progress.
const IN_PROGRESS: &[&str] = &["STARTED", "EMPTY", "SYNCING"];
/// Backup states `barman recover` accepts.
const RESTORABLE: &[&str] = &["DONE", "WAITING_FOR_WALS"];

/// Gives folders to Barman's OS user for the copy and takes them back afterwards; lets that
/// user traverse their parents meanwhile. Parent modes are restored on drop.
struct Handover {
    parents: Vec<(PathBuf, u32)>,
}

impl Handover {
    fn give(to: &OsUser, dirs: &[&Path]) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let mut h = Handover { parents: Vec::new() };
        for d in dirs {
            std::os::unix::fs::lchown(d, Some(to.uid), Some(to.gid))
                .map_err(|e| Error::io("handing a folder to the barman user", d, e))?;
            let Some(parent) = d.parent() else { continue };
            if h.parents.iter().any(|(p, _)| p == parent) {
                continue;
            }
            let mode = std::fs::metadata(parent).map_err(|e| Error::io("reading", parent, e))?.permissions().mode();
            if mode & 0o001 == 0 {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode((mode | 0o001) & 0o7777))
                    .map_err(|e| Error::io("letting the barman user traverse", parent, e))?;
                h.parents.push((parent.to_path_buf(), mode & 0o7777));
            }
        }
        Ok(h)
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in self.parents.drain(..) {
            if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!("could not restore the mode of {}: {e}", p.display());
            }
        }
    }
}

/// Barman refuses to run as anyone but root or its `barman_user`: a tooling problem.
fn not_run_as_barman(message: &str) -> Option<Error> {
    message.contains("please run barman as").then(|| Error::Tooling {
        what: format!("Barman refused to run: {}", message.trim()),
        hint: "run restorecheck as root (Barman then switches to its barman_user itself) or as that user".into(),
        source: None,
    })
}

/// True when a failed `barman recover` says the backup or its WAL could not be read from the
/// catalog (rather than that the tester could not write its copy).
fn is_catalog_defect(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let catalog = m.contains("failure copying")
        || m.contains("data transfer failure")
        || m.contains("backup status is not done")
        || m.contains("link_stat");
    let ours = m.contains("no space left on device") || m.contains("unable to initialise destination directory");
    catalog && !ours
}

#[async_trait]
impl BackupSource for BarmanSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn describe(&self) -> String {
        match &self.cfg.config {
            Some(c) => format!("barman:{} ({})", self.cfg.server, c.display()),
            None => format!("barman:{}", self.cfg.server),
        }
    }

    async fn list(&self, ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let v = self.json(ctx, Phase::Select, &["list-backups", &self.cfg.server], None).await?;
        let entries = v.as_array().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for e in entries {
            let Some(id) = as_string(e.get("backup_id")) else { continue };
            let status = as_string(e.get("status")).unwrap_or_else(|| "UNKNOWN".into());
            if IN_PROGRESS.contains(&status.as_str()) {
                continue;
            }
            out.push(BackupInfo {
                location: format!("barman:{} backup {id}", self.cfg.server),
                kind: if status == "DONE" { "barman".into() } else { format!("barman ({status})") },
                // list-backups only knows the end; `select` replaces it with the start.
                taken_at: as_i64(e.get("end_time_timestamp")).and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
                size_bytes: e.get("size_bytes").and_then(Value::as_u64),
                pg_major: None,
                label: as_string(e.get("backup_name")),
                // list-backups does not say; `select` reads it from show-backup.
                timeline: None,
                id,
            });
        }
        // Barman's IDs are start time stamps (YYYYMMDDTHHMMSS): newest first.
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    /// What `barman` reads: its configuration (the main file and the
    /// `configuration_files_directory`), `barman_home` and the server's catalog folders
    /// (`backup_directory`, `basebackups_directory`, `wals_directory`, …, which may lie outside
    /// `barman_home`). `barman recover` runs against a shadow of the catalog in the work dir
    /// whose links point into these folders. Hook scripts (`pre_recovery_script`, …) are
    /// commands Barman runs: they must be in the image.
    fn read_only_paths(&self) -> Vec<PathBuf> {
        tool::existing_roots(shadow::read_paths(self.cfg.config.as_deref(), &self.cfg.server))
    }

    /// Barman writes into its catalog even to list backups (lock files; 2.12 and 3.4 also
    /// rewrite `wals/<server>-xlog.db`): where it runs elsewhere, it gets a private overlay of
    /// `barman_home` and the server's folders. On this host it runs against a shadow instead.
    fn private_write_paths(&self) -> Vec<PathBuf> {
        tool::existing_roots(shadow::write_paths(self.cfg.config.as_deref(), &self.cfg.server))
    }

    async fn select(&self, ctx: &RunContext, wanted: Option<&str>) -> Result<BackupInfo> {
        let all = self.list(ctx).await?;
        let wanted = wanted.or(self.configured_backup());
        let mut chosen = crate::source::select_from(self.kind(), &self.describe(), all, wanted)?;
        if let Ok(s) = self.show_backup(ctx, Phase::Select, &chosen.id, None).await {
            if let Some(t) = s.begin_time.and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)) {
                chosen.taken_at = Some(t);
            }
            chosen.pg_major = s.pg_version_num.and_then(|n| u32::try_from(n / 10000).ok()).filter(|m| *m >= 10);
            chosen.timeline = s.begin_wal.as_deref().and_then(crate::source::timeline_of_segment);
        }
        Ok(chosen)
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        crate::workdir::ensure_room_for(req, backup)?;
        let major = backup.pg_major;
        let exe = self.program(ctx, major).await?;
        let show = self.show_backup(ctx, Phase::Fetch, &backup.id, major).await?;
        let status = show.status.clone().unwrap_or_else(|| "UNKNOWN".into());
        if !RESTORABLE.contains(&status.as_str()) {
            return Err(Error::defect(format!(
                "Barman backup {} of server {} has status {status}{}: it cannot be restored",
                backup.id,
                self.cfg.server,
                show.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        }
        let verb = self.restore_verb(ctx, &exe, major).await?;

        // Barman's bookkeeping never reaches the real catalog: on this host it runs against a
        // private shadow of it; elsewhere (a container) the catalog is a private overlay.
        let staging = req.scratch_dir.join("barman-staging");
        std::fs::create_dir_all(&staging).map_err(|e| Error::io("creating", &staging, e))?;
        let me = nix::unistd::Uid::effective();
        let elsewhere = !ctx.tools.on_this_host();
        let (config, shadow, handover) = if elsewhere {
            (self.config_for(ctx, major).await?.0, None, None)
        } else {
            let handed = [req.data_dir.as_path(), req.tablespace_dir.as_path(), staging.as_path()];
            let (shadow, handover) = self.shadow_for(ctx, &req.scratch_dir, show.begin_wal.clone(), &handed).await?;
            (Some(shadow.config.clone()), Some(shadow), handover)
        };

        // The generated configurations have no `recovery_options`: Barman copies the WAL and
        // configures no `barman-wal-restore` (no `--no-get-wal`, which Barman 2.12 fails on).
        let mut args: Vec<String> = vec![verb.into()];
        for (oid, name) in &show.tablespaces {
            args.push("--tablespace".into());
            args.push(format!("{name}:{}", req.tablespace_dir.join(oid.to_string()).display()));
        }
        args.push("--recovery-staging-path".into());
        args.push(staging.display().to_string());
        match &req.recovery_target_or(&self.cfg.recovery_target) {
            RecoveryTarget::Latest => {}
            RecoveryTarget::Immediate => args.push("--target-immediate".into()),
            RecoveryTarget::Time(t) => args.extend(["--target-time".into(), t.clone()]),
            RecoveryTarget::Lsn(l) => args.extend(["--target-lsn".into(), l.to_string()]),
            RecoveryTarget::Name(n) => args.extend(["--target-name".into(), n.clone()]),
        }
        // Barman 3.4 takes only a number; `latest` and `current` reach the server as settings.
        if let crate::source::RecoveryTargetTimeline::Id(n) = self.cfg.recovery_target_timeline {
            args.extend(["--target-tli".into(), n.to_string()]);
        }
        args.extend([self.cfg.server.clone(), backup.id.clone(), req.data_dir.display().to_string()]);
        ctx.progress.begin(&format!("barman {verb} {}", backup.id), None);
        let mut out = self.run_restore(ctx, config.as_deref(), &exe, &args, verb, major).await;
        // Barman before 2.13 has no staging path (it has no compressed backups either): a usage
        // error, before anything was copied.
        if out.as_ref().is_ok_and(|o| {
            o.code() == Some(2) && o.message().contains("unrecognized arguments: --recovery-staging-path")
        }) {
            let at = args.iter().position(|a| a == "--recovery-staging-path").unwrap_or(args.len());
            args.drain(at..(at + 2).min(args.len()));
            out = self.run_restore(ctx, config.as_deref(), &exe, &args, verb, major).await;
        }
        ctx.progress.end();
        // Take the copy back (tester-owned, like every source's output) before anything else.
        drop(handover);
        drop(shadow);
        if me.is_root() && !elsewhere {
            let back = OsUser {
                name: "root".into(),
                uid: me.as_raw(),
                gid: nix::unistd::Gid::effective().as_raw(),
                switched: true,
            };
            for d in [&req.data_dir, &req.tablespace_dir, &staging] {
                back.chown_tree(d)?;
            }
        }
        let out = out?;
        if !out.status.success() {
            let msg =
                format!("`barman {verb} {} {}` failed ({}): {}", self.cfg.server, backup.id, out.status, out.message());
            if let Some(e) = not_run_as_barman(&msg) {
                return Err(e);
            }
            return Err(if is_catalog_defect(&msg) {
                Error::defect(format!("Barman could not restore the backup from its catalog: {msg}"))
            } else {
                source_err(msg)
            });
        }
        let _ = std::fs::remove_dir_all(&staging);

        let data = &req.data_dir;
        // Barman edits postgresql.conf (and .auto.conf) after copying, so pg_basebackup's
        // manifest no longer matches them. Barman 3.x renames it to backup_manifest.<ID>; do the
        // same after 2.x, so every version restores alike.
        let manifest = data.join("backup_manifest");
        if std::fs::symlink_metadata(&manifest).is_ok_and(|m| m.is_file())
            && !backup.id.is_empty()
            && !backup.id.contains('/')
        {
            let to = data.join(format!("backup_manifest.{}", backup.id));
            std::fs::rename(&manifest, &to).map_err(|e| Error::io("renaming", &manifest, e))?;
        }
        let pg_major = tool::pg_version(data).ok_or_else(|| {
            Error::defect(format!("backup {}: PG_VERSION is missing after `barman {verb}`", backup.id))
        })?;
        let mut expected_end = Vec::new();
        if let Some(seg) = &show.last_available_wal {
            expected_end.push(ExpectedEnd {
                lsn: None,
                wal_segment: Some(seg.clone()),
                reason: format!("Barman's catalog holds WAL for backup {} up to segment {seg}", backup.id),
            });
        }
        let barman_wal = data.join("barman_wal");
        let mut archive_contents = None;
        let wal = if barman_wal.is_dir() {
            let archive = WalArchive::scan(&barman_wal).map_err(|e| {
                source_err(format!("cannot read the WAL Barman copied into {}", barman_wal.display())).with_source(e)
            })?;
            let fetch = archive.write_restore_command(&req.scratch_dir, ctx, pg_major).await?;
            // The runner follows the timeline recovery follows through what Barman copied; the
            // catalog's last WAL counts only when it lies on that path's last timeline (after a
            // failover it may be an old primary's segment past the fork).
            let backup_tli = show.begin_wal.as_deref().and_then(crate::source::timeline_of_segment).unwrap_or(1);
            let target = archive.contents.path(self.cfg.recovery_target_timeline, backup_tli).target();
            expected_end.retain(|e| {
                e.wal_segment.as_deref().and_then(crate::source::timeline_of_segment).is_none_or(|t| Some(t) == target)
            });
            archive_contents = Some(crate::wal_archive::ArchiveContents {
                described: format!("the WAL barman {verb} copied into barman_wal"),
                ..archive.contents
            });
            WalSupply::Fetch(fetch)
        } else {
            if let Some(seg) =
                tool::newest_segment_in(&data.join("pg_wal")).filter(|s| Some(s) != show.last_available_wal.as_ref())
            {
                expected_end.push(ExpectedEnd {
                    lsn: None,
                    wal_segment: Some(seg.clone()),
                    reason: format!("barman {verb} copied WAL up to segment {seg} into pg_wal"),
                });
            }
            WalSupply::SelfContained
        };
        if show.end_lsn.is_none() {
            if let Some(seg) = &show.end_wal {
                expected_end.push(ExpectedEnd {
                    lsn: None,
                    wal_segment: Some(seg.clone()),
                    reason: format!("backup {} ends in WAL segment {seg}", backup.id),
                });
            }
        }
        let mut fetched = FetchedBackup::new(data.clone(), pg_major, wal);
        // For `backup_method = postgres` Barman reports the end rounded up to the next segment
        // (0/A000000 for a backup consistent at 0/9000100); pg_basebackup's manifest, which
        // Barman restores as `backup_manifest.<ID>`, has the real one.
        fetched.backup_end_lsn = manifest_end_lsn(data, &backup.id).or(show.end_lsn);
        fetched.expected_end = expected_end;
        fetched.archive = archive_contents;
        fetched.bytes_restored = tool::tree_size(data) + tool::tree_size(&req.tablespace_dir);
        fetched.recovery_target = req.recovery_target_or(&self.cfg.recovery_target);
        fetched.recovery_target_timeline = self.cfg.recovery_target_timeline;
        Ok(Artifact::Physical(fetched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_backup_json_of_3_4_parses() {
        let v: Value = serde_json::from_str(
            r#"{"backup_id": "20261126T052720", "base_backup_information": {"begin_lsn": "0/9000028",
            "begin_time_timestamp": "1795670840", "begin_wal": "000000010000000000000009", "end_lsn": "0/A000000",
            "end_time_timestamp": "1795670844", "end_wal": "000000010000000000000009", "timeline": 1},
            "postgresql_version": 150018, "status": "DONE",
            "tablespaces": [{"location": "/srv/ts", "name": "extra", "oid": 16392}],
            "wal_information": {"last_available": "00000001000000000000000C", "no_of_files": 3}}"#,
        )
        .unwrap();
        let s = ShowBackup::from_json(&v);
        assert_eq!(s.status.as_deref(), Some("DONE"));
        assert_eq!(s.begin_time, Some(1795670840));
        assert_eq!(s.end_lsn.unwrap().to_string(), "0/A000000");
        assert_eq!(s.pg_version_num, Some(150018));
        assert_eq!(s.tablespaces, vec![(16392, "extra".to_string())]);
        assert_eq!(s.last_available_wal.as_deref(), Some("00000001000000000000000C"));
    }

    #[test]
    fn barman_user_is_read_from_the_barman_section() {
        let t = "; comment\n[barman]\nbarman_home = /var/lib/barman\nbarman_user: backup\n[pg]\nbarman_user = x\n";
        assert_eq!(ini_value(t, "barman", "barman_user").as_deref(), Some("backup"));
        assert_eq!(ini_value(t, "pg", "barman_user").as_deref(), Some("x"));
        assert_eq!(ini_value(t, "barman", "log_file"), None);
    }

    #[test]
    fn read_only_paths_are_the_configuration_and_the_catalog() {
        let d = tempfile::tempdir().unwrap();
        let (home, confd, wals) = (d.path().join("home"), d.path().join("barman.d"), d.path().join("wals"));
        for p in [home.join("pg/base"), confd.clone(), wals.clone()] {
            std::fs::create_dir_all(p).unwrap();
        }
        let conf = d.path().join("barman.conf");
        std::fs::write(
            &conf,
            format!(
                "[barman]\nbarman_home = {}\nconfiguration_files_directory = {}\n",
                home.display(),
                confd.display()
            ),
        )
        .unwrap();
        std::fs::write(confd.join("pg.conf"), format!("[pg]\nwals_directory = {}\n", wals.display())).unwrap();
        let s = BarmanSource::new(BarmanConfig::new("pg").config(conf.clone())).unwrap();
        let mut want = vec![conf.clone(), confd, home, wals];
        want.sort();
        assert_eq!(s.read_only_paths(), want);
        let missing = BarmanSource::new(BarmanConfig::new("pg").config(d.path().join("nope.conf"))).unwrap();
        assert!(missing.read_only_paths().is_empty());
    }

    #[test]
    fn copy_failures_are_defects_but_a_full_disk_is_not() {
        assert!(is_catalog_defect("ERROR: Failure copying WAL files: data transfer failure ... link_stat failed"));
        assert!(is_catalog_defect("ERROR: Cannot recover from backup 'x' of server 'pg': backup status is not DONE"));
        assert!(!is_catalog_defect("ERROR: Failure copying base backup: rsync: write failed: No space left on device"));
        assert!(!is_catalog_defect("ERROR: Unknown server 'pg'"));
    }

    #[test]
    fn server_names_are_checked() {
        let c = |s: &str| {
            BarmanSource::new(BarmanConfig {
                server: s.into(),
                config: None,
                backup: None,
                recovery_target: RecoveryTarget::Latest,
                recovery_target_timeline: Default::default(),
            })
        };
        assert!(c("pg-main").is_ok());
        assert!(c("--help").is_err());
        assert!(c("a b").is_err());
    }
}
