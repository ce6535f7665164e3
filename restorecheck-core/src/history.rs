//! The run history: a local SQLite file every `restorecheck run` appends to, read back by
//! `restorecheck history`, the RTO trend ([`crate::rto`]) and the HTML report.
//!
//! Schema (version 1, kept in `PRAGMA user_version`): a `runs` table (one row per run) and a
//! `checks` table (one row per check of a run) with verdict, backup id and age, per-phase
//! timings, total, failure phase/message and the assertion results as JSON.
//!
//! The SQLite file needs the `history` feature (rusqlite); without it [`History::open`] fails
//! with an error naming the feature, and [`Row`] and [`default_path`] still exist.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
#[cfg(feature = "history")]
use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::{Report, Timings, Verdict};

/// Current schema version.
pub const SCHEMA_VERSION: i64 = 1;

#[cfg(feature = "history")]
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    verdict TEXT NOT NULL,
    restorecheck_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    verdict TEXT NOT NULL,
    backup_id TEXT,
    backup_taken_at TEXT,
    backup_age_seconds REAL,
    select_seconds REAL,
    fetch_seconds REAL,
    restore_seconds REAL,
    recovery_seconds REAL,
    assert_seconds REAL,
    teardown_seconds REAL,
    total_seconds REAL NOT NULL,
    failure_phase TEXT,
    failure_message TEXT,
    assertions TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checks_by_name ON checks(name, run);
";

/// One check of one past run, as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The run's id.
    pub run_id: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The check's name.
    pub check: String,
    /// pass, fail or error.
    pub verdict: Verdict,
    /// The restored backup's id.
    pub backup_id: Option<String>,
    /// When that backup was taken.
    pub backup_taken_at: Option<DateTime<Utc>>,
    /// Its age at the time of the check, in seconds.
    pub backup_age_seconds: Option<f64>,
    /// Seconds per phase, and the total.
    pub timings: Timings,
    /// The failed phase, if any.
    pub failure_phase: Option<String>,
    /// The failure message, if any.
    pub failure_message: Option<String>,
    /// The assertion results (`[{"name","verdict","observed","expected","message"}]`).
    pub assertions: serde_json::Value,
}

/// An open history file.
#[derive(Debug)]
pub struct History {
    #[cfg(feature = "history")]
    conn: Connection,
    /// Without the `history` feature no history can be opened.
    #[cfg(feature = "history")]
    path: PathBuf,
    #[cfg(not(feature = "history"))]
    never: std::convert::Infallible,
}

/// `$XDG_STATE_HOME/restorecheck/history.sqlite`, else `~/.local/state/restorecheck/history.sqlite`.
pub fn default_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|s| !s.is_empty()).map(|h| PathBuf::from(h).join(".local/state"))
    })?;
    Some(state.join("restorecheck").join("history.sqlite"))
}

#[cfg(feature = "history")]
fn db_err(path: &Path, what: &str, e: impl Into<crate::error::Cause>) -> Error {
    Error::config(format!("history {}: {what}", path.display())).with_source(e)
}

#[cfg(feature = "history")]
fn ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|d| d.with_timezone(&Utc))
}

#[cfg(feature = "history")]
fn verdict_of(s: &str) -> Verdict {
    match s {
        "pass" => Verdict::Pass,
        "fail" => Verdict::Fail,
        _ => Verdict::Error,
    }
}

#[cfg(feature = "history")]
fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error => "error",
    }
}

