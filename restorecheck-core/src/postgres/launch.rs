//! Everything between "fetched files" and "a server process to spawn" that every target shares:
//! preparing the data directory, our own hba/ident files, the socket dir, ownership, the safe
//! command line, and the list of roles to try. Targets only differ in *how* they run the
//! resulting `postgres` command (a local process, a container) and how they stop it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::postgres::control::ControlData;
use crate::postgres::datadir;
use crate::postgres::settings::{self, SafeSettingsInput};
use crate::postgres::user::{self, OsUser};
use crate::source::{FetchedBackup, WalSupply};
use crate::target::RestoreRequest;

/// Inputs of [`prepare`].
#[derive(Debug)]
pub(crate) struct LaunchSpec<'a> {
    /// The fetched backup.
    pub(crate) backup: &'a FetchedBackup,
    /// The work and socket dirs.
    pub(crate) req: &'a RestoreRequest,
    /// Who the server runs as (files are chowned to it).
    pub(crate) os_user: &'a OsUser,
    /// `pg_control` facts of the data directory.
    pub(crate) control: &'a ControlData,
    /// The user's extra settings.
    pub(crate) user_settings: &'a [(String, String)],
    /// Database role configured by the user, tried first.
    pub(crate) db_user: Option<&'a str>,
}

/// What a target needs to run the server.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// `postgres` arguments (`-D … -c …`).
    pub(crate) args: Vec<String>,
    /// Our `pg_hba.conf` (rewritten after promotion, see [`crate::postgres::auth`]).
    pub(crate) hba_path: PathBuf,
    /// Where the server's stderr must go (targets read it for errors).
    pub(crate) log_path: PathBuf,
    /// Port naming the socket file.
    pub(crate) port: u16,
    /// Roles to try when connecting, in order.
    pub(crate) users: Vec<String>,
    /// `archive` or `crash`.
    pub(crate) mode: &'static str,
    /// Notes for the report.
    pub(crate) notes: Vec<String>,
}

/// Rejects user settings that would undo the isolation, and renders values as strings.
pub(crate) fn user_settings(map: &BTreeMap<String, toml::Value>) -> Result<Vec<(String, String)>> {
    map.iter()
        .map(|(k, v)| {
            if settings::is_protected(k) {
                return Err(Error::config(format!(
                    "target.settings.{k} cannot be changed: restorecheck sets it to keep the restored copy away from production"
                )));
            }
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((k.clone(), v))
        })
        .collect()
}

/// Refuses versions whose recovery works differently (recovery.conf era).
pub(crate) fn check_version(major: u32) -> Result<()> {
    if major < 12 {
        return Err(Error::Tooling {
            what: format!("backups of PostgreSQL {major} are not supported (recovery.conf era)"),
            hint: "restorecheck supports PostgreSQL 12 and later".into(),
            source: None,
        });
    }
    Ok(())
}

/// Prepares the work dir and returns the launch plan.
pub(crate) fn prepare(spec: &LaunchSpec<'_>) -> Result<Launch> {
    let LaunchSpec { backup, req, os_user, control, user_settings, db_user } = spec;
    check_version(backup.pg_major)?;
    let data = &backup.data_dir;
    // Before anything is written: no tablespace may lead out of the work dir, and a pg_wal link
    // out of it (a plain `--waldir` backup) becomes a copy, so the server never writes a backup.
    datadir::check_tablespaces(data, &req.work_dir)?;
    let mut notes: Vec<String> = datadir::materialize_wal(data, &req.work_dir)?.into_iter().collect();
    notes.extend(datadir::prepare(data, &backup.wal)?);
    let hba = req.work_dir.join("pg_hba.conf");
    let ident = req.work_dir.join("pg_ident.conf");
    write(&hba, settings::HBA_CONF)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&req.socket_dir)
        .map_err(|e| Error::io("creating socket dir", &req.socket_dir, e))?;
    os_user.chown_tree(&req.work_dir)?;
    os_user.chown_tree(&req.socket_dir)?;
    // The server user must reach its data dir through the folders above it.
    user::check_readable(os_user, data)?;
    if let WalSupply::Fetch(fetch) = &backup.wal {
        for p in &fetch.read_only_paths {
            user::check_readable(os_user, p)?;
        }
    }
    if backup.recovery_target != crate::source::RecoveryTarget::Latest && restore_command_of(&backup.wal).is_none() {
        notes.push(format!(
            "recovery_target {} ignored: the backup carries its own WAL and no archive was given, so recovery ends at the backup's end",
            backup.recovery_target
        ));
    }
    if os_user.switched {
        let note =
            format!("running as root: the restored server runs as OS user {:?} (uid {})", os_user.name, os_user.uid);
        tracing::info!("{note}");
        notes.push(note);
    }
    let port = free_port();
    let restore_command = restore_command_of(&backup.wal);
    let safety = settings::safety_settings(&SafeSettingsInput {
        major: backup.pg_major,
        data_dir: data,
        socket_dir: &req.socket_dir,
        port,
        hba_file: &hba,
        ident_file: &ident,
        listen_addresses: "",
        restore_command: restore_command.as_deref(),
        hot_standby_minimums: &control.hot_standby_minimums,
        recovery_target: &backup.recovery_target,
        recovery_target_timeline: backup.recovery_target_timeline,
    });
    let mut users: Vec<String> = Vec::new();
    for u in db_user
        .map(str::to_string)
        .into_iter()
        .chain(["postgres".to_string()])
        .chain(backup.superuser_hints.iter().cloned())
    {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    // Stage 1 of authentication: peer, and only restorecheck's own OS user, only as these roles.
    write(&ident, &settings::ident_conf(&own_os_user_name(), &users))?;
    os_user.chown_tree(&ident)?;
    let args = settings::command_line(data, &safety, user_settings);
    let names: Vec<&str> = args.iter().filter_map(|a| a.split_once('=').map(|(k, _)| k)).collect();
    for f in ["postgresql.conf", "postgresql.auto.conf"] {
        let hit = datadir::comment_out_settings(&data.join(f), &names)?;
        if !hit.is_empty() {
            notes.push(format!("{f}: commented out settings restorecheck sets itself: {}", hit.join(", ")));
        }
    }
    Ok(Launch {
        args,
        hba_path: hba,
        log_path: req.work_dir.join("postgres.log"),
        port,
        users,
        mode: if restore_command.is_some() { "archive" } else { "crash" },
        notes,
    })
}

/// The name of the OS user restorecheck runs as (what `peer` authentication sees).
fn own_os_user_name() -> String {
    let me = nix::unistd::Uid::effective();
    nix::unistd::User::from_uid(me).ok().flatten().map(|u| u.name).unwrap_or_else(|| me.to_string())
}

/// The `restore_command` of a server on this host (or in a container that mounts the same
/// paths): the structured WAL supply quoted for the shell.
fn restore_command_of(w: &WalSupply) -> Option<String> {
    match w {
        WalSupply::Fetch(fetch) => Some(fetch.restore_command()),
        WalSupply::SelfContained => None,
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    crate::safefs::write_file(path, text.as_bytes())
}

/// A port no one listens on now (the server only names its socket file with it).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(5432)
}
