//! A self-contained HTML report: the run's report plus, per check, charts of the restore time
//! and the backup age over the history ([`crate::history`]) as inline SVG. No scripts, no
//! external assets: one file to attach to a mail or publish as a CI artifact.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::history::Row;
use crate::report::{human_secs, CheckReport, Report, Verdict};

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
.pass{color:#17813a}.fail{color:#c0392b}.error{color:#b9770e}\
.chart{display:inline-block;margin:.5em 1em .5em 0}pre{background:#f6f6f6;padding:.5em}";

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error => "error",
    }
}

fn opt_secs(s: Option<f64>) -> String {
    s.map(human_secs).unwrap_or_else(|| "–".into())
}

/// Renders `report` with charts over `history` (rows of earlier runs, oldest first; the
/// current run is added to a chart when it is not among them).
pub fn render(report: &Report, history: &[Row]) -> String {
    let mut out = String::new();
    let title = format!("restorecheck {} — {}", report.verdict, report.started_at.format("%Y-%m-%d %H:%M UTC"));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(
        out,
        "<h1 class=\"{}\">{}</h1>\n<p>Run {} · restorecheck {}</p>",
        class(report.verdict),
        escape(&title),
        escape(&report.run_id),
        escape(&report.restorecheck_version)
    );
    for c in &report.checks {
        check_section(&mut out, report, c, history);
    }
    out.push_str("</body></html>\n");
    out
}

fn check_section(out: &mut String, report: &Report, c: &CheckReport, history: &[Row]) {
    let _ = writeln!(out, "<h2><span class=\"{}\">{}</span> {}</h2>", class(c.verdict), c.verdict, escape(&c.name));
    let _ = writeln!(
        out,
        "<p>Backup {} · age {} · total {}</p>",
        escape(c.backup.id.as_deref().unwrap_or("–")),
        opt_secs(c.backup.age_seconds),
        human_secs(c.timings.total)
    );
    if let Some(f) = &c.failure {
        let _ = writeln!(out, "<p class=\"fail\">{} phase: {}</p>", f.phase, escape(&f.message));
        if let Some(tail) = &f.log_tail {
            let _ = writeln!(out, "<pre>{}</pre>", escape(tail));
        }
    }
    for w in &c.warnings {
        let _ = writeln!(out, "<p class=\"error\">warning: {}</p>", escape(w));
    }
    let t = &c.timings;
    out.push_str("<table><tr><th>select</th><th>fetch</th><th>restore</th><th>recovery</th><th>assert</th><th>teardown</th><th>total</th></tr><tr>");
    for s in [t.select, t.fetch, t.restore, t.recovery, t.assert, t.teardown, Some(t.total)] {
        let _ = write!(out, "<td>{}</td>", opt_secs(s));
    }
    out.push_str("</tr></table>\n");
    if !c.assertions.is_empty() {
        out.push_str(
            "<table><tr><th>assertion</th><th>verdict</th><th>observed</th><th>expected</th><th>message</th></tr>\n",
        );
        for a in &c.assertions {
            let observed = a.observed.as_ref().map(observation).unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.name),
                class(a.verdict),
                a.verdict,
                escape(&observed),
                escape(a.expected.as_deref().unwrap_or("")),
                escape(a.message.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>\n");
    }
    let mut runs: Vec<Run> = history
        .iter()
        .filter(|r| r.check == c.name)
        .map(|r| Run {
            at: r.started_at,
            total: Some(r.timings.total),
            age: r.backup_age_seconds,
            verdict: r.verdict,
            failure: failure_text(r.failure_phase.as_deref(), r.failure_message.as_deref()),
        })
        .collect();
    if !history.iter().any(|r| r.check == c.name && r.run_id == report.run_id) {
        runs.push(Run {
            at: report.started_at,
            total: Some(c.timings.total),
            age: c.backup.age_seconds,
            verdict: c.verdict,
            failure: c.failure.as_ref().map(|f| format!("{} phase: {}", f.phase, f.message)),
        });
    }
    runs.sort_by_key(|r| r.at);
    out.push_str(&chart("Restore time", &runs, |r| r.total));
    out.push_str(&chart("Backup age", &runs, |r| r.age));
    out.push('\n');
    let failed: Vec<&Run> = runs.iter().filter(|r| r.verdict != Verdict::Pass).collect();
    if !failed.is_empty() {
        out.push_str("<table class=\"failures\"><tr><th>failed run</th><th>verdict</th><th>why</th></tr>\n");
        for r in failed {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                r.at.format("%Y-%m-%d %H:%M UTC"),
                class(r.verdict),
                r.verdict,
                escape(r.failure.as_deref().unwrap_or("–"))
            );
        }
        out.push_str("</table>\n");
    }
}

