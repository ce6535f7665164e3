//! A real failover, made in the test: a primary archiving into an archive folder, a base backup
//! on timeline 1, a streaming standby promoted with `pg_ctl promote` (timeline 2, archiving
//! into the same folder), and the old primary still running, writing and archiving timeline-1
//! segments past the fork. Restoring follows the timeline history as recovery does: 1 → 2 with
//! the default `recovery_target_timeline = "latest"` (a missing timeline-2 segment still fails),
//! a backup taken on timeline 2 passes, and `"current"` stays on timeline 1 and is proven
//! against timeline 1's own segments.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{CheckReport, Phase};
use restorecheck_core::source::RecoveryTargetTimeline;
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource, PgBackRestConfig, PgBackRestSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

async fn count(c: &SampleCluster) -> i64 {
    c.client("app").await.unwrap().query_one("select count(*) from registrations", &[]).await.unwrap().get(0)
}

async fn lsn_of(c: &SampleCluster, sql: &str) -> String {
    c.client("postgres").await.unwrap().query_one(sql, &[]).await.unwrap().get::<_, Option<String>>(0).unwrap()
}

/// Waits (bounded) until `standby` replayed everything `primary` wrote so far.
async fn wait_replayed(primary: &SampleCluster, standby: &SampleCluster) {
    let target = lsn_of(primary, "select pg_current_wal_lsn()::text").await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = standby
            .client("postgres")
            .await
            .unwrap()
            .query_one("select pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target])
            .await
            .unwrap()
            .get::<_, Option<bool>>(0)
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(Instant::now() < until, "the standby did not replay up to {target} within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until `name` is in `archive`.
async fn wait_archived(archive: &Path, name: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while !archive.join(name).exists() {
        assert!(Instant::now() < until, "{name} was not archived within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_with(backup: &Path, archive: &Path, timeline: RecoveryTargetTimeline) -> Check {
    let source = BaseBackupSource::new(
        BaseBackupConfig::new(backup.to_path_buf())
            .wal_archive(archive.to_path_buf())
            .recovery_target_timeline(timeline),
    );
    let target = LocalTarget::new(LocalTargetConfig::default()).unwrap();
    Check::new("failover", Arc::new(source), Arc::new(target)).database("app").timeout(Duration::from_secs(300))
}

fn timeline_of(seg: &str) -> u32 {
    u32::from_str_radix(&seg[0..8], 16).unwrap()
}

fn text_of(r: &CheckReport) -> String {
    restorecheck_core::report::Report::new("t".into(), chrono::Utc::now(), vec![r.clone()]).to_text()
}

#[tokio::test]
async fn after_a_failover_recovery_and_the_proof_follow_the_timeline_history() {
    let dir = TestDir::new("tl-failover");
    let primary = SampleCluster::create(&dir.path().join("primary"), SampleOptions::default()).await.unwrap();
    primary.create_app(100).await.unwrap();
    let archive = primary.archive_dir();
    // The backup on timeline 1.
    let backup_tl1 = primary.basebackup("tl1", &["-Ft", "-Xstream"]).await.unwrap();
    primary.add_rows(50).await.unwrap();
    primary.switch_and_archive().await.unwrap();

    // A streaming standby, caught up, then promoted: timeline 2.
    let standby = primary.standby(&dir.path().join("standby")).await.unwrap();
    primary.add_rows(20).await.unwrap();
    wait_replayed(&primary, &standby).await;
    standby.promote().await.unwrap();
    wait_archived(&archive, "00000002.history").await;
    let history = std::fs::read_to_string(archive.join("00000002.history")).unwrap();
    let switch_lsn = history.split_whitespace().nth(1).unwrap().to_string();
    println!("00000002.history: {history}");

    // The old primary goes on: lost writes, archived as timeline-1 segments past the fork.
    for _ in 0..5 {
        primary.add_rows(1000).await.unwrap();
        primary.switch_and_archive().await.unwrap();
    }
    // The new primary writes and archives three timeline-2 segments.
    let mut tl2 = Vec::new();
    for _ in 0..3 {
        standby.add_rows(10).await.unwrap();
        match standby.switch_and_archive().await {
            Ok(seg) => tl2.push(seg),
            Err(e) => {
                let log = std::fs::read_to_string(standby.root().join("server.log")).unwrap_or_default();
                let ls = std::fs::read_dir(&archive).unwrap().flatten().map(|e| e.file_name()).collect::<Vec<_>>();
                panic!("{e}\nstandby log:\n{log}\narchive: {ls:?}");
            }
        }
    }
    let new_primary_rows = count(&standby).await;
    let old_primary_rows = count(&primary).await;
    assert_eq!(new_primary_rows, 100 + 50 + 20 + 30);
    assert_eq!(old_primary_rows, 100 + 50 + 20 + 5000);
    // The precondition of the bug: the archive's newest segment is the abandoned timeline's.
    let all = segments(&archive);
    let newest = all.iter().max_by_key(|n| (n[8..24].to_string(), n[0..8].to_string())).unwrap();
    assert_eq!(timeline_of(newest), 1, "the old primary must have archived past the new primary: {all:?}");
    assert!(tl2.iter().all(|s| timeline_of(s) == 2), "{tl2:?}");

    // (a) The timeline-1 backup follows 1 → 2 and passes with the new primary's rows.
    let r = run(
        &dir,
        check_with(&backup_tl1, &archive, RecoveryTargetTimeline::Latest)
            .assert(sql_eq("select count(*) from registrations", new_primary_rows)),
    )
    .await;
    assert_pass(&r);
    assert_eq!(r.recovery.timeline_path, Some(vec![1, 2]));
    assert_eq!(r.recovery.timeline_switches.len(), 1);
    assert_eq!(r.recovery.timeline_switches[0].timeline, 1);
    assert_eq!(r.recovery.timeline_switches[0].switch_lsn.to_string(), switch_lsn);
    let last_tl2 = tl2.last().unwrap();
    assert!(
        r.recovery.expected_end.iter().any(|e| e.reason.contains(last_tl2.as_str())),
        "the newest timeline-2 segment {last_tl2} was required: {:?}",
        r.recovery.expected_end
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["recovery"]["timeline_path"], serde_json::json!([1, 2]));
    assert_eq!(json["recovery"]["timeline_switches"][0]["switch_lsn"], serde_json::json!(switch_lsn));
    let text = text_of(&r);
    assert!(text.contains(&format!("followed timeline 1 → 2 (switch at {switch_lsn})")), "{text}");
    println!("{text}");

    // (b) The same with a timeline-2 segment (not the first, not the last) missing: recovery
    // stops at the gap on timeline 2 and the check fails, timeline 1's copies notwithstanding.
    let damaged = dir.path().join("archive-gap");
    copy(&archive, &damaged);
    std::fs::remove_file(damaged.join(&tl2[1])).unwrap();
    let r = run(
        &dir,
        check_with(&backup_tl1, &damaged, RecoveryTargetTimeline::Latest)
            .assert(sql_eq("select count(*) from registrations", new_primary_rows)),
    )
    .await;
    assert_fail_in(&r, Phase::Recovery);
    let msg = &r.failure.as_ref().unwrap().message;
    assert!(msg.contains("recovery stopped at") && msg.contains(last_tl2.as_str()), "{msg}");
    assert!(r.assertions.is_empty(), "no assertion may run on a short recovery");
    assert_eq!(r.recovery.timeline_path, Some(vec![1, 2]));

    // (c) A backup taken on timeline 2, from the promoted standby; the archive also holds
    // timeline 1's segments past the fork.
    let backup_tl2 = standby.basebackup("tl2", &["-Ft", "-Xstream"]).await.unwrap();
    standby.add_rows(7).await.unwrap();
    let after = standby.switch_and_archive().await.unwrap();
    assert_eq!(timeline_of(&after), 2);
    let r = run(
        &dir,
        check_with(&backup_tl2, &archive, RecoveryTargetTimeline::Latest)
            .assert(sql_eq("select count(*) from registrations", new_primary_rows + 7)),
    )
    .await;
    assert_pass(&r);
    assert_eq!(r.recovery.timeline_path, Some(vec![1, 2]));
    assert!(r.recovery.expected_end.iter().any(|e| e.reason.contains(after.as_str())), "{:?}", r.recovery.expected_end);

    // (d) `current` on the timeline-1 backup: recovery stays on timeline 1 and replays the old
    // primary's writes; the proof then requires timeline 1's own newest segment (the old
    // primary's last), which is correct for what was asked: stopping short of it would be a
    // gap on the followed timeline.
    let newest_tl1 = all.iter().filter(|n| timeline_of(n) == 1).max().unwrap().clone();
    let r = run(
        &dir,
        check_with(&backup_tl1, &archive, RecoveryTargetTimeline::Current)
            .assert(sql_eq("select count(*) from registrations", old_primary_rows)),
    )
    .await;
    assert_pass(&r);
    assert_eq!(r.recovery.timeline_path, Some(vec![1]));
    assert!(r.recovery.timeline_switches.is_empty());
    assert!(
        r.recovery.expected_end.iter().any(|e| e.reason.contains(newest_tl1.as_str())),
        "timeline 1's newest segment {newest_tl1} was required: {:?}",
        r.recovery.expected_end
    );
    assert!(!text_of(&r).contains("followed timeline"), "{}", text_of(&r));
    drop(standby);
    drop(primary);
}

/// `pg_switch_wal()`; the name of the segment it finished.
async fn switch(c: &SampleCluster) -> String {
    lsn_of(c, "select pg_walfile_name(pg_switch_wal())").await
}

/// The same failover with pgBackRest: both primaries push into one stanza; the source lists the
/// (local) repository's archive with its history files and follows 1 → 2.
#[tokio::test]
async fn after_a_failover_a_pgbackrest_backup_follows_the_new_timeline() {
    const STANZA: &str = "tl";
    let dir = TestDir::new("tl-pgbr");
    let repo = dir.sub("repo");
    let lock = dir.sub("lock");
    let conf = dir.path().join("pgbackrest.conf");
    let pgdata = dir.path().join("primary/pgdata");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nlog-level-file=off\nlock-path={}\nstart-fast=y\narchive-timeout=30\n\n[{STANZA}]\npg1-path={}\n",
            repo.display(),
            lock.display(),
            pgdata.display()
        ),
    )
    .unwrap();
    let push = |pg1: &Path| {
        format!("pgbackrest --config={} --stanza={STANZA} --pg1-path={} archive-push %p", conf.display(), pg1.display())
    };
    let primary = SampleCluster::create(
        &dir.path().join("primary"),
        SampleOptions { extra_conf: vec![format!("archive_command = '{}'", push(&pgdata))], ..Default::default() },
    )
    .await
    .unwrap();
    primary.os_user().chown_tree(&repo).unwrap();
    primary.os_user().chown_tree(&lock).unwrap();
    let conn = |c: &SampleCluster, extra: &[&str]| {
        let mut v = vec![
            format!("--config={}", conf.display()),
            format!("--stanza={STANZA}"),
            format!("--pg1-path={}", c.pgdata().display()),
            format!("--pg1-port={}", c.port()),
            format!("--pg1-socket-path={}", c.socket_dir().display()),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    pgbackrest(&primary, dir.path(), &conn(&primary, &["stanza-create"]));
    primary.create_app(100).await.unwrap();
    pgbackrest(&primary, dir.path(), &conn(&primary, &["--type=full", "backup"]));
    primary.add_rows(50).await.unwrap();

    let standby = primary.standby(&dir.path().join("standby")).await.unwrap();
    // Once promoted, the standby pushes into the same stanza (its own data dir as pg1-path).
    let auto = standby.pgdata().join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap();
    text.push_str(&format!("archive_command = '{}'\n", push(&standby.pgdata())));
    std::fs::write(&auto, text).unwrap();
    standby.tool("pg_ctl", &["-D".into(), standby.pgdata().display().to_string(), "reload".into()]).await.unwrap();
    wait_replayed(&primary, &standby).await;
    standby.promote().await.unwrap();
    let history = repo.join(format!("archive/{STANZA}/15-1/00000002.history"));
    let until = Instant::now() + Duration::from_secs(60);
    while !history.exists() {
        assert!(Instant::now() < until, "00000002.history was not pushed within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old primary goes on writing and pushing timeline-1 segments past the fork.
    let mut last_old = String::new();
    for _ in 0..4 {
        primary.add_rows(1000).await.unwrap();
        last_old = switch(&primary).await;
    }
    let mut last_new = String::new();
    for _ in 0..2 {
        standby.add_rows(10).await.unwrap();
        last_new = switch(&standby).await;
    }
    let new_primary_rows = count(&standby).await;
    assert_eq!(new_primary_rows, 170);
    // Wait until each has pushed the last segment it switched away from (archiving is in order).
    for (c, seg, who) in [(&primary, &last_old, "old primary"), (&standby, &last_new, "new primary")] {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let last = lsn_of(c, "select coalesce(last_archived_wal, '') from pg_stat_archiver").await;
            if last.len() == 24 && last[0..8] == seg[0..8] && last[8..] >= seg[8..] {
                break;
            }
            assert!(Instant::now() < until, "the {who} did not push {seg} within 60s (last {last})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(last_old[8..] > last_new[8..], "the old primary went on past the new one: {last_old} {last_new}");

    let source = PgBackRestSource::new(
        PgBackRestConfig::new(STANZA).config(conf.clone()).recovery_target_timeline(RecoveryTargetTimeline::Latest),
    )
    .unwrap();
    let listed = restorecheck_core::BackupSource::list(&source, &restorecheck_core::RunContext::new()).await.unwrap();
    assert_eq!(listed[0].timeline, Some(1), "the backup was taken on timeline 1: {listed:?}");
    let target = LocalTarget::new(LocalTargetConfig::default()).unwrap();
    let check = Check::new("pgbr-failover", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", new_primary_rows));
    let r = run(&dir, check).await;
    assert_pass(&r);
    assert_eq!(r.recovery.timeline_path, Some(vec![1, 2]));
    assert!(
        r.recovery.expected_end.iter().any(|e| e.reason.contains("pgBackRest archive") && e.reason.contains("1 → 2")),
        "{:?}",
        r.recovery.expected_end
    );
    drop(standby);
    drop(primary);
}
