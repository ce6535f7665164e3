//! What ships beside the binary and must keep working with it: the Kubernetes manifests in
//! docs/kubernetes (validated against the Kubernetes schemas by `kubernetes-validate`, offline,
//! and checked against the CLI contract), and the Grafana dashboard in docs/grafana (it must
//! parse and reference only metric names that a real run's `--metrics-file` contains).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use restorecheck_core::fixture::{SampleCluster, SampleOptions};

const BIN: &str = env!("CARGO_BIN_EXE_restorecheck");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn kubernetes_validate() -> PathBuf {
    std::env::var_os("RESTORECHECK_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/restorecheck/kv/bin/kubernetes-validate"))
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("docs/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// Every document of a YAML file, as JSON (PyYAML from kubernetes-validate's virtualenv).
fn documents(file: &Path) -> Vec<serde_json::Value> {
    let python = kubernetes_validate().with_file_name("python");
    let o = Command::new(&python)
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh --test)", python.display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn all_documents() -> Vec<serde_json::Value> {
    manifests().iter().flat_map(|m| documents(m)).collect()
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("{kind}/{name}"))
}

fn args(job: &serde_json::Value) -> Vec<String> {
    job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kubernetes_manifests_validate_and_follow_the_cli_contract() {
    let files = manifests();
    assert!(files.len() >= 3, "{files:?}");
    let o = Command::new(kubernetes_validate())
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("kubernetes-validate: {e} (run scripts/setup.sh --test)"));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(!text.contains("ERROR") && text.matches("passed").count() >= 6, "{text}");

    let docs = all_documents();
    // The shard Job: Indexed, `--shard auto/N` with N = completions, exit 1 fails the index
    // without retries, exit 2 is retried, results to object storage.
    let shards = find(&docs, "CronJob", "restorecheck-shards");
    let job = &shards["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    let a = args(shards);
    assert_eq!(a[0], "run");
    let shard = &a[a.iter().position(|x| x == "--shard").unwrap() + 1];
    assert_eq!(shard, &format!("auto/{}", job["completions"]), "--shard auto/N must match completions");
    assert!(a[a.iter().position(|x| x == "--results").unwrap() + 1].starts_with("s3://"));
    assert!(job["backoffLimitPerIndex"].as_u64().unwrap() >= 1);
    let rules = job["podFailurePolicy"]["rules"].as_array().unwrap();
    let action_for = |code: i64| {
        rules
            .iter()
            .find(|r| r["onExitCodes"]["values"].as_array().is_some_and(|v| v.contains(&code.into())))
            .map(|r| r["action"].as_str().unwrap().to_string())
    };
    assert_eq!(action_for(1).as_deref(), Some("FailIndex"), "a bad backup is not retried");
    assert_eq!(action_for(2).as_deref(), Some("Count"), "a run that could not happen is retried");
    let pod = &job["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let vols = pod["volumes"].as_array().unwrap();
    assert!(vols.iter().any(|v| v["emptyDir"]["sizeLimit"].is_string()), "work volume sized");
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().filter(|m| m["name"] != "work").all(|m| m["readOnly"] == true), "{mounts:?}");
    // Secrets are files, not environment values.
    for e in pod["containers"][0]["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(!name.contains("SECRET") && !name.contains("KEY_ID") && e["valueFrom"].is_null(), "{e}");
    }
    // The merge reads the same results with the same config.
    let merge = find(&docs, "CronJob", "restorecheck-merge");
    let m = args(merge);
    assert_eq!(m[0], "report");
    assert_eq!(
        m[m.iter().position(|x| x == "--results").unwrap() + 1],
        a[a.iter().position(|x| x == "--results").unwrap() + 1]
    );
    // The CLI accepts both command lines (clap), and the ConfigMap's config parses.
    for line in [&a, &m] {
        let o = Command::new(BIN).args(line.iter()).arg("--help").output().unwrap();
        assert!(o.status.success(), "{line:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let cfg = find(&docs, "ConfigMap", "restorecheck-config");
    let toml = cfg["data"]["restorecheck.toml"].as_str().unwrap();
    let parsed = restorecheck_core::Config::parse(toml, &restorecheck_core::Registry::default()).unwrap();
    assert!(parsed.checks.len() >= 2);
}

/// The metric names a PromQL expression references.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("restorecheck_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_a_real_run_writes() {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/grafana/restorecheck.json")).unwrap()).unwrap();
    let mut used = BTreeSet::new();
    let mut titles = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        titles.push(p["title"].as_str().unwrap().to_lowercase());
        for t in p["targets"].as_array().unwrap() {
            used.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    for t in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = t["definition"].as_str() {
            used.extend(metric_names(q));
        }
    }
    for want in ["last passing", "restore time trend", "coverage gaps"] {
        assert!(titles.iter().any(|t| t.contains(want)), "no panel for {want}: {titles:?}");
    }

    // A real run's textfile.
    let dir = PathBuf::from("/var/tmp/restorecheck-cli-tests").join(format!("deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("work")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.parent().unwrap(), dir.as_path(), &dir.join("work")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut c = SampleCluster::create(&dir.join("cluster"), SampleOptions::default()).await.unwrap();
    c.create_app(3).await.unwrap();
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    // Commits after the backup, archived: archive recovery replays them, so the achieved-RPO
    // series is written too.
    c.add_rows(2).await.unwrap();
    c.switch_and_archive().await.unwrap();
    c.stop().await.unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "work_dir = \"{}\"\n[[check]]\nname = \"app\"\ndatabase = \"app\"\n[check.source]\nkind = \"basebackup\"\n\
             path = \"{}\"\nwal_archive = \"{}\"\n[[check.assert]]\nname = \"coverage\"\nsql = \"select count(*) from registrations\"\nmin = 0\n",
            dir.join("work").display(),
            c.backups_dir().display(),
            c.archive_dir().display()
        ),
    )
    .unwrap();
    let prom = dir.join("m.prom");
    let o = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap(), "--no-history", "--metrics-file", prom.to_str().unwrap()])
        .env("XDG_STATE_HOME", dir.join("state"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&prom).unwrap();
    let written: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let unknown: Vec<&String> = used.difference(&written).collect();
    assert!(unknown.is_empty(), "the dashboard references metrics the textfile lacks: {unknown:?}\n{text}");
    assert!(used.len() >= 6, "{used:?}");
}
