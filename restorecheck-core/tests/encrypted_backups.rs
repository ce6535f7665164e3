//! Encrypted backups, made by the real tools: pg_basebackup and pg_dump output encrypted with
//! the `age` and `gpg` command-line tools, restored by the `local` target. The right key passes
//! with the right data; a wrong key is an error of the check (fetch phase) that says so and
//! leaks no secret; a damaged encrypted file fails the check and never passes.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use restorecheck_core::assertions::SqlAssertion;
use restorecheck_core::decrypt::DecryptConfig;
use restorecheck_core::fixture::SampleCluster;
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource, PgDumpConfig, PgDumpSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::Check;

const COUNT: &str = "select count(*) from registrations";

/// The tool's path; a missing tool fails the test (CI installs them), never skips it.
fn tool(name: &str) -> PathBuf {
    restorecheck_core::wal_archive::which(name)
        .unwrap_or_else(|| panic!("`{name}` is not installed: these tests need the real age and gpg tools"))
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new age identity file in `dir` and its public key (recipient).
fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    sh(Command::new(tool("age-keygen")).arg("-o").arg(&p));
    let public = sh(Command::new(tool("age-keygen")).arg("-y").arg(&p)).trim().to_string();
    assert!(public.starts_with("age1"), "{public}");
    (p, public)
}

/// `age -r recipient -o from.age from`, then removes `from`. Returns the encrypted file.
fn age_encrypt_file(from: &Path, recipient: &str) -> PathBuf {
    let to = PathBuf::from(format!("{}.age", from.display()));
    sh(Command::new(tool("age")).arg("-r").arg(recipient).arg("-o").arg(&to).arg(from));
    std::fs::remove_file(from).unwrap();
    assert!(std::fs::read(&to).unwrap().starts_with(b"age-encryption.org/v1\n"));
    to
}

/// Encrypts every file of a backup folder with age and removes the originals.
fn age_encrypt_dir(dir: &Path, recipient: &str) -> Vec<String> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        assert!(e.file_type().unwrap().is_file(), "{:?}", e.path());
        names.push(age_encrypt_file(&e.path(), recipient).file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    names
}

/// `age -p`: age reads passphrases only from a terminal; script(1) gives it one. The pauses let
/// age switch the terminal to no-echo before each line arrives (that switch flushes input).
fn age_encrypt_with_passphrase(from: &Path, to: &Path, secret: &str) {
    let age = tool("age");
    tool("script");
    let typed = format!("sleep 2; printf '%s\\n' '{secret}'; sleep 2; printf '%s\\n' '{secret}'; sleep 3");
    let inner = format!("{} -p -o '{}' '{}'", age.display(), to.display(), from.display());
    sh(Command::new("sh").arg("-c").arg(format!("({typed}) | script -qec \"{inner}\" /dev/null >/dev/null")));
    assert!(std::fs::read(to).unwrap().starts_with(b"age-encryption.org/v1\n-> scrypt "), "age -p made no file");
}

fn age_identity(p: &Path) -> DecryptConfig {
    DecryptConfig::age_identity_file(p)
}

/// A private GnuPG home (short path for gpg-agent's socket); its agent is stopped on drop.
struct GnupgHome(PathBuf);

