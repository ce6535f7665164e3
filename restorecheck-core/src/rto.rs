//! The recovery time objective (`rto = "2h"` on a `[[check]]`) and the restore-time trend.
//!
//! The runner judges each check against its RTO (`judge`, part of the verdict whichever front
//! end runs it); the front end, which keeps the history ([`crate::history`]), adds the trend
//! ([`trend`]):
//!
//! * a check that restored (pass or fail) gets an `rto` assertion; when its total time exceeds
//!   the RTO a passing check FAILS in the `assert` phase;
//! * a least-squares line through the totals of the last `TREND_RUNS` runs (at least
//!   `MIN_TREND_RUNS`, the current one included) is projected `TREND_AHEAD` runs forward;
//!   when the projection crosses the RTO the check gets a warning.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::Row;
use crate::report::{human_secs, AssertionReport, CheckReport, Failure, Phase, Report, Verdict};

/// Runs the trend is fitted over.
pub(crate) const TREND_RUNS: usize = 10;
/// Fewest runs a trend is fitted over.
pub(crate) const MIN_TREND_RUNS: usize = 3;
/// Runs the trend is projected forward.
pub(crate) const TREND_AHEAD: usize = 7;

/// Least-squares line through `values` (x = 0, 1, …) evaluated `ahead` steps past the last
/// value; `None` with fewer than [`MIN_TREND_RUNS`] values.
pub(crate) fn project(values: &[f64], ahead: usize) -> Option<f64> {
    let n = values.len();
    if n < MIN_TREND_RUNS {
        return None;
    }
    let nf = n as f64;
    let mean_x = (nf - 1.0) / 2.0;
    let mean_y = values.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    let slope = if sxx == 0.0 { 0.0 } else { sxy / sxx };
    Some(mean_y + slope * ((nf - 1.0 + ahead as f64) - mean_x))
}

/// Judges one check's restore time against its RTO, as the runner does at the end of every
/// check: a check that restored (pass or fail) gets an `rto` assertion; over the RTO, a passing
/// check FAILS in the assert phase and a failing one gets a warning.
pub(crate) fn judge(c: &mut CheckReport, rto: Duration) {
    if c.verdict == Verdict::Error {
        return; // it did not restore; its time says nothing about restoring
    }
    let rto_s = rto.as_secs_f64();
    let total = c.timings.total;
    let over = total > rto_s;
    let message = format!(
        "the restore took {} ({total:.1}s), longer than the RTO of {} ({rto_s:.0}s)",
        human_secs(total),
        humantime::format_duration(rto)
    );
    c.assertions.push(AssertionReport {
        name: "rto".into(),
        verdict: if over { Verdict::Fail } else { Verdict::Pass },
        observed: Some(serde_json::json!(total)),
        expected: Some(format!("<= {rto_s}s")),
        message: over.then(|| message.clone()),
    });
    if over {
        if c.verdict == Verdict::Pass {
            c.verdict = Verdict::Fail;
            c.failure = Some(Failure { phase: Phase::Assert, message, log_tail: None });
        } else {
            c.warnings.push(message);
        }
    }
}

/// Adds the trend warning to each check with an RTO (`rtos` by check name) that restored
/// within it, using `history` (earlier rows, oldest first, of any checks). The verdict is the
/// runner's (`judge`); this only warns.
pub fn trend(report: &mut Report, rtos: &BTreeMap<String, Duration>, history: &[Row]) {
    for c in &mut report.checks {
        let Some(rto) = rtos.get(&c.name) else { continue };
        let rto_s = rto.as_secs_f64();
        let total = c.timings.total;
        if c.verdict == Verdict::Error || total > rto_s {
            continue;
        }
        let mut totals: Vec<f64> = history
            .iter()
            .filter(|r| r.check == c.name && r.verdict != Verdict::Error)
            .map(|r| r.timings.total)
            .collect();
        totals.push(total);
        let start = totals.len().saturating_sub(TREND_RUNS);
        let window = &totals[start..];
        if let Some(p) = project(window, TREND_AHEAD) {
            if p > rto_s {
                c.warnings.push(format!(
                    "restore time is trending toward the RTO: {} now, {} projected in {TREND_AHEAD} runs \
                     (least squares over the last {} runs), RTO {}",
                    human_secs(total),
                    human_secs(p),
                    window.len(),
                    humantime::format_duration(*rto)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::history::tests::check;

    fn row(name: &str, total: f64) -> Row {
        Row {
            run_id: "r".into(),
            started_at: chrono::Utc::now(),
            check: name.into(),
            verdict: Verdict::Pass,
            backup_id: None,
            backup_taken_at: None,
            backup_age_seconds: None,
            timings: crate::report::Timings { total, ..Default::default() },
            failure_phase: None,
            failure_message: None,
            assertions: serde_json::Value::Null,
        }
    }

    #[test]
    fn least_squares_projection() {
        assert_eq!(project(&[1.0, 2.0], 7), None);
        let p = project(&[10.0, 20.0, 30.0], 7).unwrap();
        assert!((p - 100.0).abs() < 1e-9, "{p}");
        let p = project(&[5.0, 5.0, 5.0, 5.0], 7).unwrap();
        assert!((p - 5.0).abs() < 1e-9, "{p}");
        // y = 2x + 1 with noise that cancels: 1, 3.5, 4.5, 7 → slope 1.9, intercept 1.15
        let p = project(&[1.0, 3.5, 4.5, 7.0], 7).unwrap();
        assert!((p - (1.15 + 1.9 * 10.0)).abs() < 1e-9, "{p}");
    }

    #[test]
    fn over_the_rto_fails_the_check() {
        let mut c = check("app", 7300.0, Verdict::Pass);
        judge(&mut c, Duration::from_secs(7200));
        let r = Report::new("r".into(), chrono::Utc::now(), vec![c]);
        assert_eq!(r.verdict, Verdict::Fail);
        let f = r.checks[0].failure.as_ref().unwrap();
        assert_eq!(f.phase, Phase::Assert);
        assert!(f.message.contains("2h01m") && f.message.contains("RTO of 2h"), "{}", f.message);
        assert_eq!(r.checks[0].assertions.last().unwrap().name, "rto");
    }

    #[test]
    fn a_rising_trend_warns_but_passes() {
        let mut c = check("app", 40.0, Verdict::Pass);
        judge(&mut c, Duration::from_secs(60));
        let mut r = Report::new("r".into(), chrono::Utc::now(), vec![c]);
        let rtos = BTreeMap::from([("app".to_string(), Duration::from_secs(60))]);
        let hist = [row("app", 10.0), row("other", 1000.0), row("app", 25.0)];
        trend(&mut r, &rtos, &hist);
        assert_eq!(r.verdict, Verdict::Pass);
        assert!(r.checks[0].warnings[0].starts_with("restore time is trending toward the RTO"), "{:?}", r.checks[0]);
        let mut c = check("app", 10.0, Verdict::Pass);
        judge(&mut c, Duration::from_secs(60));
        let mut r = Report::new("r".into(), chrono::Utc::now(), vec![c]);
        trend(&mut r, &rtos, &[row("app", 10.0), row("app", 10.0)]);
        assert!(r.checks[0].warnings.is_empty());
        assert_eq!(r.checks[0].assertions.last().unwrap().verdict, Verdict::Pass);
    }
}
