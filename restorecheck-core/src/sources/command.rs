//! Source `command`: any backup system, through two programs you provide.
//!
//! - `list` prints one JSON object per line: `{"id": "…", "taken_at": "RFC 3339", "size_bytes": N,
//!   "kind": "…", "pg_major": N}` (only `id` is required), in any order (sorted newest first here).
//! - `fetch` writes the chosen backup into `$RESTORECHECK_DEST` (a data directory, or a pg_dump
//!   file / `-Fd` folder), with `$RESTORECHECK_BACKUP_ID` naming it. Exit code 65 (EX_DATAERR)
//!   says the backup is bad (the check FAILS); any other non-zero exit is an error of the tool.
//! - optional `restore_command`: PostgreSQL's `restore_command` for archive recovery (`%f`, `%p`).
//!
//! Both run through `/bin/sh -c` with the variables of `env` and `env_file` (`KEY=VALUE` lines)
//! added. Put secrets in `env_file` (mode 0600): values never appear in reports or logs.
//!
//! The commands run where the check's tools run ([`crate::ToolBox`]): on this host, or in a
//! container of the check's image, where `/bin/sh` is the image's, the variables reach the
//! command through the toolbox, and `$RESTORECHECK_DEST` (in the work dir) has the same path.
//! The source declares no read-only paths: what a command reads in a container is for the
//! docker target's `mounts` to provide.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::physical::check_physical;
use crate::report::Phase;
use crate::source::{
    Artifact, BackupInfo, BackupSource, FetchRequest, FetchedBackup, RecoveryTarget, WalFetch, WalSupply,
};
use crate::sources::pg_dump::{detect_dump, fetch_dump, PgDumpConfig};

/// Options of source `command` (`[check.source] kind = "command"`).
#[derive(Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct CommandConfig {
    /// Shell command printing JSON lines, one per backup.
    pub list: String,
    /// Shell command writing the backup into `$RESTORECHECK_DEST`.
    pub fetch: String,
    /// `restore_command` for archive recovery of a physical backup.
    pub restore_command: Option<String>,
    /// Extra environment (avoid secrets here; use `env_file`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// File of `KEY=VALUE` lines added to the environment (for secrets).
    pub env_file: Option<PathBuf>,
    /// `"latest"` (default), `"oldest"` or an id.
    pub backup: Option<String>,
    /// For physical backups with a `restore_command`: how far to recover.
    #[serde(default)]
    pub recovery_target: RecoveryTarget,
    /// Which timeline recovery follows (`"latest"`, default: the newest in the archive, as
    /// after a failover; `"current"`: the backup's own; or a timeline number).
    #[serde(default)]
    pub recovery_target_timeline: crate::source::RecoveryTargetTimeline,
    /// For dumps: database to restore into (default: the dump's own, else the check's).
    pub database: Option<String>,
    /// For dumps: skip ownership instead of creating referenced roles.
    #[serde(default)]
    pub no_owner: bool,
}

impl CommandConfig {
    /// Options with the `list` and `fetch` commands, everything else at its default.
    pub fn new(list: impl Into<String>, fetch: impl Into<String>) -> Self {
        Self { list: list.into(), fetch: fetch.into(), ..Self::default() }
    }
}

impl std::fmt::Debug for CommandConfig {
    // Environment values may be secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandConfig")
            .field("list", &self.list)
            .field("fetch", &self.fetch)
            .field("restore_command", &self.restore_command)
            .field("env", &self.env.keys().map(|k| format!("{k}=***")).collect::<Vec<_>>())
            .field("env_file", &self.env_file)
            .finish()
    }
}

/// Source `command`.
#[derive(Debug, Clone)]
pub struct CommandSource {
    cfg: CommandConfig,
}

/// The shell the commands run with.
const SHELL: &str = "/bin/sh";
const SHELL_HINT: &str = "the command source runs its commands with /bin/sh";

/// Exit code by which `fetch` says the backup itself is bad.
pub(crate) const EXIT_BACKUP_BAD: i32 = 65;

impl CommandSource {
    /// A source over `cfg`.
    pub fn new(cfg: CommandConfig) -> Self {
        Self { cfg }
    }

    fn err(&self, message: String) -> Error {
        Error::Source { source_kind: "command", message, source: None }
    }

    /// `env` plus `env_file`, read fresh each time (a rotated secret takes effect at once).
    fn environment(&self) -> Result<Vec<(String, String)>> {
        let mut vars: Vec<(String, String)> = self.cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(f) = &self.cfg.env_file {
            vars.extend(crate::sources::environment::read_env_file(f, "command")?);
        }
        Ok(crate::sources::environment::last_wins(vars))
    }

    /// Runs `script` through `/bin/sh -c` in its own process group (with a parent-death
    /// signal): at the check's deadline, on cancellation and when the script exits, every
    /// process it forked is killed with it.
    async fn shell(
        &self,
        ctx: &RunContext,
        phase: Phase,
        what: &str,
        script: &str,
        extra: &[(&str, String)],
        major: Option<u32>,
    ) -> Result<(i32, String, String)> {
        let mut env = self.environment()?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let sh = ctx.tools.locate(SHELL, SHELL_HINT, major).await?;
        let mut cmd = crate::sources::tool::command(ctx, &sh, &env, major).await?;
        cmd.arg("-c").arg(script);
        let out = crate::sources::tool::run(ctx, phase, cmd, &format!("the {what} command")).await?;
        Ok((out.code().unwrap_or(-1), out.stdout, out.stderr))
    }
}

