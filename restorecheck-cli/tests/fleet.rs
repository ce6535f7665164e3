//! Many databases: shards run as concurrent processes the way a Kubernetes Indexed Job starts
//! its pods (`--shard auto/N`, `JOB_COMPLETION_INDEX`), `--results` in a folder, `report`
//! merging them, and signed evidence checked by openssl and by `verify-report`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::fleet::shard_of;

const BIN: &str = env!("CARGO_BIN_EXE_restorecheck");

struct Dir(PathBuf);
impl Dir {
    fn new(name: &str) -> Self {
        let p = PathBuf::from("/var/tmp/restorecheck-cli-tests").join(format!("fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("work")).unwrap();
        for d in [p.parent().unwrap(), p.as_path(), &p.join("work")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Dir(p)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cmd(dir: &Dir, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("XDG_STATE_HOME", dir.path("state")).env_remove("JOB_COMPLETION_INDEX");
    c
}

fn out(o: Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn rc(dir: &Dir, args: &[&str]) -> (i32, String, String) {
    out(cmd(dir, args).output().unwrap())
}

fn openssl(args: &[&str]) -> (i32, String) {
    let o = Command::new("openssl").args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

/// An Ed25519 key pair made by openssl: (private PKCS#8 PEM, public SPKI PEM).
fn keypair(dir: &Dir, name: &str) -> (String, String) {
    let (key, public) = (dir.s(&format!("{name}.pem")), dir.s(&format!("{name}.pub.pem")));
    assert_eq!(openssl(&["genpkey", "-algorithm", "ed25519", "-out", &key]).0, 0);
    assert_eq!(openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]).0, 0);
    (key, public)
}

fn openssl_verifies(public: &str, file: &Path) -> bool {
    let sig = format!("{}.sig", file.display());
    let (code, text) = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        public,
        "-rawin",
        "-in",
        file.to_str().unwrap(),
        "-sigfile",
        &sig,
    ]);
    assert!(code == 0 || text.contains("Signature Verification Failure"), "openssl could not check: {text}");
    code == 0
}

/// The fingerprint the report must record, computed by openssl and base64 here: the SHA-256 of
/// the 32 raw public-key bytes (the end of the SPKI DER), unpadded base64.
fn openssl_fingerprint(dir: &Dir, public: &str) -> String {
    let der = dir.path("pub.der");
    assert_eq!(openssl(&["pkey", "-pubin", "-in", public, "-outform", "DER", "-out", der.to_str().unwrap()]).0, 0);
    let bytes = std::fs::read(&der).unwrap();
    let raw = dir.path("pub.raw");
    std::fs::write(&raw, &bytes[bytes.len() - 32..]).unwrap();
    let (code, b64) = {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl dgst -sha256 -binary {} | openssl base64 -A", raw.display()))
            .output()
            .unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert_eq!(code, 0);
    format!("ed25519:SHA256:{}", b64.trim().trim_end_matches('='))
}

/// Three check names of which shard 0 of 2 holds some and shard 1 the others.
fn three_names() -> Vec<String> {
    let cands: Vec<String> =
        ["orders", "billing", "auth", "search", "audit", "users"].iter().map(|s| s.to_string()).collect();
    let zero: Vec<&String> = cands.iter().filter(|n| shard_of(n, 2) == 0).collect();
    let one: Vec<&String> = cands.iter().filter(|n| shard_of(n, 2) == 1).collect();
    assert!(!zero.is_empty() && !one.is_empty());
    let mut names = vec![zero[0].clone(), one[0].clone()];
    names.push(cands.iter().find(|n| !names.contains(n)).unwrap().clone());
    names
}

fn config(dir: &Dir, backups: &Path, names: &[String]) -> PathBuf {
    let mut text = format!("work_dir = \"{}\"\n", dir.path("work").display());
    for name in names {
        text.push_str(&format!(
            "\n[[check]]\nname = \"{name}\"\ndatabase = \"app\"\n[check.source]\nkind = \"basebackup\"\npath = \"{}\"\n\
             [[check.assert]]\nname = \"rows\"\nsql = \"select count(*) from registrations\"\nequals = 7\n",
            backups.display()
        ));
    }
    let p = dir.path("fleet.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn shards_run_as_concurrent_pods_merge_into_one_signed_report() {
    let dir = Dir::new("shards");
    let mut c = SampleCluster::create(&dir.path("cluster"), SampleOptions::default()).await.unwrap();
    c.create_app(7).await.unwrap();
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    c.stop().await.unwrap();
    let names = three_names();
    let cfg = config(&dir, &c.backups_dir(), &names);
    let cfg = cfg.to_str().unwrap();
    let results = dir.s("results");
    let (key, public) = keypair(&dir, "signer");
    let in_shard = |i: u32| names.iter().filter(|n| shard_of(n, 2) == i).cloned().collect::<Vec<_>>();

    // `auto` without the Job's index, or with a bad one, is refused before anything runs.
    let (code, _, err) = rc(&dir, &["run", "-c", cfg, "--shard", "auto/2", "--results", &results]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("JOB_COMPLETION_INDEX"), "{err}");
    let (code, _, err) =
        out(cmd(&dir, &["run", "-c", cfg, "--shard", "auto/2"]).env("JOB_COMPLETION_INDEX", "2").output().unwrap());
    assert_eq!(code, 2, "{err}");
    // A shard that holds no check passes, with a note, and restores nothing.
    let empty = (0..50).find(|i| names.iter().all(|n| shard_of(n, 50) != *i)).unwrap();
    let (code, stdout, err) =
        rc(&dir, &["run", "-c", cfg, "--shard", &format!("{empty}/50"), "--no-history", "--format", "json"]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(err.contains("note: shard") && err.contains("nothing to run"), "{err}");
    assert_eq!(json(&stdout)["checks"].as_array().unwrap().len(), 0);

    // The two pods of an Indexed Job with parallelism 2, started at the same time. Pod 0 also
    // writes a signed --output file.
    let report_file = dir.path("r.json");
    let mut pods = Vec::new();
    for i in 0..2 {
        let mut args =
            vec!["run", "-c", cfg, "--shard", "auto/2", "--results", &results, "--run-key", "k1", "--no-history"];
        let out_arg = report_file.to_str().unwrap();
        if i == 0 {
            args.extend(["--format", "json", "--output", out_arg, "--sign-key", &key]);
        }
        pods.push(
            cmd(&dir, &args)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for (i, p) in pods.into_iter().enumerate() {
        let (code, stdout, err) = out(p.wait_with_output().unwrap());
        assert_eq!(code, 0, "pod {i}: {stdout}{err}{}", std::fs::read_to_string(&report_file).unwrap_or_default());
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
    let mut files: Vec<String> = std::fs::read_dir(dir.path("results/k1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["shard-0-of-2.json", "shard-0-of-2.json.sig", "shard-1-of-2.json"], "no temp files left");
    for i in 0..2 {
        let p = dir.path(&format!("results/k1/shard-{i}-of-2.json"));
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let v = json(&std::fs::read_to_string(&p).unwrap());
        let got: Vec<String> =
            v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
        let mut want = in_shard(i);
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want, "shard {i} ran exactly its checks");
    }

    // The merge: every shard reported, every configured check passed.
    let (code, stdout, err) =
        rc(&dir, &["report", "--results", &results, "--run-key", "k1", "-c", cfg, "--format", "json"]);
    assert_eq!(code, 0, "{stdout}{err}");
    let v = json(&stdout);
    assert_eq!(v["version"], 1);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["shards"]["reported"], serde_json::json!(["shard-0-of-2", "shard-1-of-2"]));
    assert_eq!(v["shards"]["missing"], serde_json::json!([]));
    let merged: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(merged, names.iter().map(String::as_str).collect::<Vec<_>>(), "configured order");
    for c in v["checks"].as_array().unwrap() {
        assert_eq!(c["verdict"], "pass");
        assert_eq!(c["assertions"][1]["observed"], 7);
    }
    let (code, text, _) = rc(&dir, &["report", "--results", &results, "--run-key", "k1"]);
    assert_eq!(code, 0);
    assert!(text.contains("shards reported: shard-0-of-2, shard-1-of-2; missing: none"), "{text}");
    let (code, xml, _) = rc(&dir, &["report", "--results", &results, "--run-key", "k1", "--format", "junit"]);
    assert_eq!(code, 0);
    assert!(xml.contains("<testsuite"), "{xml}");

    // A shard lost (only pod 0's report under run k2): the merge is an error naming the
    // checks pod 1 should have reported.
    std::fs::create_dir_all(dir.path("results/k2")).unwrap();
    std::fs::copy(dir.path("results/k1/shard-0-of-2.json"), dir.path("results/k2/shard-0-of-2.json")).unwrap();
    let (code, stdout, err) =
        rc(&dir, &["report", "--results", &results, "--run-key", "k2", "-c", cfg, "--format", "json"]);
    assert_eq!(code, 2, "{stdout}{err}");
    let v = json(&stdout);
    assert_eq!(v["verdict"], "error");
    assert_eq!(v["shards"]["missing"], serde_json::json!(["shard-1-of-2"]));
    for name in in_shard(1) {
        let ch = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == name.as_str()).unwrap();
        assert_eq!(ch["verdict"], "error");
        assert!(ch["failure"]["message"].as_str().unwrap().contains("shard-1-of-2"), "{ch}");
    }
    let (code, text, _) = rc(&dir, &["report", "--results", &results, "--run-key", "k2", "-c", cfg]);
    assert_eq!(code, 2);
    for name in in_shard(1) {
        assert!(text.contains(&format!("ERROR {name}")), "{text}");
    }
    assert!(text.contains("missing: shard-1-of-2"), "{text}");
    // Without the config the missing shard alone still makes it an error; no run at all too.
    assert_eq!(rc(&dir, &["report", "--results", &results, "--run-key", "k2"]).0, 2);
    assert_eq!(rc(&dir, &["report", "--results", &results, "--run-key", "never"]).0, 2);
    assert_eq!(rc(&dir, &["report", "--results", &results, "--run-key", "../k1"]).0, 2);

    // Evidence: pod 0's --output and its results file verify with openssl and verify-report,
    // and name the key's fingerprint inside the signed bytes.
    let fp = openssl_fingerprint(&dir, &public);
    let signed = std::fs::read_to_string(&report_file).unwrap();
    assert_eq!(json(&signed)["signed_by"], fp.as_str());
    assert_eq!(std::fs::read(format!("{}.sig", report_file.display())).unwrap().len(), 64);
    assert!(openssl_verifies(&public, &report_file));
    assert!(openssl_verifies(&public, &dir.path("results/k1/shard-0-of-2.json")));
    let (code, stdout, err) = rc(&dir, &["verify-report", report_file.to_str().unwrap(), "--public-key", &public]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains(&fp), "{stdout}");
    // The merged report, signed by `report`.
    let merged_file = dir.path("merged.html");
    let (code, _, err) = rc(
        &dir,
        &[
            "report",
            "--results",
            &results,
            "--run-key",
            "k1",
            "--format",
            "html",
            "-o",
            merged_file.to_str().unwrap(),
            "--sign-key",
            &key,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(openssl_verifies(&public, &merged_file));
    assert_eq!(rc(&dir, &["verify-report", merged_file.to_str().unwrap(), "--public-key", &public]).0, 0);

    // One flipped byte: invalid for both.
    let mut bytes = std::fs::read(&report_file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&report_file, &bytes).unwrap();
    let (code, stdout, _) = rc(&dir, &["verify-report", report_file.to_str().unwrap(), "--public-key", &public]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("INVALID"), "{stdout}");
    assert!(!openssl_verifies(&public, &report_file));
    assert!(std::fs::read_dir(dir.path("work")).unwrap().next().is_none(), "work dir left behind");
}

#[test]
fn signing_keys_and_signatures_are_checked_without_showing_the_key() {
    let dir = Dir::new("keys");
    let (key, public) = keypair(&dir, "a");
    let (_, other_public) = keypair(&dir, "b");
    // A file signed by openssl itself verifies with verify-report (and with the wrong key not).
    let f = dir.path("evidence.txt");
    std::fs::write(&f, "restore tested\n").unwrap();
    let sig = format!("{}.sig", f.display());
    assert_eq!(openssl(&["pkeyutl", "-sign", "-inkey", &key, "-rawin", "-in", f.to_str().unwrap(), "-out", &sig]).0, 0);
    assert_eq!(rc(&dir, &["verify-report", f.to_str().unwrap(), "--public-key", &public]).0, 0);
    assert_eq!(rc(&dir, &["verify-report", f.to_str().unwrap(), "--public-key", &other_public]).0, 1);
    // A truncated signature is invalid; a missing one or an unusable key could not be checked.
    std::fs::write(&sig, [0u8; 10]).unwrap();
    assert_eq!(rc(&dir, &["verify-report", f.to_str().unwrap(), "--public-key", &public]).0, 1);
    std::fs::remove_file(&sig).unwrap();
    assert_eq!(rc(&dir, &["verify-report", f.to_str().unwrap(), "--public-key", &public]).0, 2);
    assert_eq!(rc(&dir, &["verify-report", f.to_str().unwrap(), "--public-key", &key]).0, 2);

    // A bad signing key, or one with nothing to sign, is refused before any restore (exit 2),
    // and the message never quotes the key file.
    let cfg = dir.path("c.toml");
    std::fs::write(&cfg, "[[check]]\nname = \"x\"\n[check.source]\nkind = \"basebackup\"\npath = \"/nonexistent\"\n")
        .unwrap();
    let not_ed = dir.s("rsa.pem");
    let secret_line = "MC4CAQAwBQYDK2VwBCIEIHNlY3JldHNlY3JldHNlY3JldHNlY3JldHNlY3Jl";
    std::fs::write(&not_ed, format!("-----BEGIN PRIVATE KEY-----\n{secret_line}X\n-----END PRIVATE KEY-----\n"))
        .unwrap();
    let o = dir.s("o.json");
    let (code, stdout, err) = rc(&dir, &["run", "-c", cfg.to_str().unwrap(), "-o", &o, "--sign-key", &not_ed]);
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(err.contains("not an Ed25519 private key"), "{err}");
    assert!(!err.contains(secret_line) && !err.contains("BEGIN"), "{err}");
    let good = std::fs::read_to_string(&key).unwrap();
    let body = good.lines().nth(1).unwrap();
    let (code, _, err) = rc(&dir, &["run", "-c", cfg.to_str().unwrap(), "--sign-key", &key]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--output") && !err.contains(body), "{err}");
    assert!(!Path::new(&o).exists());
}

#[path = "../../restorecheck-core/tests/common/s3.rs"]
mod s3;

/// Names of which each of the `n` shards holds at least one (two where the candidates allow).
fn names_over(n: u32) -> Vec<String> {
    let cands = ["orders", "billing", "auth", "search", "audit", "users", "ledger", "crm", "cms", "geo", "mail", "iam"];
    let mut names = Vec::new();
    for i in 0..n {
        let mine: Vec<&&str> = cands.iter().filter(|c| shard_of(c, n) == i).take(2).collect();
        assert!(!mine.is_empty(), "no candidate name falls into shard {i} of {n}");
        names.extend(mine.into_iter().map(|s| s.to_string()));
    }
    names
}

/// An Indexed Job of three pods writing to object storage (a real S3 API: moto with IAM), as
/// Kubernetes starts them: three concurrent `run --shard auto/3` processes with
/// `JOB_COMPLETION_INDEX` 0..2 and `--results s3://…`, then `report` merging them from the bucket.
/// A second run where pod 1 is killed (SIGKILL, as an OOM kill or a node loss does) in the middle
/// of its restore: the merge is an error naming exactly pod 1's checks, and pod 1 left no server
/// running.
#[tokio::test(flavor = "multi_thread")]
async fn an_indexed_job_writes_to_s3_and_a_killed_pod_makes_the_merge_an_error() {
    let dir = Dir::new("s3-shards");
    let server = tokio::task::spawn_blocking(s3::S3Server::start).await.unwrap();
    let mut c = SampleCluster::create(&dir.path("cluster"), SampleOptions::default()).await.unwrap();
    c.create_app(7).await.unwrap();
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    c.stop().await.unwrap();
    let names = names_over(3);
    let cfg = config(&dir, &c.backups_dir(), &names);
    let cfg = cfg.to_str().unwrap();
    let results = format!("s3://{}/restore-tests", server.bucket);
    let in_shard = |i: u32| {
        let mut v: Vec<String> = names.iter().filter(|n| shard_of(n, 3) == i).cloned().collect();
        v.sort();
        v
    };
    let pod = |i: u32, key: &str| {
        cmd(&dir, &["run", "-c", cfg, "--shard", "auto/3", "--results", &results, "--run-key", key, "--no-history"])
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("RESTORECHECK_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", &server.admin.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &server.admin.secret_access_key)
            .env("AWS_REGION", &server.region)
            .env("AWS_ENDPOINT_URL", &server.endpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let merge = |key: &str| {
        out(cmd(&dir, &["report", "--results", &results, "--run-key", key, "-c", cfg, "--format", "json"])
            .env("AWS_ACCESS_KEY_ID", &server.reader.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &server.reader.secret_access_key)
            .env("AWS_REGION", &server.region)
            .env("AWS_ENDPOINT_URL", &server.endpoint)
            .output()
            .unwrap())
    };

    // Run k1: all three pods at once.
    let pods: Vec<_> = (0..3).map(|i| pod(i, "k1")).collect();
    for (i, p) in pods.into_iter().enumerate() {
        let (code, stdout, err) = out(p.wait_with_output().unwrap());
        assert_eq!(code, 0, "pod {i}: {stdout}{err}");
        assert!(!err.contains(&server.admin.secret_access_key), "pod {i} printed the secret key");
    }
    let keys: Vec<String> = server.snapshot("restore-tests/k1/").into_keys().collect();
    assert_eq!(
        keys,
        [
            "restore-tests/k1/shard-0-of-3.json",
            "restore-tests/k1/shard-1-of-3.json",
            "restore-tests/k1/shard-2-of-3.json"
        ],
        "one object per pod, nothing else"
    );
    // The merge reads with the read-only user: it needs no write access.
    let (code, stdout, err) = merge("k1");
    assert_eq!(code, 0, "{stdout}{err}");
    let v = json(&stdout);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["shards"]["reported"], serde_json::json!(["shard-0-of-3", "shard-1-of-3", "shard-2-of-3"]));
    assert_eq!(v["checks"].as_array().unwrap().len(), names.len());

    // Run k2: pod 1 is killed while it restores; pods 0 and 2 finish.
    let mut pods: Vec<_> = (0..3).map(|i| pod(i, "k2")).collect();
    let mut victim = pods.remove(1);
    let stderr = victim.stderr.take().unwrap();
    let seen = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let mid_run = line.contains(": restore") || line.contains(": recovery");
            lines.push(line);
            if mid_run {
                break;
            }
        }
        lines
    });
    let lines = seen.join().unwrap();
    assert!(lines.last().is_some_and(|l| l.contains(": restore") || l.contains(": recovery")), "{lines:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = victim.wait().unwrap();
    assert!(!status.success());
    for (i, p) in pods.into_iter().enumerate() {
        let (code, stdout, err) = out(p.wait_with_output().unwrap());
        assert_eq!(code, 0, "pod {}: {stdout}{err}", if i == 0 { 0 } else { 2 });
    }
    let (code, stdout, err) = merge("k2");
    assert_eq!(code, 2, "{stdout}{err}");
    let v = json(&stdout);
    assert_eq!(v["verdict"], "error");
    assert_eq!(v["shards"]["reported"], serde_json::json!(["shard-0-of-3", "shard-2-of-3"]));
    assert_eq!(v["shards"]["missing"], serde_json::json!(["shard-1-of-3"]));
    let mut errored: Vec<String> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "error")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    errored.sort();
    assert_eq!(errored, in_shard(1), "exactly the killed pod's checks are errors");
    for c in v["checks"].as_array().unwrap().iter().filter(|c| c["verdict"] != "error") {
        assert_eq!(c["verdict"], "pass", "{c}");
    }
    // The killed pod's server died with it (parent-death signal): no postgres runs on its work dir.
    let work = dir.s("work");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = Command::new("pgrep").args(["-f", &work]).output().unwrap();
        if o.stdout.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a server of the killed pod still runs: {:?}", o);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `backup = "rotate"` walks through every listed backup (never tested first, newest first, then
/// the one tested longest ago), `coverage` fails while a listed backup older than the window never
/// passed a restore test and names it, and `history --coverage` shows each backup's last test.
#[tokio::test]
async fn rotation_covers_every_backup_and_coverage_names_the_untested_ones() {
    let dir = Dir::new("rotate");
    let mut c = SampleCluster::create(&dir.path("cluster"), SampleOptions::default()).await.unwrap();
    c.create_app(7).await.unwrap();
    for b in ["b1", "b2", "b3"] {
        c.basebackup(b, &["-Ft", "-Xstream"]).await.unwrap();
    }
    c.stop().await.unwrap();
    let cfg = dir.path("rotate.toml");
    std::fs::write(
        &cfg,
        format!(
            "work_dir = \"{}\"\nhistory = \"{}\"\n[[check]]\nname = \"app\"\ndatabase = \"app\"\nbackup = \"rotate\"\n\
             coverage = \"0s\"\n[check.source]\nkind = \"basebackup\"\npath = \"{}\"\n",
            dir.path("work").display(),
            dir.path("history.sqlite").display(),
            c.backups_dir().display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    // A zero window: every listed backup taken before the run counts (no waiting for backups to age).
    let run = || {
        let (code, stdout, err) = rc(&dir, &["run", "-c", cfg, "--format", "json"]);
        let v = json(&stdout);
        let ch = v["checks"][0].clone();
        let cov = ch["assertions"].as_array().unwrap().iter().find(|a| a["name"] == "coverage").cloned();
        (code, ch["backup"]["id"].as_str().unwrap_or_default().to_string(), cov.unwrap_or_default(), err)
    };
    let (code, id, cov, err) = run();
    assert_eq!((code, id.as_str()), (1, "b3"), "{err}");
    assert_eq!(cov["verdict"], "fail");
    assert_eq!(cov["observed"]["untested"], serde_json::json!(["b2", "b1"]), "{cov}");
    assert!(cov["message"].as_str().unwrap().contains("b2, b1"), "{cov}");
    let (code, id, cov, _) = run();
    assert_eq!((code, id.as_str()), (1, "b2"));
    assert_eq!(cov["observed"]["untested"], serde_json::json!(["b1"]), "{cov}");
    let (code, id, cov, err) = run();
    assert_eq!((code, id.as_str()), (0, "b1"), "{err}");
    assert_eq!(cov["verdict"], "pass", "{cov}");
    // All tested: the one tested longest ago comes round again.
    let (code, id, _, _) = run();
    assert_eq!((code, id.as_str()), (0, "b3"));

    let (code, stdout, err) = rc(&dir, &["history", "--coverage", "-c", cfg, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&stdout);
    let backups = v[0]["backups"].as_array().unwrap();
    let ids: Vec<&str> = backups.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["b3", "b2", "b1"]);
    for b in backups {
        assert_eq!(b["last_verdict"], "pass", "a coverage-only failure still restored the backup: {b}");
        assert!(b["last_tested"].is_string());
    }
    let (code, text, _) = rc(&dir, &["history", "--coverage", "-c", cfg]);
    assert_eq!(code, 0);
    assert!(text.contains("b1") && text.contains("last tested") && !text.contains("never tested"), "{text}");
    // Without a history, every backup counts as never tested (and the run says so).
    let (code, stdout, err) = rc(&dir, &["run", "-c", cfg, "--no-history", "--format", "json"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(err.contains("no history"), "{err}");
}
