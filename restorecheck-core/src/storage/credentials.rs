//! S3 credentials from the AWS shared profile files, which `object_store` does not read itself,
//! and scrubbing of anything secret-looking from error texts.

use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use crate::error::{Error, Result};

/// Values of `[section]` in an INI-style AWS file.
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut current: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if let Some(done) = current.take() {
                found = Some(done);
            }
            if name.trim() == section {
                current = Some(Vec::new());
            }
            continue;
        }
        if let (Some(cur), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
            cur.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    current.or(found)
}

fn home_file(env: &str, rel: &str) -> Option<PathBuf> {
    std::env::var_os(env).map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rel)))
}

/// When the environment holds no AWS credentials, takes them (and the region) from the shared
/// profile files: `profile`, else `AWS_PROFILE`, else `default`. A profile that was asked for by
/// name but does not exist is a configuration error.
pub(super) fn apply_aws_profile(mut b: AmazonS3Builder, profile: Option<&str>) -> Result<AmazonS3Builder> {
    let env_has_creds = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
        || std::env::var_os("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        || std::env::var_os("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some();
    let named = profile.map(str::to_string).or_else(|| std::env::var("AWS_PROFILE").ok());
    if env_has_creds && profile.is_none() {
        return Ok(b);
    }
    let name = named.clone().unwrap_or_else(|| "default".to_string());
    let creds_file = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config_file = home_file("AWS_CONFIG_FILE", ".aws/config");
    let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let creds = read(&creds_file).and_then(|t| ini_section(&t, &name));
    let config_section = if name == "default" { "default".to_string() } else { format!("profile {name}") };
    let config = read(&config_file).and_then(|t| ini_section(&t, &config_section));
    if creds.is_none() && config.is_none() {
        if named.is_some() {
            return Err(Error::config(format!(
                "AWS profile {name:?} is not in {} or {}",
                creds_file.map(|p| p.display().to_string()).unwrap_or_else(|| "~/.aws/credentials".into()),
                config_file.map(|p| p.display().to_string()).unwrap_or_else(|| "~/.aws/config".into())
            )));
        }
        return Ok(b); // no files: instance metadata or anonymous access may still work
    }
    let all: Vec<(String, String)> = creds.into_iter().flatten().chain(config.into_iter().flatten()).collect();
    let get = |k: &str| all.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(t) = get("aws_session_token") {
            b = b.with_token(t);
        }
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        if let Some(r) = get("region") {
            b = b.with_config(AmazonS3ConfigKey::Region, r);
        }
    }
    Ok(b)
}

/// Removes query strings (pre-signed URLs carry signatures there) and anything after
/// `Signature=`/`X-Amz-` or a `key=`-style secret from an error text.
pub(super) fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        let w = match word.find('?') {
            Some(i) if word.starts_with("http") || word.contains("://") => {
                let end: String = word.chars().rev().take_while(|c| c.is_whitespace()).collect();
                format!("{}?…{}", &word[..i], end)
            }
            _ => word.to_string(),
        };
        let lower = w.to_ascii_lowercase();
        if ["signature=", "x-amz-credential", "x-amz-security-token", "sig=", "accountkey="]
            .iter()
            .any(|m| lower.contains(m))
        {
            out.push_str("[redacted] ");
        } else {
            out.push_str(&w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_profiles() {
        let t =
            "[default]\naws_access_key_id = A\n\n[ci]\naws_access_key_id=B\naws_secret_access_key = S\n[other]\nx=1\n";
        assert_eq!(
            ini_section(t, "ci").unwrap(),
            vec![("aws_access_key_id".into(), "B".into()), ("aws_secret_access_key".into(), "S".into())]
        );
        assert_eq!(ini_section(t, "default").unwrap().len(), 1);
        assert!(ini_section(t, "missing").is_none());
    }

    #[test]
    fn scrubbing() {
        let s = scrub("error sending request for url (http://h/b/k?X-Amz-Signature=abc&x=1): reset");
        assert!(!s.contains("abc"), "{s}");
        assert!(s.contains("http://h/b/k"), "{s}");
    }
}
