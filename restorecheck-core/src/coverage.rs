//! Coverage: every backup a source lists gets restore-tested over time, not only the newest.
//!
//! - `backup = "rotate"` (check or source): from the backups the source lists, test the one whose
//!   last restore test is oldest; backups never tested come first, newest first. Over a
//!   retention window every backup is tested, including the oldest one a restore would fall
//!   back to.
//! - `coverage = "7d"` (check): the check also fails (assertion `coverage`, assert phase) when a
//!   backup older than the window that the source still lists has never passed a restore test.
//!
//! What was tested comes from the history ([`TestedBackups::from_rows`]); the front end hands it
//! to the check ([`crate::Check::tested`]). Without a history every backup counts as never
//! tested.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::Verdict;
use crate::source::BackupInfo;

/// The value of `backup` that asks for rotation.
pub const ROTATE: &str = "rotate";

/// What the history says about one backup of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tested {
    /// When its newest restore test started.
    pub last_tested: DateTime<Utc>,
    /// That test's verdict.
    pub last_verdict: Verdict,
    /// When its newest passing restore test started, if one ever passed.
    pub last_passed: Option<DateTime<Utc>>,
}

/// Restore tests of one check's backups, by backup id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestedBackups(pub BTreeMap<String, Tested>);

impl TestedBackups {
    /// Folds history rows (any order) of one check.
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a crate::history::Row>) -> Self {
        let mut map: BTreeMap<String, Tested> = BTreeMap::new();
        for r in rows {
            let Some(id) = &r.backup_id else { continue };
            let verdict = restore_verdict(r);
            let e = map.entry(id.clone()).or_insert(Tested {
                last_tested: r.started_at,
                last_verdict: verdict,
                last_passed: None,
            });
            if r.started_at >= e.last_tested {
                e.last_tested = r.started_at;
                e.last_verdict = verdict;
            }
            if verdict == Verdict::Pass && e.last_passed.is_none_or(|p| r.started_at > p) {
                e.last_passed = Some(r.started_at);
            }
        }
        TestedBackups(map)
    }

    /// The backup to test under `backup = "rotate"`: the newest never tested, else the one
    /// tested longest ago. `all` is newest first, as [`crate::BackupSource::list`] returns it.
    pub fn rotate<'a>(&self, all: &'a [BackupInfo]) -> Option<&'a BackupInfo> {
        all.iter().find(|b| !self.0.contains_key(&b.id)).or_else(|| {
            // min_by_key keeps the first of equals: the newer one.
            all.iter().min_by_key(|b| self.0.get(&b.id).map(|t| t.last_tested))
        })
    }

    /// The listed backups taken more than `window` before `now` that never passed a restore
    /// test (the one under test now, `current`, excepted: its verdict is this run's).
    pub fn gaps<'a>(
        &self,
        all: &'a [BackupInfo],
        window: Duration,
        now: DateTime<Utc>,
        current: &str,
    ) -> Vec<&'a BackupInfo> {
        let Ok(window) = chrono::Duration::from_std(window) else { return Vec::new() };
        all.iter()
            .filter(|b| b.id != current)
            .filter(|b| b.taken_at.is_some_and(|t| t < now - window))
            .filter(|b| self.0.get(&b.id).and_then(|t| t.last_passed).is_none())
            .collect()
    }
}

/// The verdict of a history row's restore test of its backup: the check's verdict, except that
/// a check that failed only because of its `coverage` assertion (other backups untested) did
/// restore this backup successfully.
fn restore_verdict(r: &crate::history::Row) -> Verdict {
    if r.verdict != Verdict::Fail || r.failure_phase.as_deref() != Some("assert") {
        return r.verdict;
    }
    let failed: Vec<&str> = r
        .assertions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["verdict"] != "pass")
        .filter_map(|a| a["name"].as_str())
        .collect();
    if !failed.is_empty() && failed.iter().all(|n| *n == "coverage") {
        Verdict::Pass
    } else {
        r.verdict
    }
}

