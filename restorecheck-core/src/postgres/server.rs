//! Waiting for a restored server to *really* finish recovery, and reading where it ended.
//!
//! No sleeps stand in for readiness: the wait polls (100 ms) whether the server process is
//! still alive, whether it accepts connections (57P03 and a missing socket mean "not yet") and
//! whether `pg_is_in_recovery()` turned false, all bounded by the caller's deadline and
//! cancellation. Shared by every target.
//!
//! Every session here is a [tool session](crate::target::Connection::tool_config): the restored
//! database cannot shadow the catalog functions these queries call, and (17+) no login trigger
//! fires when the poll connects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio_postgres::error::SqlState;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::Lsn;
use crate::report::Phase;
use crate::target::{Connection, RecoveryInfo};

/// How a target tells the wait loop about its server.
#[async_trait::async_trait]
pub(crate) trait ServerProbe: Send {
    /// `Some(description)` once the server process has exited.
    async fn exited(&mut self) -> Option<String>;
    /// The target kind, for error messages.
    fn target_kind(&self) -> &'static str;
}

/// The target-independent half of a restored server: where its socket and log are, which
/// roles to try, where recovery ended, and notes for the report. Targets embed it and add how
/// to tell whether their process still runs and how to stop it.
#[derive(Debug)]
pub(crate) struct ServerSession {
    /// The server's log file.
    pub(crate) log_path: PathBuf,
    /// Its socket directory.
    pub(crate) socket_dir: PathBuf,
    /// Its port.
    pub(crate) port: u16,
    /// Roles to try.
    pub(crate) users: Vec<String>,
    /// `archive`, `crash` or `logical`.
    pub(crate) mode: &'static str,
    /// Notes for the report.
    pub(crate) notes: Vec<String>,
    /// Fast-shutdown grace period.
    pub(crate) stop_timeout: Duration,
    connection: Option<Connection>,
    finished: Option<RecoveryInfo>,
    /// True once the copy only accepts the run's password.
    locked: bool,
}

impl ServerSession {
    /// A session for a server started from `launch`.
    pub(crate) fn new(launch: crate::postgres::launch::Launch, socket_dir: PathBuf, stop_timeout: Duration) -> Self {
        ServerSession {
            log_path: launch.log_path,
            socket_dir,
            port: launch.port,
            users: launch.users,
            mode: launch.mode,
            notes: launch.notes,
            stop_timeout,
            connection: None,
            finished: None,
            locked: false,
        }
    }

    /// Waits (once) until recovery finished; later calls return the same result.
    pub(crate) async fn wait(&mut self, ctx: &RunContext, probe: &mut dyn ServerProbe) -> Result<RecoveryInfo> {
        if let Some(info) = &self.finished {
            return Ok(info.clone());
        }
        let base = Connection {
            host: self.socket_dir.display().to_string(),
            port: self.port,
            user: String::new(),
            password: None,
        };
        let (conn, mut info) = wait_until_promoted(ctx, probe, &self.log_path, &base, &self.users).await?;
        info.mode = Some(self.mode.to_string());
        self.connection = Some(conn);
        self.finished = Some(info.clone());
        Ok(info)
    }

    /// [`wait`](Self::wait), then (once) switches the copy from peer to password authentication
    /// ([`crate::postgres::auth::lock_down`]) through the hba file at `hba_path`, owned by
    /// `os_user`: what every target's `RunningServer::wait_recovered` does.
    pub(crate) async fn wait_locked(
        &mut self,
        ctx: &RunContext,
        probe: &mut dyn ServerProbe,
        hba_path: &std::path::Path,
        os_user: &crate::postgres::user::OsUser,
    ) -> Result<RecoveryInfo> {
        let info = self.wait(ctx, probe).await?;
        if !self.locked {
            let conn =
                crate::postgres::auth::lock_down(probe.target_kind(), &self.connection(), hba_path, os_user).await?;
            self.set_connection(conn);
            self.locked = true;
        }
        Ok(info)
    }

    /// Replaces the connection once the target switched the copy to password authentication
    /// ([`crate::postgres::auth::lock_down`]).
    pub(crate) fn set_connection(&mut self, conn: Connection) {
        self.connection = Some(conn);
    }

    /// Records that the server's content was loaded another way (a logical dump).
    pub(crate) fn set_mode(&mut self, mode: &'static str) {
        self.mode = mode;
        if let Some(i) = &mut self.finished {
            i.mode = Some(mode.to_string());
        }
    }

    /// How to connect.
    pub(crate) fn connection(&self) -> Connection {
        self.connection.clone().unwrap_or_else(|| Connection {
            host: self.socket_dir.display().to_string(),
            port: self.port,
            user: self.users.first().cloned().unwrap_or_else(|| "postgres".into()),
            password: None,
        })
    }

    /// The last lines of the server log.
    pub(crate) fn log_tail(&self, lines: usize) -> Option<String> {
        crate::postgres::tail_file(&self.log_path, lines)
    }
}

