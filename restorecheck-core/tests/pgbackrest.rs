//! Real pgBackRest backups (the installed `pgbackrest`, a posix repository in the test dir, WAL
//! pushed by the cluster's `archive_command`) restored by source `pgbackrest` and the `local`
//! target: a good backup passes with the rows written after it, a damaged repository file fails
//! in fetch, a WAL segment missing from the repository fails in recovery, and the repository is
//! never changed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::{Phase, Verdict};
use restorecheck_core::sources::{PgBackRestConfig, PgBackRestSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{BackupSource, Check, ErrorKind, RunContext};

const STANZA: &str = "rc";

/// A sample cluster archiving into a fresh pgBackRest repository, with one full backup.
struct Setup {
    cluster: SampleCluster,
    conf: PathBuf,
    repo: PathBuf,
}

async fn setup(dir: &TestDir, rows: u32, before_backup: impl AsyncFnOnce(&SampleCluster)) -> Setup {
    setup_with(dir, rows, "", before_backup).await
}

/// [`setup`] with `extra_global` lines added to the `[global]` section of pgbackrest.conf.
async fn setup_with(
    dir: &TestDir,
    rows: u32,
    extra_global: &str,
    before_backup: impl AsyncFnOnce(&SampleCluster),
) -> Setup {
    let repo = dir.sub("repo");
    let lock = dir.sub("lock");
    let conf = dir.path().join("pgbackrest.conf");
    let pgdata = dir.path().join("cluster/pgdata");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nrepo1-retention-full=9\nlog-level-file=off\nlock-path={}\nstart-fast=y\narchive-timeout=30\n{extra_global}\n[{STANZA}]\npg1-path={}\n",
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
    let cluster = SampleCluster::create(
        &dir.path().join("cluster"),
        SampleOptions { extra_conf: vec![push], checksums: true, ..Default::default() },
    )
    .await
    .expect("sample cluster");
    cluster.os_user().chown_tree(&repo).unwrap();
    cluster.os_user().chown_tree(&lock).unwrap();
    let port = cluster.port();
    let conn = [
        format!("--config={}", conf.display()),
        format!("--stanza={STANZA}"),
        format!("--pg1-port={port}"),
        format!("--pg1-socket-path={}", cluster.socket_dir().display()),
    ];
    let with = |extra: &[&str]| conn.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect::<Vec<_>>();
    pgbackrest(&cluster, dir.path(), &with(&["stanza-create"]));
    cluster.create_app(rows).await.unwrap();
    before_backup(&cluster).await;
    pgbackrest(&cluster, dir.path(), &with(&["--type=full", "backup"]));
    Setup { cluster, conf, repo }
}

fn source(s: &Setup, options: &[(&str, toml::Value)]) -> PgBackRestSource {
    PgBackRestSource::new(
        PgBackRestConfig::new(STANZA)
            .config(s.conf.clone())
            .options(options.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>()),
    )
    .unwrap()
}

fn check_with(source: PgBackRestSource) -> Check {
    let target = LocalTarget::new(LocalTargetConfig::default()).unwrap();
    Check::new("pgbackrest", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(std::time::Duration::from_secs(120))
}

/// Archived segment files in the repository (`<segment>-<sha1>[.gz]`), oldest first.
fn repo_segments(repo: &Path) -> Vec<PathBuf> {
    let dir = repo.join(format!("archive/{STANZA}/15-1/0000000100000000"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().split('-').next().unwrap().len() == 24)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn good_backup_restores_with_later_writes_from_the_archive_and_tablespaces_moved() {
    let dir = TestDir::new("pgbr-good");
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
    // Written after the backup: only the archive has these rows.
    s.cluster.add_rows(50).await.unwrap();
    s.cluster.switch_and_archive().await.unwrap();
    s.cluster.add_rows(25).await.unwrap();
    let last = s.cluster.switch_and_archive().await.unwrap();

    let src = source(&s, &[("repo1-retention-full", toml::Value::Integer(9))]);
    // What a container of the check's image would mount read-only: the config and the repository.
    let ro = src.read_only_paths();
    assert!(ro.contains(&s.conf) && ro.contains(&s.repo), "{ro:?}");
    // pgbackrest runs through the check's toolbox, its options handed over as environment.
    let tools = RecordingTools::new();
    let listed = src.list(&RecordingTools::context(&tools)).await.unwrap();
    assert!(
        tools.calls().contains(&ToolCall::Locate { program: "pgbackrest".into(), major: None }),
        "{:?}",
        tools.calls()
    );
    let prepared = tools.prepared();
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    assert_eq!(prepared[0].1, vec!["PGBACKREST_REPO1_RETENTION_FULL".to_string()]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].kind, "pgbackrest-full");
    assert_eq!(listed[0].pg_major, Some(15));
    assert!(listed[0].taken_at.is_some() && listed[0].size_bytes.is_some());

    let before = snapshot(&s.repo);
    let r = run(
        &dir,
        check_with(src)
            .assert(sql_eq("select count(*) from registrations", 275))
            .assert(sql_eq("select count(*) from far", 77)),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.backup.id.as_deref(), Some(listed[0].id.as_str()));
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    assert!(
        r.recovery.expected_end.iter().any(|e| e.reason.contains(&last)),
        "the archive's newest segment {last} was required: {:?}",
        r.recovery.expected_end
    );
    assert_eq!(snapshot(&s.repo), before, "the restore changed the pgBackRest repository");
    let prod_ts: Vec<_> = std::fs::read_dir(&ts).unwrap().flatten().collect();
    assert_eq!(prod_ts.len(), 1, "the production tablespace folder was written to: {prod_ts:?}");
}

#[tokio::test]
async fn damaged_repository_file_fails_in_fetch() {
    let dir = TestDir::new("pgbr-damaged");
    let s = setup(&dir, 3000, async |_c: &SampleCluster| {}).await;
    let rel: String = s
        .cluster
        .client("app")
        .await
        .unwrap()
        .query_one("select pg_relation_filepath('registrations')", &[])
        .await
        .unwrap()
        .get(0);
    // No `job-retry` option: failing fast on damage is restorecheck's default.
    let src = source(&s, &[]);
    let label = src.list(&RunContext::new()).await.unwrap()[0].id.clone();
    let file = s.repo.join(format!("backup/{STANZA}/{label}/pg_data/{rel}.gz"));
    assert!(file.is_file(), "{} not in the repository", file.display());
    // Valid gzip, wrong content: only pgBackRest's checksum can tell.
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{f}' > '{f}.raw' && printf '\\377' | dd of='{f}.raw' bs=1 seek=8200 conv=notrunc status=none \
             && gzip -c '{f}.raw' > '{f}' && rm '{f}.raw'",
            f = file.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let t = std::time::Instant::now();
    let r = run(&dir, check_with(src).assert(sql_eq("select count(*) from registrations", 3000))).await;
    assert_fail_in(&r, Phase::Fetch);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("checksum") && msg.contains(&rel), "{msg}");
    assert!(r.assertions.is_empty());
    // A figure for the record, not an assertion: with pgBackRest's own job retries (2, the
    // second after 15 s) the damage surfaced after about 38 s.
    eprintln!(
        "damaged_repository_file_fails_in_fetch: the check failed after {:.1} s (fetch phase {:.1} s)",
        t.elapsed().as_secs_f64(),
        r.timings.fetch.unwrap_or_default()
    );
}

#[tokio::test]
async fn wal_segment_missing_from_the_repository_fails_in_recovery() {
    let dir = TestDir::new("pgbr-gap");
    let s = setup(&dir, 10, async |_c: &SampleCluster| {}).await;
    let mut archived = Vec::new();
    for _ in 0..4 {
        s.cluster.add_rows(10).await.unwrap();
        archived.push(s.cluster.switch_and_archive().await.unwrap());
    }
    let gap = repo_segments(&s.repo)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&archived[1]))
        .expect("segment in the repository");
    std::fs::remove_file(&gap).unwrap();
    // Without the completeness proof this copy would answer with 20 of 50 rows.
    let r = run(&dir, check_with(source(&s, &[])).assert(sql_eq("select count(*) from registrations", 50))).await;
    assert_fail_in(&r, Phase::Recovery);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("recovery stopped at") && msg.contains(&archived[3]), "{msg}");
    assert!(r.assertions.is_empty(), "no assertion may run on a short recovery");
}