/// The `coverage` assertion's outcome: pass, or fail listing the backups never restore-tested.
pub(crate) fn outcome(
    tested: &TestedBackups,
    all: &[BackupInfo],
    window: Duration,
    current: &str,
) -> crate::assertion::Outcome {
    let gaps = tested.gaps(all, window, Utc::now(), current);
    let ids: Vec<&str> = gaps.iter().map(|b| b.id.as_str()).collect();
    let observed = serde_json::json!({
        "value": ids.len(),
        "untested": ids,
        "listed": all.len(),
        "window_seconds": window.as_secs(),
    });
    if ids.is_empty() {
        crate::assertion::Outcome::Pass { observed: Some(observed) }
    } else {
        crate::assertion::Outcome::Fail {
            message: format!(
                "{} of {} listed backups older than {} never passed a restore test: {} \
                 (set backup = \"rotate\" so that each run tests the backup tested longest ago)",
                ids.len(),
                all.len(),
                humantime::format_duration(window),
                ids.join(", ")
            ),
            observed: Some(observed),
            expected: Some(format!(
                "every listed backup older than {} restore-tested",
                humantime::format_duration(window)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, days_ago: i64) -> BackupInfo {
        BackupInfo {
            id: id.into(),
            taken_at: Some(Utc::now() - chrono::Duration::days(days_ago)),
            size_bytes: None,
            kind: "tar".into(),
            location: id.into(),
            pg_major: Some(15),
            label: None,
            timeline: None,
        }
    }

    fn t(days_ago: i64, v: Verdict) -> Tested {
        let at = Utc::now() - chrono::Duration::days(days_ago);
        Tested { last_tested: at, last_verdict: v, last_passed: (v == Verdict::Pass).then_some(at) }
    }

    #[test]
    fn rotation_takes_the_newest_untested_then_the_longest_ago_tested() {
        let all = vec![b("d", 0), b("c", 1), b("b", 2), b("a", 3)];
        let mut tested = TestedBackups::default();
        assert_eq!(tested.rotate(&all).unwrap().id, "d");
        tested.0.insert("d".into(), t(0, Verdict::Pass));
        assert_eq!(tested.rotate(&all).unwrap().id, "c");
        for (id, ago) in [("c", 1), ("b", 5), ("a", 2)] {
            tested.0.insert(id.into(), t(ago, Verdict::Pass));
        }
        assert_eq!(tested.rotate(&all).unwrap().id, "b");
        assert!(tested.rotate(&[]).is_none());
    }

    #[test]
    fn gaps_are_old_listed_backups_that_never_passed() {
        let all = vec![b("new", 1), b("old-ok", 9), b("old-failed", 10), b("old-never", 11), b("current", 12)];
        let mut tested = TestedBackups::default();
        tested.0.insert("old-ok".into(), t(3, Verdict::Pass));
        tested.0.insert("old-failed".into(), t(3, Verdict::Fail));
        let gaps: Vec<&str> = tested
            .gaps(&all, Duration::from_secs(7 * 86400), Utc::now(), "current")
            .iter()
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(gaps, ["old-failed", "old-never"]);
        match outcome(&tested, &all, Duration::from_secs(7 * 86400), "current") {
            crate::assertion::Outcome::Fail { message, observed, .. } => {
                assert!(message.contains("old-failed, old-never"), "{message}");
                assert_eq!(observed.unwrap()["value"], 2);
            }
            other => panic!("{other:?}"),
        }
        tested.0.insert("old-failed".into(), t(1, Verdict::Pass));
        tested.0.insert("old-never".into(), t(1, Verdict::Pass));
        assert!(matches!(
            outcome(&tested, &all, Duration::from_secs(7 * 86400), "current"),
            crate::assertion::Outcome::Pass { .. }
        ));
    }
}
