//! restorecheck never writes, renames or deletes anything in a backup location: every local
//! source passes with its location mounted read-only (a read-only bind mount; the tests run as
//! root, so file modes alone would not stop a write; see [`ReadOnly::mount`] for the fallback
//! where mounting is not permitted), and every file in it is byte-for-byte and
//! metadata-for-metadata unchanged afterwards.
//!
//! Each location is a `cp -a` copy of what the producer wrote (the sample cluster keeps
//! archiving into its own folders, which must not count as a change), bind-mounted read-only
//! at a second path that the check is pointed at.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{CheckReport, Verdict};
use restorecheck_core::sources::{
    BarmanConfig, BarmanSource, PgBackRestConfig, PgBackRestSource, PgDumpConfig, PgDumpSource,
};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{BackupSource, Check};

/// `src` bind-mounted read-only at `path`; unmounted on drop (before the TestDir is removed:
/// declare it after the TestDir).
struct ReadOnly {
    /// Where the check reads the location.
    path: PathBuf,
    /// False in the fallback (no mount permitted): `path` is the location itself.
    mounted: bool,
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

impl ReadOnly {
    /// A read-only bind mount is the only thing that stops a root process from writing (the
    /// tests run as root; root ignores file modes). It works here (root with CAP_SYS_ADMIN).
    /// Where mounting is not permitted, fall back to `chmod -R a-w`: that still stops the tools
    /// that drop to their own OS user (barman as `barman_user`, pgbackrest and the server as
    /// `postgres`) but not restorecheck itself, so there the before/after content snapshot is
    /// the real guard.
    fn mount(src: &Path, path: &Path) -> ReadOnly {
        std::fs::create_dir_all(path).unwrap();
        let q = |p: &Path| format!("'{}'", p.display());
        let bind = sh(&format!("mount --bind {} {}", q(src), q(path)));
        let err = if bind.status.success() {
            let ro = ReadOnly { path: path.to_path_buf(), mounted: true };
            let remount = sh(&format!("mount -o remount,bind,ro {}", q(path)));
            if remount.status.success() {
                ro.assert_read_only();
                return ro;
            }
            String::from_utf8_lossy(&remount.stderr).into_owned()
        } else {
            String::from_utf8_lossy(&bind.stderr).into_owned()
        };
        eprintln!(
            "WARNING: no read-only bind mount ({}); falling back to chmod -R a-w on {}, which does not bind root",
            err.trim(),
            src.display()
        );
        assert!(sh(&format!("chmod -R a-w {}", q(src))).status.success());
        ReadOnly { path: src.to_path_buf(), mounted: false }
    }

    /// Creating a file fails with EROFS, even for root.
    fn assert_read_only(&self) {
        if !self.mounted {
            return;
        }
        let probe = self.path.join(".restorecheck-write-probe");
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                panic!("{} is writable", self.path.display());
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{}: {e}", self.path.display()),
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let out = sh(&format!("umount '{}'", self.path.display()));
        if !out.status.success() {
            // Busy (a process still has a file open): detach it so the TestDir can go.
            let _ = sh(&format!("umount -l '{}'", self.path.display()));
        }
    }
}

/// One entry of a content snapshot: kind, size, mode, owner, mtime and ctime (ns), and a
/// SipHash of the bytes (or the link target).
type Entry = (char, u64, u32, u32, u32, i128, i128, u64);

/// Every file, folder and link under `root` (the root included), keyed by relative path.
fn content_snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let ft = m.file_type();
        let mut h = std::hash::DefaultHasher::new();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            h.write(std::fs::read_link(p).unwrap().as_os_str().as_encoded_bytes());
            'l'
        } else {
            h.write(&std::fs::read(p).unwrap());
            'f'
        };
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            (
                kind,
                m.len(),
                m.mode(),
                m.uid(),
                m.gid(),
                ns(m.mtime(), m.mtime_nsec()),
                ns(m.ctime(), m.ctime_nsec()),
                h.finish(),
            ),
        );
        if ft.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs `check` against the read-only location and asserts PASS, no change, still read-only.
