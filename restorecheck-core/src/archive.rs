//! Streaming decompression and tar extraction. Memory stays flat whatever the backup size:
//! data flows file → decompressor → tar entries → disk in fixed-size buffers.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::context::Progress;
use crate::error::{Error, Result};

/// Compression of a file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
    /// LZ4 frame format (`.lz4`).
    Lz4,
}

impl Compression {
    /// From a file name's ending.
    pub fn from_name(name: &str) -> Self {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Compression::Zstd
        } else if name.ends_with(".lz4") {
            Compression::Lz4
        } else {
            Compression::None
        }
    }

    /// `name` without its compression suffix (`base.tar.gz` → `base.tar`).
    pub fn strip(name: &str) -> &str {
        name.strip_suffix(Compression::from_name(name).suffix()).unwrap_or(name)
    }

    /// The suffix (`""`, `".gz"`, …).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
            Compression::Lz4 => ".lz4",
        }
    }
}

/// A reader that reports bytes read to a progress sink.
struct Counting<R> {
    inner: R,
    progress: Option<Arc<dyn Progress>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = &self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }
}

/// Wraps `inner` so that bytes read from it count towards `progress`.
pub fn counting(inner: Box<dyn Read + Send>, progress: Option<Arc<dyn Progress>>) -> Box<dyn Read + Send> {
    match progress {
        Some(p) => Box::new(Counting { inner, progress: Some(p) }),
        None => inner,
    }
}

/// Wraps `raw` in the decompressor for `comp`. `what` names the file in messages.
pub fn decompress(raw: Box<dyn Read + Send>, comp: Compression, what: &str) -> Result<Box<dyn Read + Send>> {
    Ok(match comp {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(raw).map_err(|e| read_error(what, e))?;
            // Backups compressed with zstd's long mode need the large window.
            d.window_log_max(31).map_err(|e| read_error(what, e))?;
            Box::new(d)
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(raw)),
    })
}

/// Opens `path` and wraps it in the decompressor its name calls for.
pub fn open_decompressed(path: &Path, progress: Option<Arc<dyn Progress>>) -> Result<Box<dyn Read + Send>> {
    let f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let raw = counting(Box::new(BufReader::with_capacity(256 * 1024, f)), progress);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    decompress(raw, Compression::from_name(&name), &path.display().to_string())
}

/// Classifies an error met while reading a backup file's content: lost access to object
/// storage stays a storage error, cancellation stays cancellation, a full disk or a permission
/// problem is the tester's, and anything else (truncation, a bad checksum, a corrupt compressed
/// or encrypted stream) means the file `what` is damaged — a [`Error::BackupDefect`].
pub fn read_error(what: &str, e: io::Error) -> Error {
    if let Some(s) = find_in_chain::<crate::storage::StorageReadError>(&e) {
        return Error::Storage { location: s.url.clone(), message: s.message.clone() };
    }
    if find_in_chain::<crate::storage::ReadCancelled>(&e).is_some() {
        return Error::Cancelled { phase: crate::report::Phase::Fetch };
    }
    if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::ENOSPC) {
        Error::io("extracting", what, e)
    } else {
        Error::defect(format!("{what} is damaged or truncated: {}", chain_text(&e)))
    }
}

/// An error with its causes (the tar crate says only "failed to unpack …" and keeps the real
/// reason — a failed checksum, a truncated stream — underneath).
fn chain_text(e: &io::Error) -> String {
    let mut text = e.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        let t = err.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as _),
            None => err.source(),
        };
    }
    text
}

/// Finds a `T` inside an `io::Error`, looking through wrappers (the tar crate wraps read
/// errors in its own error, and `io::Error::source` skips the custom error itself).
fn find_in_chain<T: std::error::Error + 'static>(e: &io::Error) -> Option<&T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(t) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).and_then(|r| r.downcast_ref::<T>())
        {
            return Some(t);
        }
        cur = match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as _),
            None => err.source(),
        };
    }
    None
}

/// Statistics of one extraction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extracted {
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries unpacked.
    pub entries: u64,
}

/// Extracts the (possibly compressed) tar `archive` into `dest`. Entries cannot escape `dest`.
/// Any read or format error — a truncated file, a corrupt compressed stream — is a
/// [`Error::BackupDefect`] naming the archive, since the backup is then unusable.
/// Stops between entries once `cancel` fires (a timed-out or interrupted check).
pub fn extract_tar(
    archive: &Path,
    dest: &Path,
    progress: Option<Arc<dyn Progress>>,
    cancel: Option<tokio_util::sync::CancellationToken>,
) -> Result<Extracted> {
    let reader = open_decompressed(archive, progress)?;
    extract_tar_from(reader, &archive.display().to_string(), dest, cancel)
}

/// Extracts a tar stream (already decrypted and decompressed) into `dest`; `what` names it in
/// messages. See [`extract_tar`].
pub fn extract_tar_from(
    reader: Box<dyn Read + Send>,
    what: &str,
    dest: &Path,
    cancel: Option<tokio_util::sync::CancellationToken>,
) -> Result<Extracted> {
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut stats = Extracted::default();
    let defect = |e: io::Error| read_error(what, e);
    for entry in ar.entries().map_err(defect)? {
        if cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
        }
        let mut entry = entry.map_err(defect)?;
        stats.bytes += entry.header().size().unwrap_or(0);
        stats.entries += 1;
        entry.unpack_in(dest).map_err(|e| {
            // unpack_in wraps read errors in its own message; keep storage errors recognisable.
            read_error(what, e)
        })?;
    }
    // A tar archive ends with zero blocks; the tar crate stops at them. Reading to EOF makes the
    // decompressor verify its trailer (gzip CRC, zstd frame end), so a truncated stream fails.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(defect)?;
    if stats.entries == 0 {
        return Err(Error::defect(format!("{what} holds no files")));
    }
    Ok(stats)
}

/// Reads the first entry named `wanted` from a tar archive, looking at no more than
/// `max_entries` entries (pg_basebackup writes `backup_label` first). Returns the content and
/// the user name recorded in its header.
pub fn read_tar_member(archive: &Path, wanted: &str, max_entries: usize) -> Result<Option<(String, Option<String>)>> {
    let reader = open_decompressed(archive, None)?;
    read_tar_member_from(reader, &archive.display().to_string(), wanted, max_entries)
}

/// [`read_tar_member`] over a tar stream; `what` names it in messages.
pub fn read_tar_member_from(
    reader: Box<dyn Read + Send>,
    what: &str,
    wanted: &str,
    max_entries: usize,
) -> Result<Option<(String, Option<String>)>> {
    let mut ar = tar::Archive::new(reader);
    let defect = |e: io::Error| read_error(what, e);
    for entry in ar.entries().map_err(defect)?.take(max_entries) {
        let mut entry = entry.map_err(defect)?;
        let path: PathBuf = entry.path().map_err(defect)?.into_owned();
        if path == Path::new(wanted) {
            let user = entry.header().username().ok().flatten().map(str::to_string);
            let mut s = String::new();
            entry.read_to_string(&mut s).map_err(defect)?;
            return Ok(Some((s, user)));
        }
    }
    Ok(None)
}
