//! Shared helpers for integration tests: real sample clusters, real backups, damaged copies.
#![allow(dead_code, missing_docs)]

pub mod s3;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use restorecheck_core::assertions::{SqlAssertion, SqlAssertionConfig};
use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::report::CheckReport;
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::toolbox::Prepared;
use restorecheck_core::{runner, Check, HostTools, RunContext, ToolBox, ToolCommand};

/// A test's private folder under /var/tmp, reachable by the server's OS user, removed on drop.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        let p = PathBuf::from("/var/tmp/restorecheck-tests").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        for d in [p.parent().unwrap(), p.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        TestDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// A fresh empty subfolder.
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running sample cluster with database `app` and `rows` registrations.
pub async fn cluster(dir: &TestDir, rows: u32) -> SampleCluster {
    let c = SampleCluster::create(&dir.path().join("cluster"), SampleOptions::default()).await.expect("sample cluster");
    c.create_app(rows).await.expect("app database");
    c
}

pub fn sql_eq(sql: &str, v: i64) -> SqlAssertion {
    SqlAssertion::new(SqlAssertionConfig::new(sql).equals(toml::Value::Integer(v))).unwrap()
}

pub fn check(path: &Path, wal_archive: Option<&Path>) -> Check {
    let mut cfg = BaseBackupConfig::new(path);
    cfg.wal_archive = wal_archive.map(Path::to_path_buf);
    let source = BaseBackupSource::new(cfg);
    let target = LocalTarget::new(LocalTargetConfig::default()).unwrap();
    Check::new("test", Arc::new(source), Arc::new(target)).database("app").timeout(std::time::Duration::from_secs(300))
}

/// Runs one check with its own work root and asserts nothing is left behind.
pub async fn run(dir: &TestDir, check: Check) -> CheckReport {
    let work = dir.sub("work");
    let report = runner::run_check(&check, &work, 0, &RunContext::new()).await;
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "work dir not cleaned up: {left:?}");
    assert_no_server_under(&work);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    report
}

/// No postgres process runs with a data dir under `root`.
pub fn assert_no_server_under(root: &Path) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!(cmd.contains("postgres") && cmd.contains(&*root.to_string_lossy())), "server left running: {cmd}");
    }
}

/// `cp -a` of a backup (or archive) folder, to damage without touching the original.
pub fn copy(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

/// Sorted segment file names in an archive folder.
pub fn segments(archive: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(archive)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .collect();
    v.sort();
    v
}

/// The WAL file named in backup_label's START WAL LOCATION.
pub fn start_segment(label: &str) -> String {
    label
        .lines()
        .find(|l| l.starts_with("START WAL LOCATION"))
        .and_then(|l| l.split("(file ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
        .expect("START WAL LOCATION in backup_label")
}

/// Every file under `root` with its size and modification time: backup storage must not change.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            out.push((e.path(), m.len(), m.modified().unwrap()));
            if m.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, &mut v);
    v.sort();
    v
}

/// The check passed, and so did every assertion.
pub fn assert_pass(r: &CheckReport) {
    use restorecheck_core::report::Verdict;
    assert_eq!(r.verdict, Verdict::Pass, "expected PASS, got {:?}", r.failure);
    assert!(r.assertions.iter().all(|a| a.verdict == Verdict::Pass), "{:?}", r.assertions);
}

/// The check failed (the backup is bad) in `phase`.
pub fn assert_fail_in(r: &CheckReport, phase: restorecheck_core::report::Phase) {
    use restorecheck_core::report::Verdict;
    assert_eq!(r.verdict, Verdict::Fail, "expected FAIL, got {:?} {:?}", r.verdict, r.failure);
    assert_eq!(r.failure.as_ref().map(|f| f.phase), Some(phase), "{:?}", r.failure);
}

/// Runs `pgbackrest` as the cluster's OS user (as a real installation would); returns stdout.
pub fn pgbackrest(c: &SampleCluster, cwd: &Path, args: &[String]) -> String {
    let mut cmd = std::process::Command::new("pgbackrest");
    cmd.args(args).current_dir(cwd);
    c.os_user().apply_std(&mut cmd);
    let out = cmd.output().expect("pgbackrest is installed (scripts/setup.sh --test installs it)");
    assert!(
        out.status.success(),
        "pgbackrest {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a source asked [`RecordingTools`] for.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCall {
    /// `locate(program, _, major)`.
    Locate { program: String, major: Option<u32> },
    /// `prepare` of a command: its program, its environment's names and its major.
    Prepare { program: PathBuf, env: Vec<String>, major: Option<u32> },
}

/// A toolbox on this host ([`HostTools`]) that records what a source asks of it, and whose
/// `locate` refuses the program names in `missing` with its own message, as a container image
/// without them would. With `elsewhere`, it says it is not this host (`on_this_host`), so the
/// sources take the paths they take for a container.
#[derive(Debug, Default)]
pub struct RecordingTools {
    pub missing: Vec<String>,
    pub elsewhere: bool,
    pub calls: std::sync::Mutex<Vec<ToolCall>>,
}

/// What [`RecordingTools`] says of a program it does not have.
pub const NOT_IN_IMAGE: &str = "is not in the test toolbox";

impl RecordingTools {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn without(programs: &[&str]) -> Arc<Self> {
        Arc::new(Self { missing: programs.iter().map(|p| p.to_string()).collect(), ..Self::default() })
    }
    pub fn elsewhere() -> Arc<Self> {
        Arc::new(Self { elsewhere: true, ..Self::default() })
    }
    pub fn calls(&self) -> Vec<ToolCall> {
        self.calls.lock().unwrap().clone()
    }
    /// The prepared commands (program, env names).
    pub fn prepared(&self) -> Vec<(PathBuf, Vec<String>, Option<u32>)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ToolCall::Prepare { program, env, major } => Some((program, env, major)),
                ToolCall::Locate { .. } => None,
            })
            .collect()
    }
    /// A context whose tools are `tools`.
    pub fn context(tools: &Arc<Self>) -> RunContext {
        RunContext::new().with_tools(tools.clone())
    }
}

#[async_trait::async_trait]
impl ToolBox for RecordingTools {
    fn describe(&self) -> String {
        "the test toolbox".into()
    }

    async fn locate(&self, program: &str, hint: &str, major: Option<u32>) -> restorecheck_core::Result<PathBuf> {
        self.calls.lock().unwrap().push(ToolCall::Locate { program: program.into(), major });
        let name = Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if self.missing.contains(&name) {
            return Err(restorecheck_core::Error::Tooling {
                what: format!("`{program}` {NOT_IN_IMAGE}"),
                hint: hint.into(),
                source: None,
            });
        }
        HostTools::default().locate(program, hint, major).await
    }

    async fn prepare(&self, cmd: &ToolCommand) -> restorecheck_core::Result<Prepared> {
        let env = cmd.env.0.iter().map(|(k, _)| k.clone()).collect();
        self.calls.lock().unwrap().push(ToolCall::Prepare { program: cmd.program.clone(), env, major: cmd.major });
        HostTools::default().prepare(cmd).await
    }

    fn on_this_host(&self) -> bool {
        !self.elsewhere
    }
}

/// `-h … -p … -U postgres` for the PostgreSQL client tools (pg_dump, pg_dumpall, psql) against `c`.
pub fn client_args(c: &SampleCluster) -> Vec<String> {
    ["-h", &c.socket_dir().display().to_string(), "-p", &c.port().to_string(), "-U", "postgres"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