#[derive(Deserialize)]
struct Line {
    id: String,
    taken_at: Option<DateTime<Utc>>,
    size_bytes: Option<u64>,
    kind: Option<String>,
    pg_major: Option<u32>,
    label: Option<String>,
}

fn last_lines(s: &str) -> String {
    crate::postgres::server::last_lines(s.trim(), 10)
}

#[async_trait]
impl BackupSource for CommandSource {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn describe(&self) -> String {
        format!("command:{}", self.cfg.list)
    }

    async fn list(&self, ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let (code, out, err) = self.shell(ctx, Phase::Select, "list", &self.cfg.list, &[], None).await?;
        if code != 0 {
            return Err(self.err(format!("the list command exited {code}: {}", last_lines(&err))));
        }
        let mut all = Vec::new();
        for (n, line) in out.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let l: Line = serde_json::from_str(line).map_err(|e| {
                self.err(format!("the list command's line {} is not a backup JSON object", n + 1)).with_source(e)
            })?;
            all.push(BackupInfo {
                location: format!("command:{}", l.id),
                id: l.id,
                taken_at: l.taken_at,
                size_bytes: l.size_bytes,
                kind: l.kind.unwrap_or_else(|| "command".into()),
                pg_major: l.pg_major,
                label: l.label,
                timeline: None,
            });
        }
        crate::source::sort_newest_first(&mut all);
        Ok(all)
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    /// None: the commands are the user's own, and what they read in a container is for the
    /// docker target's `mounts` to provide (they write only into `$RESTORECHECK_DEST`, in the
    /// work dir).
    fn read_only_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn artifact_kind(&self) -> Option<crate::source::ArtifactKind> {
        None // the fetch command writes a data directory or a dump
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        // The data dir exists (mode 0700); a dump goes into scratch space instead.
        let dest = req.scratch_dir.join("fetched");
        std::fs::create_dir_all(&dest).map_err(|e| Error::io("creating", &dest, e))?;
        let (code, _, err) = self
            .shell(
                ctx,
                Phase::Fetch,
                "fetch",
                &self.cfg.fetch,
                &[("RESTORECHECK_DEST", dest.display().to_string()), ("RESTORECHECK_BACKUP_ID", backup.id.clone())],
                backup.pg_major,
            )
            .await?;
        match code {
            0 => {}
            EXIT_BACKUP_BAD => {
                return Err(Error::defect(format!(
                    "the fetch command reports backup {} as bad: {}",
                    backup.id,
                    last_lines(&err)
                )))
            }
            _ => return Err(self.err(format!("the fetch command exited {code}: {}", last_lines(&err)))),
        }
        if dest.join("PG_VERSION").is_file() || dest.join("backup_label").is_file() {
            // A data directory: move it into place (same file system, a rename).
            std::fs::remove_dir(&req.data_dir).map_err(|e| Error::io("replacing", &req.data_dir, e))?;
            std::fs::rename(&dest, &req.data_dir).map_err(|e| Error::io("moving the fetched data dir", &dest, e))?;
            let (pg_major, end) = check_physical(&req.data_dir, Path::new(&backup.location))?;
            let wal = match &self.cfg.restore_command {
                Some(c) => {
                    let sh = ctx.tools.locate(SHELL, SHELL_HINT, Some(pg_major)).await?;
                    let mut fetch = WalFetch::shell(c.clone()).with_env(self.environment()?);
                    fetch.program = sh;
                    WalSupply::Fetch(fetch)
                }
                None => WalSupply::SelfContained,
            };
            let mut f = FetchedBackup::new(req.data_dir.clone(), pg_major, wal);
            f.backup_end_lsn = end;
            f.recovery_target = req.recovery_target_or(&self.cfg.recovery_target);
            f.recovery_target_timeline = self.cfg.recovery_target_timeline;
            return Ok(Artifact::Physical(f));
        }
        let entries: Vec<PathBuf> = std::fs::read_dir(&dest)
            .map_err(|e| Error::io("listing", &dest, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| detect_dump(p).is_some())
            .collect();
        let [dump] = entries.as_slice() else {
            return Err(Error::defect(format!(
                "the fetch command wrote {} dumps and no data directory into $RESTORECHECK_DEST; expected a data directory or exactly one dump",
                entries.len()
            )));
        };
        let opts = PgDumpConfig {
            path: dump.clone(),
            backup: None,
            database: self.cfg.database.clone(),
            globals: None,
            no_owner: self.cfg.no_owner,
            jobs: None,
            ..Default::default()
        };
        let mut f = fetch_dump(ctx, dump, req, &opts).await?;
        if f.server_major == 0 {
            f.server_major = backup.pg_major.unwrap_or(0);
        }
        Ok(Artifact::Logical(f))
    }
}
