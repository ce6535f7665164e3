//! `kind = "command"`: runs a program (no shell) with the JSON report on stdin.

use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use super::{On, NOTIFY_TIMEOUT};
use crate::error::{Error, Result};
use crate::report::Report;

/// `[[notify]] kind = "command"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandNotify {
    /// Name in logs and the state file (default `command#N`).
    pub name: Option<String>,
    /// The program to run (not through a shell).
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `failure` (default), `always` or `change`.
    #[serde(default)]
    pub on: On,
    /// Where `on = "change"` keeps the last verdict (default under the user's state dir).
    pub state_file: Option<PathBuf>,
}

impl CommandNotify {
    pub(super) fn validate(&self) -> Result<()> {
        if self.command.trim().is_empty() {
            return Err(Error::config("command is empty"));
        }
        Ok(())
    }

    pub(super) async fn send(&self, report: &Report) -> std::result::Result<(), String> {
        let body = report.to_json();
        let mut cmd = tokio::process::Command::new(&self.command);
        cmd.args(&self.args)
            .env("RESTORECHECK_VERDICT", report.verdict.to_string().to_lowercase())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // Its own process group: at the timeout (or if restorecheck dies) nothing it forked stays.
        crate::process::own_group(&mut cmd, libc::SIGKILL);
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", self.command))?;
        let mut guard = crate::process::GroupGuard::new(&child);
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A program that does not read its stdin is fine.
                let _ = stdin.write_all(body.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
            child.wait().await
        };
        let result = tokio::time::timeout(NOTIFY_TIMEOUT, run).await;
        guard.finished();
        match result {
            Err(_) => Err(format!("{} did not finish within {}s", self.command, NOTIFY_TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(format!("{}: {e}", self.command)),
            Ok(Ok(st)) if st.success() => Ok(()),
            Ok(Ok(st)) => Err(format!("{} exited with {st}", self.command)),
        }
    }
}
