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
pub(crate) fn counting(inner: Box<dyn Read + Send>, progress: Option<Arc<dyn Progress>>) -> Box<dyn Read + Send> {
    match progress {
        Some(p) => Box::new(Counting { inner, progress: Some(p) }),
        None => inner,
    }
}

/// The largest zstd window restorecheck decodes: 2^27 = 128 MiB, zstd's default limit (what
/// `zstd --long` and pg_basebackup's `zstd:long` write). Larger windows are refused.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Wraps `raw` in the decompressor for `comp`. `what` names the file in messages.
pub(crate) fn decompress(raw: Box<dyn Read + Send>, comp: Compression, what: &str) -> Result<Box<dyn Read + Send>> {
    Ok(match comp {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(raw).map_err(|e| read_error(what, e))?;
            // A frame may ask for a window of up to 2 GiB, which the decoder would allocate:
            // capped at zstd's own default limit (what `--long` and pg_basebackup's `long` use).
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| read_error(what, e))?;
            Box::new(d)
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(raw)),
    })
}

/// Opens `path` and wraps it in the decompressor its name calls for.
pub(crate) fn open_decompressed(path: &Path, progress: Option<Arc<dyn Progress>>) -> Result<Box<dyn Read + Send>> {
    let f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let raw = counting(Box::new(BufReader::with_capacity(256 * 1024, f)), progress);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    decompress(raw, Compression::from_name(&name), &path.display().to_string())
}

/// Classifies an error met while reading a backup file's content: lost access to object
/// storage stays a storage error, cancellation stays cancellation, a full disk or a permission
/// problem is the tester's, and anything else (truncation, a bad checksum, a corrupt compressed
/// or encrypted stream) means the file `what` is damaged — a [`Error::BackupDefect`].
pub(crate) fn read_error(what: &str, e: io::Error) -> Error {
    if let Some(s) = find_in_chain::<crate::storage::StorageReadError>(&e) {
        return Error::Storage { location: s.url.clone(), message: s.message.clone(), source: None };
    }
    if find_in_chain::<crate::storage::ReadCancelled>(&e).is_some() {
        return Error::Cancelled { phase: crate::report::Phase::Fetch };
    }
    if is_out_of_space(&e) {
        return Error::Tooling {
            what: format!("the work dir ran out of space while restoring {what}"),
            hint: "this is the tester's disk, not the backup: free space there, or set work_dir (or TMPDIR) to a \
                   filesystem with room for the restored cluster"
                .into(),
            source: Some(e.into()),
        };
    }
    if chain_text(&e).contains("Frame requires too much memory") {
        return Error::Tooling {
            what: format!(
                "{what} is zstd-compressed with a window larger than {} MiB (zstd --long=28 or more); restorecheck \
                 refuses such frames to keep its memory bounded",
                (1u64 << ZSTD_WINDOW_LOG_MAX) >> 20
            ),
            hint: format!(
                "compress backups with a window of at most 2^{ZSTD_WINDOW_LOG_MAX} (zstd's default, also with --long)"
            ),
            source: None,
        };
    }
    if e.kind() == io::ErrorKind::PermissionDenied {
        Error::io("extracting", what, e)
    } else {
        Error::defect(format!("{what} is damaged or truncated")).with_source(e)
    }
}

/// Whether `e`, or an error it wraps (the tar crate keeps the kind but drops the OS error
/// number), is a full disk or an exceeded quota.
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    let full = |e: &io::Error| {
        matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
    };
    if full(e) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if err.downcast_ref::<io::Error>().is_some_and(full) {
            return true;
        }
        cur = match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as _),
            None => err.source(),
        };
    }
    false
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

/// The largest GNU long-name or pax extension header a tar stream may carry (the tar crate
/// reads each of them into memory whole).
const TAR_EXTENSION_MAX: u64 = 1 << 20;

/// A tar stream read through a check of its headers: a GNU long-name / long-link or pax
/// extension entry larger than [`TAR_EXTENSION_MAX`] is refused before the tar crate would
/// allocate it. It follows the stream block by block (entry sizes, pax `size=`, GNU sparse
/// extension blocks) and only acts on blocks whose header checksum is right; should it ever
/// lose track, it stops checking and the tar crate's own parsing decides.
struct HeaderGuard<R> {
    inner: R,
    header: [u8; 512],
    fill: usize,
    /// Bytes of entry data (and padding) still to pass.
    skip: u64,
    /// Pax extension data being collected, and how much of it is still to come.
    pax: Vec<u8>,
    pax_left: u64,
    pax_pad: u64,
    /// The size a pax `size=` record gave the next entry.
    next_size: Option<u64>,
    /// GNU sparse extension blocks follow, then `after_ext` bytes of data.
    sparse_ext: bool,
    after_ext: u64,
    lost: bool,
}

