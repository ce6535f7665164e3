//! One conformance suite that every source kind runs (as object_store's `integration.rs` does
//! for its stores): each source is set up over two real backups, taken by the real tool with a
//! change in between, and must keep the [`BackupSource`] contract:
//!
//! - `list` returns every backup, newest first (by `taken_at` where known), ids unique;
//! - `select(None)` (and `"latest"`) is the newest, `"oldest"` the last listed, `select(id)`
//!   that backup, and an unknown id an error (not a panic, not a "bad backup");
//! - `fetch` of each writes a usable backup (a data directory with `PG_VERSION`, or the dump
//!   file) that is the backup asked for: only the newer one holds the change;
//! - nothing at the backups' location changes.
//!
//! Which backup is older is known from the order the fixture took them in and the tool's own
//! output (new folders in its repository), never from the source under test. WAL-G is the
//! stand-in of tests/walg.rs (no WAL-G binary on this machine) over real backups; every other
//! tool is the real one installed by scripts/setup.sh --test.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::sources::{
    BarmanConfig, BarmanSource, BaseBackupConfig, BaseBackupSource, CommandConfig, CommandSource, PgBackRestConfig,
    PgBackRestSource, PgDumpConfig, PgDumpSource, WaleConfig, WaleSource, WalgConfig, WalgSource,
};
use restorecheck_core::workdir::WorkDir;
use restorecheck_core::{Artifact, BackupInfo, BackupSource, ErrorKind, FetchRequest, RunContext};

/// Name of the database and of the table created between the two backups.
const MARKER: &str = "between_backups";

/// A source over two backups the fixture took, `older` before [`change`], `newer` after.
struct Subject {
    /// For messages: `basebackup (tar)`.
    name: &'static str,
    source: Arc<dyn BackupSource>,
    /// Id of the backup taken before the change.
    older: String,
    /// Id of the backup taken after it.
    newer: String,
    /// Local folders holding the backups: the suite must leave them exactly as they were.
    storage: Vec<PathBuf>,
}

/// What changed between the two backups.
struct Change {
    /// OID of database [`MARKER`]: its folder `base/<oid>` exists only in the newer backup.
    db_oid: u32,
}

/// Makes the change between two backups: database [`MARKER`] and, in `app`, table [`MARKER`]
/// (what a dump of `app` shows). Waits a little over a second first: several tools record
/// backup times in whole seconds (backup_label, pgBackRest and Barman labels, dump headers), and
/// the two backups must not share one.
async fn change(c: &SampleCluster) -> Change {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.exec("postgres", &format!("create database {MARKER}")).await.unwrap();
    c.exec("app", &format!("create table {MARKER} (id int); insert into {MARKER} values (1)")).await.unwrap();
    let client = c.client("postgres").await.unwrap();
    let row = client.query_one("select oid from pg_database where datname = $1", &[&MARKER]).await.unwrap();
    Change { db_oid: row.get(0) }
}

/// Checks what `fetch` produced for backup `id` and says whether it holds the [`Change`]. The
/// one place that knows the shape of fetch's result.
fn assert_fetched(name: &str, id: &str, req: &FetchRequest, a: &Artifact, change: &Change) -> bool {
    match a {
        Artifact::Physical(f) => {
            assert_eq!(f.data_dir, req.data_dir, "{name} {id}: the data directory is not where it was asked for");
            let version = std::fs::read_to_string(f.data_dir.join("PG_VERSION"))
                .unwrap_or_else(|e| panic!("{name} {id}: no PG_VERSION in the fetched data directory: {e}"));
            assert_eq!(version.trim(), f.pg_major.to_string(), "{name} {id}: pg_major disagrees with PG_VERSION");
            assert!(f.data_dir.join("global/pg_control").is_file(), "{name} {id}: no global/pg_control");
            f.data_dir.join("base").join(change.db_oid.to_string()).is_dir()
        }
        Artifact::Logical(dump) => {
            assert_eq!(dump.data_dir, req.data_dir, "{name} {id}: the fresh cluster's folder is not the one asked for");
            assert!(dump.path.is_file(), "{name} {id}: the dump {} is not a file", dump.path.display());
            let bytes = std::fs::read(&dump.path).unwrap();
            assert!(!bytes.is_empty(), "{name} {id}: the dump is empty");
            bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
        }
        other => panic!("{name} {id}: an artifact this suite does not know: {other:?}"),
    }
}