/// One run of a check, as the charts show it.
struct Run {
    at: DateTime<Utc>,
    total: Option<f64>,
    age: Option<f64>,
    verdict: Verdict,
    failure: Option<String>,
}

fn failure_text(phase: Option<&str>, message: Option<&str>) -> Option<String> {
    match (phase, message) {
        (Some(p), Some(m)) => Some(format!("{p} phase: {m}")),
        (None, Some(m)) => Some(m.to_string()),
        (Some(p), None) => Some(format!("{p} phase")),
        (None, None) => None,
    }
}

/// An assertion's observation as short readable text: `{"indexes":327,"relations":220,
/// "problems":0,"seconds":0.53}` → `327 indexes, 0 problems, 220 relations, 0.5s`. Scalars are
/// shown as they are; seconds as a duration; other keys as `key value`.
pub(crate) fn observation(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Null => "null".into(),
        other => other.to_string(),
    };
    let Value::Object(map) = v else {
        return match v {
            Value::Array(items) => items.iter().map(observation).collect::<Vec<_>>().join(", "),
            other => scalar(other),
        };
    };
    let mut counts = Vec::new();
    let mut rest = Vec::new();
    for (k, v) in map {
        let label = k.replace('_', " ");
        match v {
            Value::Number(n) if k == "seconds" || k.ends_with("_seconds") => {
                let secs = human_secs(n.as_f64().unwrap_or(0.0));
                let what = label.trim_end_matches("seconds").trim();
                rest.push(if what.is_empty() { secs } else { format!("{what} {secs}") });
            }
            Value::Number(n) => counts.push(format!("{n} {label}")),
            Value::Array(items) => counts.push(format!("{} {label}", items.len())),
            Value::Object(_) => rest.push(format!("{label}: {}", observation(v))),
            other => rest.push(format!("{label} {}", scalar(other))),
        }
    }
    counts.extend(rest);
    counts.join(", ")
}