impl<R: Read> HeaderGuard<R> {
    fn new(inner: R) -> Self {
        HeaderGuard {
            inner,
            header: [0; 512],
            fill: 0,
            skip: 0,
            pax: Vec::new(),
            pax_left: 0,
            pax_pad: 0,
            next_size: None,
            sparse_ext: false,
            after_ext: 0,
            lost: false,
        }
    }

    fn on_header(&mut self) -> io::Result<()> {
        let h = &self.header;
        if self.sparse_ext {
            // GNU sparse extension block: no checksum, "more follow" flag at 504.
            self.sparse_ext = h[504] != 0;
            if !self.sparse_ext {
                self.skip = self.after_ext;
            }
            return Ok(());
        }
        if h.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let stored = octal(&h[148..156]);
        let sum: u64 =
            h.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
        let Some(size) = (stored == Some(sum)).then(|| tar_size(&h[124..136])).flatten() else {
            self.lost = true;
            return Ok(());
        };
        let padded = |n: u64| n.div_ceil(512).saturating_mul(512);
        match h[156] {
            b'L' | b'K' | b'x' | b'g' if size > TAR_EXTENSION_MAX => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a tar extension header (long name or pax record) claims {}; restorecheck reads at most {}",
                        crate::safefs::human_bytes(size),
                        crate::safefs::human_bytes(TAR_EXTENSION_MAX)
                    ),
                ));
            }
            b'x' => {
                self.pax.clear();
                self.pax_left = size;
                self.pax_pad = padded(size) - size;
            }
            b'L' | b'K' | b'g' => self.skip = padded(size),
            kind => {
                let size = self.next_size.take().unwrap_or(size);
                if kind == b'S' && h[482] != 0 {
                    self.sparse_ext = true;
                    self.after_ext = padded(size);
                } else {
                    self.skip = padded(size);
                }
            }
        }
        Ok(())
    }

    fn on_pax_done(&mut self) {
        let text = String::from_utf8_lossy(&self.pax);
        self.next_size = text
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, kv)| kv))
            .find_map(|kv| kv.strip_prefix("size="))
            .and_then(|v| v.trim().parse().ok());
        self.skip = self.pax_pad;
    }

    fn observe(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() && !self.lost {
            if self.pax_left > 0 {
                let take = (self.pax_left.min(buf.len() as u64)) as usize;
                self.pax.extend_from_slice(&buf[..take]);
                self.pax_left -= take as u64;
                buf = &buf[take..];
                if self.pax_left == 0 {
                    self.on_pax_done();
                }
            } else if self.skip > 0 {
                let take = (self.skip.min(buf.len() as u64)) as usize;
                self.skip -= take as u64;
                buf = &buf[take..];
            } else {
                let take = (512 - self.fill).min(buf.len());
                self.header[self.fill..self.fill + take].copy_from_slice(&buf[..take]);
                self.fill += take;
                buf = &buf[take..];
                if self.fill == 512 {
                    self.fill = 0;
                    self.on_header()?;
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// An octal tar number field (NUL- or space-terminated).
fn octal(field: &[u8]) -> Option<u64> {
    let s: String = field.iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A tar size field: octal, or GNU base-256 when the high bit of its first byte is set.
fn tar_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut n: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        Some(n)
    } else {
        octal(field)
    }
}

/// Statistics of one extraction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extracted {
    /// CRC32C over every entry's header and path, written or not: two passes over one archive
    /// ([`extract_tar_split`]) saw the same archive when theirs agree.
    headers: u32,
    /// Bytes of file content written.
    pub(crate) bytes: u64,
    /// Entries unpacked.
    pub(crate) entries: u64,
    /// What the in-stream `backup_manifest` check verified ([`extract_tar_verified`]).
    pub(crate) verified: crate::postgres::manifest::StreamVerified,
}

/// Reads `inner` on a thread of its own, `depth` chunks of `chunk` bytes ahead, so that
/// decompression (and download, and decryption) runs on one core while extraction, hashing and
/// writing run on another, as `zstd -dc | tar -x` does. Memory stays bounded by
/// `depth × chunk`. An error of `inner` arrives, unchanged, where it happened in the stream; when
/// the reader is dropped the thread stops at its next chunk.
pub(crate) fn read_ahead(inner: Box<dyn Read + Send>, chunk: usize, depth: usize) -> Box<dyn Read + Send> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(depth.max(1));
    let spawned = std::thread::Builder::new().name("restorecheck-read-ahead".into()).spawn(move || {
        let mut inner = inner;
        loop {
            let mut buf = vec![0u8; chunk];
            let mut filled = 0;
            let result = loop {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let end = filled < chunk;
            if filled > 0 && tx.send(Ok(buf)).is_err() {
                return;
            }
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                return;
            }
            if end {
                return;
            }
        }
    });
    match spawned {
        Ok(_) => Box::new(ReadAhead { rx, current: Vec::new(), pos: 0 }),
        // No thread to be had: read in line instead (the channel's sender is gone with the
        // closure, so report the failure as a read error).
        Err(e) => Box::new(FailedRead(Some(e))),
    }
}

struct ReadAhead {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    self.current = next;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct FailedRead(Option<io::Error>);

impl Read for FailedRead {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| io::Error::other("read-ahead thread could not start")))
    }
}