impl GnupgHome {
    fn new(name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let d = PathBuf::from(format!("/tmp/rcg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        GnupgHome(d)
    }
    fn gpg(&self) -> Command {
        let mut c = Command::new(tool("gpg"));
        c.arg("--homedir").arg(&self.0).args(["--batch", "--no-tty", "--pinentry-mode", "loopback"]);
        c
    }
    /// A new key pair without passphrase for `email`.
    fn key(&self, email: &str) {
        sh(self.gpg().args(["--passphrase", "", "--quick-gen-key", email, "future-default", "default", "never"]));
    }
    fn encrypt_to(&self, email: &str, from: &Path, to: &Path) {
        sh(self.gpg().args(["--trust-model", "always", "-r", email, "-o"]).arg(to).arg("-e").arg(from));
    }
    fn decrypt(&self, passphrase_env: Option<&str>) -> DecryptConfig {
        let cfg = DecryptConfig::gpg_homedir(&self.0);
        match passphrase_env {
            Some(name) => cfg.passphrase_env(name),
            None => cfg,
        }
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").arg("--homedir").arg(&self.0).args(["--kill", "all"]).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn target() -> Arc<LocalTarget> {
    Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap())
}

fn bb_check(path: &Path, wal_archive: Option<&Path>, decrypt: DecryptConfig) -> Check {
    let mut cfg = BaseBackupConfig::new(path).decrypt(decrypt);
    cfg.wal_archive = wal_archive.map(Path::to_path_buf);
    let source = BaseBackupSource::new(cfg);
    Check::new("encrypted-basebackup", Arc::new(source), target()).database("app").timeout(Duration::from_secs(300))
}

fn dump_check(path: &Path, decrypt: DecryptConfig, rows: i64) -> Check {
    let source = PgDumpSource::new(PgDumpConfig::new(path.to_path_buf()).decrypt(decrypt));
    Check::new("encrypted-dump", Arc::new(source), target())
        .database("app")
        .timeout(Duration::from_secs(300))
        .assert(sql_eq(COUNT, rows))
}

fn json(r: &CheckReport) -> String {
    serde_json::to_string(r).unwrap()
}

/// The check errored (not failed: the backup may be fine) in the fetch phase, saying the key is
/// wrong; no assertion ran.
fn assert_wrong_key(r: &CheckReport) -> String {
    assert_eq!(r.verdict, Verdict::Error, "expected ERROR, got {:?} {:?}", r.verdict, r.failure);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.phase, Phase::Fetch, "{f:?}");
    assert!(f.message.contains("key is wrong"), "{}", f.message);
    assert!(r.assertions.is_empty(), "{:?}", r.assertions);
    f.message.clone()
}

/// The check failed (the backup is bad) in the fetch phase, naming the damaged file.
fn assert_damaged(r: &CheckReport, file: &str) -> String {
    assert_fail_in(r, Phase::Fetch);
    let m = r.failure.as_ref().unwrap().message.clone();
    assert!(m.contains(file) && m.contains("damaged"), "{m}");
    assert!(!m.contains("key is wrong"), "{m}");
    m
}

/// A cluster with `rows` registrations and a `-Ft -z -Xstream` backup `b1` whose every file is
/// age-encrypted to a new identity (originals removed). Returns the cluster, the backup folder
/// and the identity file.
async fn age_encrypted_tar_backup(dir: &TestDir, rows: u32) -> (SampleCluster, PathBuf, PathBuf) {
    let c = cluster(dir, rows).await;
    let b = c.basebackup("b1", &["-Ft", "-z", "-Xstream"]).await.unwrap();
    let keys = dir.sub("keys");
    let (key, public) = age_keygen(&keys, "backup.key");
    let names = age_encrypt_dir(&b, &public);
    assert_eq!(names, ["backup_manifest.age", "base.tar.gz.age", "pg_wal.tar.gz.age"]);
    (c, b, key)
}

#[tokio::test]
async fn age_encrypted_tar_backup_restores_with_the_identity_and_no_secret_in_the_report() {
    let dir = TestDir::new("enc-age-bb");
    let (_c, b, key) = age_encrypted_tar_backup(&dir, 321).await;
    let r = run(&dir, bb_check(&b, None, age_identity(&key)).assert(sql_eq(COUNT, 321))).await;
    assert_pass(&r);
    assert_eq!(r.backup.kind.as_deref(), Some("tar.gz+age"));
    assert_eq!(r.recovery.mode.as_deref(), Some("crash"));
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    let j = json(&r);
    assert!(!j.contains("AGE-SECRET-KEY") && !j.contains(secret), "secret key in the report: {j}");
    // The same backup, asserted wrongly, fails: the assertion really ran on the decrypted data.
    let r = run(&dir, bb_check(&b, None, age_identity(&key)).assert(sql_eq(COUNT, 320))).await;
    assert_fail_in(&r, Phase::Assert);
}

#[tokio::test]
async fn age_encrypted_tar_backup_with_a_different_identity_errors_in_fetch_and_cleans_up() {
    let dir = TestDir::new("enc-age-wrong");
    let (_c, b, key) = age_encrypted_tar_backup(&dir, 10).await;
    let (other, _) = age_keygen(&dir.sub("other"), "other.key");
    // `run` asserts that the check's work dir is empty afterwards and no server is left.
    let r = run(&dir, bb_check(&b, None, age_identity(&other)).assert(sql_eq(COUNT, 10))).await;
    let m = assert_wrong_key(&r);
    assert!(m.contains("other.key") && m.contains("base.tar.gz.age"), "{m}");
    let j = json(&r);
    let secret = std::fs::read_to_string(&other).unwrap();
    let secret = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    assert!(!j.contains("AGE-SECRET-KEY") && !j.contains(secret), "{j}");
    assert!(std::fs::read_to_string(&key).unwrap().contains("AGE-SECRET-KEY-"));
}

#[tokio::test]
async fn damaged_age_encrypted_base_tar_fails_never_passes() {
    let dir = TestDir::new("enc-age-damaged");
    let (_c, b, key) = age_encrypted_tar_backup(&dir, 2000).await;
    let base_len = std::fs::metadata(b.join("base.tar.gz.age")).unwrap().len();
    assert!(base_len > 256 * 1024, "base.tar.gz.age is only {base_len} bytes: the flip must land in the payload");

    // One flipped bit in the middle: the header and backup_label read, the chunk there does not.
    let flipped = dir.sub("flipped");
    copy(&b, &flipped.join("b1"));
    let f = flipped.join("b1/base.tar.gz.age");
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&f, bytes).unwrap();
    let r = run(&dir, bb_check(&flipped, None, age_identity(&key)).assert(sql_eq(COUNT, 2000))).await;
    // The age error ("chunk failed authentication") is wrapped by the tar reader's "failed to
    // unpack"; the verdict and the file named are what matter here.
    assert_damaged(&r, "base.tar.gz.age");

