//! JUnit XML: one `<testsuite>` per check, one `<testcase>` per phase that ran and per
//! assertion.
//!
//! * Phases: classname `<check>.phase`, name `select`/`fetch`/`restore`/`recovery`/`assert`/
//!   `teardown`, time = that phase's seconds. The phase the check failed in carries
//!   `<failure>` (verdict fail) or `<error>` (verdict error) with the message and the server log
//!   tail; the `assert` phase carries it only when no assertion does (otherwise the failing
//!   assertions are the test cases that fail, and a failure is not counted twice).
//! * Assertions: classname `<check>.assert`, name = the assertion's name; a failing one carries
//!   `<failure>`/`<error>` with its message, expected and observed value.
//! * Warnings and notes go to the suite's `<system-out>`.

use std::fmt::Write as _;

use crate::report::{CheckReport, Phase, Report, Verdict};

const PHASES: [Phase; 6] =
    [Phase::Select, Phase::Fetch, Phase::Restore, Phase::Recovery, Phase::Assert, Phase::Teardown];

/// Escapes `s` for XML 1.0 text and attribute values (double- or single-quoted).
///
/// Characters XML 1.0 cannot carry at all (most C0 controls, unpaired surrogates cannot occur
/// in a Rust `str`, U+FFFE/U+FFFF) become U+FFFD; tab, CR and LF are written as character
/// references so attribute values keep them.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Like [`escape`], for element text: newlines stay literal so logs remain readable.
fn escape_text(s: &str) -> String {
    escape(s).replace("&#10;", "\n").replace("&#9;", "\t")
}

/// One test case before it is written.
struct Case {
    classname: String,
    name: String,
    time: f64,
    /// `(verdict, message, body)` when it did not pass.
    problem: Option<(Verdict, String, String)>,
}

fn phase_cases(c: &CheckReport) -> Vec<Case> {
    let assertion_carries = c.assertions.iter().any(|a| a.verdict != Verdict::Pass);
    PHASES
        .iter()
        .filter_map(|&phase| {
            let failed_here = c.failure.as_ref().filter(|f| f.phase == phase);
            let time = phase_secs(c, phase);
            if time.is_none() && failed_here.is_none() {
                return None;
            }
            let problem = failed_here.filter(|_| !(phase == Phase::Assert && assertion_carries)).map(|f| {
                let verdict = if c.verdict == Verdict::Pass { Verdict::Error } else { c.verdict };
                let mut body = f.message.clone();
                if let Some(tail) = &f.log_tail {
                    let _ = write!(body, "\n\nserver log (last lines):\n{tail}");
                }
                (verdict, f.message.clone(), body)
            });
            Some(Case {
                classname: format!("{}.phase", c.name),
                name: phase.to_string(),
                time: time.unwrap_or(0.0),
                problem,
            })
        })
        .collect()
}

fn phase_secs(c: &CheckReport, phase: Phase) -> Option<f64> {
    let t = &c.timings;
    match phase {
        Phase::Select => t.select,
        Phase::Fetch => t.fetch,
        Phase::Restore => t.restore,
        Phase::Recovery => t.recovery,
        Phase::Assert => t.assert,
        Phase::Teardown => t.teardown,
    }
}

fn assertion_cases(c: &CheckReport) -> Vec<Case> {
    c.assertions
        .iter()
        .map(|a| {
            let problem = (a.verdict != Verdict::Pass).then(|| {
                let message = a.message.clone().unwrap_or_else(|| format!("assertion {}", a.verdict));
                let mut body = message.clone();
                if let Some(e) = &a.expected {
                    let _ = write!(body, "\nexpected: {e}");
                }
                if let Some(o) = &a.observed {
                    let _ = write!(body, "\nobserved: {o}");
                }
                (a.verdict, message, body)
            });
            Case {
                classname: format!("{}.assert", c.name),
                name: a.name.clone(),
                // Assertions are timed together in the assert phase, not one by one.
                time: 0.0,
                problem,
            }
        })
        .collect()
}

