//! Backups in object storage, read from a real S3-compatible server (moto, IAM enforced) with a
//! least-privilege reader: tar and plain base backups with a WAL archive, dumps, encrypted
//! files, shared-profile credentials, a connection cut mid-download (resumed) and a server that
//! goes away mid-download (a clear error, nothing left behind, nothing changed in the bucket).
//!
//! The tests in this file share process-wide AWS_* variables, so they run one at a time.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::s3::{Creds, FaultProxy, S3Server};
use common::*;
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource, PgDumpConfig, PgDumpSource};
use restorecheck_core::storage::StorageOptions;
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Puts `creds` in the standard AWS environment variables (and nothing else).
fn use_creds(creds: &Creds) {
    for k in ["AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_SESSION_TOKEN"] {
        std::env::remove_var(k);
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", &creds.access_key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key);
}

fn storage(endpoint: &str) -> StorageOptions {
    StorageOptions::default().endpoint(endpoint.to_string()).region("us-east-1").retries(4)
}

fn base_check(url: &str, wal: Option<&str>, endpoint: &str, rows: i64) -> Check {
    let mut cfg = BaseBackupConfig::new(url).storage(storage(endpoint));
    cfg.wal_archive = wal.map(PathBuf::from);
    let source = BaseBackupSource::new(cfg);
    let target = LocalTarget::new(LocalTargetConfig::default()).unwrap();
    Check::new("s3", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", rows))
}

/// The report must not carry any part of the credentials.
fn assert_no_secret(r: &CheckReport, s3: &S3Server) {
    let json = serde_json::to_string(r).unwrap();
    for secret in [&s3.reader.secret_access_key, &s3.admin.secret_access_key] {
        assert!(!json.contains(secret.as_str()), "a secret key leaked into the report");
    }
}

fn assert_error_in(r: &CheckReport, phase: Phase) -> String {
    assert_eq!(r.verdict, Verdict::Error, "expected ERROR, got {:?} {:?}", r.verdict, r.failure);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.phase, phase, "{f:?}");
    f.message.clone()
}

/// A cluster with `rows` registrations, a `-Ft -z -Xnone` backup, then 40 more rows that only
/// the archived WAL holds. Returns the cluster (keep it alive) and the total row count.
async fn backup_with_later_wal(dir: &TestDir, rows: u32) -> (restorecheck_core::fixture::SampleCluster, i64) {
    let c = cluster(dir, rows).await;
    c.basebackup("b1", &["-Ft", "-z", "-Xnone"]).await.unwrap();
    c.add_rows(40).await.unwrap();
    c.switch_and_archive().await.unwrap();
    (c, rows as i64 + 40)
}

#[tokio::test]
async fn tar_backup_and_wal_archive_restore_from_s3_with_a_read_only_user() {
    let _g = SERIAL.lock().await;
    let dir = TestDir::new("s3-tar");
    let s3 = S3Server::start();
    assert!(s3.reader_write_denied(), "the reader policy must forbid writes, or this test proves nothing");
    let (c, total) = backup_with_later_wal(&dir, 300).await;
    s3.upload_dir(&c.backups_dir(), "pg/base");
    s3.upload_dir(&c.archive_dir(), "pg/wal");
    let before = s3.snapshot("");
    use_creds(&s3.reader);
    let bucket = &s3.bucket;
    let r = run(
        &dir,
        base_check(&format!("s3://{bucket}/pg/base"), Some(&format!("s3://{bucket}/pg/wal")), &s3.endpoint, total),
    )
    .await;
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    assert_eq!(r.backup.id.as_deref(), Some("b1"));
    let shown = r.backup.source.clone().unwrap_or_default();
    assert!(shown.contains(&format!("s3://{bucket}/pg/base")), "{shown}");
    assert_eq!(s3.snapshot(""), before, "the bucket changed");
    assert_no_secret(&r, &s3);
}

#[tokio::test]
async fn plain_backup_and_a_dump_restore_from_s3() {
    let _g = SERIAL.lock().await;
    let dir = TestDir::new("s3-plain");
    let s3 = S3Server::start();
    let c = cluster(&dir, 120).await;
    let plain = c.basebackup("plain", &["-Fp", "-Xstream"]).await.unwrap();
    s3.upload_dir(&plain, "plain/only");
    let dump = c.backups_dir().join("app.dump");
    let args: Vec<String> =
        ["-h", &c.socket_dir().display().to_string(), "-p", &c.port().to_string(), "-U", "postgres"]
            .iter()
            .map(|s| s.to_string())
            .chain(["-Fc".into(), "-f".into(), dump.display().to_string(), "app".into()])
            .collect();
    c.tool("pg_dump", &args).await.unwrap();
    s3.upload_file(&dump, "dumps/app.dump");
    let before = s3.snapshot("");
    use_creds(&s3.reader);
    let bucket = &s3.bucket;

    // One plain-format backup at the prefix itself (object stores have no empty folders).
    let r = run(&dir, base_check(&format!("s3://{bucket}/plain/only"), None, &s3.endpoint, 120)).await;
    assert_pass(&r);

    // A folder of dumps, and the same dump named as a single object.
    for url in [format!("s3://{bucket}/dumps"), format!("s3://{bucket}/dumps/app.dump")] {
        let source = PgDumpSource::new(PgDumpConfig::new(PathBuf::from(&url)).storage(storage(&s3.endpoint)));
        let check =
            Check::new("dump", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
                .database("app")
                .assert(sql_eq("select count(*) from registrations", 120));
        let r = run(&dir, check).await;
        assert_pass(&r);
        assert_eq!(r.recovery.mode.as_deref(), Some("logical"), "{url}");
    }
    assert_eq!(s3.snapshot(""), before);
}

/// Encrypts every file of `dir` with the real `age` CLI for `recipient`, removing the originals.
fn age_encrypt_all(dir: &Path, recipient: &str) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let out = PathBuf::from(format!("{}.age", p.display()));
        let st = std::process::Command::new("age").arg("-r").arg(recipient).arg("-o").arg(&out).arg(&p).status();
        assert!(st.expect("the age CLI (scripts/setup.sh --test installs it)").success());
        std::fs::remove_file(&p).unwrap();
    }
}

