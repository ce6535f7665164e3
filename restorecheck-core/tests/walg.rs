//! Source `walg` against a STAND-IN for `wal-g`: no WAL-G binary can be installed on this
//! machine (not in Debian, not on PyPI, no Go module proxy), so each test writes a small shell
//! script that implements the documented WAL-G commands and output formats the adapter uses
//! (`backup-list --json --detail`, `st cat` of a sentinel, `backup-fetch DIR NAME`,
//! `wal-show --detailed-json`, `wal-fetch` exiting 74 for "not found" and 1 for other errors)
//! over real backups: pg_basebackup -Fp -Xnone copies of a real sample cluster and the WAL that
//! cluster really archived. What these tests prove is the adapter's side (parsing, the
//! environment reaching the tool and the restored server, the exit-code mapping, completeness);
//! WAL-G's own behaviour is taken from its documentation and source, not exercised.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use restorecheck_core::fixture::SampleCluster;
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::source::{Artifact, FetchRequest, WalSupply};
use restorecheck_core::sources::{WalgConfig, WalgSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::workdir::WorkDir;
use restorecheck_core::{BackupSource, Check, Config, ErrorKind, Registry, RunContext};

const SECRET: &str = "walg-secret-9c1d7e3b";

/// The stand-in `wal-g`. Storage layout (its own, simpler than WAL-G's): `$WALG_FILE_PREFIX`
/// holds `list.json` (what `backup-list --json --detail` prints), `basebackups_005/<name>/` (a
/// plain backup), `basebackups_005/<name>_backup_stop_sentinel.json` and `wal_005/<segment>`.
/// It refuses to work without the storage variable and the secret, like a real tool without its
/// configuration, and appends every call to `$STANDIN_CALLS`.
const STAND_IN: &str = include_str!("common/fake-wal-g.sh");

struct Storage {
    prefix: PathBuf,
    stand_in: PathBuf,
    env_file: PathBuf,
    calls: PathBuf,
}

/// Writes the stand-in and a storage holding backup `b1` (taken by the real pg_basebackup in
/// `backups/b1`) and a copy of the cluster's real WAL archive.
async fn storage(dir: &TestDir, c: &SampleCluster, backup: &Path) -> Storage {
    let prefix = dir.sub("walg-storage");
    let base = prefix.join("basebackups_005");
    std::fs::create_dir_all(&base).unwrap();
    copy(backup, &base.join("base_b1"));
    copy(&c.archive_dir(), &prefix.join("wal_005"));
    let label = std::fs::read_to_string(backup.join("backup_label")).unwrap();
    let start_seg = start_segment(&label);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("backup_manifest")).unwrap()).unwrap();
    let lsn = |s: &str| {
        let (hi, lo) = s.split_once('/').unwrap();
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
    };
    let ranges = manifest["WAL-Ranges"].as_array().unwrap();
    let start = lsn(ranges[0]["Start-LSN"].as_str().unwrap());
    let finish = lsn(ranges.last().unwrap()["End-LSN"].as_str().unwrap());
    let version: String =
        c.client("postgres").await.unwrap().query_one("show server_version_num", &[]).await.unwrap().get(0);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    // Documented `backup-list --json --detail` fields (BackupTime + ExtendedMetadataDto).
    let list = serde_json::json!([{
        "backup_name": "base_b1", "time": now, "wal_file_name": start_seg, "storage_name": "default",
        "start_time": now, "finish_time": now, "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ", "hostname": "stand-in",
        "data_dir": c.pgdata(), "pg_version": version.parse::<u64>().unwrap(), "start_lsn": start, "finish_lsn": finish,
        "is_permanent": false, "system_identifier": 7312345678901234567u64, "uncompressed_size": 1000, "compressed_size": 400
    }]);
    std::fs::write(prefix.join("list.json"), list.to_string()).unwrap();
    let sentinel = serde_json::json!({"LSN": start, "FinishLSN": finish, "PgVersion": 150000,
        "Spec": {"base_prefix": c.pgdata(), "tablespaces": []}});
    std::fs::write(base.join("base_b1_backup_stop_sentinel.json"), sentinel.to_string()).unwrap();

    let stand_in = dir.path().join("fake-wal-g");
    std::fs::write(&stand_in, STAND_IN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env_file = dir.path().join("walg.env");
    std::fs::write(&env_file, format!("# credentials\nAWS_SECRET_ACCESS_KEY={SECRET}\n")).unwrap();
    let calls = dir.path().join("calls.log");
    std::fs::write(&calls, "").unwrap();
    std::fs::set_permissions(&calls, std::fs::Permissions::from_mode(0o666)).unwrap();
    Storage { prefix, stand_in, env_file, calls }
}

