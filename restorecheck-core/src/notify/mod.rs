//! Notifications after a run (`[[notify]]`) and the heartbeat (a dead man's switch).
//!
//! [`deliver`] sends the report to every configured target whose `on` rule matches, and pings the
//! heartbeat URL only after a fully passing run. Nothing here prints and nothing here changes the
//! run's verdict: the caller logs the returned [`NotifyOutcome`]s. Secrets (URLs read from
//! `url_env`, SMTP passwords) live in [`Secret`], whose `Debug` is redacted, and are scrubbed from
//! every outcome message.
//!
//! Webhooks, email, the heartbeat and [`push_metrics`] need the `notify` feature (ureq,
//! lettre); without it [`NotifyConfig::validate`] refuses them with an error naming the feature.
//! Command targets need nothing and work in every build.

mod command;
mod email;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::report::{Report, Verdict};

pub use command::CommandNotify;
pub use email::{EmailNotify, EmailTls};
pub use webhook::{push_metrics, WebhookFormat, WebhookNotify};

/// Deadline of one delivery (HTTP request, SMTP session, command).
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// A secret string (a URL with a token, a password). `Debug` and `Display` never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; pass it on, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// When a target is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum On {
    /// Only when the run did not pass (the default).
    #[default]
    Failure,
    /// After every run.
    Always,
    /// When the verdict differs from the last run's (kept in a state file); a first run is told
    /// only when it did not pass.
    Change,
}

impl On {
    /// Whether a run with `verdict` is told, given the `previous` verdict recorded for the target.
    pub fn should_send(self, verdict: Verdict, previous: Option<Verdict>) -> bool {
        match self {
            On::Failure => verdict != Verdict::Pass,
            On::Always => true,
            On::Change => match previous {
                Some(p) => p != verdict,
                None => verdict != Verdict::Pass,
            },
        }
    }
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NotifyTarget {
    /// An HTTP POST of the JSON report (or a Slack-style `{"text": …}` summary).
    Webhook(WebhookNotify),
    /// A program that gets the JSON report on stdin.
    Command(CommandNotify),
    /// An email over SMTP.
    Email(EmailNotify),
}

impl NotifyTarget {
    /// `webhook`, `command` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyTarget::Webhook(_) => "webhook",
            NotifyTarget::Command(_) => "command",
            NotifyTarget::Email(_) => "email",
        }
    }

    fn common(&self) -> (&Option<String>, On, &Option<PathBuf>) {
        match self {
            NotifyTarget::Webhook(w) => (&w.name, w.on, &w.state_file),
            NotifyTarget::Command(c) => (&c.name, c.on, &c.state_file),
            NotifyTarget::Email(e) => (&e.name, e.on, &e.state_file),
        }
    }

    /// The `on` rule.
    pub fn on(&self) -> On {
        self.common().1
    }

    /// A name for logs and the state file: `name`, else `kind#index` (1-based).
    pub fn label(&self, index: usize) -> String {
        self.common().0.clone().unwrap_or_else(|| format!("{}#{}", self.kind(), index + 1))
    }

    /// Checks what can be checked without the environment or the network.
    pub fn validate(&self) -> Result<()> {
        match self {
            NotifyTarget::Webhook(w) => w.validate(),
            NotifyTarget::Command(c) => c.validate(),
            NotifyTarget::Email(e) => e.validate(),
        }?;
        #[cfg(not(feature = "notify"))]
        if !matches!(self, NotifyTarget::Command(_)) {
            return Err(Error::feature_off("notify", format_args!("kind = \"{}\"", self.kind())));
        }
        Ok(())
    }
}

/// `heartbeat = "https://…"` or `heartbeat = { url_env = "VAR" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Heartbeat {
    /// The URL itself.
    Url(Secret),
    /// The URL read from an environment variable.
    Env {
        /// Variable holding the URL.
        url_env: String,
    },
}

/// Everything [`deliver`] needs: the targets and the heartbeat.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// `[[notify]]` entries, in order.
    pub targets: Vec<NotifyTarget>,
    /// Pinged (GET) after a fully passing run.
    pub heartbeat: Option<Heartbeat>,
}