    // Truncated by a few bytes: only the end of the stream is missing.
    let cut = dir.sub("cut");
    copy(&b, &cut.join("b1"));
    let f = cut.join("b1/base.tar.gz.age");
    std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(base_len - 100).unwrap();
    let r = run(&dir, bb_check(&cut, None, age_identity(&key)).assert(sql_eq(COUNT, 2000))).await;
    let m = assert_damaged(&r, "base.tar.gz.age");
    assert!(m.contains("truncated"), "{m}");
}

/// A cluster whose `registrations` table holds `rows` rows, and pg_dump output `name`.
async fn pg_dump(c: &SampleCluster, name: &str, opts: &[&str]) -> PathBuf {
    let out = c.backups_dir().join(name);
    let mut args: Vec<String> =
        vec!["-h".into(), c.socket_dir().display().to_string(), "-p".into(), c.port().to_string()];
    args.extend(["-U".into(), "postgres".into()]);
    args.extend(opts.iter().map(|s| s.to_string()));
    args.extend(["-f".into(), out.display().to_string(), "app".into()]);
    c.tool("pg_dump", &args).await.unwrap();
    out
}

#[tokio::test]
async fn gpg_encrypted_custom_dump_restores_and_a_wrong_key_or_damage_do_not_pass() {
    let dir = TestDir::new("enc-gpg-dump");
    let c = cluster(&dir, 250).await;
    let plain = pg_dump(&c, "app.dump", &["-Fc"]).await;
    let home = GnupgHome::new("dump");
    home.key("backup@example.invalid");
    let enc_dir = dir.sub("enc");
    let enc = enc_dir.join("app.dump.gpg");
    home.encrypt_to("backup@example.invalid", &plain, &enc);
    assert!(!std::fs::read(&enc).unwrap().starts_with(b"PGDMP"));

    let r = run(&dir, dump_check(&enc_dir, home.decrypt(None), 250)).await;
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("logical"));
    assert_eq!(r.backup.id.as_deref(), Some("app.dump.gpg"));

    // A GnuPG home without the backup's secret key: a key error.
    let other = GnupgHome::new("other");
    other.key("other@example.invalid");
    let r = run(&dir, dump_check(&enc_dir, other.decrypt(None), 250)).await;
    let m = assert_wrong_key(&r);
    assert!(m.contains("no secret key"), "{m}");

    // Truncated: a defect, never a short restore.
    let cut_dir = dir.sub("cut");
    let cut = cut_dir.join("app.dump.gpg");
    let bytes = std::fs::read(&enc).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 200]).unwrap();
    let r = run(&dir, dump_check(&cut_dir, home.decrypt(None), 250)).await;
    assert_damaged(&r, "app.dump.gpg");
}