fn walg_check(s: &Storage) -> Check {
    let cfg: WalgConfig = toml::from_str(&format!(
        "binary = \"{}\"\nenv_file = \"{}\"\nenv = {{ WALG_FILE_PREFIX = \"{}\", STANDIN_CALLS = \"{}\" }}\n",
        s.stand_in.display(),
        s.env_file.display(),
        s.prefix.display(),
        s.calls.display()
    ))
    .unwrap();
    Check::new(
        "walg",
        Arc::new(WalgSource::new(cfg)),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    )
    .database("app")
    .timeout(std::time::Duration::from_secs(120))
}

/// Every path under `root` with its size and modification time.
fn tree_listing(root: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

fn assert_fail_in(r: &CheckReport, phase: Phase) {
    assert_eq!(r.verdict, Verdict::Fail, "expected FAIL, got {:?} {:?}", r.verdict, r.failure);
    assert_eq!(r.failure.as_ref().map(|f| f.phase), Some(phase), "{:?}", r.failure);
}

/// A cluster with `rows` rows, backup b1 (-Fp -Xnone), then `switches` rounds of 10 more rows
/// and a WAL switch; returns the segments archived after the backup.
async fn scenario(dir: &TestDir, rows: u32, switches: usize) -> (SampleCluster, PathBuf, Vec<String>) {
    let c = cluster(dir, rows).await;
    let b = c.basebackup("b1", &["-Fp", "-Xnone"]).await.unwrap();
    let mut segs = Vec::new();
    for _ in 0..switches {
        c.add_rows(10).await.unwrap();
        segs.push(c.switch_and_archive().await.unwrap());
    }
    (c, b, segs)
}

#[tokio::test]
async fn standin_walg_good_backup_with_later_writes_passes_with_wal_from_wal_fetch() {
    let dir = TestDir::new("walg-good");
    let (c, b, _) = scenario(&dir, 40, 2).await;
    let s = storage(&dir, &c, &b).await;
    let before = tree_listing(&s.prefix);
    let r = run(&dir, walg_check(&s).assert(sql_eq("select count(*) from registrations", 60))).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.backup.id.as_deref(), Some("base_b1"));
    assert_eq!(r.backup.pg_major, Some(15));
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    let reasons: Vec<&str> = r.recovery.expected_end.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons.iter().any(|e| e.contains("wal-g wal-show")), "{reasons:?}");
    let calls = std::fs::read_to_string(&s.calls).unwrap();
    for cmd in [
        "backup-list --json --detail",
        "st cat basebackups_005/base_b1_backup_stop_sentinel.json",
        "backup-fetch ",
        "wal-show --detailed-json",
        "wal-fetch ",
    ] {
        assert!(calls.contains(cmd), "the stand-in was not asked for `{cmd}`:\n{calls}");
    }
    assert!(calls.lines().filter(|l| l.starts_with("wal-fetch ")).count() >= 2, "{calls}");
    assert_eq!(tree_listing(&s.prefix), before, "the storage was written to");
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(SECRET), "the secret leaked into the report");
    assert!(!format!("{:?}", walg_check(&s)).contains(SECRET), "the secret leaked into Debug output");
}