#[tokio::test]
async fn unknown_stanza_is_a_source_error_with_a_hint() {
    let dir = TestDir::new("pgbr-nostanza");
    let repo = dir.sub("repo");
    let conf = dir.path().join("pgbackrest.conf");
    std::fs::write(&conf, format!("[global]\nrepo1-path={}\nlog-level-file=off\n", repo.display())).unwrap();
    let src = PgBackRestSource::new(PgBackRestConfig::new("nope").config(conf)).unwrap();
    // Missing where the tools run (an image without it): the toolbox's message and the hint.
    let e = src.list(&RecordingTools::context(&RecordingTools::without(&["pgbackrest"]))).await.unwrap_err();
    assert_eq!(e.kind(), restorecheck_core::ErrorKind::Tooling, "{e}");
    assert!(e.to_string().contains(NOT_IN_IMAGE) && e.to_string().contains("install pgBackRest"), "{e}");
    let e = src.list(&RunContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), restorecheck_core::ErrorKind::Source, "{e}");
    assert!(e.to_string().contains("missing stanza path") && e.to_string().contains("repo1-path"), "{e}");
    let r = run(&dir, check_with(src)).await;
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(r.failure.unwrap().phase, Phase::Select);
}

const CIPHER_PASS: &str = "Rc-Cipher-Pass-8812xq";
const WRONG_PASS: &str = "Rc-Wrong-Pass-2291zv";