#[tokio::test]
async fn a_damaged_newest_encrypted_dump_fails_instead_of_an_older_one_passing() {
    let dir = TestDir::new("enc-age-dump-newest");
    let c = cluster(&dir, 250).await;
    let plain = pg_dump(&c, "app.dump", &["-Fc"]).await;
    let (key, public) = age_keygen(&dir.sub("keys"), "backup.key");
    let folder = dir.sub("dumps");
    for name in ["a-older.dump", "b-newer.dump"] {
        std::fs::copy(&plain, folder.join(name)).unwrap();
        age_encrypt_file(&folder.join(name), &public);
    }
    let older = folder.join("a-older.dump.age");
    let newer = folder.join("b-newer.dump.age");
    let t = std::time::SystemTime::now();
    std::fs::File::options().write(true).open(&older).unwrap().set_modified(t - Duration::from_secs(3600)).unwrap();
    // Both good: the newest is chosen and passes.
    let r = run(&dir, dump_check(&folder, age_identity(&key), 250)).await;
    assert_pass(&r);
    assert_eq!(r.backup.id.as_deref(), Some("b-newer.dump.age"));
    // One flipped bit in the newest (a small dump: inside the first age chunk, which listing
    // reads to recognise the format). It must fail; checking the older one instead would pass.
    let mut bytes = std::fs::read(&newer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&newer, bytes).unwrap();
    std::fs::File::options().write(true).open(&newer).unwrap().set_modified(t).unwrap();
    let r = run(&dir, dump_check(&folder, age_identity(&key), 250)).await;
    assert_eq!(r.backup.id.as_deref(), Some("b-newer.dump.age"), "{:?}", r.failure);
    assert_damaged(&r, "b-newer.dump.age");
}

#[tokio::test]
async fn gpg_symmetric_plain_dump_restores_with_its_passphrase() {
    let dir = TestDir::new("enc-gpg-sym");
    let c = cluster(&dir, 250).await;
    let plain = pg_dump(&c, "app.sql", &["-Fp"]).await;
    let secret = "Gpg-Sym-Secret-5521";
    let home = GnupgHome::new("sym");
    let enc_dir = dir.sub("enc");
    let enc = enc_dir.join("app.sql.gpg");
    sh(home.gpg().args(["--no-symkey-cache", "--passphrase", secret, "-o"]).arg(&enc).arg("--symmetric").arg(&plain));
    std::env::set_var("RC_ENC_TEST_GPG_SYM_RIGHT", secret);
    std::env::set_var("RC_ENC_TEST_GPG_SYM_WRONG", "Gpg-Sym-Secret-5522");
    let r = run(&dir, dump_check(&enc_dir, home.decrypt(Some("RC_ENC_TEST_GPG_SYM_WRONG")), 250)).await;
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.failure);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.phase, Phase::Fetch, "{f:?}");
    assert!(f.message.contains("$RC_ENC_TEST_GPG_SYM_WRONG is wrong"), "{}", f.message);
    let j = json(&r);
    assert!(!j.contains(secret) && !j.contains("5522"), "{j}");
    let r = run(&dir, dump_check(&enc_dir, home.decrypt(Some("RC_ENC_TEST_GPG_SYM_RIGHT")), 250)).await;
    assert_pass(&r);
    assert!(!json(&r).contains(secret));
}

