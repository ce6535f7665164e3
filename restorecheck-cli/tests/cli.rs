//! The CLI contract: commands, exit codes, the JSON report, and cleanup after SIGINT.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use restorecheck_core::fixture::{SampleCluster, SampleOptions};

const BIN: &str = env!("CARGO_BIN_EXE_restorecheck");

struct Dir(PathBuf);
impl Dir {
    fn new(name: &str) -> Self {
        let p = PathBuf::from("/var/tmp/restorecheck-cli-tests").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("work")).unwrap();
        for d in [p.parent().unwrap(), p.as_path(), &p.join("work")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Dir(p)
    }
    fn work(&self) -> PathBuf {
        self.0.join("work")
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Dir, backups: &Path, archive: Option<&Path>, asserts: &str) -> PathBuf {
    let archive = archive.map(|a| format!("wal_archive = \"{}\"\n", a.display())).unwrap_or_default();
    let text = format!(
        "work_dir = \"{}\"\n\n[[check]]\nname = \"app\"\ndatabase = \"app\"\n\n[check.source]\nkind = \"basebackup\"\npath = \"{}\"\n{archive}\n{asserts}",
        dir.work().display(),
        backups.display()
    );
    let p = dir.0.join("restorecheck.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the CLI with its state (run history, notification state) kept out of the real home.
fn rc(args: &[&str]) -> (i32, String, String) {
    let state = std::env::temp_dir().join(format!("restorecheck-cli-tests-state-{}", std::process::id()));
    let out = Command::new(BIN).args(args).env("XDG_STATE_HOME", &state).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_server_under(root: &Path) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        !(cmd.contains("postgres") && cmd.contains(&*root.to_string_lossy()))
    })
}

async fn sample(dir: &Dir, rows: u32) -> SampleCluster {
    let c = SampleCluster::create(&dir.0.join("cluster"), SampleOptions::default()).await.unwrap();
    c.create_app(rows).await.unwrap();
    c
}

#[tokio::test]
async fn run_exit_codes_and_json_contract() {
    let dir = Dir::new("run");
    let c = sample(&dir, 42).await;
    c.basebackup("b1", &["-Ft", "-z", "-Xstream"]).await.unwrap();

    let good = config(
        &dir,
        &c.backups_dir(),
        None,
        "[[check.assert]]\nname = \"rows\"\nsql = \"select count(*) from registrations\"\nequals = 42\n",
    );
    let (code, out, err) = rc(&["run", "-c", good.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["verdict"], "pass");
    let ch = &v["checks"][0];
    assert_eq!(ch["name"], "app");
    assert_eq!(ch["failure"], serde_json::Value::Null);
    assert_eq!(ch["backup"]["id"], "b1");
    assert!(ch["backup"]["taken_at"].is_string());
    assert!(ch["recovery"]["end_lsn"].is_string());
    assert!(ch["recovery"]["timeline"].is_number());
    // amcheck runs by default, before the check's own assertions.
    assert_eq!(ch["assertions"][0]["name"], "amcheck");
    assert_eq!(ch["assertions"][0]["verdict"], "pass");
    assert!(ch["assertions"][0]["observed"]["indexes"].as_u64().unwrap() > 0);
    assert_eq!(ch["assertions"][1]["name"], "rows");
    assert_eq!(ch["assertions"][1]["verdict"], "pass");
    assert_eq!(ch["assertions"][1]["observed"], 42);
    for k in ["fetch", "restore", "recovery", "assert", "teardown", "total"] {
        assert!(ch["timings"][k].is_number(), "timings.{k}");
    }

    let (code, out, _) = rc(&["run", "-c", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.starts_with("PASS  app in "), "{out}");

    let bad = config(
        &dir,
        &c.backups_dir(),
        None,
        "[[check.assert]]\nsql = \"select count(*) from registrations\"\nmin = 43\n",
    );
    let (code, out, _) = rc(&["run", "-c", bad.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["checks"][0]["failure"]["phase"], "assert");
    assert_eq!(v["checks"][0]["assertions"][1]["verdict"], "fail");
    assert_eq!(v["checks"][0]["assertions"][1]["observed"], 42);

    let (code, out, _) = rc(&["run", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("FAIL  app") && out.contains("expected at least 43"), "{out}");

    assert!(std::fs::read_dir(dir.work()).unwrap().next().is_none(), "work dir left behind");
}

#[tokio::test]
async fn list_and_validate() {
    let dir = Dir::new("list");
    let c = sample(&dir, 1).await;
    c.basebackup("older", &["-Ft", "-Xstream"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.basebackup("newer", &["-Fp", "-Xstream"]).await.unwrap();
    let cfg = config(&dir, &c.backups_dir(), None, "");
    let (code, out, err) = rc(&["list", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let newer = out.find("newer").unwrap();
    let older = out.find("older").unwrap();
    assert!(newer < older, "newest first:\n{out}");
    assert_eq!(out.matches("timeline 1").count(), 2, "each backup's timeline:\n{out}");
    let (code, out, _) = rc(&["list", "-c", cfg.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["backups"][0]["id"], "newer");
    assert_eq!(v[0]["backups"][1]["kind"], "tar");
    assert_eq!(v[0]["backups"][0]["timeline"], 1);
    assert_eq!(v[0]["backups"][1]["timeline"], 1);

    let (code, out, err) = rc(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok    app"), "{out}");

    let missing = config(&dir, Path::new("/nonexistent/backups"), None, "");
    let (code, out, _) = rc(&["validate", "-c", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.contains("/nonexistent/backups"), "{out}");
}

#[test]
fn config_errors_exit_2_with_line_numbers() {
    let dir = Dir::new("cfg");
    let p = dir.0.join("bad.toml");
    std::fs::write(
        &p,
        "[[check]]\nname = \"x\"\n\n[check.source]\nkind = \"basebackup\"\npath = \"/b\"\nwal_arhive = \"/w\"\n",
    )
    .unwrap();
    let (code, _, err) = rc(&["run", "-c", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("line 7") && err.contains("wal_arhive"), "{err}");
    let (code, _, err) = rc(&["validate", "-c", dir.0.join("missing.toml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("restorecheck init"), "{err}");
    let (code, _, _) = rc(&["run", "--bogus"]);
    assert_eq!(code, 2, "usage errors exit 2 (clap)");
}

#[test]
fn an_unreadable_config_prints_the_error_then_its_cause_once() {
    let dir = Dir::new("cfg-cause");
    let missing = dir.0.join("missing.toml");
    // A folder where the file should be (tests run as root, so a mode cannot make it unreadable).
    let folder = dir.0.join("folder.toml");
    std::fs::create_dir(&folder).unwrap();
    for (path, cause) in [(&missing, "No such file or directory"), (&folder, "Is a directory")] {
        let (code, _, err) = rc(&["validate", "-c", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        let lines: Vec<&str> = err.lines().collect();
        let first = lines.iter().position(|l| l.starts_with("error: ")).expect("an error: line");
        assert!(lines[first].contains(&format!("cannot read config {}", path.display())), "{err}");
        assert!(!lines[first].contains(cause), "the cause is not repeated in the message: {err}");
        let caused: Vec<&&str> = lines.iter().filter(|l| l.starts_with("  Caused by: ")).collect();
        assert_eq!(caused.len(), 1, "exactly one Caused by line: {err}");
        assert!(caused[0].contains(cause), "{err}");
        assert_eq!(err.matches(cause).count(), 1, "the cause is printed once: {err}");
        assert_eq!(lines.get(first + 1), Some(caused[0]), "the cause follows the error: {err}");
    }
}

#[test]
fn init_writes_a_config_that_parses_and_refuses_to_overwrite() {
    let dir = Dir::new("init");
    let p = dir.0.join("restorecheck.toml");
    let (code, _, err) = rc(&["init", "-o", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    restorecheck_core::Config::load(&p).expect("the annotated example parses");
    let (code, _, err) = rc(&["init", "-o", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"));
}

#[tokio::test]
async fn sigint_during_recovery_leaves_no_server_and_no_work_dir() {
    let dir = Dir::new("sigint");
    let c = sample(&dir, 10).await;
    c.basebackup("b1", &["-Ft", "-Xnone"]).await.unwrap();
    // Enough WAL that replaying it from the archive takes a while.
    for _ in 0..6 {
        c.exec("app", "insert into registrations (email) select md5(g::text) from generate_series(1, 150000) g")
            .await
            .unwrap();
        c.switch_and_archive().await.unwrap();
    }
    let cfg = config(
        &dir,
        &c.backups_dir(),
        Some(&c.archive_dir()),
        "[[check.assert]]\nsql = \"select count(*) from registrations\"\nmin = 1\n",
    );
    let mut child = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap(), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the restored server is replaying archived WAL, then interrupt.
    let until = Instant::now() + Duration::from_secs(120);
    let mut replaying = false;
    while Instant::now() < until && !replaying {
        if let Ok(rd) = std::fs::read_dir(dir.work()) {
            for e in rd.flatten() {
                let log = std::fs::read_to_string(e.path().join("postgres.log")).unwrap_or_default();
                replaying |= log.contains("restored log file");
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(replaying, "the restore never reached WAL replay");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "cancelled runs exit 2\n{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["verdict"], "error");
    assert!(v["checks"][0]["failure"]["message"].as_str().unwrap().contains("cancelled"));
    assert!(stderr.contains("received SIGINT"), "{stderr}");
    assert!(no_server_under(&dir.work()), "a postgres process survived SIGINT");
    let left: Vec<_> = std::fs::read_dir(dir.work()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "work dir left behind: {left:?}");
}

#[test]
fn selftest_shows_damage_is_caught_on_this_machine() {
    let dir = Dir::new("selftest");
    let (code, out, err) = rc(&["selftest", "--work-dir", dir.0.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cases = v.as_array().unwrap();
    assert!(cases.len() >= 7);
    assert!(cases.iter().all(|c| c["ok"] == true), "{out}");
    assert!(cases.iter().any(|c| c["verdict"] == "fail") && cases.iter().any(|c| c["verdict"] == "pass"));
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().filter(|e| e.file_name() != "work").collect();
    assert!(left.is_empty(), "selftest left files behind");
}

#[tokio::test]
async fn run_writes_junit_and_metrics_files_atomically() {
    let dir = Dir::new("outputs");
    let c = sample(&dir, 42).await;
    c.basebackup("b1", &["-Ft", "-z", "-Xstream"]).await.unwrap();
    let report = dir.0.join("report.xml");
    let metrics = dir.0.join("restorecheck.prom");
    let (r, m) = (report.to_str().unwrap(), metrics.to_str().unwrap());

    let good = config(
        &dir,
        &c.backups_dir(),
        None,
        "[[check.assert]]\nname = \"rows\"\nsql = \"select count(*) from registrations\"\nequals = 42\n",
    );
    let args = ["run", "-c", good.to_str().unwrap(), "--format", "junit", "--output", r, "--metrics-file", m];
    let (code, out, err) = rc(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.is_empty(), "stdout gets nothing with --output: {out}");
    let xml = std::fs::read_to_string(&report).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("name"), Some("app"));
    assert_eq!(suite.attribute("failures"), Some("0"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    let cases: Vec<(String, String)> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| (n.attribute("classname").unwrap().to_string(), n.attribute("name").unwrap().to_string()))
        .collect();
    assert_eq!(suite.attribute("tests"), Some(cases.len().to_string().as_str()));
    for p in ["select", "fetch", "restore", "recovery", "assert", "teardown"] {
        assert!(cases.contains(&("app.phase".into(), p.into())), "phase {p}: {cases:?}");
    }
    assert!(cases.contains(&("app.assert".into(), "amcheck".into())), "{cases:?}");
    assert!(cases.contains(&("app.assert".into(), "rows".into())), "{cases:?}");

    let prom = std::fs::read_to_string(&metrics).unwrap();
    let value = |series: &str| -> f64 {
        let line = prom.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} in\n{prom}"));
        line[series.len()..].trim().parse().unwrap()
    };
    let success = value("restorecheck_last_success_timestamp_seconds{check=\"app\"}");
    assert_eq!(value("restorecheck_last_run_timestamp_seconds{check=\"app\"}"), success);
    assert_eq!(value("restorecheck_check_verdict{check=\"app\",verdict=\"pass\"}"), 1.0);
    assert_eq!(value("restorecheck_check_verdict{check=\"app\",verdict=\"fail\"}"), 0.0);
    assert!(value("restorecheck_phase_duration_seconds{check=\"app\",phase=\"restore\"}") > 0.0);
    assert!(value("restorecheck_check_duration_seconds{check=\"app\"}") > 0.0);
    assert!(value("restorecheck_backup_age_seconds{check=\"app\"}") >= 0.0);
    assert_eq!(value("restorecheck_assertion_value{check=\"app\",assertion=\"rows\"}"), 42.0);
    assert!(prom.contains("# TYPE restorecheck_check_verdict gauge"), "{prom}");

    // A failing run: exit 1, a <failure> in the report, last_success kept from the passing run.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let bad = config(
        &dir,
        &c.backups_dir(),
        None,
        "[[check.assert]]\nname = \"rows\"\nsql = \"select count(*) from registrations\"\nmin = 43\n",
    );
    let args = ["run", "-c", bad.to_str().unwrap(), "--format", "junit", "--output", r, "--metrics-file", m];
    let (code, out, err) = rc(&args);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    let xml = std::fs::read_to_string(&report).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("failures"), Some("1"), "{xml}");
    let failed = suite
        .children()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("rows"))
        .and_then(|n| n.children().find(|f| f.has_tag_name("failure")))
        .unwrap();
    assert!(failed.attribute("message").unwrap().contains("expected at least 43"), "{xml}");

    let prom = std::fs::read_to_string(&metrics).unwrap();
    let value = |series: &str| -> f64 {
        let line = prom.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} in\n{prom}"));
        line[series.len()..].trim().parse().unwrap()
    };
    assert_eq!(value("restorecheck_last_success_timestamp_seconds{check=\"app\"}"), success);
    assert!(value("restorecheck_last_run_timestamp_seconds{check=\"app\"}") > success);
    assert_eq!(value("restorecheck_check_verdict{check=\"app\",verdict=\"fail\"}"), 1.0);
    assert_eq!(value("restorecheck_check_verdict{check=\"app\",verdict=\"pass\"}"), 0.0);

    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
    assert!(std::fs::read_dir(dir.work()).unwrap().next().is_none(), "work dir left behind");
}

#[tokio::test]
async fn run_records_history_and_writes_an_html_report() {
    let dir = Dir::new("history");
    let c = sample(&dir, 42).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    let cfg = config(
        &dir,
        &c.backups_dir(),
        None,
        "[[check.assert]]\nname = \"rows\"\nsql = \"select count(*) from registrations\"\nequals = 42\n",
    );
    let (cfg, hist) = (cfg.to_str().unwrap().to_string(), dir.0.join("history.sqlite"));
    let h = hist.to_str().unwrap();
    for _ in 0..2 {
        let (code, out, err) = rc(&["run", "-c", &cfg, "--history", h]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(!err.contains("warning"), "{err}");
    }
    let (code, out, err) = rc(&["history", "--history", h, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{out}");
    assert_ne!(runs[0]["run_id"], runs[1]["run_id"]);
    assert!(runs.iter().all(|r| r["check"] == "app" && r["verdict"] == "pass" && r["backup_id"] == "b1"));
    assert!(runs[0]["timings"]["restore"].as_f64().unwrap() > 0.0);
    assert!(runs[0]["backup_age_seconds"].is_number());
    assert_eq!(runs[1]["assertions"][1]["observed"], 42);
    let (code, out, _) = rc(&["history", "--history", h, "--check", "app", "--limit", "1"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains("PASS  app")).count(), 1, "{out}");
    assert!(out.contains("rows: 42"), "{out}");

    let html = dir.0.join("f.html");
    let args = ["run", "-c", &cfg, "--history", h, "--format", "html", "--output", html.to_str().unwrap()];
    let (code, out, err) = rc(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("Restore time (3 runs)"), "{page}");
    assert!(!page.contains("http://") && !page.contains("https://"));

    // An RTO the restore cannot meet fails the check; --no-history leaves the store alone.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("name = \"app\"\n", "name = \"app\"\nrto = \"1ms\"\n")).unwrap();
    let (code, out, _) = rc(&["run", "-c", &cfg, "--no-history", "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["checks"][0]["failure"]["phase"], "assert");
    assert!(v["checks"][0]["failure"]["message"].as_str().unwrap().contains("RTO of 1ms"), "{out}");
    let (_, out, _) = rc(&["history", "--history", h, "--format", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len(), 3);
    assert!(std::fs::read_dir(dir.work()).unwrap().next().is_none(), "work dir left behind");
}

/// What a test server received: HTTP `(request line, body)` or SMTP `("DATA", message)`.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A tiny HTTP server on 127.0.0.1 answering 200 to everything, recording each request.
fn http_server() -> (u16, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            g.lock().unwrap().push((line.trim().to_string(), String::from_utf8_lossy(&body).into_owned()));
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// A minimal plain SMTP server recording each message's DATA (and the AUTH line, to prove the
/// password is never sent in clear text inside the message).
fn smtp_server() -> (u16, Received) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 localhost ESMTP test\r\n");
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    b"250-localhost\r\n250 AUTH PLAIN LOGIN\r\n"
                } else if cmd.starts_with("AUTH") {
                    g.lock().unwrap().push(("AUTH".into(), line.clone()));
                    b"235 2.7.0 ok\r\n"
                } else if cmd.starts_with("DATA") {
                    let _ = w.write_all(b"354 go on\r\n");
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    g.lock().unwrap().push(("DATA".into(), data));
                    b"250 2.0.0 queued\r\n"
                } else if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    b"250 ok\r\n"
                };
                if w.write_all(reply).is_err() {
                    break;
                }
            }
        }
    });
    (port, got)
}

const WEBHOOK_TOKEN: &str = "T0KEN-s3cret-hook-4711";
const SMTP_PASSWORD: &str = "pw-s3cret-smtp-0815";

fn notify_config(dir: &Dir, http: u16, smtp: u16, backups: &Path) -> PathBuf {
    let text = format!(
        r#"work_dir = "{work}"
heartbeat = "http://127.0.0.1:{http}/ping/hb"

[[notify]]
kind = "webhook"
url_env = "RC_TEST_WEBHOOK_URL"

[[notify]]
kind = "command"
command = "/bin/sh"
args = ["-c", "cat > {cmd_out}"]

[[notify]]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp}
tls = "none"
from = "restorecheck@example.invalid"
to = ["ops@example.invalid"]
username = "mailer"
password_env = "RC_TEST_SMTP_PASSWORD"

[[check]]
name = "app"
database = "app"

[check.source]
kind = "basebackup"
path = "{backups}"
"#,
        work = dir.work().display(),
        cmd_out = dir.0.join("command.json").display(),
        backups = backups.display(),
    );
    let p = dir.0.join("notify.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn rc_notify(dir: &Dir, http: u16, cfg: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap(), "--format", "json", "--no-history"])
        .env("RC_TEST_WEBHOOK_URL", format!("http://127.0.0.1:{http}/hook/{WEBHOOK_TOKEN}"))
        .env("RC_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
        .env("XDG_STATE_HOME", dir.0.join("state"))
        .env("RESTORECHECK_LOG", "debug")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn run_notifies_on_failure_and_pings_the_heartbeat_on_pass() {
    let dir = Dir::new("notify");
    let (http, requests) = http_server();
    let (smtp, mails) = smtp_server();
    let no_secret = |what: &str, text: &str| {
        assert!(!text.contains(WEBHOOK_TOKEN) && !text.contains(SMTP_PASSWORD), "secret in {what}: {text}");
    };

    // A failing run (no backup folder: fails in the select phase) is told, the heartbeat is not pinged.
    let cfg = notify_config(&dir, http, smtp, &dir.0.join("no-such-backups"));
    let (code, out, err) = rc_notify(&dir, http, &cfg);
    assert_ne!(code, 0, "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(report["verdict"], "pass");
    assert_eq!(report["checks"][0]["failure"]["phase"], "select");
    let got = requests.lock().unwrap().clone();
    let hooks: Vec<_> = got.iter().filter(|(l, _)| l.starts_with("POST /hook/")).collect();
    assert_eq!(hooks.len(), 1, "{got:?}\n{err}");
    let body: serde_json::Value = serde_json::from_str(&hooks[0].1).unwrap();
    assert_eq!(body["verdict"], report["verdict"]);
    assert_eq!(body["checks"][0]["name"], "app");
    assert!(!got.iter().any(|(l, _)| l.contains("/ping/")), "heartbeat pinged after a failure: {got:?}");
    let command_body = std::fs::read_to_string(dir.0.join("command.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&command_body).unwrap();
    assert_eq!(v["checks"][0]["failure"]["phase"], "select");
    let m = mails.lock().unwrap().clone();
    let data: Vec<_> = m.iter().filter(|(k, _)| k == "DATA").collect();
    assert_eq!(data.len(), 1, "{m:?}\n{err}");
    assert!(m.iter().any(|(k, _)| k == "AUTH"), "logged in with the password from password_env: {m:?}");
    assert!(data[0].1.contains("Subject: restorecheck") && data[0].1.contains("app"), "{}", data[0].1);
    for (what, text) in [("stdout", &out), ("stderr", &err), ("command body", &command_body)] {
        no_secret(what, text);
    }
    for (_, b) in got.iter().chain(data.iter().copied()) {
        no_secret("a received body", b);
    }

    // A passing run pings the heartbeat and tells nobody (on = "failure").
    let c = sample(&dir, 1).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    std::fs::remove_file(dir.0.join("command.json")).unwrap();
    let cfg = notify_config(&dir, http, smtp, &c.backups_dir());
    let (code, out, err) = rc_notify(&dir, http, &cfg);
    assert_eq!(code, 0, "{out}\n{err}");
    let got2 = requests.lock().unwrap().clone();
    let new: Vec<_> = got2[got.len()..].to_vec();
    assert!(new.iter().any(|(l, _)| l.starts_with("GET /ping/hb")), "{new:?}\n{err}");
    assert!(!new.iter().any(|(l, _)| l.starts_with("POST")), "webhook called after a pass: {new:?}");
    assert!(!dir.0.join("command.json").exists(), "command run after a pass");
    assert_eq!(mails.lock().unwrap().iter().filter(|(k, _)| k == "DATA").count(), 1, "mail after a pass");
    for (what, text) in [("stdout", &out), ("stderr", &err)] {
        no_secret(what, text);
    }
}

#[test]
fn notify_config_errors_exit_2() {
    let dir = Dir::new("notify-config");
    let base = "[[check]]\nname = \"app\"\n[check.source]\nkind = \"basebackup\"\npath = \"/nonexistent\"\n";
    for (bad, says) in [
        ("[[notify]]\nkind = \"webhook\"\n", "exactly one of url and url_env"),
        ("[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\nformat = \"xml\"\n", "xml"),
        ("[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\ncolour = 1\n", "colour"),
        ("[[notify]]\nkind = \"pigeon\"\n", "pigeon"),
        ("[[notify]]\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = []\n", "at least one address"),
        (
            "[[notify]]\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nusername = \"u\"\n",
            "needs a password",
        ),
        ("[[notify]]\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\ntls = \"ssl\"\n", "ssl"),
    ] {
        let p = dir.0.join("bad.toml");
        std::fs::write(&p, format!("{bad}\n{base}")).unwrap();
        let (code, out, err) = rc(&["validate", "-c", p.to_str().unwrap()]);
        assert_eq!(code, 2, "{bad}: {out}{err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[tokio::test]
async fn jobs_run_checks_concurrently_and_report_them_in_order() {
    let dir = Dir::new("jobs");
    let c = sample(&dir, 5).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    let mut text = format!("work_dir = \"{}\"\n", dir.work().display());
    for name in ["first", "second", "third"] {
        text.push_str(&format!(
            "\n[[check]]\nname = \"{name}\"\ndatabase = \"app\"\n[check.source]\nkind = \"basebackup\"\npath = \"{}\"\n\
             [[check.assert]]\nsql = \"select count(*) from registrations\"\nequals = 5\n",
            c.backups_dir().display()
        ));
    }
    let cfg = dir.0.join("jobs.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = rc(&["run", "-c", cfg.to_str().unwrap(), "--jobs", "2", "--format", "json", "--no-history"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    let (code, _, err) = rc(&["run", "-c", cfg.to_str().unwrap(), "--jobs", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(std::fs::read_dir(dir.work()).unwrap().next().is_none(), "work dir left behind");
}

#[test]
fn metrics_are_pushed_to_a_pushgateway_without_showing_its_credentials() {
    let dir = Dir::new("pushgw");
    let (port, got) = http_server();
    let cfg = config(&dir, Path::new("/nonexistent/backups"), None, "");
    let state = dir.0.join("state");
    let out = Command::new(BIN)
        .args(["-vv", "run", "-c", cfg.to_str().unwrap(), "--format", "json", "--pushgateway-env", "PGW_URL"])
        .env("PGW_URL", format!("http://restorecheck:pw-7c1d9e@127.0.0.1:{port}"))
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a source that cannot be read is an error");
    let until = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let received = got.lock().unwrap().clone();
    let (line, body) = received.first().expect("the Pushgateway received nothing");
    assert!(line.starts_with("PUT /metrics/job/restorecheck "), "{line}");
    assert!(body.contains("restorecheck_check_verdict{check=\"app\",verdict=\"error\"} 1"), "{body}");
    for text in [String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)] {
        assert!(!text.contains("pw-7c1d9e"), "the Pushgateway password leaked: {text}");
    }
}

#[test]
fn the_dockerfile_builds_an_image_that_runs_the_cli() {
    // The repository's docker/Dockerfile on a locally built PostgreSQL image (no registry here).
    let dir = Dir::new("image");
    let ctx = dir.0.join("context");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(BIN, ctx.join("restorecheck")).unwrap();
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/Dockerfile");
    let tag = format!("restorecheck-test:{}", std::process::id());
    let build = Command::new("docker")
        .args(["build", "-q", "--build-arg", "BASE=restorecheck/postgres:15", "-t", &tag, "-f"])
        .arg(&dockerfile)
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let run = Command::new("docker").args(["run", "--rm", &tag, "--version"]).output().unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("restorecheck "));
}

#[test]
fn demo_passes_cleans_up_and_prints_the_next_three_commands() {
    let dir = Dir::new("demo");
    let (code, out, err) = rc(&["demo", "--work-dir", dir.work().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("PASS  demo"), "{out}");
    let next = err.split("demo: next, on your own backups:").nth(1).unwrap_or_else(|| panic!("no next steps: {err}"));
    let lines: Vec<&str> = next.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "{next}");
    for (line, verb) in lines.iter().zip(["init -o ", "validate -c ", "run -c "]) {
        assert!(line.contains(verb) && line.contains("restorecheck.toml"), "{line}");
    }
    assert!(std::fs::read_dir(dir.work()).unwrap().next().is_none(), "demo left files behind");
    assert!(no_server_under(&dir.work()));
}

#[test]
fn outputs_never_follow_planted_symlinks_and_are_private() {
    let dir = Dir::new("output-links");
    // A check that cannot find a backup: quick, and it still writes every output.
    let empty = dir.0.join("no-backups");
    std::fs::create_dir_all(&empty).unwrap();
    let cfg = config(&dir, &empty, None, "");
    // Root-only files outside, which links at the output paths point at.
    let outside = dir.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victims: Vec<PathBuf> = ["report", "metrics", "history"].iter().map(|n| outside.join(n)).collect();
    for v in &victims {
        std::fs::write(v, "root-only, untouched\n").unwrap();
        std::fs::set_permissions(v, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let report = dir.0.join("report.json");
    let metrics = dir.0.join("restorecheck.prom");
    let history = dir.0.join("history.db");
    for (link, v) in [&report, &metrics, &history].into_iter().zip(&victims) {
        std::os::unix::fs::symlink(v, link).unwrap();
    }
    let args = [
        "run",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "--output",
        report.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ];
    let (code, out, err) = rc(&args);
    assert_ne!(code, 0, "no backup: not a pass\n{out}\n{err}");
    for v in &victims {
        assert_eq!(
            std::fs::read_to_string(v).unwrap(),
            "root-only, untouched\n",
            "{} was written through",
            v.display()
        );
    }
    for p in [&report, &metrics] {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert!(m.file_type().is_file(), "{} is a regular file now", p.display());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{}", p.display());
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["checks"][0]["name"], "app", "{json}");
    // The history is opened in place: a link there is refused (a warning), never followed.
    assert!(std::fs::symlink_metadata(&history).unwrap().file_type().is_symlink());
    assert!(err.contains("symbolic link"), "{err}");
    // No temp file left beside the outputs.
    let names: Vec<String> =
        std::fs::read_dir(&dir.0).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");

    // --output-mode: another mode on request, for a fresh file and a replaced one; nonsense refused.
    let fresh = dir.0.join("fresh.json");
    let mut args2 = args.to_vec();
    args2[6] = fresh.to_str().unwrap();
    args2.extend(["--output-mode", "0640"]);
    let (code, out, err) = rc(&args2);
    assert_ne!(code, 0, "{out}\n{err}");
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::metadata(&report).unwrap().permissions().mode() & 0o7777, 0o600);
    let fresh_history = dir.0.join("fresh-history.db");
    let (code, _, err) = rc(&[
        "run",
        "-c",
        cfg.to_str().unwrap(),
        "--output",
        fresh.to_str().unwrap(),
        "--history",
        fresh_history.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(std::fs::metadata(&fresh_history).unwrap().permissions().mode() & 0o7777, 0o600);
    let (code, _, err) = rc(&["run", "-c", cfg.to_str().unwrap(), "--output-mode", "4755"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("output mode"), "{err}");
}