impl NotifyConfig {
    /// Validates every target.
    pub fn validate(&self) -> Result<()> {
        for (i, t) in self.targets.iter().enumerate() {
            t.validate().map_err(|e| match e {
                Error::Config { message, line, source } => {
                    Error::Config { message: format!("[[notify]] {}: {message}", t.label(i)), line, source }
                }
                other => other,
            })?;
        }
        if let Some(Heartbeat::Url(u)) = &self.heartbeat {
            check_http_url(u.expose(), "heartbeat")?;
        }
        #[cfg(not(feature = "notify"))]
        if self.heartbeat.is_some() {
            return Err(Error::feature_off("notify", "heartbeat"));
        }
        Ok(())
    }
}

/// What happened to one target (or the heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOutcome {
    /// `name` or `kind#index`, or `heartbeat`.
    pub target: String,
    /// Sent, skipped or failed.
    pub status: NotifyStatus,
}

/// Result of one delivery. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyStatus {
    /// Delivered.
    Sent,
    /// Not due (the `on` rule, or the heartbeat after a run that did not pass).
    Skipped(String),
    /// Delivery failed.
    Failed(String),
}

/// Sends `report` to every target whose `on` rule matches, then pings the heartbeat when the
/// run passed. Never fails: problems are returned as [`NotifyStatus::Failed`].
pub async fn deliver(config: &NotifyConfig, report: &Report) -> Vec<NotifyOutcome> {
    let mut out = Vec::new();
    for (i, t) in config.targets.iter().enumerate() {
        let label = t.label(i);
        let (_, on, state_file) = t.common();
        let state_path = state_file.clone().unwrap_or_else(default_state_file);
        let previous = if on == On::Change { load_state(&state_path).get(&label).copied() } else { None };
        let status = if on.should_send(report.verdict, previous) {
            let r = match t {
                NotifyTarget::Webhook(w) => w.send(report).await,
                NotifyTarget::Command(c) => c.send(report).await,
                NotifyTarget::Email(e) => e.send(report).await,
            };
            match r {
                Ok(()) => NotifyStatus::Sent,
                Err(m) => NotifyStatus::Failed(m),
            }
        } else {
            NotifyStatus::Skipped(format!("on = {on:?}, verdict {}", report.verdict).to_lowercase())
        };
        // A failed delivery keeps the old verdict, so the change is told again next run.
        if on == On::Change && !matches!(status, NotifyStatus::Failed(_)) {
            if let Err(e) = store_state(&state_path, &label, report.verdict) {
                out.push(NotifyOutcome {
                    target: label.clone(),
                    status: NotifyStatus::Failed(format!("cannot write state file {}: {e}", state_path.display())),
                });
            }
        }
        out.push(NotifyOutcome { target: label, status });
    }
    if let Some(hb) = &config.heartbeat {
        let status = if report.verdict != Verdict::Pass {
            NotifyStatus::Skipped("the run did not pass".into())
        } else {
            match heartbeat_url(hb) {
                Ok(url) => match webhook::get(url.clone()).await {
                    Ok(()) => NotifyStatus::Sent,
                    Err(m) => NotifyStatus::Failed(scrub(&m, url.expose())),
                },
                Err(m) => NotifyStatus::Failed(m),
            }
        };
        out.push(NotifyOutcome { target: "heartbeat".into(), status });
    }
    out
}

fn heartbeat_url(hb: &Heartbeat) -> std::result::Result<Secret, String> {
    match hb {
        Heartbeat::Url(u) => Ok(u.clone()),
        Heartbeat::Env { url_env } => env_secret(url_env),
    }
}

/// Reads a secret from the environment; the error names the variable, never a value.
pub(crate) fn env_secret(var: &str) -> std::result::Result<Secret, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
        _ => Err(format!("environment variable {var} is not set")),
    }
}

pub(crate) fn check_http_url(url: &str, what: &str) -> Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(Error::config(format!("{what}: the URL must start with http:// or https://")))
    }
}

/// Removes `secret` and its parts (without scheme, path and query) from `msg`.
pub(crate) fn scrub(msg: &str, secret: &str) -> String {
    let mut m = msg.to_string();
    if secret.is_empty() {
        return m;
    }
    let mut parts = vec![secret.to_string()];
    if let Some((_, rest)) = secret.split_once("://") {
        parts.push(rest.to_string());
        if let Some(i) = rest.find(['/', '?']) {
            if rest.len() - i > 1 {
                parts.push(rest[i..].to_string());
            }
        }
    }
    for p in parts {
        m = m.replace(&p, "<redacted>");
    }
    m
}