#[tokio::test]
async fn standin_walg_missing_wal_segment_mid_archive_fails_in_recovery() {
    let dir = TestDir::new("walg-gap");
    let (c, b, segs) = scenario(&dir, 10, 4).await;
    let s = storage(&dir, &c, &b).await;
    // wal-fetch of this segment exits 74 ("not found"): PostgreSQL ends recovery there.
    std::fs::remove_file(s.prefix.join("wal_005").join(&segs[1])).unwrap();
    let r = run(&dir, walg_check(&s).assert(sql_eq("select count(*) from registrations", 50))).await;
    assert_fail_in(&r, Phase::Recovery);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("recovery stopped at") && msg.contains(&segs[3]), "{msg}");
    assert!(msg.contains(&format!("missing segment(s) on that timeline: {}", segs[1])), "{msg}");
    assert!(r.assertions.is_empty(), "no assertion may run on a short recovery");
}

#[tokio::test]
async fn standin_walg_storage_error_stops_recovery_with_an_error_never_a_pass() {
    let dir = TestDir::new("walg-storage-error");
    let (c, b, segs) = scenario(&dir, 10, 3).await;
    let s = storage(&dir, &c, &b).await;
    // wal-fetch exits 1 for this segment (a storage error, not "not found").
    std::fs::write(s.prefix.join("storage-error"), format!("{}\n", segs[1])).unwrap();
    let r = run(&dir, walg_check(&s).assert(sql_eq("select count(*) from registrations", 40))).await;
    assert_ne!(r.verdict, Verdict::Pass, "a storage error must never pass");
    let f = r.failure.unwrap();
    assert_eq!(f.phase, Phase::Recovery, "{f:?}");
    let log = f.log_tail.unwrap_or_default();
    assert!(log.contains("failed with exit code 1; stopping recovery"), "{log}");
    assert!(log.contains("exit code 200"), "{log}");
}

#[tokio::test]
async fn missing_walg_binary_is_a_tooling_error_with_an_install_hint() {
    let dir = TestDir::new("walg-missing");
    let cfg: WalgConfig = toml::from_str("binary = \"/nonexistent/wal-g\"").unwrap();
    let check = Check::new(
        "walg",
        Arc::new(WalgSource::new(cfg)),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    );
    let r = run(&dir, check).await;
    assert_eq!(r.verdict, Verdict::Error);
    let f = r.failure.unwrap();
    assert_eq!(f.phase, Phase::Select);
    assert!(
        f.message.contains("/nonexistent/wal-g does not exist") && f.message.contains("install WAL-G"),
        "{}",
        f.message
    );
}

fn walg_source(s: &Storage) -> WalgSource {
    WalgSource::new(
        toml::from_str(&format!(
            "binary = \"{}\"\nenv_file = \"{}\"\nenv = {{ WALG_FILE_PREFIX = \"{}\", STANDIN_CALLS = \"{}\" }}\n",
            s.stand_in.display(),
            s.env_file.display(),
            s.prefix.display(),
            s.calls.display()
        ))
        .unwrap(),
    )
}

