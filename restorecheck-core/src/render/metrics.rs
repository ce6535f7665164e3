//! A Prometheus node_exporter textfile (text exposition format 0.0.4).
//!
//! Every series is a gauge labelled `check="…"` (plus `phase`, `verdict` or `assertion`):
//!
//! | metric | value |
//! |---|---|
//! | `restorecheck_last_run_timestamp_seconds` | Unix time the run started |
//! | `restorecheck_last_success_timestamp_seconds` | Unix time of the last run in which the check passed; carried over from the previous file when this run did not pass, absent if it never passed |
//! | `restorecheck_check_verdict{verdict="pass\|fail\|error"}` | 1 for the current verdict, 0 for the others |
//! | `restorecheck_check_duration_seconds` | the check's total time |
//! | `restorecheck_phase_duration_seconds{phase}` | each phase that ran |
//! | `restorecheck_backup_age_seconds` | age of the restored backup at the time of the check |
//! | `restorecheck_recovery_reached_age_seconds` | now − commit time of the last replayed transaction: the achieved RPO |
//! | `restorecheck_assertion_value{assertion}` | an assertion's observed value, see below |
//!
//! The assertion value is the `observed` value when it is a JSON number; when it is an object,
//! the first numeric member of `rpo_seconds` (canaries), `age_seconds` (`max_age` queries, backup
//! age) and `value`, in that order. Assertions without such a number (amcheck, text values) have
//! no series. Series that would repeat (two assertions of one check with the same name) are
//! written once, for the first, because node_exporter rejects files with duplicate series.
//!
//! Only checks of this run are written: run every check of one config into one file, or give
//! runs of different `--check` subsets their own files.

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::report::{Phase, Report, Verdict};

const LAST_SUCCESS: &str = "restorecheck_last_success_timestamp_seconds";

/// Renders `report` as a textfile; `previous` is the text of the file this one replaces, read
/// for last-success timestamps; `now` is the reference time of the recovery age.
pub(crate) fn render(report: &Report, previous: Option<&str>, now: DateTime<Utc>) -> String {
    let mut fams: Vec<Family> = Vec::new();
    let mut fam = |name: &'static str, help: &'static str| {
        fams.push(Family { name, help, samples: Vec::new(), seen: HashSet::new() });
        fams.len() - 1
    };
    let last_run = fam("restorecheck_last_run_timestamp_seconds", "Unix time the last run of the check started.");
    let last_ok = fam(LAST_SUCCESS, "Unix time the last run in which the check passed started.");
    let verdict =
        fam("restorecheck_check_verdict", "1 for the verdict of the last run of the check, 0 for the others.");
    let check_dur = fam("restorecheck_check_duration_seconds", "Seconds the last run of the check took in total.");
    let phase_dur = fam("restorecheck_phase_duration_seconds", "Seconds each phase of the last run of the check took.");
    let backup_age = fam("restorecheck_backup_age_seconds", "Age of the restored backup at the time of the check.");
    let rpo = fam(
        "restorecheck_recovery_reached_age_seconds",
        "Seconds between now and the commit time of the last transaction recovery replayed (the achieved RPO).",
    );
    let value =
        fam("restorecheck_assertion_value", "Numeric value an assertion observed in the last run of the check.");

    let started = secs(report.started_at);
    for c in &report.checks {
        let check = [("check", c.name.as_str())];
        fams[last_run].add(&check, started);
        if c.verdict == Verdict::Pass {
            fams[last_ok].add(&check, started);
        } else if let Some(v) = previous.and_then(|p| previous_value(p, LAST_SUCCESS, &c.name)) {
            fams[last_ok].add(&check, v);
        }
        for v in [Verdict::Pass, Verdict::Fail, Verdict::Error] {
            let name = v.to_string().to_lowercase();
            fams[verdict].add(&[("check", &c.name), ("verdict", &name)], if v == c.verdict { 1.0 } else { 0.0 });
        }
        fams[check_dur].add(&check, c.timings.total);
        let t = &c.timings;
        for (phase, s) in [
            (Phase::Select, t.select),
            (Phase::Fetch, t.fetch),
            (Phase::Restore, t.restore),
            (Phase::Recovery, t.recovery),
            (Phase::Assert, t.assert),
            (Phase::Teardown, t.teardown),
        ] {
            if let Some(s) = s {
                fams[phase_dur].add(&[("check", &c.name), ("phase", &phase.to_string())], s);
            }
        }
        if let Some(age) = c.backup.age_seconds {
            fams[backup_age].add(&check, age);
        }
        if let Some(at) = c.recovery.last_replayed_at {
            fams[rpo].add(&check, (now - at).num_milliseconds() as f64 / 1000.0);
        }
        for a in &c.assertions {
            if let Some(v) = a.observed.as_ref().and_then(assertion_number) {
                fams[value].add(&[("check", &c.name), ("assertion", &a.name)], v);
            }
        }
    }

    let mut out = String::new();
    for f in fams.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for s in &f.samples {
            out.push_str(s);
        }
    }
    out
}

