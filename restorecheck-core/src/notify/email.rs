//! `kind = "email"`: the text report by SMTP (lettre; STARTTLS, implicit TLS or plain).

use std::path::PathBuf;

#[cfg(feature = "notify")]
use lettre::message::{header::ContentType, Mailbox};
#[cfg(feature = "notify")]
use lettre::transport::smtp::authentication::Credentials;
#[cfg(feature = "notify")]
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::On;
#[cfg(feature = "notify")]
use super::{env_secret, Secret, NOTIFY_TIMEOUT};
use crate::error::{Error, Result};
use crate::report::Report;

/// Transport security of an SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS, required (default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (port 25; only for a relay on localhost).
    None,
}

/// `[[notify]] kind = "email"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailNotify {
    /// Name in logs and the state file (default `email#N`).
    pub name: Option<String>,
    /// SMTP server.
    pub smtp_host: String,
    /// Port (default 587 starttls, 465 tls, 25 none).
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: EmailTls,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// The user name (or `username_env`).
    pub username: Option<String>,
    /// Environment variable holding the user name.
    pub username_env: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// `failure` (default), `always` or `change`.
    #[serde(default)]
    pub on: On,
    /// Where `on = "change"` keeps the last verdict (default under the user's state dir).
    pub state_file: Option<PathBuf>,
}

impl EmailNotify {
    pub(super) fn validate(&self) -> Result<()> {
        if self.smtp_host.trim().is_empty() {
            return Err(Error::config("smtp_host is empty"));
        }
        // The addresses are checked by lettre (the `notify` feature; NotifyTarget::validate
        // refuses the target without it).
        #[cfg(feature = "notify")]
        self.from.parse::<Mailbox>().map_err(|e| Error::config(format!("from {:?}", self.from)).with_source(e))?;
        if self.to.is_empty() {
            return Err(Error::config("to needs at least one address"));
        }
        #[cfg(feature = "notify")]
        for t in &self.to {
            t.parse::<Mailbox>().map_err(|e| Error::config(format!("to {t:?}")).with_source(e))?;
        }
        if self.username.is_some() && self.username_env.is_some() {
            return Err(Error::config("give at most one of username and username_env"));
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err(Error::config("give at most one of password_env and password_file"));
        }
        let has_user = self.username.is_some() || self.username_env.is_some();
        let has_password = self.password_env.is_some() || self.password_file.is_some();
        if has_user != has_password {
            return Err(Error::config("a user name needs a password (password_env or password_file) and vice versa"));
        }
        Ok(())
    }

    #[cfg(feature = "notify")]
    fn credentials(&self) -> std::result::Result<Option<Credentials>, String> {
        let user = match (&self.username, &self.username_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => env_secret(var)?.expose().to_string(),
            (None, None) => return Ok(None),
        };
        let password = match (&self.password_env, &self.password_file) {
            (Some(var), _) => env_secret(var)?,
            (None, Some(f)) => Secret::new(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read password_file {}: {e}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            (None, None) => return Err("no password".into()),
        };
        Ok(Some(Credentials::new(user, password.expose().to_string())))
    }

    #[cfg(feature = "notify")]
    pub(super) async fn send(&self, report: &Report) -> std::result::Result<(), String> {
        let counts = |v| report.checks.iter().filter(|c| c.verdict == v).count();
        let subject = format!(
            "restorecheck {}: {} passed, {} failed, {} errors",
            report.verdict,
            counts(crate::report::Verdict::Pass),
            counts(crate::report::Verdict::Fail),
            counts(crate::report::Verdict::Error)
        );
        let mut b = Message::builder()
            .from(self.from.parse::<Mailbox>().map_err(|e| format!("from: {e}"))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.parse::<Mailbox>().map_err(|e| format!("to {t:?}: {e}"))?);
        }
        let msg = b.body(report.to_text()).map_err(|e| format!("cannot build the message: {e}"))?;
        let builder = match self.tls {
            EmailTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.smtp_host)
                .map_err(|e| format!("smtp {}: {e}", self.smtp_host))?
                .port(self.smtp_port.unwrap_or(587)),
            EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.smtp_host)
                .map_err(|e| format!("smtp {}: {e}", self.smtp_host))?
                .port(self.smtp_port.unwrap_or(465)),
            EmailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.smtp_host)
                .port(self.smtp_port.unwrap_or(25)),
        };
        let mut builder = builder.timeout(Some(NOTIFY_TIMEOUT));
        let creds = self.credentials()?;
        if let Some(c) = creds {
            builder = builder.credentials(c);
        }
        let transport = builder.build();
        match tokio::time::timeout(NOTIFY_TIMEOUT * 3, transport.send(msg)).await {
            Err(_) => Err(format!("smtp {}: no answer within {}s", self.smtp_host, NOTIFY_TIMEOUT.as_secs() * 3)),
            // lettre's errors carry the server's reply, never the credentials.
            Ok(Err(e)) => Err(format!("smtp {}: {e}", self.smtp_host)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    #[cfg(not(feature = "notify"))]
    pub(super) async fn send(&self, _report: &Report) -> std::result::Result<(), String> {
        Err(crate::error::feature_off_message("notify", "kind = \"email\""))
    }
}