#[tokio::test]
async fn age_passphrase_plain_sql_gz_dump_restores_and_a_wrong_passphrase_errors_without_leaking_it() {
    let dir = TestDir::new("enc-age-pass");
    let c = cluster(&dir, 250).await;
    let plain = pg_dump(&c, "app.sql", &["-Fp"]).await;
    let gz = dir.sub("gz").join("app.sql.gz");
    sh(Command::new("sh").arg("-c").arg(format!("gzip -c '{}' > '{}'", plain.display(), gz.display())));
    let enc_dir = dir.sub("enc");
    let enc = enc_dir.join("app.sql.gz.age");
    let secret = "Age-Pass-Secret-8841";
    age_encrypt_with_passphrase(&gz, &enc, secret);
    std::env::set_var("RC_ENC_TEST_AGE_PASS_RIGHT", secret);
    std::env::set_var("RC_ENC_TEST_AGE_PASS_WRONG", "Age-Pass-Secret-8842");
    let pass = DecryptConfig::age_passphrase_env;

    let r = run(&dir, dump_check(&enc, pass("RC_ENC_TEST_AGE_PASS_RIGHT"), 250)).await;
    assert_pass(&r);
    assert_eq!(r.backup.kind.as_deref(), Some("pg_dump-plain.gz+age"));
    assert!(!json(&r).contains(secret));

    let r = run(&dir, dump_check(&enc, pass("RC_ENC_TEST_AGE_PASS_WRONG"), 250)).await;
    let m = assert_wrong_key(&r);
    assert!(m.contains("passphrase in $RC_ENC_TEST_AGE_PASS_WRONG is wrong"), "{m}");
    let j = json(&r);
    assert!(!j.contains(secret) && !j.contains("Age-Pass-Secret-8842"), "{j}");
}

#[tokio::test]
async fn toml_decrypt_key_works_end_to_end() {
    let dir = TestDir::new("enc-toml");
    let (_c, b, key) = age_encrypted_tar_backup(&dir, 42).await;
    let text = format!(
        r#"
[[check]]
name = "encrypted"
database = "app"
timeout = "5m"

[check.source]
kind = "basebackup"
path = "{}"
decrypt = {{ kind = "age", identity_file = "{}" }}

[check.target]
kind = "local"

[[check.assert]]
sql = "{COUNT}"
equals = 42
"#,
        b.display(),
        key.display()
    );
    let cfg = restorecheck_core::config::Config::parse(&text, &Default::default()).unwrap();
    let mut checks = cfg.checks;
    assert_eq!(checks.len(), 1);
    let r = run(&dir, checks.remove(0)).await;
    assert_pass(&r);
    assert!(r.assertions.iter().any(|a| a.observed == Some(serde_json::json!(42))), "{:?}", r.assertions);
    // The documented key is checked: a misspelt one is a configuration error.
    let bad = text.replace("identity_file =", "identity =");
    assert!(restorecheck_core::config::Config::parse(&bad, &Default::default()).is_err());
}

/// Copies `from`'s WAL segments into a new folder `to`, every one age-encrypted to `recipient`:
/// odd segments gzip-compressed first (`….gz.age`), the others plain (`….age`).
fn encrypted_archive(from: &Path, to: &Path, recipient: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in segments(from).into_iter().enumerate() {
        let staged = if i % 2 == 1 {
            let p = to.join(format!("{s}.gz"));
            sh(Command::new("sh").arg("-c").arg(format!("gzip -c '{}' > '{}'", from.join(&s).display(), p.display())));
            p
        } else {
            let p = to.join(&s);
            std::fs::copy(from.join(&s), &p).unwrap();
            p
        };
        out.push(age_encrypt_file(&staged, recipient).file_name().unwrap().to_string_lossy().into_owned());
    }
    assert!(segments(to).is_empty(), "plain segments left: {:?}", segments(to));
    out
}

/// A cluster with 100 rows, an encrypted `-Ft -Xnone` backup and four later batches of 10 rows,
/// each in its own archived segment. Returns the cluster, the backup folder, the identity, its
/// recipient and the names of the four later segments.
async fn backup_with_later_wal(dir: &TestDir) -> (SampleCluster, PathBuf, PathBuf, String, Vec<String>) {
    let c = cluster(dir, 100).await;
    let b = c.basebackup("b1", &["-Ft", "-z", "-Xnone"]).await.unwrap();
    let (key, public) = age_keygen(&dir.sub("keys"), "backup.key");
    age_encrypt_dir(&b, &public);
    let mut later = Vec::new();
    for _ in 0..4 {
        c.add_rows(10).await.unwrap();
        later.push(c.switch_and_archive().await.unwrap());
    }
    (c, b, key, public, later)
}

