//! `kind = "webhook"`: an HTTP POST of the JSON report or a Slack-style summary; and the
//! heartbeat's GET. ureq (rustls) runs on the blocking pool with a 10 s deadline. Without the
//! `notify` feature every request fails with a message naming the feature.

use std::path::PathBuf;

use serde::Deserialize;

use super::{check_http_url, On, Secret};
#[cfg(feature = "notify")]
use super::{env_secret, scrub, summary, NOTIFY_TIMEOUT};
use crate::error::{Error, Result};
use crate::report::Report;

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The JSON report (the default).
    #[default]
    Json,
    /// `{"text": "…"}`: a short summary (Slack, Mattermost, Rocket.Chat incoming webhooks).
    Slack,
}

/// `[[notify]] kind = "webhook"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookNotify {
    /// Name in logs and the state file (default `webhook#N`).
    pub name: Option<String>,
    /// The URL (prefer `url_env`: webhook URLs usually carry a token).
    pub url: Option<Secret>,
    /// Environment variable holding the URL.
    pub url_env: Option<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// `failure` (default), `always` or `change`.
    #[serde(default)]
    pub on: On,
    /// Where `on = "change"` keeps the last verdict (default under the user's state dir).
    pub state_file: Option<PathBuf>,
}

impl WebhookNotify {
    pub(super) fn validate(&self) -> Result<()> {
        match (&self.url, &self.url_env) {
            (Some(u), None) => check_http_url(u.expose(), "url"),
            (None, Some(_)) => Ok(()),
            _ => Err(Error::config("give exactly one of url and url_env")),
        }
    }

    #[cfg(feature = "notify")]
    pub(super) async fn send(&self, report: &Report) -> std::result::Result<(), String> {
        let url = match (&self.url, &self.url_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => env_secret(var)?,
            (None, None) => return Err("no url".into()),
        };
        if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) {
            return Err("the URL must start with http:// or https://".into());
        }
        let body = match self.format {
            WebhookFormat::Json => report.to_json(),
            WebhookFormat::Slack => serde_json::json!({ "text": summary(report) }).to_string(),
        };
        let u = url.clone();
        let r = tokio::task::spawn_blocking(move || {
            let resp = agent()
                .post(u.expose())
                .header("content-type", "application/json")
                .send(body.as_bytes())
                .map_err(|e| e.to_string())?;
            status_ok(resp.status().as_u16())
        })
        .await
        .unwrap_or_else(|e| Err(format!("webhook task failed: {e}")));
        r.map_err(|m| format!("webhook POST failed: {}", scrub(&m, url.expose())))
    }

    #[cfg(not(feature = "notify"))]
    pub(super) async fn send(&self, _report: &Report) -> std::result::Result<(), String> {
        Err(crate::error::feature_off_message("notify", "kind = \"webhook\""))
    }
}

#[cfg(feature = "notify")]
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(NOTIFY_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("restorecheck/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

#[cfg(feature = "notify")]
fn status_ok(code: u16) -> std::result::Result<(), String> {
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP status {code}"))
    }
}

/// GETs `url` (the heartbeat); the error message is not yet scrubbed.
#[cfg(feature = "notify")]
pub(super) async fn get(url: Secret) -> std::result::Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let resp = agent().get(url.expose()).call().map_err(|e| format!("heartbeat GET failed: {e}"))?;
        status_ok(resp.status().as_u16()).map_err(|m| format!("heartbeat GET failed: {m}"))
    })
    .await
    .unwrap_or_else(|e| Err(format!("heartbeat task failed: {e}")))
}

/// PUTs a Prometheus text exposition to a Pushgateway under `job/restorecheck` (replacing the
/// group's previous metrics). `url` is the gateway's base URL and may carry credentials; errors
/// never show it. Without the `notify` feature it fails with a message naming the feature.
#[cfg(feature = "notify")]
pub async fn push_metrics(url: Secret, body: String) -> std::result::Result<(), String> {
    let base = url.expose().trim_end_matches('/').to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err("the Pushgateway URL must start with http:// or https://".into());
    }
    let target = format!("{base}/metrics/job/restorecheck");
    let r = tokio::task::spawn_blocking(move || {
        let resp = agent()
            .put(&target)
            .header("content-type", "text/plain; version=0.0.4")
            .send(body.as_bytes())
            .map_err(|e| e.to_string())?;
        status_ok(resp.status().as_u16())
    })
    .await
    .unwrap_or_else(|e| Err(format!("push task failed: {e}")));
    r.map_err(|m| format!("Pushgateway PUT failed: {}", scrub(&m, url.expose())))
}

#[cfg(not(feature = "notify"))]
pub(super) async fn get(_url: Secret) -> std::result::Result<(), String> {
    Err(crate::error::feature_off_message("notify", "the heartbeat"))
}

/// Would PUT a Prometheus text exposition to a Pushgateway; this build lacks the `notify`
/// feature, so it fails with a message naming it.
#[cfg(not(feature = "notify"))]
pub async fn push_metrics(_url: Secret, _body: String) -> std::result::Result<(), String> {
    Err(crate::error::feature_off_message("notify", "pushing metrics to a Pushgateway"))
}