#[cfg(feature = "history")]
impl History {
    /// Opens `path`, creating it (and its folder) with the current schema when missing. A file
    /// written by a newer restorecheck (higher schema version) is refused.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_mode(path, crate::outputs::DEFAULT_MODE)
    }

    /// [`open`](History::open), creating a missing file with `mode` (default `0600`). A
    /// symlink at `path` is refused, never followed.
    pub fn open_with_mode(path: &Path, mode: u32) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| db_err(path, "cannot create its folder", e))?;
        }
        crate::outputs::refuse_symlink(path).map_err(|e| db_err(path, "cannot open", e))?;
        match crate::outputs::create_new(path, mode) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(db_err(path, "cannot create", e)),
        }
        // SQLite itself refuses a link planted between the check above and the open.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, "cannot open", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| db_err(path, "cannot configure", e))?;
        let version: i64 =
            conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| db_err(path, "cannot read", e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::config(format!(
                "history {}: unsupported schema: version {version} was written by a newer restorecheck (this one \
                 knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(|e| db_err(path, "cannot create the schema", e))?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| db_err(path, "cannot set the schema version", e))?;
        Ok(History { conn, path: path.to_path_buf() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a run and its checks (one transaction).
    pub fn append(&mut self, report: &Report) -> Result<()> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| db_err(&path, "cannot append", e);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO runs (run_id, started_at, verdict, restorecheck_version) VALUES (?1, ?2, ?3, ?4)",
            params![
                report.run_id,
                report.started_at.to_rfc3339(),
                verdict_str(report.verdict),
                report.restorecheck_version
            ],
        )
        .map_err(err)?;
        let run = tx.last_insert_rowid();
        for c in &report.checks {
            let t = &c.timings;
            let assertions = serde_json::to_string(&c.assertions).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "INSERT INTO checks (run, name, verdict, backup_id, backup_taken_at, backup_age_seconds,
                   select_seconds, fetch_seconds, restore_seconds, recovery_seconds, assert_seconds,
                   teardown_seconds, total_seconds, failure_phase, failure_message, assertions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    run,
                    c.name,
                    verdict_str(c.verdict),
                    c.backup.id,
                    c.backup.taken_at.map(|d| d.to_rfc3339()),
                    c.backup.age_seconds,
                    t.select,
                    t.fetch,
                    t.restore,
                    t.recovery,
                    t.assert,
                    t.teardown,
                    t.total,
                    c.failure.as_ref().map(|f| f.phase.to_string()),
                    c.failure.as_ref().map(|f| f.message.clone()),
                    assertions,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The newest `limit` check rows (of `check`, or of every check), oldest first.
    pub fn query(&self, check: Option<&str>, limit: usize) -> Result<Vec<Row>> {
        let err = |e: rusqlite::Error| db_err(&self.path, "cannot read", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.run_id, r.started_at, c.name, c.verdict, c.backup_id, c.backup_taken_at,
                        c.backup_age_seconds, c.select_seconds, c.fetch_seconds, c.restore_seconds,
                        c.recovery_seconds, c.assert_seconds, c.teardown_seconds, c.total_seconds,
                        c.failure_phase, c.failure_message, c.assertions
                 FROM checks c JOIN runs r ON r.id = c.run
                 WHERE ?1 IS NULL OR c.name = ?1
                 ORDER BY c.id DESC LIMIT ?2",
            )
            .map_err(err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![check, limit], |r| {
                let started: String = r.get(1)?;
                let verdict: String = r.get(3)?;
                let assertions: String = r.get(16)?;
                Ok(Row {
                    run_id: r.get(0)?,
                    started_at: ts(Some(started)).unwrap_or_default(),
                    check: r.get(2)?,
                    verdict: verdict_of(&verdict),
                    backup_id: r.get(4)?,
                    backup_taken_at: ts(r.get(5)?),
                    backup_age_seconds: r.get(6)?,
                    timings: Timings {
                        select: r.get(7)?,
                        fetch: r.get(8)?,
                        restore: r.get(9)?,
                        recovery: r.get(10)?,
                        assert: r.get(11)?,
                        teardown: r.get(12)?,
                        total: r.get(13)?,
                    },
                    failure_phase: r.get(14)?,
                    failure_message: r.get(15)?,
                    assertions: serde_json::from_str(&assertions).unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(err)?;
        let mut out = rows.collect::<std::result::Result<Vec<_>, _>>().map_err(err)?;
        out.reverse();
        Ok(out)
    }

    /// Number of runs stored.
    pub fn runs(&self) -> Result<u64> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .optional()
            .map_err(|e| db_err(&self.path, "cannot read", e))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

/// Without the `history` feature: [`History::open`] fails with an error naming the feature, so
/// no `History` exists and the other methods are never called.
#[cfg(not(feature = "history"))]
impl History {
    /// Fails: the run history needs restorecheck-core's `history` feature.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_mode(path, crate::outputs::DEFAULT_MODE)
    }

    /// Fails: the run history needs restorecheck-core's `history` feature.
    pub fn open_with_mode(path: &Path, _mode: u32) -> Result<Self> {
        Err(Error::feature_off("history", format_args!("the run history ({})", path.display())))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        match self.never {}
    }

    /// Appends a run and its checks.
    pub fn append(&mut self, _report: &Report) -> Result<()> {
        match self.never {}
    }

    /// The newest `limit` check rows, oldest first.
    pub fn query(&self, _check: Option<&str>, _limit: usize) -> Result<Vec<Row>> {
        match self.never {}
    }

    /// Number of runs stored.
    pub fn runs(&self) -> Result<u64> {
        match self.never {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::{AssertionReport, BackupReport, CheckReport, Failure, Phase, RecoveryReport};

    pub(crate) fn check(name: &str, total: f64, verdict: Verdict) -> CheckReport {
        CheckReport {
            name: name.into(),
            verdict,
            failure: (verdict != Verdict::Pass).then(|| Failure {
                phase: Phase::Assert,
                message: "too few rows".into(),
                log_tail: None,
            }),
            backup: BackupReport {
                id: Some("b1".into()),
                taken_at: Some(Utc::now()),
                age_seconds: Some(3600.0),
                ..Default::default()
            },
            recovery: RecoveryReport::default(),
            assertions: vec![AssertionReport {
                name: "rows".into(),
                verdict: Verdict::Pass,
                observed: Some(serde_json::json!(42)),
                expected: Some("= 42".into()),
                message: None,
            }],
            timings: Timings { restore: Some(1.5), fetch: Some(0.5), total, ..Default::default() },
            warnings: vec![],
            notes: vec![],
        }
    }

    #[test]
    #[cfg(not(feature = "history"))]
    fn the_history_needs_the_feature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let e = History::open(&path).unwrap_err();
        assert!(e.to_string().contains("the run history ("), "{e}");
        assert!(e.to_string().contains("needs restorecheck-core's `history` feature; this build has it off"), "{e}");
        assert!(!path.exists(), "nothing is created");
    }

    #[test]
    #[cfg(feature = "history")]
    fn round_trip_in_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.sqlite");
        let mut h = History::open(&path).unwrap();
        h.append(&Report::new(
            "r1".into(),
            Utc::now(),
            vec![check("app", 10.0, Verdict::Pass), check("b", 1.0, Verdict::Fail)],
        ))
        .unwrap();
        h.append(&Report::new("r2".into(), Utc::now(), vec![check("app", 12.0, Verdict::Pass)])).unwrap();
        drop(h);
        let h = History::open(&path).unwrap();
        assert_eq!(h.runs().unwrap(), 2);
        let app = h.query(Some("app"), 10).unwrap();
        assert_eq!(app.len(), 2);
        assert_eq!((app[0].run_id.as_str(), app[1].run_id.as_str()), ("r1", "r2"), "oldest first");
        assert_eq!(app[1].timings.total, 12.0);
        assert_eq!(app[0].timings.restore, Some(1.5));
        assert_eq!(app[0].timings.recovery, None);
        assert_eq!(app[0].backup_id.as_deref(), Some("b1"));
        assert_eq!(app[0].backup_age_seconds, Some(3600.0));
        assert_eq!(app[0].assertions[0]["observed"], 42);
        let all = h.query(None, 10).unwrap();
        assert_eq!(all.len(), 3);
        let b = all.iter().find(|r| r.check == "b").unwrap();
        assert_eq!(b.verdict, Verdict::Fail);
        assert_eq!(b.failure_phase.as_deref(), Some("assert"));
        assert_eq!(b.failure_message.as_deref(), Some("too few rows"));
        let last = h.query(Some("app"), 1).unwrap();
        assert_eq!(last[0].run_id, "r2", "limit keeps the newest");
    }

    #[test]
    #[cfg(feature = "history")]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let e = History::open(&path).unwrap_err();
        assert!(e.to_string().contains("newer restorecheck"), "{e}");
    }
}
