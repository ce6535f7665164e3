//! The versioned report (the JSON contract) and its text rendering.
//!
//! JSON shape, version 1 (fields may be added, never renamed or removed):
//! `{"version":1, "verdict":"pass|fail|error", "checks":[{"name", "verdict", "failure": null |
//! {"phase", "message"}, "backup":{"id","taken_at","source"}, "recovery":{"end_lsn",
//! "last_replayed_at","timeline","timeline_path","timeline_switches"}, "assertions":[{"name","verdict","observed","expected",
//! "message"}], "timings":{"fetch","restore","recovery","assert","teardown","total"}}]}`.
//! A merged fleet report adds `"shards"` ([`crate::fleet::Shards`]); a signed one `"signed_by"`.

use std::fmt;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The pipeline phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Listing the source and choosing a backup.
    Select,
    /// Copying or extracting the backup into the work dir.
    Fetch,
    /// Preparing the data directory and starting the server.
    Restore,
    /// Waiting until recovery really finished, and checking where it ended.
    Recovery,
    /// Running the assertions.
    Assert,
    /// Stopping the server and removing the work dir.
    Teardown,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Phase::Select => "select",
            Phase::Fetch => "fetch",
            Phase::Restore => "restore",
            Phase::Recovery => "recovery",
            Phase::Assert => "assert",
            Phase::Teardown => "teardown",
        })
    }
}

/// Verdict of a check, an assertion or a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Everything held.
    Pass,
    /// The backup or its data is bad.
    Fail,
    /// The check could not be carried out.
    Error,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
        })
    }
}

/// Why a check did not pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    /// The phase that failed.
    pub phase: Phase,
    /// What went wrong and, where possible, what to do.
    pub message: String,
    /// The last server log lines, when the server was involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

/// The backup a check restored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BackupReport {
    /// Backup id within its source.
    pub id: Option<String>,
    /// When it was taken.
    pub taken_at: Option<DateTime<Utc>>,
    /// Where it came from (`basebackup:/backups/base/…`).
    pub source: Option<String>,
    /// Kind of backup (`tar.gz`, `plain`, …).
    pub kind: Option<String>,
    /// Stored size.
    pub size_bytes: Option<u64>,
    /// Age at the time of the check, in seconds.
    pub age_seconds: Option<f64>,
    /// PostgreSQL major version.
    pub pg_major: Option<u32>,
}

/// Where recovery ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RecoveryReport {
    /// Last replayed WAL position (`X/Y`).
    pub end_lsn: Option<String>,
    /// Commit time of the last replayed transaction.
    pub last_replayed_at: Option<DateTime<Utc>>,
    /// Timeline after recovery.
    pub timeline: Option<u32>,
    /// `crash` or `archive`.
    pub mode: Option<String>,
    /// Points recovery was required to reach (`{"lsn","reason"}`).
    pub expected_end: Vec<ExpectedEndReport>,
    /// Version of the restored server.
    pub server_version: Option<String>,
    /// The recovery target that was asked for (`latest`, `immediate`, `time …`, …).
    pub target: Option<String>,
    /// The timelines recovery followed, oldest first (`[1, 2]` after a failover), when the
    /// source's WAL archive could be listed; the completeness proof followed the same path.
    pub timeline_path: Option<Vec<u32>>,
    /// Where recovery switched from each timeline of `timeline_path` to the next
    /// (`[{"timeline": 1, "switch_lsn": "0/B00A3C8"}]`).
    pub timeline_switches: Vec<crate::wal_archive::TimelineSwitch>,
}

impl RecoveryReport {
    /// `followed timeline 1 → 2 (switch at 0/B00A3C8)`, when recovery switched timelines.
    pub fn timeline_line(&self) -> Option<String> {
        let path = self.timeline_path.as_ref().filter(|p| p.len() > 1)?;
        let p = crate::wal_archive::TimelinePath { timelines: path.clone(), switches: self.timeline_switches.clone() };
        Some(format!("followed timeline {}", p.describe()))
    }
}

/// One required recovery end point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpectedEndReport {
    /// LSN that had to be reached.
    pub lsn: String,
    /// Where the requirement comes from.
    pub reason: String,
}

/// One assertion's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssertionReport {
    /// Its name.
    pub name: String,
    /// pass, fail or error.
    pub verdict: Verdict,
    /// What was observed.
    pub observed: Option<serde_json::Value>,
    /// What was expected.
    pub expected: Option<String>,
    /// Why it failed or errored; null when it passed.
    pub message: Option<String>,
}

