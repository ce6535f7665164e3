//! Stand-ins for [`Remote`] and [`RemoteObject`] when the `object-storage` feature is off.
//! [`Remote::open`] always fails with a configuration error naming the feature, so neither type
//! ever has a value and the sources' object-storage code paths compile unchanged but never run.

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::StorageOptions;
use crate::error::{Error, Result};

/// An object-store prefix (never built: this build has no object storage).
#[derive(Debug)]
pub(crate) struct Remote {
    never: Infallible,
}

/// One object of a listing (never built: this build has no object storage).
#[derive(Debug, Clone)]
pub(crate) struct RemoteObject {
    /// Path relative to the listed prefix.
    pub(crate) rel: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Last-modified time.
    pub(crate) modified: DateTime<Utc>,
    never: Infallible,
}

/// `url` without a `user:password@` part, for the error message.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

impl Remote {
    /// Fails: object storage needs restorecheck-core's `object-storage` feature.
    pub(crate) fn open(url: &str, _opts: &StorageOptions) -> Result<Remote> {
        Err(Error::feature_off("object-storage", format_args!("object storage ({})", without_userinfo(url))))
    }

    /// The URL of `rel` under this prefix.
    pub(crate) fn url(&self, _rel: &str) -> String {
        match self.never {}
    }

    /// Files downloaded at the same time.
    pub(crate) fn parallel(&self) -> usize {
        match self.never {}
    }

    /// Every object under `rel`.
    pub(crate) async fn list_all(&self, _rel: &str) -> Result<Vec<RemoteObject>> {
        match self.never {}
    }

    /// The object named by the prefix itself.
    pub(crate) async fn head_self(&self) -> Result<Option<RemoteObject>> {
        match self.never {}
    }

    /// Writes `bytes` as object `rel`.
    pub(crate) async fn put(&self, _rel: &str, _bytes: Vec<u8>) -> Result<()> {
        match self.never {}
    }

    /// The whole object `rel`.
    pub(crate) async fn get_bytes(&self, _rel: &str) -> Result<Vec<u8>> {
        match self.never {}
    }

    /// The immediate children of `rel`.
    pub(crate) async fn list_dir(&self, _rel: &str) -> Result<(Vec<String>, Vec<RemoteObject>)> {
        match self.never {}
    }

    /// A blocking reader over `obj`.
    pub(crate) fn reader(
        self: &Arc<Self>,
        _obj: &RemoteObject,
        _cancel: tokio_util::sync::CancellationToken,
    ) -> Box<dyn Read + Send> {
        match self.never {}
    }

    pub(super) fn object_url(&self, _obj: &RemoteObject) -> String {
        match self.never {}
    }
}

impl RemoteObject {
    pub(super) fn total_size(&self) -> u64 {
        match self.never {}
    }
}
