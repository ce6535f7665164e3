//! Real Barman backups (the installed `barman`, `backup_method = postgres` over the sample
//! cluster's Unix socket, WAL shipped by `archive_command` into Barman's incoming folder, no
//! ssh) restored by source `barman` and the `local` target: a good backup passes with the rows
//! written after it, WAL missing from Barman's store fails, and the catalog is never changed.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{Phase, Verdict};
use restorecheck_core::source::RecoveryTarget;
use restorecheck_core::sources::{BarmanConfig, BarmanSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{BackupSource, Check, RunContext};

const SERVER: &str = "rc";

struct Setup {
    cluster: SampleCluster,
    conf: PathBuf,
    home: PathBuf,
}

/// Runs `barman -c <conf> …` (as root: Barman switches to its `barman_user` itself).
fn barman(conf: &Path, args: &[&str]) -> String {
    let out = Command::new("barman")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("barman is installed (scripts/setup.sh --test installs it)");
    assert!(
        out.status.success(),
        "barman {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn barman_owned(dir: &TestDir, name: &str) -> PathBuf {
    let p = dir.sub(name);
    let u = nix::unistd::User::from_name("barman").unwrap().expect("OS user barman (the barman package creates it)");
    std::os::unix::fs::chown(&p, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    p
}

/// A sample cluster shipping WAL to a Barman server section, and one backup taken by Barman.
async fn setup(dir: &TestDir, rows: u32, before_backup: impl AsyncFnOnce(&SampleCluster)) -> Setup {
    let home = barman_owned(dir, "barman-home");
    let logs = barman_owned(dir, "barman-log");
    let locks = barman_owned(dir, "barman-lock");
    let confd = dir.sub("barman.d");
    // The incoming folder exists before the cluster archives into it; the cluster's OS user
    // writes, Barman's moves files out.
    let incoming = home.join(SERVER).join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let u = nix::unistd::User::from_name("barman").unwrap().unwrap();
    for p in [home.join(SERVER), incoming.clone()] {
        std::os::unix::fs::chown(&p, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    }
    std::fs::set_permissions(&incoming, std::fs::Permissions::from_mode(0o777)).unwrap();
    let archive = dir.path().join("cluster/archive");
    let ship = format!(
        "archive_command = 'cp %p {i}/%f && chmod 0644 {i}/%f && test ! -f {a}/%f && cp %p {a}/%f'",
        i = incoming.display(),
        a = archive.display()
    );
    let cluster = SampleCluster::create(
        &dir.path().join("cluster"),
        SampleOptions { extra_conf: vec![ship], ..Default::default() },
    )
    .await
    .expect("sample cluster");
    // Barman connects through the cluster's socket folder.
    for p in [cluster.root().to_path_buf(), cluster.socket_dir()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = cluster.port();
    let conn = format!("host={} port={port} user=postgres", cluster.socket_dir().display());
    let conf = dir.path().join("barman.conf");
    std::fs::write(
        &conf,
        format!(
            "[barman]\nbarman_user = barman\nbarman_home = {home}\nbarman_lock_directory = {locks}\n\
             log_file = {logs}/barman.log\nlog_level = INFO\nconfiguration_files_directory = {confd}\n\n\
             [{SERVER}]\ndescription = restorecheck test\nconninfo = {conn} dbname=postgres\n\
             streaming_conninfo = {conn}\nbackup_method = postgres\narchiver = on\nstreaming_archiver = off\n\
             immediate_checkpoint = true\npath_prefix = {bin}\n",
            home = home.display(),
            locks = locks.display(),
            logs = logs.display(),
            confd = confd.display(),
            bin = cluster.bin().path.display(),
        ),
    )
    .unwrap();
    cluster.create_app(rows).await.unwrap();
    before_backup(&cluster).await;
    // Barman refuses a backup before it has seen WAL arrive.
    cluster.switch_and_archive().await.unwrap();
    barman(&conf, &["archive-wal", SERVER]);
    barman(&conf, &["backup", SERVER]);
    // The backup's last segment reaches Barman through the archive like any other.
    cluster.switch_and_archive().await.unwrap();
    barman(&conf, &["archive-wal", SERVER]);
    Setup { cluster, conf, home }
}

fn source(s: &Setup) -> BarmanSource {
    BarmanSource::new(BarmanConfig::new(SERVER).config(s.conf.clone())).unwrap()
}

fn check_with(source: BarmanSource) -> Check {
    let target = LocalTarget::new(LocalTargetConfig::default()).unwrap();
    Check::new("barman", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(std::time::Duration::from_secs(120))
}

#[tokio::test]
async fn good_backup_restores_with_later_writes_and_tablespaces_moved() {
    let dir = TestDir::new("barman-good");
    let ts = dir.sub("prod-ts");
    let ts2 = ts.clone();
    let s = setup(&dir, 200, async move |c: &SampleCluster| {
        c.os_user().chown_tree(&ts2).unwrap();
        c.exec("app", &format!("create tablespace extra location '{}'", ts2.display())).await.unwrap();
        c.exec("app", "create table far (x int) tablespace extra; insert into far select generate_series(1, 77);")
            .await
            .unwrap();
    })
    .await;
    s.cluster.add_rows(50).await.unwrap();
    s.cluster.switch_and_archive().await.unwrap();
    s.cluster.add_rows(25).await.unwrap();
    let last = s.cluster.switch_and_archive().await.unwrap();
    barman(&s.conf, &["archive-wal", SERVER]);

    let src = source(&s);
    // What a container of the check's image would mount read-only: config and catalog.
    let ro = src.read_only_paths();
    assert!(ro.contains(&s.conf) && ro.contains(&s.home), "{ro:?}");
    // barman runs through the check's toolbox.
    let tools = RecordingTools::new();
    let listed = src.list(&RecordingTools::context(&tools)).await.unwrap();
    let prepared = tools.prepared();
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    assert_eq!(prepared[0].0.file_name().unwrap(), "barman", "{prepared:?}");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].kind, "barman");
    let chosen = src.select(&RunContext::new(), None).await.unwrap();
    assert_eq!(chosen.pg_major, Some(15));
    assert!(chosen.taken_at.unwrap() <= listed[0].taken_at.unwrap(), "select reports the start time");

    let before = snapshot(&s.home);
    let r = run(
        &dir,
        check_with(src)
            .assert(sql_eq("select count(*) from registrations", 275))
            .assert(sql_eq("select count(*) from far", 77)),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert!(
        r.recovery.expected_end.iter().any(|e| e.reason.contains(&last)),
        "the newest WAL Barman holds ({last}) was required: {:?}",
        r.recovery.expected_end
    );
    assert_eq!(snapshot(&s.home), before, "barman recover changed the catalog");

    // Where the tools do not run on this host, Barman needs the toolbox's private view of its
    // catalog (the docker target's overlay, tested in tests/docker-isolated): a toolbox without
    // a work dir is refused before `barman recover` runs, and the catalog stays as it was.
    let tools = RecordingTools::elsewhere();
    let ctx = RecordingTools::context(&tools);
    let work = restorecheck_core::workdir::WorkDir::create(&dir.sub("work-elsewhere"), &ctx.run_id, 0).unwrap();
    let req = restorecheck_core::source::FetchRequest::new(work.data_dir(), work.tablespace_dir(), work.scratch_dir());
    let e = source(&s).fetch(&ctx, &chosen, &req).await.unwrap_err().to_string();
    assert!(e.contains("no private view of the catalog"), "{e}");
    assert!(!work.data_dir().join("PG_VERSION").exists());
    work.remove().unwrap();
    assert_eq!(snapshot(&s.home), before, "barman recover changed the catalog");

    // With a recovery target Barman copies the WAL into barman_wal (archive recovery through
    // restore_command): stopping at consistency shows the rows the backup itself holds.
    let src =
        BarmanSource::new(BarmanConfig::new(SERVER).config(s.conf.clone()).recovery_target(RecoveryTarget::Immediate))
            .unwrap();
    let r = run(
        &dir,
        check_with(src)
            .assert(sql_eq("select count(*) from registrations", 200))
            .assert(sql_eq("select count(*) from far", 77)),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    assert_eq!(snapshot(&s.home), before, "barman recover changed the catalog");
    let prod_ts: Vec<_> = std::fs::read_dir(&ts).unwrap().flatten().collect();
    assert_eq!(prod_ts.len(), 1, "the production tablespace folder was written to: {prod_ts:?}");
}

#[tokio::test]
async fn missing_wal_fails_in_fetch_when_barman_notices_and_in_recovery_when_its_catalog_lost_it_too() {
    let dir = TestDir::new("barman-gap");
    let s = setup(&dir, 10, async |_c: &SampleCluster| {}).await;
    let mut archived = Vec::new();
    for _ in 0..4 {
        s.cluster.add_rows(10).await.unwrap();
        archived.push(s.cluster.switch_and_archive().await.unwrap());
    }
    barman(&s.conf, &["archive-wal", SERVER]);
    let gap = &archived[1];
    let wals = s.home.join(SERVER).join("wals");
    let file = wals.join(&gap[..16]).join(gap);
    assert!(file.is_file(), "{} in Barman's WAL store", file.display());
    std::fs::remove_file(&file).unwrap();

    // The catalog still lists the segment: barman recover cannot copy it.
    let r = run(&dir, check_with(source(&s)).assert(sql_eq("select count(*) from registrations", 50))).await;
    assert_fail_in(&r, Phase::Fetch);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains(gap.as_str()), "{msg}");

    // The catalog lost it too: barman recover succeeds, and only the completeness proof stops
    // a copy that would answer with 20 of 50 rows.
    let xlogdb = wals.join("xlog.db");
    let text = std::fs::read_to_string(&xlogdb).unwrap();
    let kept: String = text.lines().filter(|l| !l.starts_with(gap.as_str())).map(|l| format!("{l}\n")).collect();
    assert_ne!(kept, text);
    std::fs::write(&xlogdb, kept).unwrap();
    let r = run(&dir, check_with(source(&s)).assert(sql_eq("select count(*) from registrations", 50))).await;
    assert_fail_in(&r, Phase::Recovery);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("recovery stopped at") && msg.contains(&archived[3]), "{msg}");
    assert!(r.assertions.is_empty(), "no assertion may run on a short recovery");
}

#[tokio::test]
async fn unknown_server_is_a_source_error() {
    let dir = TestDir::new("barman-noserver");
    let home = barman_owned(&dir, "home");
    let conf = dir.path().join("barman.conf");
    std::fs::write(
        &conf,
        format!(
            "[barman]\nbarman_user = barman\nbarman_home = {h}\nlog_file = {h}/barman.log\nconfiguration_files_directory = {h}\n",
            h = home.display()
        ),
    )
    .unwrap();
    let src = BarmanSource::new(BarmanConfig::new("nope").config(conf)).unwrap();
    let e = src.list(&RecordingTools::context(&RecordingTools::without(&["barman"]))).await.unwrap_err();
    assert_eq!(e.kind(), restorecheck_core::ErrorKind::Tooling, "{e}");
    assert!(e.to_string().contains(NOT_IN_IMAGE) && e.to_string().contains("install Barman"), "{e}");
    let e = src.list(&RunContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), restorecheck_core::ErrorKind::Source, "{e}");
    assert!(e.to_string().contains("Unknown server 'nope'"), "{e}");
}