/// A line chart over time of `value(run)` (seconds; `None` are gaps): x is the run's start time
/// with dated ticks, one dot per run coloured by verdict, and a red marker line at each failed run.
fn chart(title: &str, runs: &[Run], value: impl Fn(&Run) -> Option<f64>) -> String {
    const W: f64 = 460.0;
    const H: f64 = 200.0;
    const L: f64 = 60.0; // left margin for the axis labels
    const R: f64 = 40.0; // right margin: room for the last date label
    const T: f64 = 24.0;
    const B: f64 = 36.0; // bottom margin for the date ticks
    let max = runs.iter().filter_map(&value).fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let n = runs.len();
    let (first, last) = match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => (a.at.timestamp() as f64, b.at.timestamp() as f64),
        _ => (0.0, 0.0),
    };
    let span = last - first;
    let x = |at: DateTime<Utc>| {
        if span <= 0.0 {
            L + (W - L - R) / 2.0
        } else {
            L + 8.0 + (W - L - R - 16.0) * (at.timestamp() as f64 - first) / span
        }
    };
    let yb = H - B;
    let y = |v: f64| T + (yb - T) * (1.0 - v / max);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure class=\"chart\"><svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\">\
<title>{t}</title><text x=\"{L}\" y=\"14\" font-size=\"13\">{t} ({n} runs)</text>\
<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{yb}\" stroke=\"#999\"/><line x1=\"{L}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\" stroke=\"#999\"/>\
<text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{top}</text><text x=\"{lx}\" y=\"{yb}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        t = escape(title),
        xr = W - R,
        lx = L - 4.0,
        ty = T + 4.0,
        top = human_secs(max),
    );
    for at in time_ticks(runs) {
        let tx = x(at);
        let fmt = if span < 2.0 * 86400.0 { "%m-%d %H:%M" } else { "%Y-%m-%d" };
        let _ = write!(
            s,
            "<line class=\"tick\" x1=\"{tx:.1}\" y1=\"{yb}\" x2=\"{tx:.1}\" y2=\"{y2}\" stroke=\"#999\"/>\
<text class=\"date\" x=\"{tx:.1}\" y=\"{y3}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            at.format(fmt),
            y2 = yb + 4.0,
            y3 = yb + 16.0,
        );
    }
    let _ = write!(
        s,
        "<text x=\"{cx}\" y=\"{y}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#666\">run start (UTC)</text>",
        cx = L + (W - L - R) / 2.0,
        y = H - 4.0
    );
    for r in runs.iter().filter(|r| r.verdict != Verdict::Pass) {
        let fx = x(r.at);
        let _ = write!(
            s,
            "<line class=\"failed-run\" x1=\"{fx:.1}\" y1=\"{T}\" x2=\"{fx:.1}\" y2=\"{yb}\" stroke=\"#c0392b\" stroke-dasharray=\"3,3\">\
<title>{} {}: {}</title></line>",
            r.verdict,
            r.at.format("%Y-%m-%d %H:%M UTC"),
            escape(r.failure.as_deref().unwrap_or(""))
        );
    }
    let pts: Vec<String> =
        runs.iter().filter_map(|r| value(r).map(|v| format!("{:.1},{:.1}", x(r.at), y(v)))).collect();
    if pts.len() > 1 {
        let _ =
            write!(s, "<polyline fill=\"none\" stroke=\"#2c6fbb\" stroke-width=\"1.5\" points=\"{}\"/>", pts.join(" "));
    }
    for r in runs {
        if let Some(v) = value(r) {
            let colour = match r.verdict {
                Verdict::Pass => "#17813a",
                Verdict::Fail => "#c0392b",
                Verdict::Error => "#b9770e",
            };
            let radius = if r.verdict == Verdict::Pass { 3 } else { 5 };
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{radius}\" fill=\"{colour}\"><title>{} {} {}</title></circle>",
                x(r.at),
                y(v),
                r.at.format("%Y-%m-%d %H:%M UTC"),
                r.verdict,
                human_secs(v)
            );
        }
    }
    s.push_str("</svg></figure>");
    s
}