/// The suite: every assertion of the trait contract, against one source.
async fn conformance(s: Subject, change: &Change, work_root: &Path) {
    let name = s.name;
    let ctx = RunContext::new();
    let before: Vec<_> = s.storage.iter().map(|p| snapshot(p)).collect();

    // list: newest first, unique ids, both backups there.
    let listed = s.source.list(&ctx).await.unwrap_or_else(|e| panic!("{name}: list failed: {e}"));
    let ids: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "{name}: duplicate ids: {ids:?}");
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap_or_else(|| panic!("{name}: {id} not in {ids:?}"));
    assert_eq!(pos(&s.newer), 0, "{name}: the newest backup {} is not listed first: {ids:?}", s.newer);
    assert!(pos(&s.older) > 0, "{name}: {ids:?}");
    for w in listed.windows(2) {
        if let (Some(a), Some(b)) = (w[0].taken_at, w[1].taken_at) {
            assert!(a >= b, "{name}: not newest first: {} ({a}) before {} ({b})", w[0].id, w[1].id);
        }
    }
    let (newer, older) = (&listed[0], &listed[pos(&s.older)]);
    if let (Some(a), Some(b)) = (newer.taken_at, older.taken_at) {
        assert!(a > b, "{name}: the newer backup's taken_at {a} is not after the older one's {b}");
    }

    // select
    let latest = select(&s, &ctx, None).await;
    assert_eq!(latest.id, s.newer, "{name}: select(None) is not the newest");
    assert_eq!(select(&s, &ctx, Some("latest")).await.id, s.newer, "{name}: select(\"latest\")");
    assert_eq!(select(&s, &ctx, Some("oldest")).await.id, listed.last().unwrap().id, "{name}: select(\"oldest\")");
    let chosen = select(&s, &ctx, Some(&s.older)).await;
    assert_eq!(chosen.id, s.older, "{name}: select(Some(older id))");
    match s.source.select(&ctx, Some("no-such-backup")).await {
        Ok(b) => panic!("{name}: select(\"no-such-backup\") returned {b:?}"),
        Err(e) => {
            assert_ne!(e.kind(), ErrorKind::BackupDefect, "{name}: a wrong id is not a bad backup: {e}");
            assert!(e.to_string().contains("no-such-backup"), "{name}: the error does not name the id: {e}");
        }
    }

    // fetch: each backup into fresh, empty directories, as the runner makes them.
    for (index, (info, changed)) in [(&chosen, false), (&latest, true)].into_iter().enumerate() {
        let work = WorkDir::create(work_root, &ctx.run_id, index).unwrap();
        let req = FetchRequest::new(work.data_dir(), work.tablespace_dir(), work.scratch_dir());
        let fetched = s
            .source
            .fetch(&ctx, info, &req)
            .await
            .unwrap_or_else(|e| panic!("{name}: fetch of {} failed: {e}", info.id));
        let has_change = assert_fetched(name, &info.id, &req, &fetched, change);
        assert_eq!(
            has_change, changed,
            "{name}: fetch of {} gave the wrong backup (change present: {has_change})",
            info.id
        );
        work.remove().unwrap();
    }

    for (p, b) in s.storage.iter().zip(before) {
        assert_eq!(snapshot(p), b, "{name}: {} changed", p.display());
    }
}

async fn select(s: &Subject, ctx: &RunContext, wanted: Option<&str>) -> BackupInfo {
    s.source.select(ctx, wanted).await.unwrap_or_else(|e| panic!("{}: select({wanted:?}) failed: {e}", s.name))
}

/// Names of the entries of `dir` (none if it does not exist).
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The one folder in `dir` not in `before` whose name `is_backup` accepts: the backup a tool
/// just wrote into its repository.
fn new_backup(dir: &Path, before: &BTreeSet<String>, is_backup: impl Fn(&str) -> bool) -> String {
    let new: Vec<String> =
        entries(dir).into_iter().filter(|n| !before.contains(n) && is_backup(n) && dir.join(n).is_dir()).collect();
    assert_eq!(new.len(), 1, "expected one new backup in {}: {new:?}", dir.display());
    new.into_iter().next().unwrap()
}