/// An age key pair made by `age-keygen`: (identity file, recipient).
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = std::process::Command::new("age-keygen").arg("-o").arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&key).unwrap();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().trim().to_string();
    (key, recipient)
}

#[tokio::test]
async fn age_encrypted_backup_in_s3_decrypts_and_a_wrong_key_is_an_error_in_fetch() {
    let _g = SERIAL.lock().await;
    let dir = TestDir::new("s3-age");
    let s3 = S3Server::start();
    let (c, total) = backup_with_later_wal(&dir, 200).await;
    let (right, recipient) = age_key(dir.path(), "right.key");
    let (wrong, _) = age_key(dir.path(), "wrong.key");
    let enc = dir.sub("enc");
    copy(&c.backups_dir().join("b1"), &enc.join("b1"));
    age_encrypt_all(&enc.join("b1"), &recipient);
    copy(&c.archive_dir(), &enc.join("wal"));
    age_encrypt_all(&enc.join("wal"), &recipient);
    s3.upload_dir(&enc.join("b1"), "enc/base/b1");
    s3.upload_dir(&enc.join("wal"), "enc/wal");
    use_creds(&s3.reader);
    let bucket = &s3.bucket;
    let with_key = |key: &Path| {
        let source = BaseBackupSource::new(
            BaseBackupConfig::new(PathBuf::from(format!("s3://{bucket}/enc/base")))
                .wal_archive(PathBuf::from(format!("s3://{bucket}/enc/wal")))
                .storage(storage(&s3.endpoint))
                .decrypt(restorecheck_core::decrypt::DecryptConfig::age_identity_file(key)),
        );
        Check::new("s3-age", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
            .database("app")
            .assert(sql_eq("select count(*) from registrations", total))
    };
    let r = run(&dir, with_key(&right)).await;
    assert_pass(&r);
    let kind = r.backup.kind.clone().unwrap_or_default();
    assert!(kind.contains("age"), "{kind}");

    let r = run(&dir, with_key(&wrong)).await;
    let msg = assert_error_in(&r, Phase::Fetch);
    assert!(msg.contains("key is wrong"), "{msg}");
    assert!(!msg.to_lowercase().contains("corrupt") && !msg.contains("damaged"), "{msg}");
    let secret = std::fs::read_to_string(&right).unwrap();
    let secret_line = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    assert!(!serde_json::to_string(&r).unwrap().contains(secret_line));
}

#[tokio::test]
async fn credentials_come_from_a_shared_profile_file() {
    let _g = SERIAL.lock().await;
    let dir = TestDir::new("s3-profile");
    let s3 = S3Server::start();
    let c = cluster(&dir, 50).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    s3.upload_dir(&c.backups_dir(), "p/base");
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"] {
        std::env::remove_var(k);
    }
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG\naws_secret_access_key = nope\n\n[restore-tester]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.reader.access_key_id, s3.reader.secret_access_key
        ),
    )
    .unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &file);
    std::env::set_var("AWS_CONFIG_FILE", dir.path().join("no-config"));
    let bucket = &s3.bucket;
    let url = format!("s3://{bucket}/p/base");

    // The default profile holds keys the server does not know: access denied, in select.
    let r = run(&dir, base_check(&url, None, &s3.endpoint, 50)).await;
    let msg = assert_error_in(&r, Phase::Select);
    assert!(msg.contains("access denied") || msg.contains("InvalidAccessKeyId"), "{msg}");

    // The named profile holds the reader's keys.
    let source = BaseBackupSource::new(
        BaseBackupConfig::new(PathBuf::from(&url)).storage(storage(&s3.endpoint).profile("restore-tester")),
    );
    let check =
        Check::new("profile", Arc::new(source), Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))
            .database("app")
            .assert(sql_eq("select count(*) from registrations", 50));
    let r = run(&dir, check).await;
    assert_pass(&r);
    assert_no_secret(&r, &s3);
    std::env::remove_var("AWS_SHARED_CREDENTIALS_FILE");
    std::env::remove_var("AWS_CONFIG_FILE");
}

