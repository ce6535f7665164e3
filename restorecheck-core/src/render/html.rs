//! A self-contained HTML report: the run's report plus, per check, charts of the restore time
//! and the backup age over the history ([`crate::history`]) as inline SVG. No scripts, no
//! external assets: one file to attach to a mail or publish as a CI artifact.

use std::fmt::Write as _;

use crate::history::Row;
use crate::report::{human_secs, CheckReport, Report, Verdict};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
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
            let observed = a.observed.as_ref().map(|v| v.to_string()).unwrap_or_default();
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
    let mut points: Vec<(f64, Option<f64>, Verdict)> = history
        .iter()
        .filter(|r| r.check == c.name)
        .map(|r| (r.timings.total, r.backup_age_seconds, r.verdict))
        .collect();
    if !history.iter().any(|r| r.check == c.name && r.run_id == report.run_id) {
        points.push((c.timings.total, c.backup.age_seconds, c.verdict));
    }
    let times: Vec<(Option<f64>, Verdict)> = points.iter().map(|p| (Some(p.0), p.2)).collect();
    let ages: Vec<(Option<f64>, Verdict)> = points.iter().map(|p| (p.1, p.2)).collect();
    out.push_str(&chart("Restore time", &times));
    out.push_str(&chart("Backup age", &ages));
    out.push('\n');
}

/// A line chart of `values` (seconds; `None` are gaps), one dot per run coloured by verdict.
fn chart(title: &str, values: &[(Option<f64>, Verdict)]) -> String {
    const W: f64 = 420.0;
    const H: f64 = 180.0;
    const L: f64 = 60.0; // left margin for the axis labels
    const T: f64 = 24.0;
    const B: f64 = 20.0;
    let max = values.iter().filter_map(|v| v.0).fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let n = values.len();
    let x = |i: usize| if n <= 1 { L + (W - L) / 2.0 } else { L + 8.0 + (W - L - 16.0) * i as f64 / (n - 1) as f64 };
    let y = |v: f64| T + (H - T - B) * (1.0 - v / max);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure class=\"chart\"><svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\">\
<title>{t}</title><text x=\"{L}\" y=\"14\" font-size=\"13\">{t} ({n} runs)</text>\
<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{yb}\" stroke=\"#999\"/><line x1=\"{L}\" y1=\"{yb}\" x2=\"{W}\" y2=\"{yb}\" stroke=\"#999\"/>\
<text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{top}</text><text x=\"{lx}\" y=\"{yb}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        t = escape(title),
        yb = H - B,
        lx = L - 4.0,
        ty = T + 4.0,
        top = human_secs(max),
    );
    let pts: Vec<String> =
        values.iter().enumerate().filter_map(|(i, v)| v.0.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
    if pts.len() > 1 {
        let _ =
            write!(s, "<polyline fill=\"none\" stroke=\"#2c6fbb\" stroke-width=\"1.5\" points=\"{}\"/>", pts.join(" "));
    }
    for (i, (v, verdict)) in values.iter().enumerate() {
        if let Some(v) = v {
            let colour = match verdict {
                Verdict::Pass => "#17813a",
                Verdict::Fail => "#c0392b",
                Verdict::Error => "#b9770e",
            };
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{} {}</title></circle>",
                x(i),
                y(*v),
                verdict,
                human_secs(*v)
            );
        }
    }
    s.push_str("</svg></figure>");
    s
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
        let old = Report::new("old".into(), chrono::Utc::now(), vec![check("app", 3.0, Verdict::Fail)]);
        let dir = tempfile::tempdir().unwrap();
        let mut h = crate::history::History::open(&dir.path().join("h.sqlite")).unwrap();
        h.append(&old).unwrap();
        let file = dir.path().join("report.html");
        std::fs::write(&file, render(&rep, &h.query(None, 10).unwrap())).unwrap();
        let url = format!("file://{}", file.display());
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run"];
        let dom = std::process::Command::new(bin).args(flags).args(["--dump-dom", &url]).output().unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout);
        assert_eq!(dom.matches("<svg").count(), 2, "{dom}");
        assert_eq!(dom.matches("<polyline").count(), 2, "{dom}");
        assert!(dom.contains("Restore time (2 runs)"), "{dom}");
        let png = dir.path().join("report.png");
        let shot = format!("--screenshot={}", png.display());
        let out = std::process::Command::new(bin)
            .args(flags)
            .args([shot.as_str(), "--window-size=900,700", &url])
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