/// A folder the cluster's OS user (which runs pg_dump and pg_basebackup) can write into.
fn writable(c: &SampleCluster, p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    c.os_user().chown_tree(p).unwrap();
    p.to_path_buf()
}

fn basebackup_source(path: &Path) -> Arc<dyn BackupSource> {
    Arc::new(BaseBackupSource::new(BaseBackupConfig::new(path.to_path_buf())))
}

fn dump_source(path: &Path) -> Arc<dyn BackupSource> {
    Arc::new(PgDumpSource::new(PgDumpConfig::new(path.to_path_buf())))
}

// Ids of backups the fixtures name themselves sort the other way than their times: a source
// ordering by id instead of time fails.
const FIRST: &str = "b-first";
const SECOND: &str = "a-second";

#[tokio::test]
async fn basebackup_tar_and_plain_folders() {
    let dir = TestDir::new("conf-basebackup");
    let c = cluster(&dir, 50).await;
    let mut ch = None;
    for id in [FIRST, SECOND] {
        if id == SECOND {
            ch = Some(change(&c).await);
        }
        c.basebackup(&format!("tar/{id}"), &["-Ft", "-z", "-Xstream"]).await.unwrap();
        c.basebackup(&format!("plain/{id}"), &["-Fp", "-Xstream"]).await.unwrap();
    }
    let ch = ch.unwrap();
    for (name, sub) in [("basebackup (tar.gz)", "tar"), ("basebackup (plain)", "plain")] {
        let path = c.backups_dir().join(sub);
        let s = Subject {
            name,
            source: basebackup_source(&path),
            older: FIRST.into(),
            newer: SECOND.into(),
            storage: vec![path],
        };
        conformance(s, &ch, &dir.sub(&format!("work-{sub}"))).await;
    }
}

#[tokio::test]
async fn pg_dump_custom_and_plain_folders() {
    let dir = TestDir::new("conf-pg-dump");
    let c = cluster(&dir, 50).await;
    let custom = writable(&c, &c.backups_dir().join("custom"));
    let plain = writable(&c, &c.backups_dir().join("plain"));
    let mut ch = None;
    for id in [FIRST, SECOND] {
        if id == SECOND {
            ch = Some(change(&c).await);
        }
        for (folder, ext, format) in [(&custom, "dump", "-Fc"), (&plain, "sql", "-Fp")] {
            let mut args = client_args(&c);
            args.extend([format.into(), "-f".into(), folder.join(format!("{id}.{ext}")).display().to_string()]);
            args.push("app".into());
            c.tool("pg_dump", &args).await.unwrap();
        }
    }
    let ch = ch.unwrap();
    for (name, folder, ext) in [("pg_dump (custom)", &custom, "dump"), ("pg_dump (plain)", &plain, "sql")] {
        let s = Subject {
            name,
            source: dump_source(folder),
            older: format!("{FIRST}.{ext}"),
            newer: format!("{SECOND}.{ext}"),
            storage: vec![folder.clone()],
        };
        conformance(s, &ch, &dir.sub(&format!("work-{ext}"))).await;
    }
}