/// Up to four evenly spaced tick times from the first to the last run (one when all runs share
/// a time).
fn time_ticks(runs: &[Run]) -> Vec<DateTime<Utc>> {
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else { return Vec::new() };
    let span = (last.at - first.at).num_seconds();
    if span <= 0 {
        return vec![first.at];
    }
    let ticks = 4.min(runs.len().max(2)) as i64;
    (0..ticks).map(|i| first.at + chrono::Duration::seconds(span * i / (ticks - 1))).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::history::tests::check;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let mut c = check("<script>alert(1)</script>", 5.0, Verdict::Fail);
        c.failure.as_mut().unwrap().message = "bad & <b>".into();
        let html = render(&Report::new("r".into(), chrono::Utc::now(), vec![c]), &[]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("bad &amp; &lt;b&gt;"));
    }

    #[test]
    #[cfg(feature = "history")]
    fn an_svg_per_chart_and_no_external_assets() {
        let r = Report::new(
            "now".into(),
            chrono::Utc::now(),
            vec![check("a", 5.0, Verdict::Pass), check("b", 7.0, Verdict::Fail)],
        );
        let dir = tempfile::tempdir().unwrap();
        let mut h = crate::history::History::open(&dir.path().join("h.sqlite")).unwrap();
        h.append(&Report::new("old".into(), chrono::Utc::now(), vec![check("a", 4.0, Verdict::Pass)])).unwrap();
        h.append(&r).unwrap();
        let rows = h.query(None, 100).unwrap();
        let html = render(&r, &rows);
        assert_eq!(html.matches("<svg").count(), 4, "two charts per check");
        assert!(html.contains("Restore time (2 runs)") && html.contains("Backup age (1 runs)"), "{html}");
        assert!(html.contains("<polyline"));
        assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
        assert!(!html.contains("<script") && !html.contains("<link"));
    }

    /// Renders the report in headless Chromium when it is installed (skipped otherwise): the
    /// DOM it builds holds the charts, and a screenshot comes out.
    #[test]
    fn observations_read_as_text() {
        use serde_json::json;
        assert_eq!(
            observation(&json!({"indexes":327,"jobs":2,"problems":0,"relations":220,"seconds":0.53})),
            "327 indexes, 2 jobs, 0 problems, 220 relations, 0.5s"
        );
        assert_eq!(observation(&json!({"value": "2026-11-26", "age_seconds": 7200.0})), "age 2h00m, value 2026-11-26");
        assert_eq!(observation(&json!(42)), "42");
        assert_eq!(observation(&json!("x")), "x");
        assert_eq!(observation(&json!({"ok": true, "tables": ["a", "b"]})), "2 tables, ok yes");
    }

    #[test]
    #[cfg(feature = "history")]
    fn renders_in_headless_chromium() {
        let Some(bin) = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        else {
            eprintln!("skipped: no chromium installed");
            return;
        };
        let mut rep = Report::new("now".into(), chrono::Utc::now(), vec![check("app", 5.0, Verdict::Pass)]);
        rep.checks[0].warnings.push("restore time is trending toward the RTO".into());
        let day = chrono::Duration::days(1);
        let mut older =
            Report::new("older".into(), chrono::Utc::now() - day * 2, vec![check("app", 4.0, Verdict::Pass)]);
        older.checks[0].assertions[0].observed =
            Some(serde_json::json!({"indexes": 327, "relations": 220, "problems": 0, "seconds": 0.53}));
        let mut old = Report::new("old".into(), chrono::Utc::now() - day, vec![check("app", 3.0, Verdict::Fail)]);
        old.checks[0].failure.as_mut().unwrap().message = "recovery stopped early: WAL is missing".into();
        let dir = tempfile::tempdir().unwrap();
        let mut h = crate::history::History::open(&dir.path().join("h.sqlite")).unwrap();
        h.append(&older).unwrap();
        h.append(&old).unwrap();
        rep.checks[0].assertions[0].observed =
            Some(serde_json::json!({"indexes": 327, "relations": 220, "problems": 0, "seconds": 0.53}));
        let file = dir.path().join("report.html");
        std::fs::write(&file, render(&rep, &h.query(None, 10).unwrap())).unwrap();
        let url = format!("file://{}", file.display());
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run"];
        let dom = std::process::Command::new(bin).args(flags).args(["--dump-dom", &url]).output().unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout);
        assert_eq!(dom.matches("<svg").count(), 2, "{dom}");
        assert_eq!(dom.matches("<polyline").count(), 2, "{dom}");
        assert!(dom.contains("Restore time (3 runs)"), "{dom}");
        // Dated time axis on both charts, a marker and the message for the failed run.
        let two_days_ago = (chrono::Utc::now() - day * 2).format("%Y-%m-%d").to_string();
        assert_eq!(dom.matches(&format!(">{two_days_ago}<")).count(), 2, "a dated first tick per chart: {dom}");
        assert_eq!(dom.matches("class=\"failed-run\"").count(), 2, "{dom}");
        assert!(dom.contains("recovery stopped early: WAL is missing"), "{dom}");
        assert!(dom.contains("327 indexes, 0 problems, 220 relations, 0.5s"), "{dom}");
        let png = dir.path().join("report.png");
        let shot = format!("--screenshot={}", png.display());
        let out = std::process::Command::new(bin)
            .args(flags)
            .args([shot.as_str(), "--window-size=1000,1100", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 1000, "{} bytes", bytes.len());
        if let Ok(keep) = std::env::var("RESTORECHECK_KEEP_SCREENSHOT") {
            std::fs::copy(&png, keep).unwrap();
        }
    }
}