/// The number an assertion's `observed` value stands for (see the module documentation).
pub(crate) fn assertion_number(observed: &serde_json::Value) -> Option<f64> {
    match observed {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Object(m) => {
            ["rpo_seconds", "age_seconds", "value"].iter().find_map(|k| m.get(*k).and_then(serde_json::Value::as_f64))
        }
        _ => None,
    }
}

/// One metric family being built.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<String>,
    seen: HashSet<String>,
}

impl Family {
    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect::<Vec<_>>().join(",");
        if self.seen.insert(labels.clone()) {
            self.samples.push(format!("{}{{{labels}}} {}\n", self.name, number(value)));
        }
    }
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A sample value as the exposition format spells it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub(crate) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The value of series `metric{check="<check>"}` in an exposition text, if present and valid.
pub(crate) fn previous_value(text: &str, metric: &str, check: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(metric)?;
        let (labels, rest) = parse_labels(rest.strip_prefix('{')?)?;
        if labels.len() != 1 || labels[0] != ("check".to_string(), check.to_string()) {
            return None;
        }
        let v = match rest.split_whitespace().next()? {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse::<f64>().ok()?,
        };
        v.is_finite().then_some(v)
    })
}

/// Parses `k="v",k2="v2"}` (after the `{`) into unescaped pairs and the text after the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        let mut chars = s[eq + 1..].trim_start().strip_prefix('"')?.char_indices();
        let body = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = body[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::report::{AssertionReport, BackupReport, CheckReport, RecoveryReport, Timings};

    fn report(name: &str, verdict: Verdict, at: DateTime<Utc>) -> Report {
        let c = CheckReport {
            name: name.into(),
            verdict,
            failure: None,
            backup: BackupReport { age_seconds: Some(3600.5), ..Default::default() },
            recovery: RecoveryReport {
                last_replayed_at: Some(at - chrono::Duration::seconds(90)),
                ..Default::default()
            },
            assertions: vec![
                AssertionReport {
                    name: "rows".into(),
                    verdict: Verdict::Pass,
                    observed: Some(serde_json::json!(42)),
                    expected: None,
                    message: None,
                },
                AssertionReport {
                    name: "canary".into(),
                    verdict: Verdict::Pass,
                    observed: Some(serde_json::json!({"value": "2026-01-01", "rpo_seconds": 12.5})),
                    expected: None,
                    message: None,
                },
                AssertionReport {
                    name: "amcheck".into(),
                    verdict: Verdict::Pass,
                    observed: Some(serde_json::json!({"indexes": 3})),
                    expected: None,
                    message: None,
                },
                AssertionReport {
                    name: "rows".into(),
                    verdict: Verdict::Pass,
                    observed: Some(serde_json::json!(7)),
                    expected: None,
                    message: None,
                },
            ],
            timings: Timings { fetch: Some(1.5), restore: Some(2.0), total: 4.0, ..Default::default() },
            warnings: vec![],
            notes: vec![],
        };
        Report::new("r".into(), at, vec![c])
    }

    #[test]
    fn passing_run_writes_every_series() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let text = render(&report("app", Verdict::Pass, at), None, at + chrono::Duration::seconds(10));
        for line in [
            "# TYPE restorecheck_last_run_timestamp_seconds gauge",
            "restorecheck_last_run_timestamp_seconds{check=\"app\"} 1767323045\n",
            "restorecheck_last_success_timestamp_seconds{check=\"app\"} 1767323045\n",
            "restorecheck_check_verdict{check=\"app\",verdict=\"pass\"} 1\n",
            "restorecheck_check_verdict{check=\"app\",verdict=\"fail\"} 0\n",
            "restorecheck_check_verdict{check=\"app\",verdict=\"error\"} 0\n",
            "restorecheck_check_duration_seconds{check=\"app\"} 4\n",
            "restorecheck_phase_duration_seconds{check=\"app\",phase=\"fetch\"} 1.5\n",
            "restorecheck_backup_age_seconds{check=\"app\"} 3600.5\n",
            "restorecheck_recovery_reached_age_seconds{check=\"app\"} 100\n",
            "restorecheck_assertion_value{check=\"app\",assertion=\"rows\"} 42\n",
            "restorecheck_assertion_value{check=\"app\",assertion=\"canary\"} 12.5\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
        assert!(!text.contains("phase=\"select\""), "phases that did not run have no series");
        assert!(!text.contains("amcheck"), "non-numeric observations have no series");
        assert_eq!(text.matches("assertion=\"rows\"").count(), 1, "no duplicate series");
        assert_eq!(text.matches("# HELP").count(), 8);
    }

    #[test]
    fn last_success_is_carried_over_from_the_previous_file() {
        let first = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let name = "we\"ird\\app\nx";
        let prev = render(&report(name, Verdict::Pass, first), None, first);
        assert!(prev.contains(r#"{check="we\"ird\\app\nx"}"#), "{prev}");
        let later = first + chrono::Duration::days(1);
        let text = render(&report(name, Verdict::Fail, later), Some(&prev), later);
        let want =
            format!("restorecheck_last_success_timestamp_seconds{{check=\"{}\"}} 1767225600\n", escape_label(name));
        assert!(text.contains(&want), "{text}");
        assert!(text.contains("restorecheck_last_run_timestamp_seconds{check=\"we\\\"ird\\\\app\\nx\"} 1767312000\n"));
        assert!(text.contains("verdict=\"fail\"} 1\n"));
        // Never succeeded: no series at all (not even HELP/TYPE).
        let text = render(&report("app", Verdict::Error, later), Some(&prev), later);
        assert!(!text.contains(LAST_SUCCESS), "{text}");
        let text = render(&report("app", Verdict::Error, later), None, later);
        assert!(!text.contains(LAST_SUCCESS), "{text}");
    }

    #[test]
    fn parses_previous_values() {
        let text = "# HELP x y\nm{check=\"a\"} 5\nm{check=\"a,b\", } 6 1700000000000\nm{check=\"c\",phase=\"x\"} 7\nm{check=\"bad\"} zz\n";
        assert_eq!(previous_value(text, "m", "a"), Some(5.0));
        assert_eq!(previous_value(text, "m", "a,b"), Some(6.0));
        assert_eq!(previous_value(text, "m", "c"), None);
        assert_eq!(previous_value(text, "m", "bad"), None);
        assert_eq!(previous_value(text, "mm", "a"), None);
    }

    #[test]
    fn assertion_numbers() {
        assert_eq!(assertion_number(&serde_json::json!(1.5)), Some(1.5));
        assert_eq!(assertion_number(&serde_json::json!("1.5")), None);
        assert_eq!(assertion_number(&serde_json::json!({"value": 3, "age_seconds": 9})), Some(9.0));
        assert_eq!(assertion_number(&serde_json::json!({"value": "x"})), None);
    }
}