#[tokio::test]
async fn command_source_over_plain_backups() {
    let dir = TestDir::new("conf-command");
    let c = cluster(&dir, 50).await;
    let root = c.backups_dir().join("cmd");
    let mut lines = Vec::new();
    let mut ch = None;
    for id in [FIRST, SECOND] {
        if id == SECOND {
            ch = Some(change(&c).await);
        }
        let taken = chrono::Utc::now().to_rfc3339();
        c.basebackup(&format!("cmd/{id}"), &["-Fp", "-Xstream"]).await.unwrap();
        lines.push(format!(r#"{{"id": "{id}", "taken_at": "{taken}", "kind": "plain", "pg_major": 15}}"#));
    }
    // Printed oldest first: sorting is the source's job.
    let list = dir.path().join("list.jsonl");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let cfg: CommandConfig = toml::from_str(&format!(
        r#"
list = "cat {list}"
fetch = 'case "$RESTORECHECK_BACKUP_ID" in {FIRST}|{SECOND}) cp -a "{root}/$RESTORECHECK_BACKUP_ID/." "$RESTORECHECK_DEST";; *) echo "no backup $RESTORECHECK_BACKUP_ID" >&2; exit 1;; esac'
"#,
        list = list.display(),
        root = root.display()
    ))
    .unwrap();
    let s = Subject {
        name: "command",
        source: Arc::new(CommandSource::new(cfg)),
        older: FIRST.into(),
        newer: SECOND.into(),
        storage: vec![root],
    };
    conformance(s, &ch.unwrap(), &dir.sub("work")).await;
}

#[tokio::test]
async fn pgbackrest_two_full_backups() {
    const STANZA: &str = "rc";
    let dir = TestDir::new("conf-pgbackrest");
    let repo = dir.sub("repo");
    let lock = dir.sub("lock");
    let conf = dir.path().join("pgbackrest.conf");
    let root = dir.path().join("cluster");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nrepo1-retention-full=9\nlog-level-file=off\nlock-path={}\nstart-fast=y\narchive-timeout=30\n\n[{STANZA}]\npg1-path={}\n",
            repo.display(),
            lock.display(),
            root.join("pgdata").display()
        ),
    )
    .unwrap();
    let push = format!(
        "archive_command = 'pgbackrest --config={} --stanza={STANZA} archive-push %p && cp %p {}/%f'",
        conf.display(),
        root.join("archive").display()
    );
    let c =
        SampleCluster::create(&root, SampleOptions { extra_conf: vec![push], checksums: true, ..Default::default() })
            .await
            .expect("sample cluster");
    c.os_user().chown_tree(&repo).unwrap();
    c.os_user().chown_tree(&lock).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        [
            format!("--config={}", conf.display()),
            format!("--stanza={STANZA}"),
            format!("--pg1-port={}", c.port()),
            format!("--pg1-socket-path={}", c.socket_dir().display()),
        ]
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
    };
    pgbackrest(&c, dir.path(), &args(&["stanza-create"]));
    c.create_app(50).await.unwrap();
    let backups = repo.join("backup").join(STANZA);
    let is_full = |n: &str| n.len() == 16 && n.ends_with('F');
    let mut ids = Vec::new();
    let mut ch = None;
    for i in 0..2 {
        if i == 1 {
            ch = Some(change(&c).await);
        }
        let before = entries(&backups);
        pgbackrest(&c, dir.path(), &args(&["--type=full", "backup"]));
        ids.push(new_backup(&backups, &before, is_full));
    }
    let cfg = PgBackRestConfig::new(STANZA).config(conf.clone());
    let s = Subject {
        name: "pgbackrest",
        source: Arc::new(PgBackRestSource::new(cfg).unwrap()),
        older: ids[0].clone(),
        newer: ids[1].clone(),
        storage: vec![repo.clone()],
    };
    conformance(s, &ch.unwrap(), &dir.sub("work")).await;
}

/// Runs `barman -c <conf> …` (as root: Barman switches to its `barman_user` itself).
fn barman(conf: &Path, args: &[&str]) {
    let out = std::process::Command::new("barman")
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
}