/// Seconds spent per phase (`null` for phases that did not run).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Timings {
    /// Listing and choosing.
    pub select: Option<f64>,
    /// Fetching and extracting.
    pub fetch: Option<f64>,
    /// Preparing and starting.
    pub restore: Option<f64>,
    /// Waiting for recovery to finish.
    pub recovery: Option<f64>,
    /// Assertions.
    pub assert: Option<f64>,
    /// Stopping and cleaning up.
    pub teardown: Option<f64>,
    /// Everything.
    pub total: f64,
}

impl Timings {
    /// Records `secs` for `phase`.
    pub fn set(&mut self, phase: Phase, secs: f64) {
        let slot = match phase {
            Phase::Select => &mut self.select,
            Phase::Fetch => &mut self.fetch,
            Phase::Restore => &mut self.restore,
            Phase::Recovery => &mut self.recovery,
            Phase::Assert => &mut self.assert,
            Phase::Teardown => &mut self.teardown,
        };
        *slot = Some(secs);
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// pass, fail or error.
    pub verdict: Verdict,
    /// The first thing that went wrong, or null.
    pub failure: Option<Failure>,
    /// The restored backup.
    pub backup: BackupReport,
    /// Where recovery ended.
    pub recovery: RecoveryReport,
    /// Assertion results, in order.
    pub assertions: Vec<AssertionReport>,
    /// Seconds per phase.
    pub timings: Timings,
    /// Things a person should look at even when the check passed.
    pub warnings: Vec<String>,
    /// What restorecheck did that is worth knowing (OS user switched, files removed).
    pub notes: Vec<String>,
}

/// The result of a run: the JSON document `--format json` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Report format version; bumped only on incompatible change.
    pub version: u32,
    /// pass only when every check passed; error beats fail.
    pub verdict: Verdict,
    /// The run's id.
    pub run_id: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// restorecheck version.
    pub restorecheck_version: String,
    /// One entry per check.
    pub checks: Vec<CheckReport>,
    /// Which shard reports a merged report (`restorecheck report`) is made of; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<crate::fleet::Shards>,
    /// Fingerprint of the key that signed this file (`ed25519:SHA256:…`); absent when unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

impl Report {
    /// A report over `checks`, with the overall verdict computed.
    pub fn new(run_id: String, started_at: DateTime<Utc>, checks: Vec<CheckReport>) -> Self {
        let verdict = checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Pass);
        Report {
            version: 1,
            verdict,
            run_id,
            started_at,
            restorecheck_version: env!("CARGO_PKG_VERSION").to_string(),
            checks,
            shards: None,
            signed_by: None,
        }
    }

    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// The exit status this report stands for.
    pub fn exit_status(&self) -> crate::ExitStatus {
        match self.verdict {
            Verdict::Pass => crate::ExitStatus::Success,
            Verdict::Fail => crate::ExitStatus::Failure,
            Verdict::Error => crate::ExitStatus::Error,
        }
    }

    /// The JSON contract, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// JUnit XML: a test suite per check, a test case per phase and assertion (`crate::render::junit`).
    pub fn to_junit(&self) -> String {
        crate::render::junit::render(self)
    }

    /// A Prometheus textfile; `previous` is the file it replaces (`crate::render::metrics`).
    pub fn to_prometheus(&self, previous: Option<&str>) -> String {
        crate::render::metrics::render(self, previous, Utc::now())
    }

    /// The text a person reads in a cron mail: a line per check, then only what went wrong.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let backup = match (&c.backup.id, c.backup.age_seconds) {
                (Some(id), Some(age)) => format!(", backup {id} ({} old)", human_secs(age)),
                (Some(id), None) => format!(", backup {id}"),
                _ => String::new(),
            };
            let _ = writeln!(out, "{:<5} {} in {}{backup}", c.verdict, c.name, human_secs(c.timings.total));
            if let Some(line) = c.recovery.timeline_line() {
                let _ = writeln!(out, "      {line}");
            }
            if let Some(f) = &c.failure {
                let _ = writeln!(out, "      {} phase: {}", f.phase, f.message);
                if let Some(tail) = &f.log_tail {
                    let _ = writeln!(out, "      log (last lines):");
                    for l in tail.lines() {
                        let _ = writeln!(out, "        {l}");
                    }
                }
            }
            for a in c.assertions.iter().filter(|a| a.verdict != Verdict::Pass) {
                let _ = writeln!(out, "      {} {}: {}", a.verdict, a.name, a.message.as_deref().unwrap_or(""));
            }
            for w in &c.warnings {
                let _ = writeln!(out, "      warning: {w}");
            }
        }
        let counts = |v| self.checks.iter().filter(|c| c.verdict == v).count();
        let _ = writeln!(
            out,
            "{}: {} passed, {} failed, {} errors",
            self.verdict,
            counts(Verdict::Pass),
            counts(Verdict::Fail),
            counts(Verdict::Error)
        );
        if let Some(s) = &self.shards {
            let _ = writeln!(out, "{}", s.summary());
        }
        out
    }
}