#[tokio::test]
async fn a_connection_cut_mid_download_is_resumed() {
    let _g = SERIAL.lock().await;
    let dir = TestDir::new("s3-cut");
    let s3 = S3Server::start();
    let c = cluster(&dir, 20_000).await;
    c.basebackup("b1", &["-Ft", "-z", "-Xstream"]).await.unwrap();
    let size = std::fs::metadata(c.backups_dir().join("b1/base.tar.gz")).unwrap().len();
    assert!(size > 1_000_000, "base.tar.gz is only {size} bytes; the cut must land mid-object");
    s3.upload_dir(&c.backups_dir(), "cut/base");
    use_creds(&s3.reader);
    let proxy = FaultProxy::start(&s3.addr());
    // The first two connections that carry data die after 256 KiB.
    proxy.cut_next(2, 256 * 1024);
    let r = run(&dir, base_check(&format!("s3://{}/cut/base", s3.bucket), None, &proxy.endpoint, 20_000)).await;
    assert_pass(&r);
    assert!(proxy.cuts() >= 1, "no connection was cut; the test did not exercise resuming");
}

#[tokio::test]
async fn a_server_gone_mid_download_is_a_clear_error_and_leaves_nothing_behind() {
    let _g = SERIAL.lock().await;
    let dir = TestDir::new("s3-gone");
    let s3 = S3Server::start();
    let c = cluster(&dir, 20_000).await;
    c.basebackup("b1", &["-Ft", "-z", "-Xstream"]).await.unwrap();
    s3.upload_dir(&c.backups_dir(), "gone/base");
    let before = s3.snapshot("");
    use_creds(&s3.reader);
    let proxy = FaultProxy::start(&s3.addr());
    let check = base_check(&format!("s3://{}/gone/base", s3.bucket), None, &proxy.endpoint, 20_000);
    // Listing and reading backup_label work; then the server "goes away" half way through
    // downloading base.tar.gz.
    let size = std::fs::metadata(c.backups_dir().join("b1/base.tar.gz")).unwrap().len();
    proxy.stop_at_total(size / 2);
    let started = std::time::Instant::now();
    let r = run(&dir, check).await; // `run` asserts the work dir is empty and no server runs
    let msg = assert_error_in(&r, Phase::Fetch);
    assert!(msg.contains("object storage") && msg.contains(&format!("s3://{}/gone/base/b1", s3.bucket)), "{msg}");
    assert!(!msg.contains("damaged"), "a network failure is not a damaged backup: {msg}");
    println!("gave up after {:?} ({} bytes forwarded): {msg}", started.elapsed(), proxy.forwarded());
    assert!(proxy.forwarded() >= size / 2, "the download never reached the cut");
    assert_eq!(s3.snapshot(""), before);
}