#[tokio::test]
async fn barman_two_backups() {
    const SERVER: &str = "rc";
    let dir = TestDir::new("conf-barman");
    let u = nix::unistd::User::from_name("barman").unwrap().expect("OS user barman (the barman package creates it)");
    let barman_owned = |p: &Path| {
        std::fs::create_dir_all(p).unwrap();
        std::os::unix::fs::chown(p, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    };
    let (home, logs, locks) =
        (dir.path().join("barman-home"), dir.path().join("barman-log"), dir.path().join("barman-lock"));
    let incoming = home.join(SERVER).join("incoming");
    for p in [&home, &logs, &locks, &home.join(SERVER), &incoming] {
        barman_owned(p);
    }
    // The cluster's OS user writes into incoming, Barman moves files out.
    std::fs::set_permissions(&incoming, std::fs::Permissions::from_mode(0o777)).unwrap();
    let confd = dir.sub("barman.d");
    let root = dir.path().join("cluster");
    let ship = format!(
        "archive_command = 'cp %p {i}/%f && chmod 0644 {i}/%f && test ! -f {a}/%f && cp %p {a}/%f'",
        i = incoming.display(),
        a = root.join("archive").display()
    );
    let c = SampleCluster::create(&root, SampleOptions { extra_conf: vec![ship], ..Default::default() })
        .await
        .expect("sample cluster");
    for p in [c.root().to_path_buf(), c.socket_dir()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let conn = format!("host={} port={} user=postgres", c.socket_dir().display(), c.port());
    let conf = dir.path().join("barman.conf");
    std::fs::write(
        &conf,
        format!(
            "[barman]\nbarman_user = barman\nbarman_home = {home}\nbarman_lock_directory = {locks}\n\
             log_file = {logs}/barman.log\nlog_level = INFO\nconfiguration_files_directory = {confd}\n\n\
             [{SERVER}]\ndescription = restorecheck conformance\nconninfo = {conn} dbname=postgres\n\
             streaming_conninfo = {conn}\nbackup_method = postgres\narchiver = on\nstreaming_archiver = off\n\
             immediate_checkpoint = true\npath_prefix = {bin}\n",
            home = home.display(),
            locks = locks.display(),
            logs = logs.display(),
            confd = confd.display(),
            bin = c.bin().path.display(),
        ),
    )
    .unwrap();
    c.create_app(50).await.unwrap();
    // Barman refuses a backup before it has seen WAL arrive.
    c.switch_and_archive().await.unwrap();
    barman(&conf, &["archive-wal", SERVER]);
    let base = home.join(SERVER).join("base");
    let mut ids = Vec::new();
    let mut ch = None;
    for i in 0..2 {
        if i == 1 {
            ch = Some(change(&c).await);
        }
        let before = entries(&base);
        barman(&conf, &["backup", SERVER]);
        ids.push(new_backup(&base, &before, |_| true));
        // The backup's last segment reaches Barman through the archive like any other.
        c.switch_and_archive().await.unwrap();
        barman(&conf, &["archive-wal", SERVER]);
    }
    let cfg = BarmanConfig::new(SERVER).config(conf.clone());
    let s = Subject {
        name: "barman",
        source: Arc::new(BarmanSource::new(cfg).unwrap()),
        older: ids[0].clone(),
        newer: ids[1].clone(),
        storage: vec![home.clone()],
    };
    conformance(s, &ch.unwrap(), &dir.sub("work")).await;
}

/// The stand-in `wal-g` of tests/walg.rs.
const WALG_STAND_IN: &str = include_str!("common/fake-wal-g.sh");

/// Takes a real `-Fp -Xnone` backup and stores it as WAL-G backup `base_<start segment>` in the
/// stand-in's layout (folder and stop sentinel); returns its `backup-list --json --detail` entry.
async fn walg_backup(c: &SampleCluster, prefix: &Path, n: usize) -> serde_json::Value {
    let start_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let b = c.basebackup(&format!("walg/{n}"), &["-Fp", "-Xnone"]).await.unwrap();
    let finish_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let start_seg = start_segment(&std::fs::read_to_string(b.join("backup_label")).unwrap());
    let name = format!("base_{start_seg}");
    let base = prefix.join("basebackups_005");
    std::fs::create_dir_all(&base).unwrap();
    copy(&b, &base.join(&name));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("backup_manifest")).unwrap()).unwrap();
    let lsn = |s: &str| {
        let (hi, lo) = s.split_once('/').unwrap();
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
    };
    let ranges = manifest["WAL-Ranges"].as_array().unwrap();
    let start = lsn(ranges[0]["Start-LSN"].as_str().unwrap());
    let finish = lsn(ranges.last().unwrap()["End-LSN"].as_str().unwrap());
    let version: String =
        c.client("postgres").await.unwrap().query_one("show server_version_num", &[]).await.unwrap().get(0);
    let sentinel = serde_json::json!({"LSN": start, "FinishLSN": finish, "PgVersion": 150000,
        "Spec": {"base_prefix": c.pgdata(), "tablespaces": []}});
    std::fs::write(base.join(format!("{name}_backup_stop_sentinel.json")), sentinel.to_string()).unwrap();
    serde_json::json!({
        "backup_name": name, "time": finish_time, "wal_file_name": start_seg, "storage_name": "default",
        "start_time": start_time, "finish_time": finish_time, "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ",
        "hostname": "stand-in", "data_dir": c.pgdata(), "pg_version": version.parse::<u64>().unwrap(),
        "start_lsn": start, "finish_lsn": finish, "is_permanent": false,
        "system_identifier": 7312345678901234567u64, "uncompressed_size": 1000, "compressed_size": 400
    })
}

