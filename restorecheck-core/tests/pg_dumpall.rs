//! Real `pg_dumpall` output of a cluster with two databases, three roles, an extension and a
//! tablespace, restored whole by source `pg_dump` on the `local` target: roles the fresh
//! cluster already has are no error, the tablespace goes into the work dir (its original
//! folder is left exactly as it was), every other error still fails the check.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use restorecheck_core::assertions::{SqlAssertion, SqlAssertionConfig};
use restorecheck_core::fixture::SampleCluster;
use restorecheck_core::report::{CheckReport, Phase};
use restorecheck_core::sources::{PgDumpConfig, PgDumpSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

/// `sql` in database `db` must return `v`.
fn sql_in(db: &str, sql: &str, v: i64) -> SqlAssertion {
    SqlAssertion::new(
        SqlAssertionConfig::new(sql).name(format!("{db}: {sql}")).database(db).equals(toml::Value::Integer(v)),
    )
    .unwrap()
}

/// A source cluster: `app` (250 registrations, owned by `app_owner`, readable by `reporting`,
/// extension pg_trgm) and `app2` (table `notes`, 40 rows, in tablespace `ts1`), plus the
/// NOLOGIN role `locked`. Returns the cluster and the tablespace's original folder.
async fn source_cluster(dir: &TestDir) -> (SampleCluster, PathBuf) {
    let c = cluster(dir, 250).await;
    let ts = dir.sub("ts1-original");
    std::os::unix::fs::chown(&ts, Some(c.os_user().uid), Some(c.os_user().gid)).unwrap();
    for sql in [
        "create role app_owner login password 'not-a-real-secret'".to_string(),
        "create role reporting".into(),
        "create role locked nologin".into(),
        format!("create tablespace ts1 location '{}'", ts.display()),
        "create database app2 owner app_owner".into(),
    ] {
        c.exec("postgres", &sql).await.unwrap();
    }
    c.exec(
        "app",
        "create extension pg_trgm; alter table registrations owner to app_owner; \
         grant select on registrations to reporting; \
         create index registrations_email_trgm on registrations using gin (email gin_trgm_ops)",
    )
    .await
    .unwrap();
    c.exec(
        "app2",
        "create table notes (id int primary key, body text) tablespace ts1; \
         insert into notes select g, 'note ' || g from generate_series(1, 40) g; \
         alter table notes owner to app_owner",
    )
    .await
    .unwrap();
    (c, ts)
}

async fn dumpall(c: &SampleCluster, name: &str, extra: &[&str]) -> PathBuf {
    let out = c.backups_dir().join(name);
    let mut args = client_args(c);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-f".into(), out.display().to_string()]);
    c.tool("pg_dumpall", &args).await.unwrap();
    out
}

fn source(path: &Path, globals: Option<PathBuf>) -> PgDumpSource {
    let mut cfg = PgDumpConfig::new(path);
    cfg.globals = globals;
    PgDumpSource::new(cfg)
}

/// Every assertion about the restored cluster, in both databases.
fn whole_cluster_check(path: &Path) -> Check {
    Check::new("dumpall", Arc::new(source(path, None)), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_in("app", "select count(*) from registrations", 250))
        .assert(sql_in("app2", "select count(*) from notes", 40))
        .assert(sql_in("postgres", "select count(*) from pg_roles where rolname in ('app_owner', 'reporting', 'locked')", 3))
        .assert(sql_in("postgres", "select count(*) from pg_roles where rolname = 'locked' and not rolcanlogin", 1))
        .assert(sql_in("app", "select count(*) from pg_extension where extname = 'pg_trgm'", 1))
        .assert(sql_in("app", "select count(*) from pg_tables where tablename = 'registrations' and tableowner = 'app_owner'", 1))
        .assert(sql_in("app", "select count(*) where has_table_privilege('reporting', 'registrations', 'select')", 1))
        .assert(sql_in("app2", "select count(*) from pg_tables where tablename = 'notes' and tablespace = 'ts1'", 1))
        .assert(sql_in(
            "postgres",
            "select count(*) from pg_tablespace where spcname = 'ts1' and pg_tablespace_location(oid) like '%/tablespaces/ts-1'",
            1,
        ))
}

/// Path, size, mode, mtime (seconds, nanoseconds) and content of one entry.
type Entry = (PathBuf, u64, u32, i64, i64, Vec<u8>);

/// Every entry under `root` (and `root` itself).
fn exact_snapshot(root: &Path) -> Vec<Entry> {
    fn walk(p: &Path, out: &mut Vec<Entry>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let content = if m.is_file() { std::fs::read(p).unwrap() } else { Vec::new() };
        out.push((p.to_path_buf(), m.len(), m.mode(), m.mtime(), m.mtime_nsec(), content));
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                walk(&e.path(), out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, &mut v);
    v.sort();
    v
}

fn assert_no_secret(r: &CheckReport) {
    let json = serde_json::to_string(r).unwrap();
    assert!(!json.contains("SCRAM-SHA-256$"), "a password hash reached the report: {json}");
}

#[tokio::test]
async fn pg_dumpall_plain_and_gzip_restore_whole_and_leave_the_tablespace_folder_alone() {
    let dir = TestDir::new("dumpall");
    let (mut c, ts) = source_cluster(&dir).await;
    let plain = dumpall(&c, "cluster.sql", &[]).await;
    let text = std::fs::read_to_string(&plain).unwrap();
    assert!(text.starts_with("--\n-- PostgreSQL database cluster dump\n"), "{}", &text[..200]);
    assert!(text.contains("CREATE ROLE postgres;") && text.contains("\\connect app2"));
    assert!(text.contains(&format!("LOCATION '{}'", ts.display())));
    let gz = dir.sub("gz").join("cluster.sql.gz");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", plain.display(), gz.display()))
        .status()
        .unwrap();
    assert!(st.success());
    // The source cluster is stopped so that nothing but the restore could change its tablespace.
    c.stop().await.unwrap();
    let before = exact_snapshot(&ts);
    assert!(before.len() > 2, "the original tablespace folder holds the source's files: {before:?}");

    // The same cluster dumped with --clean (DROP … before every CREATE) and --if-exists.
    c.start().await.unwrap();
    let clean = dumpall(&c, "clean.sql", &["--clean"]).await;
    let clean_if = dumpall(&c, "clean-if-exists.sql", &["--clean", "--if-exists"]).await;
    assert!(std::fs::read_to_string(&clean).unwrap().contains("DROP ROLE postgres;"));
    c.stop().await.unwrap();
    let before = exact_snapshot(&ts);
    for p in [&clean, &clean_if] {
        let r = run(&dir, whole_cluster_check(p)).await;
        assert_pass(&r);
        assert!(
            r.notes.iter().any(|n| n.contains("pg_dumpall --clean") && n.contains("DROP ROLE \"postgres\"")),
            "{:?}",
            r.notes
        );
        assert_eq!(exact_snapshot(&ts), before, "the original tablespace folder changed");
    }

    for p in [&plain, &gz] {
        let r = run(&dir, whole_cluster_check(p)).await;
        assert_pass(&r);
        assert_eq!(r.recovery.mode.as_deref(), Some("logical"));
        assert_eq!(r.backup.pg_major, Some(15));
        assert!(r.backup.kind.as_deref().unwrap_or("").starts_with("pg_dump-dumpall"), "{:?}", r.backup.kind);
        assert!(
            r.notes.iter().any(|n| n.contains("skipped the dump's CREATE ROLE") && n.contains("postgres")),
            "{:?}",
            r.notes
        );
        assert!(
            r.notes.iter().any(|n| n.contains("tablespace ts1: created in") && n.contains(&ts.display().to_string())),
            "{:?}",
            r.notes
        );
        assert!(
            !r.notes.iter().any(|n| n.contains("created roles")),
            "the dump creates its roles itself: {:?}",
            r.notes
        );
        assert_no_secret(&r);
        assert_eq!(exact_snapshot(&ts), before, "the original tablespace folder changed");
    }
}

#[tokio::test]
async fn a_damaged_pg_dumpall_fails_and_only_existing_roles_are_forgiven() {
    let dir = TestDir::new("dumpall-broken");
    let (c, _ts) = source_cluster(&dir).await;
    let text = std::fs::read_to_string(dumpall(&c, "cluster.sql", &[]).await).unwrap();
    let broken = dir.sub("broken");
    let check = |name: &str, content: String| {
        let p = broken.join(name);
        std::fs::write(&p, content).unwrap();
        whole_cluster_check(&p)
    };

    // Cut in the middle of the second database's data.
    let cut = text.find("COPY public.notes").unwrap() + 40;
    let r = run(&dir, check("truncated.sql", text[..cut].to_string())).await;
    assert_fail_in(&r, Phase::Restore);

    // A statement that does not parse, with the dump's closing line intact.
    let r =
        run(&dir, check("typo.sql", text.replacen("CREATE TABLE public.notes", "CREATE TABEL public.notes", 1))).await;
    assert_fail_in(&r, Phase::Restore);
    assert!(r.failure.as_ref().unwrap().log_tail.as_deref().unwrap_or("").contains("syntax error"), "{:?}", r.failure);

    // A role the dump itself created is created twice: only the fresh cluster's roles are forgiven.
    let twice = text.replacen("CREATE ROLE reporting;", "CREATE ROLE reporting;\nCREATE ROLE reporting;", 1);
    let r = run(&dir, check("twice.sql", twice)).await;
    assert_fail_in(&r, Phase::Restore);
    assert!(
        r.failure.as_ref().unwrap().log_tail.as_deref().unwrap_or("").contains("already exists"),
        "{:?}",
        r.failure
    );

    // A database locale this host lacks: the tester's problem, an error, not a failed check.
    assert!(text.contains("LOCALE = 'C'"), "the premise of this case changed");
    let r = run(&dir, check("locale.sql", text.replacen("LOCALE = 'C'", "LOCALE = 'xx_XX.UTF-8'", 1))).await;
    assert_eq!(r.verdict, restorecheck_core::report::Verdict::Error, "{:?}", r.failure);
    let msg = &r.failure.as_ref().unwrap().message;
    assert!(msg.contains("xx_XX.UTF-8") && msg.contains("locale-gen"), "{msg}");

    // A failing ALTER ROLE with a password hash: the error is reported, the hash is not.
    // (The option is put next to the hash, so that psql's error context quotes it.)
    let line = text.lines().find(|l| l.starts_with("ALTER ROLE app_owner WITH")).unwrap();
    let hash_at = line.find(" PASSWORD 'SCRAM-SHA-256$").unwrap();
    let bad = text.replacen(line, &format!("ALTER ROLE app_owner WITH BOGUS{}", &line[hash_at..]), 1);
    let r = run(&dir, check("password.sql", bad)).await;
    assert_fail_in(&r, Phase::Restore);
    let tail = r.failure.as_ref().unwrap().log_tail.clone().unwrap_or_default();
    assert!(tail.contains("bogus") && tail.contains("PASSWORD '***"), "{tail}");
    assert_no_secret(&r);
}

#[tokio::test]
async fn globals_only_output_serves_as_globals_for_a_custom_dump() {
    let dir = TestDir::new("dumpall-globals");
    let (mut c, ts) = source_cluster(&dir).await;
    let globals = dumpall(&c, "globals.sql", &["--globals-only"]).await;
    let custom = c.backups_dir().join("app.custom");
    let mut args = client_args(&c);
    args.extend(["-Fc".into(), "-f".into(), custom.display().to_string(), "app2".into()]);
    c.tool("pg_dump", &args).await.unwrap();
    c.stop().await.unwrap();
    let before = exact_snapshot(&ts);
    let ch = Check::new(
        "globals",
        Arc::new(source(&custom, Some(globals))),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    )
    .database("app2")
    .assert(sql_in("app2", "select count(*) from notes", 40))
    .assert(sql_in("app2", "select count(*) from pg_tables where tablename = 'notes' and tableowner = 'app_owner'", 1))
    .assert(sql_in("app2", "select count(*) from pg_tables where tablename = 'notes' and tablespace is null", 1))
    .assert(sql_in(
        "postgres",
        "select count(*) from pg_roles where rolname in ('app_owner', 'reporting', 'locked')",
        3,
    ));
    let r = run(&dir, ch).await;
    assert_pass(&r);
    assert!(r.notes.iter().any(|n| n.contains("ran globals file")), "{:?}", r.notes);
    assert!(!r.notes.iter().any(|n| n.contains("created roles")), "roles came from the globals file: {:?}", r.notes);
    // The custom dump's table lives in ts1: restored without tablespaces, and said so.
    assert!(r.notes.iter().any(|n| n.contains("--no-tablespaces") && n.contains("ts1")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("tablespace ts1: created in")), "{:?}", r.notes);
    assert_eq!(exact_snapshot(&ts), before, "the original tablespace folder changed");

    // A plain pg_dump of objects in a tablespace: it is created in the work dir (psql cannot skip it).
    let plain = c.backups_dir().join("app2.sql");
    let mut args = client_args(&c);
    c.start().await.unwrap();
    args.extend(["-Fp".into(), "-f".into(), plain.display().to_string(), "app2".into()]);
    c.tool("pg_dump", &args).await.unwrap();
    c.stop().await.unwrap();
    let before = exact_snapshot(&ts);
    assert!(std::fs::read_to_string(&plain).unwrap().contains("SET default_tablespace = ts1;"));
    let ch = Check::new(
        "plain-ts",
        Arc::new(source(&plain, None)),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    )
    .database("app2")
    .assert(sql_in("app2", "select count(*) from notes", 40))
    .assert(sql_in("app2", "select count(*) from pg_tables where tablename = 'notes' and tablespace = 'ts1'", 1));
    let r = run(&dir, ch).await;
    assert_pass(&r);
    assert!(
        r.notes.iter().any(|n| n.contains("created the tablespaces the dump uses") && n.contains("ts1")),
        "{:?}",
        r.notes
    );
    assert_eq!(exact_snapshot(&ts), before, "the original tablespace folder changed");

    // restore_tablespaces: the dump's tablespace is created in the work dir and used.
    let src = PgDumpSource::new(PgDumpConfig::new(custom.clone()).restore_tablespaces(true));
    let ch = Check::new("ts", Arc::new(src), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
        .database("app2")
        .assert(sql_in("app2", "select count(*) from notes", 40))
        .assert(sql_in("app2", "select count(*) from pg_tables where tablename = 'notes' and tablespace = 'ts1'", 1))
        .assert(sql_in(
            "postgres",
            "select count(*) from pg_tablespace where spcname = 'ts1' and pg_tablespace_location(oid) like '%/tablespaces/ts-1'",
            1,
        ));
    let r = run(&dir, ch).await;
    assert_pass(&r);
    assert!(
        r.notes.iter().any(|n| n.contains("created the tablespaces the dump uses") && n.contains("ts1")),
        "{:?}",
        r.notes
    );
    assert_eq!(exact_snapshot(&ts), before, "the original tablespace folder changed");
}

#[tokio::test]
async fn a_hand_written_globals_file_stays_lenient_but_its_tablespace_is_redirected() {
    let dir = TestDir::new("dumpall-handmade");
    let (mut c, _ts) = source_cluster(&dir).await;
    let custom = c.backups_dir().join("app.custom");
    let mut args = client_args(&c);
    args.extend(["-Fc".into(), "-f".into(), custom.display().to_string(), "app".into()]);
    c.tool("pg_dump", &args).await.unwrap();
    c.stop().await.unwrap();
    // An existing folder the tablespace statement names: it must stay empty.
    let elsewhere = dir.sub("elsewhere");
    let globals = dir.sub("globals").join("roles.sql");
    std::fs::write(
        &globals,
        format!(
            "CREATE ROLE postgres WITH SUPERUSER LOGIN;\nCREATE ROLE app_owner LOGIN;\nCREATE ROLE reporting;\n\
             GRANT no_such_role TO reporting;\nCREATE TABLESPACE archive OWNER postgres LOCATION '{}';\n",
            elsewhere.display()
        ),
    )
    .unwrap();
    let ch = Check::new(
        "handmade",
        Arc::new(source(&custom, Some(globals))),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    )
    .database("app")
    .assert(sql_in("app", "select count(*) from registrations", 250))
    .assert(sql_in("postgres", "select count(*) from pg_tablespace where spcname = 'archive'", 1));
    let r = run(&dir, ch).await;
    assert_pass(&r);
    assert!(r.notes.iter().any(|n| n.starts_with("globals:") && n.contains("no_such_role")), "{:?}", r.notes);
    assert!(!r.notes.iter().any(|n| n.contains("already exists")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("tablespace archive: created in")), "{:?}", r.notes);
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none(), "the named folder was written to");
}