/// Checking members against a `backup_manifest` while extracting: the manifest, and the path
/// of the archive's root relative to the data directory (empty for `base.tar`,
/// `pg_tblspc/<oid>` for a tablespace's tar).
#[derive(Clone)]
pub(crate) struct Verify<'a> {
    /// The manifest.
    pub(crate) manifest: &'a crate::postgres::manifest::Manifest,
    /// Where the archive's members are, relative to the data directory.
    pub(crate) prefix: PathBuf,
}

type TapSlot = std::rc::Rc<std::cell::RefCell<Option<(crate::postgres::manifest::FileCheck, u64)>>>;

/// Feeds the bytes the tar crate reads for the current member's content (exactly its size,
/// read in order while the member is unpacked) to that member's manifest check.
struct Tap<R> {
    inner: R,
    slot: TapSlot,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some((check, left)) = self.slot.borrow_mut().as_mut() {
            let k = (*left).min(n as u64) as usize;
            check.update(&buf[..k]);
            *left -= k as u64;
        }
        Ok(n)
    }
}

/// Extracts a tar stream (already decrypted and decompressed) into `dest`; `what` names it in
/// messages. Entries cannot escape `dest`. Any read or format error — a truncated file, a
/// corrupt compressed stream — is a [`Error::BackupDefect`] naming the archive, since the backup
/// is then unusable. Stops between entries once `cancel` fires (a timed-out or interrupted
/// check).
#[cfg(test)]
pub(crate) fn extract_tar_from(
    reader: Box<dyn Read + Send>,
    what: &str,
    dest: &Path,
    cancel: Option<tokio_util::sync::CancellationToken>,
) -> Result<Extracted> {
    extract_tar_verified(reader, what, dest, cancel, None)
}

/// A regular member this large or larger may be written by the second of two passes
/// ([`extract_tar_split`]); smaller ones, and every other entry, by the first.
const SPLIT_MIN: u64 = 8 << 20;

/// Which pass of [`extract_tar_split`] this extraction is: `(pass, passes)`.
type Pass = (usize, usize);

/// Decides, identically in every pass (they read the same headers in the same order), which
/// pass writes each entry: regular members of at least [`SPLIT_MIN`] bytes go to the pass with
/// the fewest bytes so far, everything else to pass 0.
struct Split {
    bytes: Vec<u64>,
}

impl Split {
    fn new(passes: usize) -> Self {
        Split { bytes: vec![0; passes.max(1)] }
    }

    fn owner(&mut self, is_file: bool, size: u64) -> usize {
        if !is_file || size < SPLIT_MIN || self.bytes.len() < 2 {
            return 0;
        }
        let (i, _) = self.bytes.iter().enumerate().min_by_key(|(_, b)| **b).unwrap_or((0, &0));
        self.bytes[i] += size;
        i
    }
}