async fn run_read_only(dir: &TestDir, loc: &Path, ro: &ReadOnly, check: Check) -> CheckReport {
    let before = content_snapshot(loc);
    assert!(before.len() > 1, "empty location {}", loc.display());
    assert_eq!(content_snapshot(&ro.path), before, "the mount shows the location");
    let r = run(dir, check).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert!(r.assertions.iter().all(|a| a.verdict == Verdict::Pass), "{:?}", r.assertions);
    let after = content_snapshot(loc);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| (k, before.get(k), after.get(k)))
        .collect();
    assert!(changed.is_empty(), "the backup location changed: {changed:#?}");
    ro.assert_read_only();
    r
}

fn local() -> Arc<LocalTarget> {
    Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap())
}

fn count(n: i64) -> restorecheck_core::assertions::SqlAssertion {
    sql_eq("select count(*) from registrations", n)
}

#[tokio::test]
async fn basebackup_tar_gz_with_wal_archive_passes_from_a_read_only_location() {
    let dir = TestDir::new("lp-bb-targz");
    let c = cluster(&dir, 120).await;
    c.basebackup("b1", &["-Ft", "-z", "-Xnone"]).await.unwrap();
    c.add_rows(30).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let loc = dir.sub("location");
    copy(&c.backups_dir(), &loc.join("backups"));
    copy(&c.archive_dir(), &loc.join("wal"));
    let ro = ReadOnly::mount(&loc, &dir.path().join("ro"));
    let r =
        run_read_only(&dir, &loc, &ro, check(&ro.path.join("backups"), Some(&ro.path.join("wal"))).assert(count(150)))
            .await;
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
}

#[tokio::test]
async fn basebackup_plain_passes_from_a_read_only_location() {
    let dir = TestDir::new("lp-bb-plain");
    let c = cluster(&dir, 80).await;
    c.basebackup("b1", &["-Fp", "-Xstream"]).await.unwrap();
    let loc = dir.sub("location");
    copy(&c.backups_dir(), &loc.join("backups"));
    let ro = ReadOnly::mount(&loc, &dir.path().join("ro"));
    let r = run_read_only(&dir, &loc, &ro, check(&ro.path.join("backups"), None).assert(count(80))).await;
    assert_eq!(r.recovery.mode.as_deref(), Some("crash"));
}

#[tokio::test]
async fn pg_dump_custom_and_sql_gz_pass_from_a_read_only_location() {
    let dir = TestDir::new("lp-dump");
    let c = cluster(&dir, 90).await;
    let loc = dir.sub("location");
    let conn = [
        "-h".to_string(),
        c.socket_dir().display().to_string(),
        "-p".into(),
        c.port().to_string(),
        "-U".into(),
        "postgres".into(),
    ];
    let dumps = c.backups_dir();
    for (fmt, name) in [("-Fc", "app.custom"), ("-Fp", "app.sql")] {
        let mut args = conn.to_vec();
        args.extend([fmt.to_string(), "-f".into(), dumps.join(name).display().to_string(), "app".into()]);
        c.tool("pg_dump", &args).await.unwrap();
    }
    assert!(sh(&format!("gzip '{}'", dumps.join("app.sql").display())).status.success());
    copy(&dumps, &loc.join("dumps"));
    let ro = ReadOnly::mount(&loc, &dir.path().join("ro"));
    for name in ["app.custom", "app.sql.gz"] {
        let source = PgDumpSource::new(PgDumpConfig::new(ro.path.join("dumps").join(name)));
        let chk = Check::new("dump", Arc::new(source), local())
            .database("app")
            .timeout(std::time::Duration::from_secs(300))
            .assert(count(90));
        let r = run_read_only(&dir, &loc, &ro, chk).await;
        assert_eq!(r.recovery.mode.as_deref(), Some("logical"), "{name}");
    }
}

