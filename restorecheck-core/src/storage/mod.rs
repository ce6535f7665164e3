//! Where backup files live: a local folder, or object storage (`s3://`, `gs://`, `az://`),
//! read through the `object_store` crate. `file://` URLs are local folders.
//!
//! restorecheck only ever *reads* a backup location: it lists and gets objects, nothing else.
//! The one write ([`Remote::put`]) is for a results location (`--results`), never a backup's.
//! Credentials come from each provider's standard environment variables (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`) and, for S3, from the shared profile files (`~/.aws/credentials`,
//! `~/.aws/config`); they are never logged and never appear in reports or in `Debug` output.
//!
//! Object storage needs the `object-storage` feature; without it `Remote` is a stand-in whose
//! `Remote::open` fails with a configuration error naming the feature.

#[cfg(feature = "object-storage")]
mod credentials;
#[cfg(not(feature = "object-storage"))]
mod disabled;
mod reader;

use std::collections::BTreeMap;
#[cfg(feature = "object-storage")]
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
#[cfg(feature = "object-storage")]
use std::time::Duration;

#[cfg(feature = "object-storage")]
use chrono::{DateTime, Utc};
#[cfg(feature = "object-storage")]
use futures::TryStreamExt;
#[cfg(feature = "object-storage")]
use object_store::path::Path as ObjPath;
#[cfg(feature = "object-storage")]
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};
use serde::Deserialize;

use crate::context::Progress;
use crate::decrypt::Decryptor;
use crate::error::{Error, Result};

#[cfg(not(feature = "object-storage"))]
pub(crate) use disabled::{Remote, RemoteObject};
pub(crate) use reader::{ReadCancelled, StorageReadError};

/// Options for object-storage locations (`storage = { … }` on a source). All optional: by
/// default everything comes from the provider's environment and profile files.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct StorageOptions {
    /// Endpoint of an S3-compatible store (`https://minio.internal:9000`), of a GCS or Azure
    /// emulator, or of a private endpoint.
    pub endpoint: Option<String>,
    /// Region (S3; default from `AWS_REGION`, the profile, else `us-east-1`).
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible stores need.
    /// Default: path style when `endpoint` is set, virtual-hosted style on AWS.
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints (default: only when `endpoint` starts with `http://`).
    pub allow_http: Option<bool>,
    /// AWS shared-config profile to read credentials and region from (default `AWS_PROFILE`,
    /// else `default`), used when no `AWS_ACCESS_KEY_ID` is in the environment.
    pub profile: Option<String>,
    /// Unsigned requests, for public buckets.
    #[serde(default)]
    pub anonymous: bool,
    /// Attempts per request and per interrupted download before giving up (default 5).
    #[setters(into = false)]
    pub retries: Option<u32>,
    /// Files downloaded at the same time (default 4).
    #[setters(into = false)]
    pub parallel: Option<usize>,
}

/// A backup location: a local folder or an object-store prefix.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// A local path (also what a `file://` URL names).
    Local(PathBuf),
    /// An object-store prefix.
    Remote(Arc<Remote>),
}

/// True when `s` looks like `scheme://…` with a scheme restorecheck reads.
pub(crate) fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        matches!(scheme, "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "adl" | "file")
    })
}

impl Location {
    /// Interprets a configured `path`: a URL (`s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `file:///…`) or a local path.
    pub(crate) fn parse(path: &Path, opts: &StorageOptions) -> Result<Location> {
        let s = path.to_string_lossy();
        if let Some(rest) = s.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if !s.contains("://") {
            return Ok(Location::Local(path.to_path_buf()));
        }
        if !is_url(&s) {
            return Err(Error::config(format!(
                "{s}: unsupported location; use a local path, file://, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
            )));
        }
        Ok(Location::Remote(Arc::new(Remote::open(&s, opts)?)))
    }

    /// The location as written, for messages and reports.
    pub(crate) fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Remote(r) => r.url(""),
        }
    }
}

#[cfg(feature = "object-storage")]
/// An object-store prefix, with the client that reads it.
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `scheme://bucket` (no credentials, no trailing slash).
    base: String,
    prefix: ObjPath,
    retries: u32,
    parallel: usize,
}