/// `95.3` → `1m35s`, `2.4` → `2.4s`.
pub fn human_secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86400.0 * 2.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else {
        format!("{}d{:02}h", (s / 86400.0) as u64, ((s % 86400.0) / 3600.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_verdict_is_worst_of_checks() {
        let mk = |v| CheckReport {
            name: "x".into(),
            verdict: v,
            failure: None,
            backup: BackupReport::default(),
            recovery: RecoveryReport::default(),
            assertions: vec![],
            timings: Timings::default(),
            warnings: vec![],
            notes: vec![],
        };
        let r = Report::new("r".into(), Utc::now(), vec![mk(Verdict::Pass), mk(Verdict::Fail)]);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.exit_status().code(), 1);
        let r = Report::new("r".into(), Utc::now(), vec![mk(Verdict::Error), mk(Verdict::Fail)]);
        assert_eq!(r.exit_status().code(), 2);
        let r = Report::new("r".into(), Utc::now(), vec![]);
        assert!(r.passed());
    }

    #[test]
    fn json_has_contract_fields() {
        let c = CheckReport {
            name: "app".into(),
            verdict: Verdict::Fail,
            failure: Some(Failure { phase: Phase::Recovery, message: "gap".into(), log_tail: None }),
            backup: BackupReport::default(),
            recovery: RecoveryReport::default(),
            assertions: vec![],
            timings: Timings::default(),
            warnings: vec![],
            notes: vec![],
        };
        let v: serde_json::Value =
            serde_json::from_str(&Report::new("r".into(), Utc::now(), vec![c]).to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["verdict"], "fail");
        let c = &v["checks"][0];
        assert_eq!(c["failure"]["phase"], "recovery");
        for k in ["id", "taken_at", "source"] {
            assert!(c["backup"].get(k).is_some(), "backup.{k}");
        }
        for k in ["end_lsn", "last_replayed_at", "timeline"] {
            assert!(c["recovery"].get(k).is_some(), "recovery.{k}");
        }
        for k in ["fetch", "restore", "recovery", "assert", "teardown", "total"] {
            assert!(c["timings"].get(k).is_some(), "timings.{k}");
        }
    }

    #[test]
    fn a_followed_timeline_switch_is_in_the_json_and_the_text() {
        let recovery = RecoveryReport {
            timeline_path: Some(vec![1, 2]),
            timeline_switches: vec![crate::wal_archive::TimelineSwitch {
                timeline: 1,
                switch_lsn: "0/B00A3C8".parse().unwrap(),
            }],
            ..Default::default()
        };
        let c = CheckReport {
            name: "app".into(),
            verdict: Verdict::Pass,
            failure: None,
            backup: BackupReport::default(),
            recovery,
            assertions: vec![],
            timings: Timings::default(),
            warnings: vec![],
            notes: vec![],
        };
        let r = Report::new("r".into(), Utc::now(), vec![c]);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["checks"][0]["recovery"]["timeline_path"], serde_json::json!([1, 2]));
        assert_eq!(
            v["checks"][0]["recovery"]["timeline_switches"],
            serde_json::json!([{"timeline": 1, "switch_lsn": "0/B00A3C8"}])
        );
        assert!(r.to_text().contains("followed timeline 1 → 2 (switch at 0/B00A3C8)"), "{}", r.to_text());
        let plain = RecoveryReport { timeline_path: Some(vec![1]), ..Default::default() };
        assert_eq!(plain.timeline_line(), None);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(2.44), "2.4s");
        assert_eq!(human_secs(95.0), "1m35s");
        assert_eq!(human_secs(3.0 * 86400.0), "3d00h");
    }
}
