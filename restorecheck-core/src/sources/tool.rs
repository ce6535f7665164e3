//! Running a backup tool (`pgbackrest`, `barman`, `wal-g`, `wal-e`) for a source: output
//! captured, in its own process group with a parent-death signal, the whole group killed on
//! cancellation, timeout or drop and when the tool exits (the tools start helpers such as
//! `rsync` or pgBackRest's local processes), and errors that quote the tool.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::report::Phase;

/// What a finished tool printed.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    /// Exit status.
    pub(crate) status: ExitStatus,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl ToolOutput {
    /// The exit code (`None` when killed by a signal).
    pub(super) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// What the tool said, for error messages: stderr, else stdout, at most the last 30 lines.
    pub(super) fn message(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        if tail.is_empty() {
            format!("no output, {}", self.status)
        } else {
            tail.join("\n")
        }
    }
}

/// Finds `program` on `PATH` (an absolute or relative path with a `/` is taken as is).
pub(crate) fn find_program(program: &str, install_hint: &str) -> Result<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::Tooling { what: format!("{program} does not exist"), hint: install_hint.into(), source: None })
        };
    }
    crate::wal_archive::which(program).ok_or_else(|| Error::Tooling {
        what: format!("`{program}` is not installed (not found on PATH)"),
        hint: install_hint.into(),
        source: None,
    })
}

/// A command for `program` (as [`ToolBox::locate`](crate::ToolBox::locate) found it, where the
/// check's tools run) with `env`, as [`RunAs::Tester`](crate::RunAs::Tester); the caller adds
/// the arguments. `env` (a backup tool's credentials) goes to the toolbox, never onto the
/// host command by the caller: a container toolbox passes it as files.
pub(crate) async fn command(
    ctx: &RunContext,
    program: &Path,
    env: &[(String, String)],
    major: Option<u32>,
) -> Result<tokio::process::Command> {
    let env = crate::sources::environment::last_wins(env.to_vec());
    let cmd = crate::toolbox::ToolCommand::new(program).env(env).major(major);
    Ok(ctx.tools.prepare(&cmd).await?.tokio())
}

/// The absolute paths of `paths` that exist on this host, without duplicates and without
/// those inside another one: what a source declares in
/// [`read_only_paths`](crate::BackupSource::read_only_paths) (a container target mounts each
/// one, and a bind mount of a missing path fails).
pub(crate) fn existing_roots(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = paths
        .into_iter()
        .filter(|p| p.is_absolute() && std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.components().collect())
        .collect();
    v.sort();
    v.dedup();
    let all = v.clone();
    v.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    v
}

/// Values of `vars` that name files a backup tool reads (key files, credentials files, CA
/// certificates): variables ending in `_PATH` or `_FILE`, and `GOOGLE_APPLICATION_CREDENTIALS`,
/// whose value is an absolute path.
pub(crate) fn file_vars(vars: &[(String, String)]) -> Vec<PathBuf> {
    vars.iter()
        .filter(|(k, v)| {
            (k.ends_with("_PATH") || k.ends_with("_FILE") || k == "GOOGLE_APPLICATION_CREDENTIALS")
                && v.starts_with('/')
        })
        .map(|(_, v)| PathBuf::from(v))
        .collect()
}