#[cfg(feature = "object-storage")]
impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store's own Debug may show configuration; never print it.
        f.debug_struct("Remote").field("url", &self.url("")).finish_non_exhaustive()
    }
}

#[cfg(feature = "object-storage")]
/// One object of a listing.
#[derive(Debug, Clone)]
pub(crate) struct RemoteObject {
    /// Path relative to the listed prefix (`base.tar.gz`, `20261126/base.tar.gz`).
    pub(crate) rel: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Last-modified time.
    pub(crate) modified: DateTime<Utc>,
    meta: ObjectMeta,
}

#[cfg(feature = "object-storage")]
impl Remote {
    /// Opens `url` with `opts` and the provider's standard credentials. Fails early only on
    /// bad configuration; unreachable stores show up on the first request.
    pub(crate) fn open(url: &str, opts: &StorageOptions) -> Result<Remote> {
        let parsed =
            url::Url::parse(url).map_err(|e| Error::config(format!("{url}: not a valid URL")).with_source(e))?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&parsed)
            .map_err(|e| Error::config(format!("{url}: not an object-store URL")).with_source(e))?;
        let retries = opts.retries.unwrap_or(5);
        let retry = RetryConfig {
            max_retries: retries as usize,
            retry_timeout: Duration::from_secs(120),
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(10),
                base: 2.0,
            },
        };
        let allow_http =
            opts.allow_http.unwrap_or_else(|| opts.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
        // A whole-request timeout would cut multi-gigabyte downloads; a read timeout catches a
        // stalled connection instead.
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(60));
        let err = |e: object_store::Error| Error::config(format!("{url}: {}", credentials::scrub(&e.to_string())));
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_skip_signature(opts.anonymous);
                if !opts.anonymous {
                    b = credentials::apply_aws_profile(b, opts.profile.as_deref())?;
                }
                if let Some(e) = &opts.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if let Some(r) = &opts.region {
                    b = b.with_region(r.clone());
                }
                let path_style = opts.path_style.unwrap_or(opts.endpoint.is_some());
                b = b.with_virtual_hosted_style_request(!path_style);
                Arc::new(b.build().map_err(err)?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_skip_signature(opts.anonymous);
                Arc::new(b.build().map_err(err)?)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_skip_signature(opts.anonymous);
                if let Some(e) = &opts.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                Arc::new(b.build().map_err(err)?)
            }
            other => return Err(Error::config(format!("{url}: {other:?} locations are not supported"))),
        };
        let mut shown = parsed.clone();
        let _ = shown.set_password(None);
        let base = shown[..url::Position::BeforePath].to_string();
        Ok(Remote { store, base, prefix, retries: retries.max(1), parallel: opts.parallel.unwrap_or(4).max(1) })
    }

    /// The URL of `rel` under this prefix (for messages; never carries credentials).
    pub(crate) fn url(&self, rel: &str) -> String {
        let mut s = format!("{}/{}", self.base, self.prefix.as_ref());
        if !rel.is_empty() {
            if !s.ends_with('/') {
                s.push('/');
            }
            s.push_str(rel);
        }
        s.trim_end_matches('/').to_string()
    }

    /// Files downloaded at the same time.
    pub(crate) fn parallel(&self) -> usize {
        self.parallel
    }

    fn full(&self, rel: &str) -> ObjPath {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn storage_err(&self, rel: &str, e: &object_store::Error) -> Error {
        Error::Storage { location: self.url(rel), message: describe_error(e), source: None }
    }

    /// Every object under `rel` (recursively), with paths relative to `rel`, sorted.
    pub(crate) async fn list_all(&self, rel: &str) -> Result<Vec<RemoteObject>> {
        let root = self.full(rel);
        let metas: Vec<ObjectMeta> = self
            .store
            .list(if root.as_ref().is_empty() { None } else { Some(&root) })
            .try_collect()
            .await
            .map_err(|e| self.storage_err(rel, &e))?;
        let mut out: Vec<RemoteObject> = metas
            .into_iter()
            .filter_map(|m| {
                let r = m.location.prefix_match(&root)?.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
                Some(RemoteObject { rel: r, size: m.size, modified: m.last_modified, meta: m })
            })
            .filter(|o| !o.rel.is_empty())
            .collect();
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// The object named by the prefix itself, when the location is one object rather than a
    /// folder (`s3://bucket/dumps/app.dump`).
    pub(crate) async fn head_self(&self) -> Result<Option<RemoteObject>> {
        if self.prefix.as_ref().is_empty() {
            return Ok(None);
        }
        match self.store.head(&self.prefix).await {
            Ok(m) => {
                let rel = m.location.filename().unwrap_or_default().to_string();
                Ok(Some(RemoteObject { rel, size: m.size, modified: m.last_modified, meta: m }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage_err("", &e)),
        }
    }

    /// The immediate children of `rel`: sub-prefixes ("folders") and objects.
    pub(crate) async fn list_dir(&self, rel: &str) -> Result<(Vec<String>, Vec<RemoteObject>)> {
        let root = self.full(rel);
        let res = self
            .store
            .list_with_delimiter(if root.as_ref().is_empty() { None } else { Some(&root) })
            .await
            .map_err(|e| self.storage_err(rel, &e))?;
        let name = |p: &ObjPath| p.filename().unwrap_or_default().to_string();
        let mut dirs: Vec<String> = res.common_prefixes.iter().map(name).collect();
        dirs.sort();
        let mut files: Vec<RemoteObject> = res
            .objects
            .into_iter()
            .map(|m| RemoteObject { rel: name(&m.location), size: m.size, modified: m.last_modified, meta: m })
            .collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok((dirs, files))
    }

    /// A blocking reader over `obj` that streams it and resumes an interrupted download where
    /// it stopped (same ETag), up to the configured attempts. Use from a blocking thread.
    pub(crate) fn reader(
        self: &Arc<Self>,
        obj: &RemoteObject,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Box<dyn Read + Send> {
        Box::new(reader::ResumableReader::new(
            self.clone(),
            obj.meta.clone(),
            obj.size,
            self.url_of(&obj.meta.location),
            tokio::runtime::Handle::current(),
            cancel,
        ))
    }

    /// Writes `bytes` as the object `rel` under this prefix (one PUT: readers see the whole
    /// object or none). Only results (`restorecheck run --results`) are written, never backups.
    pub(crate) async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.store.put(&self.full(rel), bytes.into()).await.map(drop).map_err(|e| self.storage_err(rel, &e))
    }

    /// Reads the whole object `rel` under this prefix (small files such as JSON reports).
    pub(crate) async fn get_bytes(&self, rel: &str) -> Result<Vec<u8>> {
        let res = self.store.get(&self.full(rel)).await.map_err(|e| self.storage_err(rel, &e))?;
        Ok(res.bytes().await.map_err(|e| self.storage_err(rel, &e))?.to_vec())
    }

    fn url_of(&self, p: &ObjPath) -> String {
        format!("{}/{}", self.base, p.as_ref())
    }

    /// The full URL of `obj`, for messages.
    fn object_url(&self, obj: &RemoteObject) -> String {
        self.url_of(&obj.meta.location)
    }
}

#[cfg(feature = "object-storage")]
impl RemoteObject {
    /// The whole object's size (a [`BackupFile::head`] shortens `size`).
    fn total_size(&self) -> u64 {
        self.meta.size
    }
}

#[cfg(feature = "object-storage")]
/// A human-readable object-store error without request URLs' query strings (which can carry
/// signatures) and with a hint for the common causes.
fn describe_error(e: &object_store::Error) -> String {
    let text = credentials::scrub(&e.to_string());
    match e {
        object_store::Error::NotFound { .. } => format!("not found: {text}"),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => format!(
            "access denied: {text} (the tester needs list and read permission on the backup location; see the README's least-privilege policies)"
        ),
        _ => text,
    }
}

/// A file of a backup, local or remote, that can be opened for streaming.
#[derive(Debug, Clone)]
pub(crate) enum BackupFile {
    /// A local file.
    Local(PathBuf),
    /// An object.
    Remote(Arc<Remote>, RemoteObject),
}

impl BackupFile {
    /// The file's own name (last path component).
    pub(crate) fn name(&self) -> String {
        match self {
            BackupFile::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            BackupFile::Remote(_, o) => o.rel.rsplit('/').next().unwrap_or_default().to_string(),
        }
    }

    /// Where it is, for messages.
    pub(crate) fn display(&self) -> String {
        match self {
            BackupFile::Local(p) => p.display().to_string(),
            BackupFile::Remote(r, o) => r.object_url(o),
        }
    }

    /// The first `max` bytes only (a remote read then asks for just that range), to peek at
    /// a header without downloading the file. Reading past them gives end-of-file.
    pub(crate) fn head(&self, max: u64) -> BackupFile {
        match self {
            BackupFile::Local(_) => self.clone(),
            BackupFile::Remote(r, o) => {
                let mut o = o.clone();
                o.size = o.size.min(max);
                BackupFile::Remote(r.clone(), o)
            }
        }
    }

    /// Whether this is a [`BackupFile::head`] shorter than the file.
    pub(crate) fn is_partial(&self) -> bool {
        matches!(self, BackupFile::Remote(_, o) if o.size < o.total_size())
    }

    /// Size in bytes (0 when unknown).
    pub(crate) fn size(&self) -> u64 {
        match self {
            BackupFile::Local(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            BackupFile::Remote(_, o) => o.size,
        }
    }

    /// Opens the raw bytes (blocking; remote files need a Tokio runtime handle in scope —
    /// call from `spawn_blocking`).
    pub(crate) fn open_raw(&self, cancel: tokio_util::sync::CancellationToken) -> Result<Box<dyn Read + Send>> {
        match self {
            BackupFile::Local(p) => {
                let f = std::fs::File::open(p).map_err(|e| Error::io("opening", p, e))?;
                Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, f)))
            }
            BackupFile::Remote(r, o) => Ok(r.reader(o, cancel)),
        }
    }

    /// Opens the file as its content: decrypted when `decrypt` handles its suffix, then
    /// decompressed by its (remaining) name. Bytes read from storage count towards `progress`.
    /// Returns the reader and the plain name (`base.tar.gz.age` → `base.tar`).
    pub(crate) fn open(
        &self,
        decrypt: Option<&Decryptor>,
        progress: Option<Arc<dyn Progress>>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<(Box<dyn Read + Send>, String)> {
        let raw = crate::archive::counting(self.open_raw(cancel)?, progress);
        let name = self.name();
        let (reader, name) = match decrypt.and_then(|d| d.strip(&name).map(|s| (d, s.to_string()))) {
            Some((d, stripped)) => (d.wrap(raw, &self.display())?, stripped),
            None => (raw, name),
        };
        let comp = crate::archive::Compression::from_name(&name);
        let plain = name.strip_suffix(comp.suffix()).unwrap_or(&name).to_string();
        Ok((crate::archive::decompress(reader, comp, &self.display())?, plain))
    }

    /// Downloads into `dest` removing only an encryption layer (the file keeps its own
    /// compression, as a data-directory file or a `-Fd` dump member must).
    pub(crate) fn save_decrypted_to(
        &self,
        dest: &Path,
        decrypt: Option<&Decryptor>,
        progress: Option<Arc<dyn Progress>>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<u64> {
        let raw = crate::archive::counting(self.open_raw(cancel)?, progress);
        let mut r = match decrypt.filter(|d| d.strip(&self.name()).is_some()) {
            Some(d) => d.wrap(raw, &self.display())?,
            None => raw,
        };
        let mut w = std::fs::File::create(dest).map_err(|e| Error::io("creating", dest, e))?;
        std::io::copy(&mut r, &mut w).map_err(|e| crate::archive::read_error(&self.display(), e))
    }

    /// Downloads (decrypting and decompressing) into `dest`, a file path. Read errors of the
    /// content are backup defects; storage errors stay storage errors.
    pub(crate) fn save_to(
        &self,
        dest: &Path,
        decrypt: Option<&Decryptor>,
        progress: Option<Arc<dyn Progress>>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<u64> {
        let (mut r, _) = self.open(decrypt, progress, cancel)?;
        let mut w = std::fs::File::create(dest).map_err(|e| Error::io("creating", dest, e))?;
        std::io::copy(&mut r, &mut w).map_err(|e| crate::archive::read_error(&self.display(), e))
    }
}

/// `"+age"` (or `"+gpg"` …) when `name` carries the encryption suffix `decrypt` handles, else
/// `""`: the tag a backup's kind shows (`tar.gz+age`).
pub(crate) fn encryption_tag(name: &str, decrypt: Option<&Decryptor>) -> String {
    let bare = plain_name(name, decrypt);
    name.strip_prefix(bare).filter(|e| e.len() > 1).map(|e| format!("+{}", &e[1..])).unwrap_or_default()
}

/// A name without the encryption suffix `decrypt` handles (or unchanged).
pub(crate) fn plain_name<'a>(name: &'a str, decrypt: Option<&Decryptor>) -> &'a str {
    decrypt.and_then(|d| d.strip(name)).unwrap_or(name)
}

/// Runs `jobs` blocking closures with at most `parallel` at a time; returns their results in
/// order, or the first error. Stops waiting when `cancel` fires.
pub(crate) async fn run_parallel<T: Send + 'static>(
    jobs: Vec<Box<dyn FnOnce() -> Result<T> + Send>>,
    parallel: usize,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<T>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::new();
    for job in jobs {
        let sem = sem.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            tokio::task::spawn_blocking(job).await
        }));
    }
    let mut out = Vec::new();
    let mut first_err = None;
    for h in handles {
        tokio::select! {
            r = h => match r {
                Ok(Ok(Ok(v))) => out.push(v),
                Ok(Ok(Err(e))) => { first_err.get_or_insert(e); }
                Ok(Err(e)) | Err(e) => { first_err.get_or_insert(Error::Source { source_kind: "storage", message: "download task failed".into(), source: Some(e.into()) }); }
            },
            _ = cancel.cancelled() => return Err(Error::Cancelled { phase: crate::report::Phase::Fetch }),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Groups a recursive listing by first path component: `{"20261126": [objects…]}`.
pub(crate) fn group_by_folder(objects: Vec<RemoteObject>) -> BTreeMap<String, Vec<RemoteObject>> {
    let mut m: BTreeMap<String, Vec<RemoteObject>> = BTreeMap::new();
    for mut o in objects {
        if let Some((dir, rest)) = o.rel.split_once('/') {
            let dir = dir.to_string();
            o.rel = rest.to_string();
            m.entry(dir).or_default().push(o);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert!(is_url("s3://b/p"));
        assert!(is_url("gs://b/p"));
        assert!(is_url("az://c/p"));
        assert!(!is_url("/var/backups"));
        assert!(!is_url("http://x/y"));
        let o = StorageOptions::default();
        assert!(
            matches!(Location::parse(Path::new("file:///srv/b"), &o).unwrap(), Location::Local(p) if p == Path::new("/srv/b"))
        );
        assert!(matches!(Location::parse(Path::new("/srv/b"), &o).unwrap(), Location::Local(_)));
        assert!(Location::parse(Path::new("ftp://x/y"), &o).is_err());
    }

    #[test]
    #[cfg(not(feature = "object-storage"))]
    fn object_storage_needs_the_feature() {
        let e = Location::parse(Path::new("s3://bucket/pg"), &StorageOptions::default()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Config);
        let m = e.to_string();
        assert!(
            m.contains("object storage (s3://bucket/pg) needs restorecheck-core's `object-storage` feature"),
            "{m}"
        );
        let e = Location::parse(Path::new("az://user:hunter2@acct/c/p"), &StorageOptions::default()).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    #[cfg(feature = "object-storage")]
    fn remote_urls_render_without_credentials() {
        let o = StorageOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let r = Remote::open("s3://bucket/backups/pg", &o).unwrap();
        assert_eq!(r.url(""), "s3://bucket/backups/pg");
        assert_eq!(r.url("x/base.tar.gz"), "s3://bucket/backups/pg/x/base.tar.gz");
        assert!(!format!("{r:?}").contains("secret"));
    }

    #[test]
    #[cfg(feature = "object-storage")]
    fn gcs_and_azure_locations_build() {
        let o = StorageOptions { anonymous: true, ..Default::default() };
        assert_eq!(Remote::open("gs://bucket/pg", &o).unwrap().url(""), "gs://bucket/pg");
        let az = Remote::open("abfss://container@account.dfs.core.windows.net/pg", &o).unwrap();
        assert_eq!(az.url(""), "abfss://container@account.dfs.core.windows.net/pg");
    }
}