/// Log lines the startup process writes once it has begun recovering the backup. A server that
/// dies after any of these died *recovering*: the backup (or its WAL) is at fault.
const RECOVERY_STARTED: &[&str] = &[
    "database system was ",
    "starting archive recovery",
    "starting backup recovery",
    "starting point-in-time recovery",
    "redo starts at",
    "restored log file",
];

/// FATAL messages that point at the testing host (memory, disk, libraries, settings), not at
/// the backup, even when they come after recovery started.
const TESTER_FAULTS: &[&str] = &[
    "insufficient parameter settings",
    "could not load library",
    "could not access file",
    "out of memory",
    "No space left on device",
    "could not create shared memory",
    "could not map anonymous shared memory",
    "Permission denied",
];

/// FATAL lines our own polling connections cause while the server starts: not the reason it died.
const CONNECTION_REJECTIONS: &[&str] = &[
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "the database system is shutting down",
    // our first session asks for event_triggers=off; servers before 17 do not know it
    "unrecognized configuration parameter \"event_triggers\"",
];

/// True for FATAL lines caused by our polling connections (wrong role or database name tried).
fn is_poll_rejection(line: &str) -> bool {
    CONNECTION_REJECTIONS.iter().any(|m| line.contains(m))
        || ((line.contains("FATAL:  role \"") || line.contains("FATAL:  database \""))
            && line.ends_with("does not exist"))
}

/// Turns a dead server into the right error: a backup defect when recovery was under way,
/// a target error when it never got that far (configuration, binaries, permissions).
pub(crate) fn died_error(kind: &'static str, exit: &str, log: Option<String>) -> Error {
    let log = log.unwrap_or_default();
    let tail = last_lines(&log, 25);
    let first_fatal = log
        .lines()
        .find(|l| (l.contains("FATAL:") || l.contains("PANIC:")) && !is_poll_rejection(l))
        .map(|l| l.split_once("FATAL:").or_else(|| l.split_once("PANIC:")).map(|x| x.1.trim()).unwrap_or(l))
        .unwrap_or("no FATAL line in the log");
    let tester_side = TESTER_FAULTS.iter().any(|m| first_fatal.contains(m));
    if !tester_side && RECOVERY_STARTED.iter().any(|m| log.contains(m)) {
        Error::BackupDefect {
            message: format!("PostgreSQL stopped during recovery ({exit}): {first_fatal}"),
            log_tail: Some(tail),
            source: None,
        }
    } else {
        Error::Target {
            target_kind: kind,
            message: format!("PostgreSQL exited before recovery began ({exit}): {first_fatal}"),
            log_tail: Some(tail),
            source: None,
        }
    }
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls until the server has left recovery. `users` are role names tried in order (the
/// restored cluster's superuser name is not known in advance). Returns the working connection
/// and where recovery ended.
pub(crate) async fn wait_until_promoted(
    ctx: &RunContext,
    probe: &mut dyn ServerProbe,
    log_path: &Path,
    base: &Connection,
    users: &[String],
) -> Result<(Connection, RecoveryInfo)> {
    let read_log = || std::fs::read(log_path).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut user_idx = 0usize;
    let mut db_idx = 0usize;
    const DBS: [&str; 2] = ["template1", "postgres"];
    let mut last_status = String::new();
    let mut client: Option<tokio_postgres::Client> = None;
    // Unknown until the server answers: ask for event_triggers=off (PostgreSQL 17+) and drop
    // it once a server says it has no such setting.
    let mut major: Option<u32> = None;
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Cancelled { phase: Phase::Recovery });
        }
        if let Some(exit) = probe.exited().await {
            return Err(died_error(probe.target_kind(), &exit, read_log()));
        }
        let Some(user) = users.get(user_idx) else {
            return Err(Error::Target {
                target_kind: probe.target_kind(),
                message: format!(
                    "none of the roles {users:?} exist in the restored cluster; set target.superuser to its superuser role"
                ),
                log_tail: None,
                source: None,
            });
        };
        let conn = Connection { user: user.clone(), ..base.clone() };
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = None;
            let mut cfg = conn.tool_config(DBS[db_idx], major);
            cfg.connect_timeout(Duration::from_secs(2));
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client = Some(c);
                }
                Err(e) if major.is_none() && crate::target::rejects_event_triggers(&e) => {
                    tracing::debug!("server before PostgreSQL 17: no event_triggers setting");
                    major = Some(16);
                    continue;
                }
                Err(e) => match e.as_db_error().map(|d| d.code().clone()) {
                    Some(code) if code == SqlState::CANNOT_CONNECT_NOW => {
                        let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                        status(ctx, &mut last_status, &msg);
                    }
                    Some(code) if code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                        tracing::debug!("role {user:?} does not exist in the restored cluster; trying the next");
                        user_idx += 1;
                        continue;
                    }
                    Some(code) if code == SqlState::UNDEFINED_DATABASE && db_idx + 1 < DBS.len() => {
                        db_idx += 1;
                        continue;
                    }
                    Some(_) => {
                        return Err(Error::postgres("connecting to the restored server", e));
                    }
                    None => status(ctx, &mut last_status, "waiting for the server socket"),
                },
            }
        }
        if let Some(c) = &client {
            match c
                .query_one(
                    "select pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::pg_catalog.text",
                    &[],
                )
                .await
            {
                Ok(row) => {
                    let in_recovery: bool = row.get(0);
                    if !in_recovery {
                        let info = recovery_facts(c, read_log().as_deref()).await?;
                        return Ok((conn, info));
                    }
                    let at: Option<String> = row.get(1);
                    status(ctx, &mut last_status, &format!("replaying WAL, at {}", at.unwrap_or_default()));
                }
                Err(e) => {
                    tracing::debug!("poll query failed (server may be stopping): {e}");
                    client = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = ctx.cancel.cancelled() => {}
        }
    }
}

