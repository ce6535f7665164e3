//! A blocking reader over one object that streams it and, when the connection breaks, asks again
//! for the rest (`Range: bytes=N-`, `If-Match: <etag>`), so a transient network error costs a
//! retry rather than the whole download, and a changed object is never stitched together.

#[cfg(feature = "object-storage")]
use std::io::{self, Read};
#[cfg(feature = "object-storage")]
use std::sync::Arc;
#[cfg(feature = "object-storage")]
use std::time::Duration;

#[cfg(feature = "object-storage")]
use bytes::Bytes;
#[cfg(feature = "object-storage")]
use futures::{stream::BoxStream, StreamExt};
#[cfg(feature = "object-storage")]
use object_store::{GetOptions, GetRange, ObjectMeta};
#[cfg(feature = "object-storage")]
use tokio::runtime::Handle;
#[cfg(feature = "object-storage")]
use tokio_util::sync::CancellationToken;

#[cfg(feature = "object-storage")]
use super::Remote;

/// Why a download from object storage failed for good (carried inside an `io::Error` so that
/// decompressors and tar readers pass it through; [`crate::archive::read_error`] turns it back
/// into [`crate::Error::Storage`] — a failure of the tester's access, not a damaged backup).
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub(crate) struct StorageReadError {
    /// The object.
    pub(crate) url: String,
    /// What failed, with the number of attempts.
    pub(crate) message: String,
}

/// Marks a read stopped because the check was cancelled (never `ErrorKind::Interrupted`, which
/// `std::io::copy` would retry forever).
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub(crate) struct ReadCancelled;

#[cfg(feature = "object-storage")]
pub(super) struct ResumableReader {
    remote: Arc<Remote>,
    meta: ObjectMeta,
    url: String,
    handle: Handle,
    cancel: CancellationToken,
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    buf: Bytes,
    offset: u64,
    /// Where to stop: the object's size, or less for a read of its head only.
    end: u64,
    failures: u32,
}

#[cfg(feature = "object-storage")]
impl ResumableReader {
    pub(super) fn new(
        remote: Arc<Remote>,
        meta: ObjectMeta,
        end: u64,
        url: String,
        handle: Handle,
        cancel: CancellationToken,
    ) -> Self {
        let end = end.min(meta.size);
        Self { remote, meta, url, handle, cancel, stream: None, buf: Bytes::new(), offset: 0, end, failures: 0 }
    }

    fn fail(&self, message: String) -> io::Error {
        io::Error::other(StorageReadError { url: self.url.clone(), message })
    }

    /// Opens (or reopens at `offset`) the object's stream.
    fn connect(&mut self) -> Result<(), object_store::Error> {
        let opts = GetOptions {
            range: if self.end < self.meta.size {
                Some(GetRange::Bounded(self.offset..self.end))
            } else {
                (self.offset > 0).then_some(GetRange::Offset(self.offset))
            },
            if_match: self.meta.e_tag.clone(),
            ..Default::default()
        };
        let (store, loc) = (self.remote.store.clone(), self.meta.location.clone());
        let res = self.handle.block_on(async move { store.get_opts(&loc, opts).await })?;
        self.stream = Some(res.into_stream());
        Ok(())
    }

    /// Records a failure; sleeps before the next attempt, or gives up.
    fn retry_or_give_up(&mut self, what: String) -> io::Result<()> {
        self.failures += 1;
        self.stream = None;
        if self.failures >= self.remote.retries {
            return Err(self.fail(format!(
                "download failed after {} attempts at byte {} of {}: {what}",
                self.failures, self.offset, self.end
            )));
        }
        let wait = Duration::from_millis(200u64 << self.failures.min(6));
        tracing::warn!(
            object = %self.url,
            at = self.offset,
            attempt = self.failures,
            "download interrupted ({what}); resuming in {wait:?}"
        );
        let cancel = self.cancel.clone();
        let cancelled = self.handle.block_on(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = cancel.cancelled() => true,
            }
        });
        if cancelled {
            return Err(io::Error::other(ReadCancelled));
        }
        Ok(())
    }
}

#[cfg(feature = "object-storage")]
impl Read for ResumableReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.buf.is_empty() {
                let n = self.buf.len().min(out.len()).min((self.end - self.offset) as usize);
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf = self.buf.slice(n..);
                self.offset += n as u64;
                return Ok(n);
            }
            if self.offset >= self.end {
                return Ok(0);
            }
            if self.cancel.is_cancelled() {
                return Err(io::Error::other(ReadCancelled));
            }
            if self.stream.is_none() {
                match self.connect() {
                    Ok(()) => {}
                    Err(e @ object_store::Error::Precondition { .. }) => {
                        return Err(self.fail(format!(
                        "the object changed while it was being read ({}); a backup being rewritten cannot be tested",
                        super::credentials::scrub(&e.to_string())
                    )))
                    }
                    Err(
                        e @ (object_store::Error::NotFound { .. }
                        | object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }),
                    ) => {
                        return Err(self.fail(super::describe_error(&e)));
                    }
                    // object_store already retried the request itself.
                    Err(e) => {
                        self.failures = self.failures.max(self.remote.retries.saturating_sub(1));
                        self.retry_or_give_up(super::credentials::scrub(&e.to_string()))?;
                    }
                }
                continue;
            }
            let cancel = self.cancel.clone();
            let stream = self.stream.as_mut().ok_or_else(|| io::Error::other("no stream"))?;
            let next = self.handle.block_on(async {
                tokio::select! {
                    n = stream.next() => Some(n),
                    _ = cancel.cancelled() => None,
                }
            });
            match next {
                None => return Err(io::Error::other(ReadCancelled)),
                Some(Some(Ok(b))) => self.buf = b,
                Some(Some(Err(e))) => self.retry_or_give_up(super::credentials::scrub(&e.to_string()))?,
                Some(None) => {
                    // The stream ended early: the connection was closed mid-object.
                    self.retry_or_give_up(format!("connection closed after byte {}", self.offset))?
                }
            }
        }
    }
}