#[tokio::test]
async fn local_wal_archive_of_age_encrypted_segments_recovers_later_writes() {
    let dir = TestDir::new("enc-wal");
    let (c, b, key, public, _) = backup_with_later_wal(&dir).await;
    let archive = dir.sub("archive");
    let names = encrypted_archive(&c.archive_dir(), &archive, &public);
    assert!(names.iter().any(|n| n.ends_with(".gz.age")) && names.iter().any(|n| !n.ends_with(".gz.age")));
    let before = snapshot(&archive);
    let r = run(&dir, bb_check(&b, Some(&archive), age_identity(&key)).assert(sql_eq(COUNT, 140))).await;
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    assert_eq!(r.recovery.expected_end.len(), 2, "backup end and archive end were both required");
    assert_eq!(snapshot(&archive), before, "the archive must not change");

    // Segments encrypted to another recipient than the backup: an error in fetch naming the
    // segment, not a short recovery.
    let (_, other_pub) = age_keygen(&dir.sub("other"), "other.key");
    let foreign = dir.sub("archive-foreign");
    encrypted_archive(&c.archive_dir(), &foreign, &other_pub);
    let r = run(&dir, bb_check(&b, Some(&foreign), age_identity(&key)).assert(sql_eq(COUNT, 140))).await;
    let m = assert_wrong_key(&r);
    assert!(m.contains("archive-foreign/0000000"), "{m}");
}

#[tokio::test]
async fn a_missing_encrypted_segment_in_the_middle_of_a_local_archive_fails_in_recovery() {
    let dir = TestDir::new("enc-wal-gap");
    let (c, b, key, public, later) = backup_with_later_wal(&dir).await;
    let archive = dir.sub("archive");
    let names = encrypted_archive(&c.archive_dir(), &archive, &public);
    let gone = names.iter().find(|n| n.starts_with(&later[1])).unwrap();
    std::fs::remove_file(archive.join(gone)).unwrap();
    // Without the completeness check this would answer with 120 of 140 rows.
    let r = run(&dir, bb_check(&b, Some(&archive), age_identity(&key)).assert(SqlAssertion::min(COUNT, 1.0))).await;
    assert_fail_in(&r, Phase::Recovery);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("recovery stopped at") && msg.contains(&later[3]), "{msg}");
    assert!(r.assertions.is_empty(), "no assertion may run on a short recovery");
}

#[tokio::test]
async fn encrypted_archive_segments_without_a_matching_decrypt_are_an_error_not_a_pass_on_old_data() {
    let dir = TestDir::new("enc-wal-nokey");
    let c = cluster(&dir, 100).await;
    // A plain backup that carries its own WAL: it would restore (to 100 rows) without the archive.
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    c.add_rows(10).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let (_, public) = age_keygen(&dir.sub("keys"), "backup.key");
    let archive = dir.sub("archive");
    encrypted_archive(&c.archive_dir(), &archive, &public);
    // No decrypt at all: the archive's 110 rows cannot be read; that is the tester's
    // configuration, not a backup that holds 100 rows.
    let r = run(&dir, check(&c.backups_dir(), Some(&archive)).assert(SqlAssertion::min(COUNT, 1.0))).await;
    assert_eq!(r.verdict, Verdict::Error, "{:?} {:?}", r.verdict, r.failure);
    let f = r.failure.unwrap();
    assert_eq!(f.phase, Phase::Fetch, "{f:?}");
    assert!(f.message.contains("encrypted") && f.message.contains("decrypt"), "{}", f.message);
    // gpg configured for an archive of age files: the same.
    let home = GnupgHome::new("nokey");
    let source = BaseBackupSource::new(
        BaseBackupConfig::new(c.backups_dir()).wal_archive(archive.clone()).decrypt(home.decrypt(None)),
    );
    let ch = Check::new("wrong-kind", Arc::new(source), target()).database("app").assert(SqlAssertion::min(COUNT, 1.0));
    let r = run(&dir, ch).await;
    assert_eq!(r.verdict, Verdict::Error, "{:?} {:?}", r.verdict, r.failure);
    assert!(r.failure.unwrap().message.contains(".age"));
}