fn status(ctx: &RunContext, last: &mut String, msg: &str) {
    if msg != last {
        ctx.progress.status(msg);
        tracing::debug!("recovery: {msg}");
        *last = msg.to_string();
    }
}

/// Reads where recovery ended, from SQL first and from the server log where SQL has no answer
/// (after crash recovery the replay functions return NULL).
async fn recovery_facts(c: &tokio_postgres::Client, log: Option<&str>) -> Result<RecoveryInfo> {
    let row = c
        .query_one(
            "select pg_catalog.pg_last_wal_replay_lsn()::pg_catalog.text, \
                    extract(epoch from pg_catalog.pg_last_xact_replay_timestamp())::pg_catalog.float8, \
                    pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), \
                    pg_catalog.current_setting('server_version'), \
                    (select s.setting::pg_catalog.int8 from pg_catalog.pg_settings s \
                      where s.name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(|e| Error::postgres("reading recovery results", e))?;
    let lsn: Option<String> = row.get(0);
    let ts: Option<f64> = row.get(1);
    let walfile: String = row.get(2);
    let version: String = row.get(3);
    let seg: Option<i64> = row.get(4);
    let log = log.unwrap_or("");
    let end_lsn = lsn.and_then(|s| s.parse::<Lsn>().ok()).or_else(|| parse_redo_done(log));
    let last_replayed_at =
        ts.and_then(|t| Utc.timestamp_micros((t * 1e6) as i64).single()).or_else(|| parse_last_transaction(log));
    let timeline = u32::from_str_radix(walfile.get(0..8).unwrap_or(""), 16).ok();
    Ok(RecoveryInfo {
        end_lsn,
        last_replayed_at,
        timeline,
        server_version: Some(version),
        mode: None,
        expected_end: Vec::new(),
        wal_segment_size: seg.map(|s| s as u64),
    })
}

/// `redo done at 0/3000148 system usage: …` → the LSN. Takes the last occurrence.
pub(crate) fn parse_redo_done(log: &str) -> Option<Lsn> {
    log.lines()
        .rev()
        .find_map(|l| l.split_once("redo done at ").map(|x| x.1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
}

/// `last completed transaction was at log time 2026-11-26 05:01:02.123456+00` → the time
/// (we force `log_timezone=UTC`).
pub(crate) fn parse_last_transaction(log: &str) -> Option<DateTime<Utc>> {
    let rest =
        log.lines().rev().find_map(|l| l.split_once("last completed transaction was at log time ").map(|x| x.1))?;
    let s = rest.trim().trim_end_matches("+00").trim_end_matches(" UTC");
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok().map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_lines() {
        let log = "2026-11-26 05:00:00.000 UTC [12] LOG:  redo starts at 0/2000028\n\
                   2026-11-26 05:00:01.000 UTC [12] LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s\n\
                   2026-11-26 05:00:01.000 UTC [12] LOG:  last completed transaction was at log time 2026-11-26 04:59:59.123456+00\n";
        assert_eq!(parse_redo_done(log).unwrap().to_string(), "0/3000148");
        let t = parse_last_transaction(log).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-26T04:59:59.123456+00:00");
    }

    #[test]
    fn death_during_recovery_is_a_backup_defect() {
        let log = "LOG:  database system was interrupted; last known up at 2026\n\
                   FATAL:  could not locate required checkpoint record\n";
        let e = died_error("local", "exit status 1", Some(log.into()));
        assert!(e.is_backup_defect(), "{e}");
        assert!(e.to_string().contains("could not locate required checkpoint record"));
        let log = "FATAL:  the database system is starting up\nLOG:  database system was interrupted\nFATAL:  requested timeline 2 is not a child of this server's history\n";
        let e = died_error("local", "exit status 1", Some(log.into()));
        assert!(e.to_string().contains("requested timeline 2"), "{e}");
        let e = died_error("local", "exit status 1", Some("FATAL:  could not load pg_hba.conf\n".into()));
        assert!(!e.is_backup_defect());
    }
}