#[tokio::test]
async fn walg_stand_in_two_backups() {
    let dir = TestDir::new("conf-walg");
    let c = cluster(&dir, 50).await;
    let prefix = dir.sub("walg-storage");
    let first = walg_backup(&c, &prefix, 1).await;
    let ch = change(&c).await;
    let second = walg_backup(&c, &prefix, 2).await;
    c.switch_and_archive().await.unwrap();
    copy(&c.archive_dir(), &prefix.join("wal_005"));
    // WAL-G prints its list oldest first.
    std::fs::write(prefix.join("list.json"), serde_json::json!([first, second]).to_string()).unwrap();
    let stand_in = dir.path().join("fake-wal-g");
    std::fs::write(&stand_in, WALG_STAND_IN).unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env_file = dir.path().join("walg.env");
    std::fs::write(&env_file, "AWS_SECRET_ACCESS_KEY=conformance-secret\n").unwrap();
    let cfg: WalgConfig = toml::from_str(&format!(
        "binary = \"{}\"\nenv_file = \"{}\"\nenv = {{ WALG_FILE_PREFIX = \"{}\" }}\n",
        stand_in.display(),
        env_file.display(),
        prefix.display()
    ))
    .unwrap();
    let s = Subject {
        name: "walg (stand-in)",
        source: Arc::new(WalgSource::new(cfg)),
        older: first["backup_name"].as_str().unwrap().into(),
        newer: second["backup_name"].as_str().unwrap().into(),
        storage: vec![prefix.clone()],
    };
    conformance(s, &ch, &dir.sub("work")).await;
}

fn wale_bin() -> PathBuf {
    let p = std::env::var_os("RESTORECHECK_WALE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/restorecheck/wal-e/bin/wal-e"));
    assert!(p.is_file(), "WAL-E is not installed at {} (scripts/setup.sh installs it)", p.display());
    p
}