#[tokio::test]
async fn every_walg_run_goes_through_the_checks_toolbox_with_its_environment() {
    let dir = TestDir::new("walg-toolbox");
    let (c, b, _) = scenario(&dir, 5, 1).await;
    let s = storage(&dir, &c, &b).await;
    let src = walg_source(&s);
    // The storage is what the tool reads; the env_file is read by restorecheck, not mounted.
    let ro = src.read_only_paths();
    assert!(ro.contains(&s.prefix) && !ro.iter().any(|p| s.env_file.starts_with(p)), "{ro:?}");

    let tools = RecordingTools::new();
    let ctx = RecordingTools::context(&tools);
    let chosen = src.select(&ctx, None).await.unwrap();
    let work = WorkDir::create(&dir.sub("work"), &ctx.run_id, 0).unwrap();
    let req = FetchRequest::new(work.data_dir(), work.tablespace_dir(), work.scratch_dir());
    let artifact = src.fetch(&ctx, &chosen, &req).await.unwrap();
    let prepared = tools.prepared();
    // backup-list (select, fetch), st cat, backup-fetch, wal-show: each one the located stand-in
    // with the configured environment handed to the toolbox, the secret included.
    assert_eq!(prepared.len(), 5, "{prepared:?}");
    for (program, env, _) in &prepared {
        assert_eq!(program, &s.stand_in);
        for k in ["WALG_FILE_PREFIX", "STANDIN_CALLS", "AWS_SECRET_ACCESS_KEY"] {
            assert!(env.iter().any(|e| e == k), "{k} not in {env:?}");
        }
    }
    assert_eq!(prepared.last().unwrap().2, Some(15), "fetch passes the backup's major: {prepared:?}");
    let calls = std::fs::read_to_string(&s.calls).unwrap();
    assert_eq!(calls.lines().count(), prepared.len(), "a wal-g run bypassed the toolbox:\n{calls}");
    // The restore_command runs the located program too.
    let Artifact::Physical(p) = artifact else { panic!("not physical") };
    let WalSupply::Fetch(fetch) = &p.wal else { panic!("no WAL fetch") };
    let script = std::fs::read_to_string(&fetch.program).unwrap();
    assert!(script.contains(&format!("'{}' wal-fetch", s.stand_in.display())), "{script}");
    work.remove().unwrap();
}

#[tokio::test]
async fn walg_missing_where_the_tools_run_fails_before_anything_is_fetched() {
    let dir = TestDir::new("walg-no-tool");
    let (c, b, _) = scenario(&dir, 5, 0).await;
    let s = storage(&dir, &c, &b).await;
    let src = walg_source(&s);
    let chosen = src.select(&RunContext::new(), None).await.unwrap();
    std::fs::write(&s.calls, "").unwrap();
    let tools = RecordingTools::without(&["fake-wal-g"]);
    let ctx = RecordingTools::context(&tools);
    let e = src.list(&ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tooling, "{e}");
    assert!(e.to_string().contains(NOT_IN_IMAGE) && e.to_string().contains("install WAL-G"), "{e}");
    let work = WorkDir::create(&dir.sub("work"), &ctx.run_id, 0).unwrap();
    let req = FetchRequest::new(work.data_dir(), work.tablespace_dir(), work.scratch_dir());
    let e = src.fetch(&ctx, &chosen, &req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tooling, "{e}");
    assert!(e.to_string().contains(NOT_IN_IMAGE), "{e}");
    assert_eq!(std::fs::read_dir(work.data_dir()).unwrap().count(), 0, "something was fetched");
    assert_eq!(std::fs::read_to_string(&s.calls).unwrap(), "", "wal-g ran");
    assert!(tools.prepared().is_empty(), "{:?}", tools.calls());
    work.remove().unwrap();
}

#[test]
fn walg_and_wale_are_registered_kinds() {
    let toml = r#"
[[check]]
name = "g"
[check.source]
kind = "walg"
env = { WALG_S3_PREFIX = "s3://bucket/pg" }
env_file = "/etc/restorecheck/walg.env"
backup = "oldest"
recovery_target = "immediate"

[[check]]
name = "e"
[check.source]
kind = "wale"
envdir = "/etc/wal-e.d/env"
binary = "/opt/wal-e/bin/wal-e"
"#;
    let c = Config::parse(toml, &Registry::default()).unwrap();
    assert_eq!(c.checks[0].source.kind(), "walg");
    assert_eq!(c.checks[0].source.describe(), "walg:s3://bucket/pg");
    assert_eq!(c.checks[1].source.kind(), "wale");
    let bad = toml.replace("envdir =", "env_dir =");
    match Config::parse(&bad, &Registry::default()) {
        Err(restorecheck_core::Error::Config { message, line, .. }) => {
            assert!(message.contains("env_dir"), "{message}");
            assert_eq!(line, Some(15));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