/// Every file under `root` with its length and a hash of its bytes: the repository must not
/// change by a single byte.
fn content_hashes(root: &Path) -> Vec<(PathBuf, u64, u64)> {
    use std::hash::{Hash, Hasher};
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64, u64)>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                out.push((e.path(), 0, 0));
                walk(&e.path(), out);
            } else if m.file_type().is_symlink() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read_link(e.path()).unwrap().hash(&mut h);
                out.push((e.path(), 1, h.finish()));
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.push((e.path(), bytes.len() as u64, h.finish()));
            }
        }
    }
    let mut v = Vec::new();
    walk(root, &mut v);
    v.sort();
    v
}

/// A pgbackrest.conf readable only by the cluster's OS user, as with a real cipher pass.
fn private_conf(c: &SampleCluster, path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    c.os_user().chown_tree(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
}

fn source_with_config(conf: &Path, options: &[(&str, toml::Value)]) -> PgBackRestSource {
    PgBackRestSource::new(
        PgBackRestConfig::new(STANZA)
            .config(conf.to_path_buf())
            .options(options.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>()),
    )
    .unwrap()
}

#[tokio::test]
async fn encrypted_repository_restores_with_its_cipher_pass_and_a_wrong_pass_is_a_key_error() {
    let dir = TestDir::new("pgbr-cipher");
    let cipher = format!("repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={CIPHER_PASS}\n");
    let s = setup_with(&dir, 120, &cipher, async |_c: &SampleCluster| {}).await;
    let conf_text = std::fs::read_to_string(&s.conf).unwrap();
    private_conf(&s.cluster, &s.conf, &conf_text);
    s.cluster.add_rows(30).await.unwrap();
    s.cluster.switch_and_archive().await.unwrap();
    // The repository really is encrypted (pgBackRest's files start with OpenSSL's "Salted__").
    let info = std::fs::read(s.repo.join(format!("backup/{STANZA}/backup.info"))).unwrap();
    assert!(info.starts_with(b"Salted__"), "backup.info is not encrypted");
    let before = content_hashes(&s.repo);

    // The right pass, in pgbackrest.conf as a real user keeps it.
    let r = run(&dir, check_with(source(&s, &[])).assert(sql_eq("select count(*) from registrations", 150))).await;
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(CIPHER_PASS), "the cipher pass is in the report: {json}");

    // The same repository with a wrong pass in the config file.
    let wrong_conf = dir.path().join("wrong.conf");
    private_conf(&s.cluster, &wrong_conf, &conf_text.replace(CIPHER_PASS, WRONG_PASS));
    let wrong = source_with_config(&wrong_conf, &[("job-retry", toml::Value::Integer(0))]);
    let e = wrong.list(&RunContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
    let msg = e.to_string();
    println!("wrong cipher pass: {msg}");
    assert!(msg.contains("the key is wrong") && msg.contains("repo1-cipher-pass"), "{msg}");
    for word in ["corrupt", "damaged", "too old", CIPHER_PASS, WRONG_PASS] {
        assert!(!msg.contains(word), "{word:?} in: {msg}");
    }
    assert!(!format!("{e:?}").contains(CIPHER_PASS) && !format!("{e:?}").contains(WRONG_PASS));
    // pgBackRest cannot even list the backups without the key, so the check ends in select.
    let r = run(&dir, check_with(wrong).assert(sql_eq("select count(*) from registrations", 150))).await;
    assert_eq!(r.verdict, Verdict::Error, "a wrong key is not a failed backup: {:?}", r.failure);
    let failure = r.failure.as_ref().unwrap();
    assert_eq!(failure.phase, Phase::Select, "{failure:?}");
    assert!(failure.message.contains("the key is wrong"), "{}", failure.message);
    assert!(r.assertions.is_empty());
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(CIPHER_PASS) && !json.contains(WRONG_PASS), "a cipher pass is in the report: {json}");

    // A wrong pass in the source's `options` (which beat pgbackrest.conf) is the same error.
    let overridden = source(&s, &[("repo1-cipher-pass", toml::Value::String(WRONG_PASS.into()))]);
    let e = overridden.list(&RunContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
    assert!(!e.to_string().contains(WRONG_PASS), "{e}");
    let r = run(&dir, check_with(overridden)).await;
    assert_eq!(r.verdict, Verdict::Error);
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(CIPHER_PASS) && !json.contains(WRONG_PASS), "a cipher pass is in the report: {json}");

    assert_eq!(content_hashes(&s.repo), before, "restorecheck changed the encrypted pgBackRest repository");
}