/// Extracts one tar archive in two passes at once, each reading the whole stream from its own
/// `open(pass)` and writing about half of the large members, so that two threads fill the page
/// cache instead of one: on a host where writing is what bounds extraction (one core busy in
/// the kernel while decompression idles), that is up to twice as fast. Meant for archives whose
/// decompression is cheap next to writing (zstd, lz4) and that are cheap to read twice (local
/// files). Directories, links and small files are all written by pass 0, in archive order.
/// The first error of either pass stops both and is the one returned; everything else is as
/// [`extract_tar_verified`].
pub(crate) fn extract_tar_split(
    open: &(dyn Fn(usize) -> Result<Box<dyn Read + Send>> + Sync),
    what: &str,
    dest: &Path,
    cancel: tokio_util::sync::CancellationToken,
    verify: Option<Verify<'_>>,
) -> Result<Extracted> {
    let pair = cancel.child_token();
    let run = |pass: usize| {
        let r = open(pass).and_then(|reader| {
            extract_tar_pass(reader, what, dest, Some(pair.clone()), verify.clone(), Some((pass, 2)))
        });
        if r.is_err() {
            pair.cancel();
        }
        r
    };
    let (first, second) = std::thread::scope(|scope| {
        let second = std::thread::Builder::new().name("restorecheck-extract-2".into()).spawn_scoped(scope, || run(1));
        let first = run(0);
        let second = match second {
            Ok(h) => {
                h.join().unwrap_or_else(|_| Err(Error::defect(format!("{what}: the second extraction pass panicked"))))
            }
            Err(e) => Err(Error::io("starting an extraction thread for", dest, e)),
        };
        (first, second)
    });
    // A pass stopped because the other failed reports the other's error.
    let (mut a, b) = match (first, second) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(Error::Cancelled { .. }), Err(e)) if !cancel.is_cancelled() => return Err(e),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if a.headers != b.headers {
        // Rewritten or replaced between the two opens: the passes split different archives.
        return Err(Error::Source {
            source_kind: "basebackup",
            message: format!(
                "{what} changed while restorecheck read it (two passes saw different entries); run the check again \
                 once nothing writes the backup"
            ),
            source: None,
        });
    }
    a.bytes += b.bytes;
    a.entries += b.entries;
    a.verified.add(&b.verified);
    Ok(a)
}

/// [`extract_tar_from`], checking every regular member the manifest lists against its size and
/// checksum while it is written: the first mismatch stops the extraction at once, naming the
/// file and the archive (the rest of the archive is not read).
pub(crate) fn extract_tar_verified(
    reader: Box<dyn Read + Send>,
    what: &str,
    dest: &Path,
    cancel: Option<tokio_util::sync::CancellationToken>,
    verify: Option<Verify<'_>>,
) -> Result<Extracted> {
    extract_tar_pass(reader, what, dest, cancel, verify, None)
}

/// [`extract_tar_verified`], writing only the entries `pass` owns ([`Split`]) when given.
fn extract_tar_pass(
    reader: Box<dyn Read + Send>,
    what: &str,
    dest: &Path,
    cancel: Option<tokio_util::sync::CancellationToken>,
    verify: Option<Verify<'_>>,
    pass: Option<Pass>,
) -> Result<Extracted> {
    let mut split = Split::new(pass.map_or(1, |(_, n)| n));
    let slot: TapSlot = Default::default();
    let mut ar = tar::Archive::new(Tap { inner: HeaderGuard::new(reader), slot: slot.clone() });
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
        if pass.is_some() {
            stats.headers = crc32c::crc32c_append(stats.headers, entry.header().as_bytes());
            stats.headers = crc32c::crc32c_append(stats.headers, &entry.path_bytes());
        }
        if !entry_is_safe(&entry, what)? {
            continue;
        }
        let size = entry.header().size().unwrap_or(0);
        let owner = split.owner(entry.header().entry_type().is_file(), size);
        if pass.is_some_and(|(me, _)| me != owner) {
            continue;
        }
        stats.bytes += size;
        stats.entries += 1;
        let check = match &verify {
            Some(v) if entry.header().entry_type().is_file() => {
                let rel: PathBuf = entry
                    .path()
                    .map_err(defect)?
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
                v.manifest.start(&v.prefix.join(rel))
            }
            _ => None,
        };
        *slot.borrow_mut() = check.map(|c| (c, size));
        let unpacked = entry.unpack_in(dest).map_err(|e| {
            // unpack_in wraps read errors in its own message; keep storage errors recognisable.
            read_error(what, e)
        });
        let check = slot.borrow_mut().take();
        if unpacked? {
            if let Some((check, _)) = check {
                check.finish(what, &mut stats.verified)?;
            }
        }
    }
    // A tar archive ends with zero blocks; the tar crate stops at them. Reading to EOF makes the
    // decompressor verify its trailer (gzip CRC, zstd frame end), so a truncated stream fails.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(defect)?;
    if stats.entries == 0 && pass.is_none_or(|(me, _)| me == 0) {
        return Err(Error::defect(format!("{what} holds no files")));
    }
    Ok(stats)
}