/// Switches WAL and waits (bounded) until WAL-E has pushed the finished segment.
async fn switch_and_push(c: &SampleCluster, store: &Path) {
    let client = c.client("postgres").await.unwrap();
    let seg: String = client.query_one("select pg_walfile_name(pg_switch_wal())", &[]).await.unwrap().get(0);
    let pushed = store.join("wal_005").join(format!("{seg}.lzo"));
    let until = Instant::now() + Duration::from_secs(60);
    while !pushed.exists() {
        assert!(Instant::now() < until, "wal-e wal-push did not push {seg} within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real WAL-E 1.1.1 with `file://` storage. It cannot take an online backup of PostgreSQL
/// 15, so both backups are `backup-push --while-offline` of the stopped cluster.
#[tokio::test]
async fn wale_two_offline_backups() {
    let wale = wale_bin();
    let dir = TestDir::new("conf-wale");
    let store = dir.sub("store");
    let envdir = dir.sub("wale.env");
    std::fs::write(envdir.join("WALE_FILE_PREFIX"), format!("file://localhost{}\n", store.display())).unwrap();
    std::fs::write(envdir.join("WALE_LOG_DESTINATION"), "stderr\n").unwrap();
    // Written by the cluster's archive_command, as its OS user.
    restorecheck_core::postgres::user::OsUser::resolve(None).unwrap().chown_tree(&store).unwrap();
    let opts = SampleOptions {
        extra_conf: vec![format!("archive_command = 'envdir {} {} wal-push %p'", envdir.display(), wale.display())],
        ..Default::default()
    };
    let mut c = SampleCluster::create(&dir.path().join("cluster"), opts).await.expect("sample cluster");
    c.create_app(50).await.unwrap();
    let base = store.join("basebackups_005");
    let mut ids = Vec::new();
    let mut ch = None;
    for i in 0..2 {
        if i == 1 {
            ch = Some(change(&c).await);
        }
        switch_and_push(&c, &store).await;
        c.stop().await.unwrap();
        let before = entries(&base);
        let mut cmd = tokio::process::Command::new("envdir");
        cmd.arg(&envdir).arg(&wale).args(["backup-push", "--while-offline"]).arg(c.pgdata());
        c.os_user().apply(&mut cmd);
        let out = cmd.output().await.unwrap();
        assert!(out.status.success(), "backup-push failed: {}", String::from_utf8_lossy(&out.stderr));
        ids.push(new_backup(&base, &before, |n| n.starts_with("base_")));
        c.start().await.unwrap();
    }
    let cfg: WaleConfig =
        toml::from_str(&format!("binary = \"{}\"\nenvdir = \"{}\"\n", wale.display(), envdir.display())).unwrap();
    let s = Subject {
        name: "wale",
        source: Arc::new(WaleSource::new(cfg)),
        older: ids[0].clone(),
        newer: ids[1].clone(),
        storage: vec![store.clone()],
    };
    conformance(s, &ch.unwrap(), &dir.sub("work")).await;
}

/// Base backups (tar) and dumps (custom) in S3 (moto, IAM enforced), read with the
/// least-privilege reader keys. The only test here that sets AWS_* variables.
#[tokio::test]
async fn object_storage_basebackup_and_pg_dump() {
    use common::s3::S3Server;
    use restorecheck_core::storage::StorageOptions;
    let dir = TestDir::new("conf-s3");
    let s3 = S3Server::start();
    let c = cluster(&dir, 50).await;
    let dumps = writable(&c, &c.backups_dir().join("dumps"));
    let mut ch = None;
    for id in [FIRST, SECOND] {
        if id == SECOND {
            ch = Some(change(&c).await);
        }
        let b = c.basebackup(&format!("tar/{id}"), &["-Ft", "-Xstream"]).await.unwrap();
        s3.upload_dir(&b, &format!("conf/base/{id}"));
        let dump = dumps.join(format!("{id}.dump"));
        let mut args = client_args(&c);
        args.extend(["-Fc".into(), "-f".into(), dump.display().to_string(), "app".into()]);
        c.tool("pg_dump", &args).await.unwrap();
        // Dumps in object storage are dated by their upload.
        s3.upload_file(&dump, &format!("conf/dumps/{id}.dump"));
    }
    let ch = ch.unwrap();
    for k in ["AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_SESSION_TOKEN"] {
        std::env::remove_var(k);
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", &s3.reader.access_key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &s3.reader.secret_access_key);
    let storage = StorageOptions::default().endpoint(s3.endpoint.clone()).region("us-east-1").retries(4);
    let bucket = &s3.bucket;
    let before = s3.snapshot("");
    let base = BaseBackupSource::new(
        BaseBackupConfig::new(PathBuf::from(format!("s3://{bucket}/conf/base"))).storage(storage.clone()),
    );
    let s = Subject {
        name: "basebackup (s3, tar)",
        source: Arc::new(base),
        older: FIRST.into(),
        newer: SECOND.into(),
        storage: vec![],
    };
    conformance(s, &ch, &dir.sub("work-base")).await;
    let dump =
        PgDumpSource::new(PgDumpConfig::new(PathBuf::from(format!("s3://{bucket}/conf/dumps"))).storage(storage));
    let s = Subject {
        name: "pg_dump (s3, custom)",
        source: Arc::new(dump),
        older: format!("{FIRST}.dump"),
        newer: format!("{SECOND}.dump"),
        storage: vec![],
    };
    conformance(s, &ch, &dir.sub("work-dump")).await;
    assert_eq!(s3.snapshot(""), before, "the bucket changed");
}
