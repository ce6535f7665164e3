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

/// Opens `path` and wraps it in the decompressor its name calls for.
pub fn open_decompressed(path: &Path, progress: Option<Arc<dyn Progress>>) -> Result<Box<dyn Read + Send>> {
    let f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let raw = Counting { inner: BufReader::with_capacity(256 * 1024, f), progress };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(match Compression::from_name(&name) {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(raw).map_err(|e| Error::io("starting zstd", path, e))?;
            // Backups compressed with zstd's long mode need the large window.
            d.window_log_max(31).map_err(|e| Error::io("configuring zstd", path, e))?;
            Box::new(d)
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(raw)),
    })
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
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut stats = Extracted::default();
    let defect = |e: io::Error| {
        if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::ENOSPC) {
            Error::io("extracting", archive, e)
        } else {
            Error::defect(format!("{} is damaged or truncated: {e}", archive.display()))
        }
    };
    for entry in ar.entries().map_err(defect)? {
        if cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
        }
        let mut entry = entry.map_err(defect)?;
        stats.bytes += entry.header().size().unwrap_or(0);
        stats.entries += 1;
        entry.unpack_in(dest).map_err(defect)?;
    }
    // A tar archive ends with zero blocks; the tar crate stops at them. Reading to EOF makes the
    // decompressor verify its trailer (gzip CRC, zstd frame end), so a truncated stream fails.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(defect)?;
    if stats.entries == 0 {
        return Err(Error::defect(format!("{} holds no files", archive.display())));
    }
    Ok(stats)
}

/// Reads the first entry named `wanted` from a tar archive, looking at no more than
/// `max_entries` entries (pg_basebackup writes `backup_label` first). Returns the content and
/// the user name recorded in its header.
pub fn read_tar_member(archive: &Path, wanted: &str, max_entries: usize) -> Result<Option<(String, Option<String>)>> {
    let reader = open_decompressed(archive, None)?;
    let mut ar = tar::Archive::new(reader);
    let defect = |e: io::Error| Error::defect(format!("{} is damaged or truncated: {e}", archive.display()));
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