/// `$XDG_STATE_HOME/restorecheck/notify-state.json`, else `~/.local/state/…`, else
/// `/var/lib/restorecheck/notify-state.json`.
pub fn default_state_file() -> PathBuf {
    let base = match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".local/state"),
        _ => PathBuf::from("/var/lib"),
    };
    base.join("restorecheck").join("notify-state.json")
}

fn parse_verdict(s: &str) -> Option<Verdict> {
    match s {
        "pass" => Some(Verdict::Pass),
        "fail" => Some(Verdict::Fail),
        "error" => Some(Verdict::Error),
        _ => None,
    }
}

/// The last verdict per target label; a missing or unreadable file is empty.
pub fn load_state(path: &Path) -> BTreeMap<String, Verdict> {
    let text = crate::outputs::read_nofollow(path).unwrap_or_default();
    let map: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
    map.into_iter().filter_map(|(k, v)| parse_verdict(&v).map(|v| (k, v))).collect()
}

/// Records `verdict` for `label`, replacing the file atomically.
pub fn store_state(path: &Path, label: &str, verdict: Verdict) -> std::io::Result<()> {
    let mut map: BTreeMap<String, String> =
        load_state(path).into_iter().map(|(k, v)| (k, v.to_string().to_lowercase())).collect();
    map.insert(label.to_string(), verdict.to_string().to_lowercase());
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    // A fresh temp file, renamed over the state file: a planted link is never written through.
    crate::outputs::write_atomic(
        path,
        serde_json::to_string_pretty(&map).unwrap_or_default().as_bytes(),
        crate::outputs::DEFAULT_MODE,
    )
}