/// Decides about one tar entry before it is unpacked: a path that climbs (`..`) or is absolute,
/// and a hard link to such a path, are refused; a symbolic link that could lead out of the
/// extraction folder (absolute, or with `..`) is not created — refused for the files
/// PostgreSQL trusts to describe the backup (`backup_label`, …), skipped with a warning
/// otherwise (a `postgresql.conf` linked to `/etc`: the server gets a placeholder instead);
/// device files and FIFOs are skipped. Returns whether to unpack it.
fn entry_is_safe<R: Read>(entry: &tar::Entry<'_, R>, what: &str) -> Result<bool> {
    use std::path::Component;
    let path: PathBuf = entry.path().map_err(|e| read_error(what, e))?.into_owned();
    let climbs =
        |p: &Path| p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
    if climbs(&path) {
        return Err(Error::defect(format!(
            "{what}: entry {} would land outside the folder it is extracted into; refusing the archive",
            path.display()
        )));
    }
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target: PathBuf =
            entry.link_name().map_err(|e| read_error(what, e))?.map(|t| t.into_owned()).unwrap_or_default();
        if crate::safefs::link_stays_below(&target) {
            return Ok(true);
        }
        let link = if kind.is_hard_link() { "hard link" } else { "symbolic link" };
        if kind.is_hard_link() || crate::postgres::datadir::is_control_file(&path) {
            return Err(Error::defect(format!(
                "{what}: {} is a {link} that leads out of the backup; restorecheck refuses to follow it (it could point \
                 anywhere on this host), so the backup cannot be checked",
                path.display()
            )));
        }
        tracing::warn!("{what}: not creating {}, a {link} that leads out of the backup", path.display());
        return Ok(false);
    }
    if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        tracing::warn!("{what}: not creating {}, a device file or FIFO", path.display());
        return Ok(false);
    }
    Ok(true)
}

/// The largest tar member [`read_tar_member_from`] reads (`backup_label` is a few hundred bytes).
pub(crate) const MEMBER_MAX: u64 = 1 << 20;