#[tokio::test]
async fn pgbackrest_passes_from_a_read_only_repository() {
    const STANZA: &str = "rc";
    let dir = TestDir::new("lp-pgbr");
    let repo = dir.sub("repo");
    let lock = dir.sub("lock");
    let conf = dir.path().join("pgbackrest.conf");
    let pgdata = dir.path().join("cluster/pgdata");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nrepo1-retention-full=9\nlog-level-file=off\nlock-path={}\nstart-fast=y\narchive-timeout=30\n\n[{STANZA}]\npg1-path={}\n",
            repo.display(),
            lock.display(),
            pgdata.display()
        ),
    )
    .unwrap();
    let push = format!(
        "archive_command = 'pgbackrest --config={} --stanza={STANZA} archive-push %p && cp %p {}/%f'",
        conf.display(),
        dir.path().join("cluster/archive").display()
    );
    let c = SampleCluster::create(
        &dir.path().join("cluster"),
        SampleOptions { extra_conf: vec![push], checksums: true, ..Default::default() },
    )
    .await
    .expect("sample cluster");
    c.os_user().chown_tree(&repo).unwrap();
    c.os_user().chown_tree(&lock).unwrap();
    let with = |extra: &str| {
        vec![
            format!("--config={}", conf.display()),
            format!("--stanza={STANZA}"),
            format!("--pg1-port={}", c.port()),
            format!("--pg1-socket-path={}", c.socket_dir().display()),
            extra.to_string(),
        ]
    };
    pgbackrest(&c, dir.path(), &with("stanza-create"));
    c.create_app(100).await.unwrap();
    let mut args = with("--type=full");
    args.push("backup".into());
    pgbackrest(&c, dir.path(), &args);
    // Only the archive has these rows: archive-get reads them from the read-only repository.
    c.add_rows(40).await.unwrap();
    c.switch_and_archive().await.unwrap();

    let loc = dir.sub("location");
    copy(&repo, &loc.join("repo"));
    let ro = ReadOnly::mount(&loc, &dir.path().join("ro"));
    // The production config, with the repository path pointed at the read-only mount.
    let source = PgBackRestSource::new(PgBackRestConfig::new(STANZA).config(conf.clone()).options(BTreeMap::from([(
        "repo1-path".to_string(),
        toml::Value::String(ro.path.join("repo").display().to_string()),
    )])))
    .unwrap();
    let listed = source.list(&restorecheck_core::RunContext::new()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let chk = Check::new("pgbackrest", Arc::new(source), local())
        .database("app")
        .timeout(std::time::Duration::from_secs(120))
        .assert(count(140));
    let locks_before = content_snapshot(&lock);
    let r = run_read_only(&dir, &loc, &ro, chk).await;
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    // Nor did any lock file go to the lock-path of the production config (restorecheck passes
    // --lock-path into its scratch dir).
    assert_eq!(content_snapshot(&lock), locks_before, "pgbackrest wrote to the production lock folder");
}