/// The text of a notification: the verdict, counts, and per check its verdict and failure.
pub fn summary(report: &Report) -> String {
    use std::fmt::Write as _;
    let counts = |v| report.checks.iter().filter(|c| c.verdict == v).count();
    let mut s = format!(
        "restorecheck {}: {} passed, {} failed, {} errors",
        report.verdict,
        counts(Verdict::Pass),
        counts(Verdict::Fail),
        counts(Verdict::Error)
    );
    for c in &report.checks {
        let _ = write!(s, "\n{} {}", c.verdict, c.name);
        if let Some(f) = &c.failure {
            let _ = write!(s, " ({} phase): {}", f.phase, f.message);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::{BackupReport, CheckReport, Failure, Phase, RecoveryReport, Timings};

    fn report(v: Verdict) -> Report {
        let c = CheckReport {
            name: "app".into(),
            verdict: v,
            failure: (v != Verdict::Pass).then(|| Failure {
                phase: Phase::Select,
                message: "no backup".into(),
                log_tail: None,
            }),
            backup: BackupReport::default(),
            recovery: RecoveryReport::default(),
            assertions: vec![],
            timings: Timings::default(),
            warnings: vec![],
            notes: vec![],
        };
        Report::new("r".into(), chrono::Utc::now(), vec![c])
    }

    #[test]
    fn on_rules() {
        use Verdict::*;
        assert!(On::Failure.should_send(Fail, None));
        assert!(On::Failure.should_send(Error, Some(Error)));
        assert!(!On::Failure.should_send(Pass, Some(Fail)));
        assert!(On::Always.should_send(Pass, None));
        assert!(On::Always.should_send(Fail, Some(Fail)));
        assert!(!On::Change.should_send(Pass, None));
        assert!(On::Change.should_send(Fail, None));
        assert!(!On::Change.should_send(Fail, Some(Fail)));
        assert!(On::Change.should_send(Pass, Some(Fail)));
        assert!(On::Change.should_send(Error, Some(Fail)));
    }

    /// A command target writing into a file shows which runs were told, through the state file.
    #[tokio::test]
    async fn change_uses_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state/notify.json");
        let body = dir.path().join("body.json");
        let count = dir.path().join("count");
        let target = |on: On| {
            NotifyTarget::Command(CommandNotify {
                name: Some("pager".into()),
                command: "/bin/sh".into(),
                args: vec!["-c".into(), format!("cat > {}; echo x >> {}", body.display(), count.display())],
                on,
                state_file: Some(state.clone()),
            })
        };
        let cfg = NotifyConfig { targets: vec![target(On::Change)], heartbeat: None };
        let told = || std::fs::read_to_string(&count).unwrap_or_default().lines().count();
        let st = |o: &[NotifyOutcome]| o[0].status.clone();

        let o = deliver(&cfg, &report(Verdict::Pass)).await;
        assert!(matches!(st(&o), NotifyStatus::Skipped(_)), "{o:?}");
        assert_eq!(load_state(&state).get("pager"), Some(&Verdict::Pass));
        let o = deliver(&cfg, &report(Verdict::Pass)).await;
        assert!(matches!(st(&o), NotifyStatus::Skipped(_)), "{o:?}");
        let o = deliver(&cfg, &report(Verdict::Fail)).await;
        assert_eq!(st(&o), NotifyStatus::Sent, "{o:?}");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&body).unwrap()).unwrap();
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["checks"][0]["failure"]["phase"], "select");
        let n = told();
        let o = deliver(&cfg, &report(Verdict::Fail)).await;
        assert!(matches!(st(&o), NotifyStatus::Skipped(_)), "unchanged: {o:?}");
        assert_eq!(told(), n);
        let o = deliver(&cfg, &report(Verdict::Pass)).await;
        assert_eq!(st(&o), NotifyStatus::Sent, "recovered: {o:?}");
        assert_eq!(load_state(&state).get("pager"), Some(&Verdict::Pass));

        // on = failure ignores the state; always tells every run.
        let cfg = NotifyConfig { targets: vec![target(On::Failure), target(On::Always)], heartbeat: None };
        let o = deliver(&cfg, &report(Verdict::Pass)).await;
        assert!(matches!(o[0].status, NotifyStatus::Skipped(_)));
        assert_eq!(o[1].status, NotifyStatus::Sent);
        let o = deliver(&cfg, &report(Verdict::Error)).await;
        assert_eq!(o[0].status, NotifyStatus::Sent);
    }

    #[tokio::test]
    async fn heartbeat_only_after_a_pass_and_failures_are_scrubbed() {
        let cfg = NotifyConfig {
            targets: vec![],
            heartbeat: Some(Heartbeat::Url(Secret::new("http://127.0.0.1:1/ping/topsecret"))),
        };
        let o = deliver(&cfg, &report(Verdict::Fail)).await;
        assert!(matches!(o[0].status, NotifyStatus::Skipped(_)), "{o:?}");
        let o = deliver(&cfg, &report(Verdict::Pass)).await;
        match &o[0].status {
            NotifyStatus::Failed(m) => assert!(!m.contains("topsecret"), "{m}"),
            other => panic!("port 1 refuses: {other:?}"),
        }
        assert!(!format!("{cfg:?}").contains("topsecret"));
    }

    #[test]
    #[cfg(not(feature = "notify"))]
    fn network_targets_need_the_feature() {
        let t: NotifyConfig = NotifyConfig {
            targets: vec![NotifyTarget::Webhook(WebhookNotify {
                name: None,
                url: Some(Secret::new("https://h.example/hook/T0KEN")),
                url_env: None,
                format: WebhookFormat::Json,
                on: On::Always,
                state_file: None,
            })],
            heartbeat: None,
        };
        let e = t.validate().unwrap_err().to_string();
        assert!(
            e.contains("[[notify]] webhook#1: kind = \"webhook\" needs restorecheck-core's `notify` feature"),
            "{e}"
        );
        let hb = NotifyConfig { targets: vec![], heartbeat: Some(Heartbeat::Env { url_env: "HB".into() }) };
        assert!(hb.validate().unwrap_err().to_string().contains("heartbeat needs"));
        // Command targets need nothing.
        let cmd = NotifyConfig {
            targets: vec![NotifyTarget::Command(CommandNotify {
                name: None,
                command: "/bin/true".into(),
                args: vec![],
                on: On::Always,
                state_file: None,
            })],
            heartbeat: None,
        };
        cmd.validate().unwrap();
    }

    #[test]
    fn scrub_removes_url_parts() {
        let m = scrub("POST https://h.example/hook/T0KEN failed; path /hook/T0KEN", "https://h.example/hook/T0KEN");
        assert!(!m.contains("T0KEN"), "{m}");
    }

    #[test]
    fn summary_names_checks_and_failures() {
        let s = summary(&report(Verdict::Fail));
        assert!(s.contains("restorecheck FAIL: 0 passed, 1 failed"), "{s}");
        assert!(s.contains("FAIL app (select phase): no backup"), "{s}");
    }
}