/// Reads the first entry named `wanted` from a tar stream (`what` names it in messages),
/// looking at no more than `max_entries` entries (pg_basebackup writes `backup_label` first)
/// and no more than [`MEMBER_MAX`] bytes of it. Returns the content and the user name recorded
/// in its header. A member that is a link, or larger, is a [`Error::BackupDefect`].
pub(crate) fn read_tar_member_from(
    reader: Box<dyn Read + Send>,
    what: &str,
    wanted: &str,
    max_entries: usize,
) -> Result<Option<(String, Option<String>)>> {
    let mut ar = tar::Archive::new(HeaderGuard::new(reader));
    let defect = |e: io::Error| read_error(what, e);
    for entry in ar.entries().map_err(defect)?.take(max_entries) {
        let mut entry = entry.map_err(defect)?;
        let path: PathBuf = entry.path().map_err(defect)?.into_owned();
        if path == Path::new(wanted) {
            if !entry.header().entry_type().is_file() {
                return Err(Error::defect(format!(
                    "{wanted} in {what} is a link or special file, not a regular file; restorecheck refuses to follow \
                     it (it could point anywhere on this host), so the backup cannot be checked"
                )));
            }
            let user = entry.header().username().ok().flatten().map(str::to_string);
            let s = crate::safefs::read_capped(&mut entry, MEMBER_MAX, &format!("{wanted} in {what}"))?;
            return Ok(Some((s, user)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar entry header with a raw `name` (the tar crate's builder refuses `..` and absolute
    /// names, which is what a hostile archive has).
    fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn extract(entries: &[(&str, tar::EntryType, &str)]) -> (tempfile::TempDir, Result<Extracted>) {
        let mut t = Vec::new();
        for (name, kind, link) in entries {
            raw_entry(&mut t, name, *kind, link, if kind.is_file() { b"data" } else { b"" });
        }
        t.extend_from_slice(&[0u8; 1024]);
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dest")).unwrap();
        let r = extract_tar_from(Box::new(io::Cursor::new(t)), "base.tar", &d.path().join("dest"), None);
        (d, r)
    }

    /// A zstd tar with directories, a link, a small file and three members large enough to be
    /// shared between passes (a: 9 MiB → pass 0, b: 10 MiB → pass 1, c: 9 MiB → pass 0).
    fn split_archive() -> (Vec<u8>, Vec<(&'static str, Vec<u8>)>) {
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("PG_VERSION", b"15\n".to_vec()),
            ("base/1/a", (0..9u32 << 20).map(|i| (i % 251) as u8).collect()),
            ("base/1/b", (0..10u32 << 20).map(|i| (i % 241) as u8).collect()),
            ("base/1/c", (0..9u32 << 20).map(|i| (i % 239) as u8).collect()),
        ];
        let mut b = tar::Builder::new(Vec::new());
        for dir in ["base", "base/1"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o700);
            h.set_size(0);
            b.append_data(&mut h, dir, io::empty()).unwrap();
        }
        for (name, data) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o600);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "current", "base").unwrap();
        let tar = b.into_inner().unwrap();
        (zstd::encode_all(tar.as_slice(), 3).unwrap(), files)
    }

    fn open_zst(zst: &[u8]) -> impl Fn(usize) -> Result<Box<dyn Read + Send>> + Sync + '_ {
        move |_| decompress(Box::new(io::Cursor::new(zst.to_vec())), Compression::Zstd, "base.tar.zst")
    }

    #[test]
    fn large_members_are_shared_by_bytes_and_everything_else_stays_in_the_first_pass() {
        let mut s = Split::new(2);
        let mib = 1 << 20;
        let owners: Vec<usize> = [
            (false, 0),
            (true, 3),
            (true, 9 * mib),
            (true, 10 * mib),
            (true, 9 * mib),
            (true, 7 * mib),
            (true, 20 * mib),
        ]
        .iter()
        .map(|&(file, size)| s.owner(file, size))
        .collect();
        // 9 → 0; 10 → 1; 9 → 0 (9 < 10); 7 MiB is below the minimum → 0; 20 → 1 (10 < 18).
        assert_eq!(owners, vec![0, 0, 0, 1, 0, 0, 1]);
        assert_eq!(Split::new(1).owner(true, 100 * mib), 0);
    }

    #[test]
    fn two_passes_write_the_same_tree_as_one() {
        use std::os::unix::fs::PermissionsExt;
        let (zst, files) = split_archive();
        let d = tempfile::tempdir().unwrap();
        let (one, two) = (d.path().join("one"), d.path().join("two"));
        std::fs::create_dir(&one).unwrap();
        std::fs::create_dir(&two).unwrap();
        let reader = decompress(Box::new(io::Cursor::new(zst.clone())), Compression::Zstd, "x").unwrap();
        let a = extract_tar_from(reader, "base.tar.zst", &one, None).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let b = extract_tar_split(&open_zst(&zst), "base.tar.zst", &two, cancel, None).unwrap();
        assert_eq!((a.bytes, a.entries), (b.bytes, b.entries));
        for (name, data) in &files {
            assert_eq!(&std::fs::read(two.join(name)).unwrap(), data, "{name}");
            let mode = std::fs::metadata(two.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        assert_eq!(std::fs::metadata(two.join("base/1")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_link(two.join("current")).unwrap(), Path::new("base"));
    }

    #[test]
    fn a_mismatch_in_the_second_pass_stops_both_and_names_the_file() {
        let (zst, files) = split_archive();
        let d = tempfile::tempdir().unwrap();
        let entries: Vec<String> = files
            .iter()
            .map(|(name, data)| {
                // base/1/b, which the second pass writes, with a wrong checksum.
                let sum = if *name == "base/1/b" { 0xdeadbeef } else { crc32c::crc32c(data) };
                format!(
                    r#"{{ "Path": "{name}", "Size": {}, "Last-Modified": "2026-12-01 10:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "{:08x}" }}"#,
                    data.len(),
                    sum.swap_bytes()
                )
            })
            .collect();
        let text = format!(
            r#"{{ "PostgreSQL-Backup-Manifest-Version": 1, "Files": [{}], "Manifest-Checksum": "00" }}"#,
            entries.join(",")
        );
        std::fs::write(d.path().join("backup_manifest"), text).unwrap();
        let m = crate::postgres::manifest::Manifest::read(&d.path().join("backup_manifest")).unwrap();
        let dest = d.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let verify = || Some(Verify { manifest: &m, prefix: PathBuf::new() });
        let cancel = tokio_util::sync::CancellationToken::new();
        let e = extract_tar_split(&open_zst(&zst), "base.tar.zst", &dest, cancel.clone(), verify()).unwrap_err();
        assert!(matches!(e, Error::BackupDefect { .. }), "{e:?}");
        assert!(e.to_string().contains("base/1/b"), "{e}");
        assert!(!cancel.is_cancelled(), "only the pair's own token is cancelled");

        // The other files' checksums are right: with b's fixed, both passes verify theirs.
        let text = std::fs::read_to_string(d.path().join("backup_manifest")).unwrap();
        let good = format!("{:08x}", crc32c::crc32c(&files[2].1).swap_bytes());
        std::fs::write(
            d.path().join("backup_manifest"),
            text.replace(&format!("{:08x}", 0xdeadbeefu32.swap_bytes()), &good),
        )
        .unwrap();
        let m = crate::postgres::manifest::Manifest::read(&d.path().join("backup_manifest")).unwrap();
        let dest = d.path().join("dest2");
        std::fs::create_dir(&dest).unwrap();
        let verify = Some(Verify { manifest: &m, prefix: PathBuf::new() });
        let x = extract_tar_split(&open_zst(&zst), "base.tar.zst", &dest, cancel, verify).unwrap();
        assert_eq!(x.verified.files, files.len() as u64, "{:?}", x.verified);
    }

    #[test]
    fn an_archive_that_changes_between_the_two_opens_is_an_error() {
        let (zst, _) = split_archive();
        // The same archive with one more small file: the second pass reads this one.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(2);
        b.append_data(&mut h, "extra", &b"x\n"[..]).unwrap();
        let mut first = zstd::decode_all(zst.as_slice()).unwrap();
        first.truncate(first.len() - 1024); // drop the end-of-archive blocks
        first.extend_from_slice(&b.into_inner().unwrap());
        let other = zstd::encode_all(first.as_slice(), 3).unwrap();
        let open = |pass: usize| -> Result<Box<dyn Read + Send>> {
            let bytes = if pass == 0 { zst.clone() } else { other.clone() };
            decompress(Box::new(io::Cursor::new(bytes)), Compression::Zstd, "base.tar.zst")
        };
        let d = tempfile::tempdir().unwrap();
        let e = extract_tar_split(&open, "base.tar.zst", d.path(), tokio_util::sync::CancellationToken::new(), None)
            .unwrap_err();
        assert!(matches!(e, Error::Source { .. }), "{e:?}");
        assert!(e.to_string().contains("changed while restorecheck read it"), "{e}");
    }

    #[test]
    fn when_the_second_pass_cannot_start_its_error_is_the_one_reported() {
        let (zst, _) = split_archive();
        let d = tempfile::tempdir().unwrap();
        let open = |pass: usize| -> Result<Box<dyn Read + Send>> {
            if pass == 1 {
                return Err(Error::defect("base.tar.zst: opening it a second time failed"));
            }
            open_zst(&zst)(pass)
        };
        let e = extract_tar_split(&open, "base.tar.zst", d.path(), tokio_util::sync::CancellationToken::new(), None)
            .unwrap_err();
        assert!(e.to_string().contains("second time"), "{e}");
        // A truncated stream fails in both passes: a defect either way.
        let cut = &zst[..zst.len() / 2];
        let dest = d.path().join("cut");
        std::fs::create_dir(&dest).unwrap();
        let e =
            extract_tar_split(&open_zst(cut), "base.tar.zst", &dest, tokio_util::sync::CancellationToken::new(), None)
                .unwrap_err();
        assert!(matches!(e, Error::BackupDefect { .. }), "{e:?}");
    }

    #[test]
    fn read_ahead_passes_every_byte_in_order_and_the_error_where_it_happened() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        read_ahead(Box::new(io::Cursor::new(data.clone())), 4096, 3).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt stream"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let e = read_ahead(Box::new(Broken(10_000)), 4096, 2).read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(out.len(), 10_000, "everything before the error arrives");
    }

    #[test]
    fn entries_that_climb_or_are_absolute_are_refused() {
        for name in ["../x", "a/../../x", "/etc/restorecheck-x"] {
            let (d, r) = extract(&[("PG_VERSION", tar::EntryType::Regular, ""), (name, tar::EntryType::Regular, "")]);
            let e = r.unwrap_err();
            assert!(e.is_backup_defect() && e.to_string().contains("outside the folder"), "{name}: {e}");
            assert!(!d.path().join("x").exists() && !Path::new("/etc/restorecheck-x").exists());
        }
    }

    #[test]
    fn links_out_are_skipped_or_refused_never_created() {
        let sym = tar::EntryType::Symlink;
        let (d, r) = extract(&[
            ("PG_VERSION", tar::EntryType::Regular, ""),
            ("postgresql.conf", sym, "/etc/passwd"),
            ("postgresql.auto.conf", sym, "../../outside"),
            ("inside", sym, "PG_VERSION"),
        ]);
        r.unwrap();
        let dest = d.path().join("dest");
        assert!(std::fs::symlink_metadata(dest.join("postgresql.conf")).is_err());
        assert!(std::fs::symlink_metadata(dest.join("postgresql.auto.conf")).is_err());
        assert_eq!(std::fs::read_link(dest.join("inside")).unwrap(), Path::new("PG_VERSION"));
        for (name, kind, link) in [
            ("backup_label", sym, "/root/secret"),
            ("global/pg_control", sym, "../x"),
            ("h", tar::EntryType::Link, "../x"),
        ] {
            let (_d, r) = extract(&[(name, kind, link)]);
            let e = r.unwrap_err();
            assert!(e.is_backup_defect() && e.to_string().contains("leads out of the backup"), "{name}: {e}");
        }
    }

    #[test]
    fn linked_or_huge_backup_label_members_are_refused() {
        let mut t = Vec::new();
        raw_entry(&mut t, "backup_label", tar::EntryType::Symlink, "/root/secret", b"");
        t.extend_from_slice(&[0u8; 1024]);
        let e = read_tar_member_from(Box::new(io::Cursor::new(t)), "base.tar", "backup_label", 10).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A header claiming 1 GiB: at most MEMBER_MAX + 1 bytes are read.
        let mut t = Vec::new();
        raw_entry(&mut t, "backup_label", tar::EntryType::Regular, "", b"");
        let mut h = tar::Header::from_byte_slice(&t[..512]).clone();
        h.set_size(1 << 30);
        h.set_cksum();
        let big = io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(b'x'));
        let e = read_tar_member_from(Box::new(big), "base.tar", "backup_label", 10).unwrap_err();
        assert!(e.is_backup_defect() && e.to_string().contains("larger than 1 MiB"), "{e}");
    }

    #[test]
    fn a_huge_long_name_header_is_refused_before_it_is_read_into_memory() {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 30);
        h.set_cksum();
        let stream = io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(b'a'));
        let d = tempfile::tempdir().unwrap();
        let e = extract_tar_from(Box::new(stream), "base.tar", d.path(), None).unwrap_err();
        assert!(e.is_backup_defect() && e.chain().contains("claims 1 GiB"), "{}", e.chain());
    }

    #[test]
    fn the_header_guard_follows_long_names_pax_sizes_and_odd_sizes() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("base/{}/file", "d".repeat(150));
        for (i, (name, len)) in
            [("PG_VERSION", 3usize), (long.as_str(), 1000), ("global/x", 513), ("y", 0)].iter().enumerate()
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(*len as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, &vec![b'0' + i as u8; *len][..]).unwrap();
        }
        // A pax header whose size= the next entry uses.
        let mut pax = tar::Header::new_ustar();
        let rec = "15 size=000005\n";
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(rec.len() as u64);
        pax.set_path("pax").unwrap();
        pax.set_cksum();
        b.append(&pax, rec.as_bytes()).unwrap();
        // Its own size field says 0: only a guard that read the pax record stays in step.
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_path("z").unwrap();
        h.set_cksum();
        b.append(&h, &b"12345"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let mut g = HeaderGuard::new(io::Cursor::new(t));
        io::copy(&mut g, &mut io::sink()).unwrap();
        assert!(!g.lost, "the guard lost track of a well-formed archive");
    }

    #[test]
    fn a_zstd_frame_asking_for_a_2_gib_window_is_refused() {
        // Frame header: magic, descriptor (no single segment), window descriptor 2^31, then a
        // last raw block of 4 bytes.
        let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (31 - 10) << 3];
        let block = (4u32 << 3) | 1;
        frame.extend_from_slice(&block.to_le_bytes()[..3]);
        frame.extend_from_slice(b"data");
        let mut r = decompress(Box::new(io::Cursor::new(frame)), Compression::Zstd, "base.tar.zst").unwrap();
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        let e = read_error("base.tar.zst", e);
        assert!(!e.is_backup_defect(), "{e}");
        assert!(e.to_string().contains("window larger than 128 MiB"), "{e}");
        // The same frame with a 128 MiB window decodes.
        let mut ok = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (27 - 10) << 3];
        ok.extend_from_slice(&block.to_le_bytes()[..3]);
        ok.extend_from_slice(b"data");
        let mut r = decompress(Box::new(io::Cursor::new(ok)), Compression::Zstd, "x.zst").unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
    }

    #[test]
    fn a_full_disk_is_the_testers_error_not_a_defect() {
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        // How the tar crate wraps it: the kind kept, the OS error number only underneath.
        let wrapped = io::Error::new(enospc.kind(), io::Error::other(enospc));
        for e in [io::Error::from_raw_os_error(libc::ENOSPC), wrapped, io::Error::from_raw_os_error(libc::EDQUOT)] {
            let err = read_error("base.tar", e);
            assert!(!err.is_backup_defect(), "{err}");
            assert_eq!(err.kind(), crate::error::ErrorKind::Tooling);
            assert!(err.to_string().contains("ran out of space"), "{err}");
        }
        let truncated = io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected end of file");
        assert!(read_error("base.tar", truncated).is_backup_defect());
    }
}