fn barman(conf: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("barman")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("barman is installed (scripts/setup.sh --test installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn barman_owned(dir: &TestDir, name: &str) -> PathBuf {
    let p = dir.sub(name);
    let u = nix::unistd::User::from_name("barman").unwrap().expect("OS user barman (the barman package creates it)");
    std::os::unix::fs::chown(&p, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    p
}

fn barman_conf(path: &Path, home: &Path, locks: &Path, logs: &Path, confd: &Path, c: &SampleCluster) {
    let conn = format!("host={} port={} user=postgres", c.socket_dir().display(), c.port());
    std::fs::write(
        path,
        format!(
            "[barman]\nbarman_user = barman\nbarman_home = {home}\nbarman_lock_directory = {locks}\n\
             log_file = {logs}/barman.log\nlog_level = INFO\nconfiguration_files_directory = {confd}\n\n\
             [rc]\ndescription = restorecheck test\nconninfo = {conn} dbname=postgres\n\
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
}

/// A Barman catalog with one backup and the WAL after it; with `waiting`, one more segment
/// (15 more rows) still sits in `incoming`, as between two `barman cron` runs.
async fn barman_case(name: &str, waiting: bool) {
    let dir = TestDir::new(name);
    let home = barman_owned(&dir, "barman-home");
    let logs = barman_owned(&dir, "barman-log");
    let locks = barman_owned(&dir, "barman-lock");
    let confd = dir.sub("barman.d");
    let incoming = home.join("rc").join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let u = nix::unistd::User::from_name("barman").unwrap().unwrap();
    for p in [home.join("rc"), incoming.clone()] {
        std::os::unix::fs::chown(&p, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    }
    std::fs::set_permissions(&incoming, std::fs::Permissions::from_mode(0o777)).unwrap();
    // switch_and_archive waits for the segment in the cluster's own archive folder.
    let ship = format!(
        "archive_command = 'cp %p {i}/%f && chmod 0644 {i}/%f && test ! -f {a}/%f && cp %p {a}/%f'",
        i = incoming.display(),
        a = dir.path().join("cluster/archive").display()
    );
    let c = SampleCluster::create(
        &dir.path().join("cluster"),
        SampleOptions { extra_conf: vec![ship], ..Default::default() },
    )
    .await
    .expect("sample cluster");
    for p in [c.root().to_path_buf(), c.socket_dir()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let conf = dir.path().join("barman.conf");
    barman_conf(&conf, &home, &locks, &logs, &confd, &c);
    c.create_app(60).await.unwrap();
    c.switch_and_archive().await.unwrap();
    barman(&conf, &["archive-wal", "rc"]).unwrap();
    barman(&conf, &["backup", "rc"]).unwrap();
    c.add_rows(15).await.unwrap();
    c.switch_and_archive().await.unwrap();
    barman(&conf, &["archive-wal", "rc"]).unwrap();
    if waiting {
        c.add_rows(15).await.unwrap();
        let seg = c.switch_and_archive().await.unwrap();
        assert!(incoming.join(&seg).is_file(), "{seg} waits in incoming");
    }

    // The catalog as Barman left it, read-only, under its own config.
    let loc = dir.sub("location");
    copy(&home, &loc.join("home"));
    let ro = ReadOnly::mount(&loc, &dir.path().join("ro"));
    let ro_conf = dir.path().join("barman-ro.conf");
    barman_conf(&ro_conf, &ro.path.join("home"), &locks, &logs, &confd, &c);
    let source = BarmanSource::new(BarmanConfig::new("rc").config(ro_conf)).unwrap();
    let chk = Check::new("barman", Arc::new(source), local())
        .database("app")
        .timeout(std::time::Duration::from_secs(120))
        // The catalog holds 75 rows; with WAL waiting in incoming, barman recover archives it (in
        // the shadow) and restores it too: 90.
        .assert(
            restorecheck_core::assertions::SqlAssertion::new(
                restorecheck_core::assertions::SqlAssertionConfig::new("select count(*) from registrations")
                    .min(if waiting { 90.0 } else { 75.0 })
                    .max(if waiting { 90.0 } else { 75.0 }),
            )
            .unwrap(),
        );
    run_read_only(&dir, &loc, &ro, chk).await;
}

#[tokio::test]
async fn barman_passes_from_a_read_only_catalog() {
    barman_case("lp-barman", false).await;
}

/// `barman recover` first archives what waits in `incoming` (renames it into `wals/`, appends to
/// `wals/xlog.db`); on the real catalog that would be a write (EROFS here). Source barman runs it
/// against a private shadow of the catalog (copies of the bookkeeping files, symlinks to the
/// data), so the catalog is only read and the waiting WAL is restored too.
#[tokio::test]
async fn barman_with_wal_waiting_in_incoming_passes_from_a_read_only_catalog() {
    barman_case("lp-barman-incoming", true).await;
}