/// Runs `cmd` to completion in its own process group, capturing its output. Cancellation of
/// `ctx` (or dropping the returned future) kills the whole group.
pub(crate) async fn run(
    ctx: &RunContext,
    phase: Phase,
    mut cmd: tokio::process::Command,
    what: &str,
) -> Result<ToolOutput> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env("LC_ALL", "C").kill_on_drop(true);
    crate::process::own_group(&mut cmd, libc::SIGKILL);
    tracing::debug!("running {what}");
    let child = cmd.spawn().map_err(|e| Error::Tooling {
        what: format!("cannot start {what}"),
        hint: "check that the tool is installed and executable".into(),
        source: Some(e.into()),
    })?;
    // Dropping this future (the check's deadline) drops the guard: the whole group dies.
    let mut guard = crate::process::GroupGuard::new(&child);
    let out = tokio::select! {
        r = child.wait_with_output() => r.map_err(|e| Error::Tooling {
            what: format!("waiting for {what} failed"),
            hint: "see the message above".into(),
            source: Some(e.into()),
        })?,
        _ = ctx.cancel.cancelled() => {
            guard.kill();
            return Err(Error::Cancelled { phase });
        }
    };
    // Finished on its own: whatever it left running in its group dies with it.
    guard.finished();
    Ok(ToolOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Checks that OS user `user` can read the file `path` (asks a child running as that user).
pub(crate) async fn user_can_read_file(user: &crate::postgres::user::OsUser, path: &Path) -> bool {
    let mut cmd = tokio::process::Command::new("test");
    cmd.arg("-r").arg(path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    user.apply(&mut cmd);
    cmd.status().await.map(|s| s.success()).unwrap_or(false)
}

/// Total size of the files under `p` (symlinks not followed).
pub(crate) fn tree_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// The major version in `<data_dir>/PG_VERSION`.
pub(crate) fn pg_version(data_dir: &Path) -> Option<u32> {
    // Not through a link, and bounded: the file comes from the backup.
    crate::safefs::read_text(&data_dir.join("PG_VERSION"), crate::safefs::SMALL_MAX)
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

/// The newest WAL segment (by position, then timeline) among the files in `dir`.
pub(crate) fn newest_segment_in(dir: &Path) -> Option<String> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_segment_name(n))
        .max_by_key(|n| segment_order_key(n))
}

/// True for a 24-hex-digit WAL segment file name.
pub(crate) fn is_segment_name(n: &str) -> bool {
    n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Orders segment names by position first, then timeline.
pub(crate) fn segment_order_key(n: &str) -> String {
    let n = n.to_ascii_uppercase();
    match (n.get(8..24), n.get(0..8)) {
        (Some(pos), Some(tli)) => format!("{pos}{tli}"),
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_ordering_prefers_position_over_timeline() {
        let a = "000000020000000000000003";
        let b = "000000010000000000000004";
        assert!(segment_order_key(b) > segment_order_key(a));
        assert!(is_segment_name(a));
        assert!(!is_segment_name("00000002.history"));
        assert!(!is_segment_name("000000010000000000000009.00000028.backup"));
    }

    #[test]
    fn read_only_paths_are_existing_absolute_roots() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("a/b"));
        std::fs::create_dir_all(&b).unwrap();
        let got = existing_roots([b.clone(), a.clone(), d.path().join("missing"), "rel".into(), a.join(".")]);
        assert_eq!(got, vec![a.clone()]);
        assert_eq!(existing_roots([b.clone()]), vec![b]);
        let vars: Vec<(String, String)> = [
            ("WALG_PGP_KEY_PATH", "/k/key.asc"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/c/credentials"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/g.json"),
            ("WALG_FILE_PREFIX", "/store"),
            ("SOME_PATH", "relative"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let files: Vec<PathBuf> = ["/k/key.asc", "/c/credentials", "/g.json"].iter().map(PathBuf::from).collect();
        assert_eq!(file_vars(&vars), files);
    }

    #[tokio::test]
    async fn a_cancelled_tool_is_killed_promptly() {
        let ctx = RunContext::new();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg("sleep 30 & sleep 30");
        let c2 = ctx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            c2.cancel();
        });
        let t = std::time::Instant::now();
        let r = run(&ctx, Phase::Fetch, cmd, "sleeper").await;
        assert!(matches!(r, Err(Error::Cancelled { phase: Phase::Fetch })), "{r:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn output_and_exit_code_are_captured() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg("echo out; echo ERROR: bad >&2; exit 29");
        let o = run(&RunContext::new(), Phase::Fetch, cmd, "sh").await.unwrap();
        assert_eq!(o.code(), Some(29));
        assert_eq!(o.stdout.trim(), "out");
        assert_eq!(o.message(), "ERROR: bad");
    }
}