/// Renders `report` as a JUnit XML document.
pub(crate) fn render(report: &Report) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors, mut time) = (0usize, 0usize, 0usize, 0.0f64);
    let timestamp = report.started_at.format("%Y-%m-%dT%H:%M:%S");
    for c in &report.checks {
        let mut cases = phase_cases(c);
        cases.extend(assertion_cases(c));
        let count = |v: Verdict| cases.iter().filter(|k| matches!(&k.problem, Some((p, _, _)) if *p == v)).count();
        let (f, e) = (count(Verdict::Fail), count(Verdict::Error));
        tests += cases.len();
        failures += f;
        errors += e;
        time += c.timings.total;
        let _ = writeln!(
            suites,
            r#"  <testsuite name="{}" tests="{}" failures="{f}" errors="{e}" skipped="0" time="{:.3}" timestamp="{timestamp}">"#,
            escape(&c.name),
            cases.len(),
            c.timings.total,
        );
        let props: Vec<(&str, String)> = [
            ("verdict", Some(c.verdict.to_string().to_lowercase())),
            ("backup.id", c.backup.id.clone()),
            ("backup.source", c.backup.source.clone()),
            ("backup.taken_at", c.backup.taken_at.map(|t| t.to_rfc3339())),
            ("recovery.end_lsn", c.recovery.end_lsn.clone()),
            ("recovery.last_replayed_at", c.recovery.last_replayed_at.map(|t| t.to_rfc3339())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        suites.push_str("    <properties>\n");
        for (k, v) in props {
            let _ = writeln!(suites, r#"      <property name="{k}" value="{}"/>"#, escape(&v));
        }
        suites.push_str("    </properties>\n");
        for k in &cases {
            let open = format!(
                r#"    <testcase classname="{}" name="{}" time="{:.3}""#,
                escape(&k.classname),
                escape(&k.name),
                k.time
            );
            match &k.problem {
                None => {
                    let _ = writeln!(suites, "{open}/>");
                }
                Some((verdict, message, body)) => {
                    let tag = if *verdict == Verdict::Fail { "failure" } else { "error" };
                    let _ = writeln!(
                        suites,
                        "{open}>\n      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n    </testcase>",
                        escape(message),
                        verdict.to_string().to_lowercase(),
                        escape_text(body)
                    );
                }
            }
        }
        let out: Vec<String> = c
            .warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .chain(c.notes.iter().map(|n| format!("note: {n}")))
            .collect();
        if !out.is_empty() {
            let _ = writeln!(suites, "    <system-out>{}</system-out>", escape_text(&out.join("\n")));
        }
        suites.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"restorecheck\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\" timestamp=\"{timestamp}\">\n{suites}</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::report::{AssertionReport, BackupReport, Failure, RecoveryReport, Timings};

    fn check(name: &str, verdict: Verdict, failure: Option<Failure>, assertions: Vec<AssertionReport>) -> CheckReport {
        CheckReport {
            name: name.into(),
            verdict,
            failure,
            backup: BackupReport { id: Some("b1".into()), ..Default::default() },
            recovery: RecoveryReport::default(),
            assertions,
            timings: Timings {
                select: Some(0.1),
                fetch: Some(1.0),
                restore: Some(2.0),
                recovery: Some(0.5),
                assert: Some(0.25),
                teardown: Some(0.2),
                total: 4.05,
            },
            warnings: vec![],
            notes: vec![],
        }
    }

    fn assertion(name: &str, verdict: Verdict, message: Option<&str>) -> AssertionReport {
        AssertionReport {
            name: name.into(),
            verdict,
            observed: Some(serde_json::json!(42)),
            expected: Some(">= 43".into()),
            message: message.map(str::to_string),
        }
    }

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(escape(r#"a<b>&"c"'d'"#), "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;");
        assert_eq!(escape("x\ny\u{1}z"), "x&#10;y\u{FFFD}z");
        assert_eq!(escape_text("l1\nl2 <x>"), "l1\nl2 &lt;x&gt;");
    }

    #[test]
    fn passing_check_has_a_case_per_phase_and_assertion() {
        let c = check("app", Verdict::Pass, None, vec![assertion("rows", Verdict::Pass, None)]);
        let xml = render(&Report::new("r".into(), Utc::now(), vec![c]));
        assert!(xml.contains(r#"<testsuite name="app" tests="7" failures="0" errors="0""#), "{xml}");
        assert!(xml.contains(r#"time="4.050""#), "{xml}");
        for p in ["select", "fetch", "restore", "recovery", "assert", "teardown"] {
            assert!(xml.contains(&format!(r#"<testcase classname="app.phase" name="{p}""#)), "{p}: {xml}");
        }
        assert!(xml.contains(r#"<testcase classname="app.assert" name="rows" time="0.000"/>"#), "{xml}");
        assert!(xml.contains(r#"<testcase classname="app.phase" name="fetch" time="1.000"/>"#), "{xml}");
        assert!(!xml.contains("<failure") && !xml.contains("<error"));
    }

    #[test]
    fn failing_assertion_is_a_failure_and_not_counted_twice() {
        let c = check(
            "a&b",
            Verdict::Fail,
            Some(Failure { phase: Phase::Assert, message: "1 of 2 assertions failed".into(), log_tail: None }),
            vec![
                assertion("ok", Verdict::Pass, None),
                assertion("rows <min>", Verdict::Fail, Some("observed 42, expected at least 43")),
            ],
        );
        let xml = render(&Report::new("r".into(), Utc::now(), vec![c]));
        assert!(xml.contains(r#"<testsuite name="a&amp;b" tests="8" failures="1" errors="0""#), "{xml}");
        assert!(xml.contains(r#"<testcase classname="a&amp;b.assert" name="rows &lt;min&gt;""#), "{xml}");
        assert!(xml.contains(r#"<failure message="observed 42, expected at least 43" type="fail">"#), "{xml}");
        assert!(xml.contains("expected: &gt;= 43\nobserved: 42</failure>"), "{xml}");
        assert!(xml.contains(r#"<testsuites name="restorecheck" tests="8" failures="1" errors="0""#), "{xml}");
    }

    #[test]
    fn failed_phase_carries_error_with_log_tail() {
        let mut c = check(
            "app",
            Verdict::Error,
            Some(Failure {
                phase: Phase::Restore,
                message: "server did not start: \"port\" <busy>".into(),
                log_tail: Some("FATAL: x & y\nLOG: done".into()),
            }),
            vec![],
        );
        c.timings.recovery = None;
        c.timings.assert = None;
        let xml = render(&Report::new("r".into(), Utc::now(), vec![c]));
        assert!(xml.contains(r#"tests="4" failures="0" errors="1""#), "{xml}");
        assert!(!xml.contains(r#"name="recovery""#), "phases that did not run are left out: {xml}");
        assert!(
            xml.contains(r#"<error message="server did not start: &quot;port&quot; &lt;busy&gt;" type="error">"#),
            "{xml}"
        );
        assert!(xml.contains("server log (last lines):\nFATAL: x &amp; y\nLOG: done</error>"), "{xml}");
    }
}
