//! PostgreSQL's data page checksum (`src/include/storage/checksum_impl.h`) and an offline
//! verifier of a cleanly stopped cluster that reads what `pg_checksums --check` reads, in
//! process, minus the relation files assertions already read in full through the server
//! ([`ReadCoverage`]: the server verified each of their pages' checksums as it read them).
//!
//! The data dir is untrusted backup content: nothing is written, no symbolic link is followed
//! except a tablespace link in `pg_tblspc`, and that one only when it resolves inside the
//! check's work dir. Malformed content (a partial block, a bad segment number, a stray link)
//! is a [`Error::BackupDefect`] naming the file; bad checksums are a failed [`Outcome`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::assertion::Outcome;
use crate::error::{Error, Result};
use crate::target::ReadCoverage;

/// Number of checksums computed in parallel over a page (`N_SUMS`).
const N_SUMS: usize = 32;
/// The FNV-1a prime (`FNV_PRIME`).
const FNV_PRIME: u32 = 16_777_619;
/// Bytes of one row of the page as the algorithm sees it: `N_SUMS` native-endian `u32` words.
const ROW: usize = 4 * N_SUMS;
/// `checksumBaseOffsets`: each lane's initial state.
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C, 0xF8D4474F,
    0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB, 0xE58F764B, 0x187636BC,
    0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4, 0x783125BB, 0x6CA8EAA2, 0xE407EAC6,
    0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];
/// Offset of `pd_checksum` (a `u16` after the 8-byte `pd_lsn`) in the page header.
const PD_CHECKSUM: usize = 8;
/// Offset of `pd_upper`: zero on a new (never initialised) page, which has no checksum yet.
const PD_UPPER: usize = 14;

/// `CHECKSUM_COMP`.
#[inline(always)]
fn comp(sum: u32, value: u32) -> u32 {
    let t = sum ^ value;
    t.wrapping_mul(FNV_PRIME) ^ (t >> 17)
}

/// One row into the 32 lanes (written as lanes over words so the compiler vectorises it).
#[inline(always)]
fn mix_row(sums: &mut [u32; N_SUMS], row: &[u8]) {
    for (s, w) in sums.iter_mut().zip(row.chunks_exact(4)) {
        *s = comp(*s, u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
}

/// `pg_checksum_page`: the checksum PostgreSQL stores in `pd_checksum` of block `blkno` (the
/// block number within the relation fork, over all segments). `pd_checksum` itself counts as
/// zero. `page.len()` must be a multiple of 128 bytes (every PostgreSQL block size is).
pub(crate) fn page_checksum(page: &[u8], blkno: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    let split = ROW.min(page.len());
    let (first, rest) = page.split_at(split);
    let mut head = [0u8; ROW];
    head[..first.len()].copy_from_slice(first);
    head[PD_CHECKSUM] = 0;
    head[PD_CHECKSUM + 1] = 0;
    mix_row(&mut sums, &head);
    for row in rest.chunks_exact(ROW) {
        mix_row(&mut sums, row);
    }
    for _ in 0..2 {
        for s in sums.iter_mut() {
            *s = comp(*s, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |a, s| a ^ s) ^ blkno;
    (folded % 65535 + 1) as u16
}

/// The `pd_checksum` stored in `page`.
fn stored_checksum(page: &[u8]) -> u16 {
    u16::from_ne_bytes([page[PD_CHECKSUM], page[PD_CHECKSUM + 1]])
}

/// `PageIsNew`: `pd_upper == 0`.
fn page_is_new(page: &[u8]) -> bool {
    page[PD_UPPER] == 0 && page[PD_UPPER + 1] == 0
}

/// What the verifier needs to know of the cluster (from `pg_control` and `PG_VERSION`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// `Database block size` (`BLCKSZ`).
    pub(crate) block_size: usize,
    /// `Blocks per segment of large relation` (`RELSEG_SIZE`).
    pub(crate) blocks_per_segment: u32,
    /// `TABLESPACE_VERSION_DIRECTORY`: `PG_<major>_<catalog version>`, the only folder of a
    /// tablespace location the cluster uses.
    pub(crate) tablespace_version_dir: String,
}

impl Layout {
    /// The layout of a cluster of major `major` with `pg_control` values `control`; refuses
    /// values no PostgreSQL build has (a damaged or forged `pg_control`).
    pub(crate) fn new(control: &crate::postgres::control::ControlData, major: u32) -> Result<Self> {
        let bs = control.block_size;
        if !(1024..=32768).contains(&bs) || !bs.is_power_of_two() {
            return Err(Error::defect(format!(
                "pg_control reports a block size of {bs} bytes, which no PostgreSQL uses"
            )));
        }
        if control.blocks_per_segment == 0 || control.catalog_version == 0 {
            return Err(Error::defect(
                "pg_control does not report the blocks per segment or the catalog version: it is unreadable",
            ));
        }
        Ok(Layout {
            block_size: bs as usize,
            blocks_per_segment: control.blocks_per_segment,
            tablespace_version_dir: format!("PG_{major}_{}", control.catalog_version),
        })
    }
}

/// What a target keeps from start to verify the cluster once it stopped.
#[derive(Debug, Clone)]
pub(crate) struct ChecksumPlan {
    /// The cluster's data dir.
    pub(crate) data_dir: PathBuf,
    /// The check's work dir: tablespace links must resolve inside it.
    pub(crate) work_dir: PathBuf,
    /// Block size, segment size, tablespace folder.
    pub(crate) layout: Layout,
}

impl ChecksumPlan {
    /// The plan for the cluster in `data_dir` (major `major`, `pg_control` values `control`);
    /// `None` when it has no data checksums.
    pub(crate) fn for_cluster(
        control: &crate::postgres::control::ControlData,
        major: u32,
        data_dir: &Path,
        work_dir: &Path,
    ) -> Result<Option<Self>> {
        if control.checksum_version == 0 {
            return Ok(None);
        }
        Ok(Some(ChecksumPlan {
            data_dir: data_dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            layout: Layout::new(control, major)?,
        }))
    }

    /// Verifies the stopped cluster, skipping what `covered` lists (see [`verify`]).
    pub(crate) async fn verify(&self, ctx: &crate::context::RunContext, covered: &ReadCoverage) -> Result<Outcome> {
        verify(&self.data_dir, &self.work_dir, &self.layout, covered, &ctx.cancel).await
    }
}

/// One relation segment file to read.
#[derive(Debug, Clone)]
struct FileJob {
    /// Where it is.
    path: PathBuf,
    /// Its path relative to the data dir (through `pg_tblspc/<oid>/`), for messages.
    rel: String,
    /// Segment number (the `.N` suffix; 0 without one).
    segno: u32,
    /// Size in bytes (from `lstat`, for the split over threads and the skipped figure).
    size: u64,
}

/// A page whose stored checksum is not the one computed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BadPage {
    rel: String,
    block: u32,
    calculated: u16,
    stored: u16,
}

impl std::fmt::Display for BadPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // pg_checksums' wording, so a message reads the same as before.
        write!(
            f,
            "checksum verification failed in file \"{}\", block {}: calculated checksum {:X} but block contains {:X}",
            self.rel, self.block, self.calculated, self.stored
        )
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// Files read.
    pub(crate) files_scanned: u64,
    /// Blocks read (new pages included, as pg_checksums counts them).
    pub(crate) blocks_scanned: u64,
    /// Pages with a wrong checksum.
    pub(crate) bad_checksums: u64,
    /// The first bad pages, in file and block order.
    bad: Vec<BadPage>,
    /// Main-fork files not read because an assertion read them in full through the server.
    pub(crate) skipped_files: u64,
    /// Their blocks.
    pub(crate) skipped_blocks: u64,
    /// Skipped files per assertion that covered them.
    pub(crate) covered_by: BTreeMap<String, u64>,
    /// Threads that read.
    pub(crate) threads: usize,
}

/// How many bad pages a [`Scan`] keeps for the message.
const KEEP_BAD: usize = 10;

impl Scan {
    /// The report outcome: pass, or fail naming the first bad pages.
    pub(crate) fn outcome(&self, seconds: f64) -> Outcome {
        let observed = serde_json::json!({
            "blocks_scanned": self.blocks_scanned,
            "files_scanned": self.files_scanned,
            "bad_checksums": self.bad_checksums,
            "seconds": seconds,
            "threads": self.threads,
            "skipped": {
                "files": self.skipped_files,
                "blocks": self.skipped_blocks,
                "covered_by": self.covered_by,
            },
        });
        if self.bad_checksums == 0 {
            return Outcome::Pass { observed: Some(observed) };
        }
        let first: Vec<String> = self.bad.iter().take(3).map(ToString::to_string).collect();
        Outcome::Fail {
            observed: Some(observed),
            expected: Some("no bad checksums".into()),
            message: format!("{} bad page checksum(s): {}", self.bad_checksums, first.join("; ")),
        }
    }
}

/// Verifies the page checksums of the stopped cluster in `data_dir` (in a blocking thread
/// pool task), except the main forks `covered` lists. `work_dir` bounds where a tablespace
/// link may lead. Stops with an error when `cancel` fires (checked between files).
pub(crate) async fn verify(
    data_dir: &Path,
    work_dir: &Path,
    layout: &Layout,
    covered: &ReadCoverage,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    let started = Instant::now();
    let (data_dir, work_dir, layout, covered, cancel) =
        (data_dir.to_path_buf(), work_dir.to_path_buf(), layout.clone(), covered.clone(), cancel.clone());
    let scan = tokio::task::spawn_blocking(move || verify_blocking(&data_dir, &work_dir, &layout, &covered, &cancel))
        .await
        .map_err(|e| Error::internal(format!("the checksum verification task failed: {e}")))??;
    Ok(scan.outcome(started.elapsed().as_secs_f64()))
}

/// [`verify`], on the calling thread (which may start a few more).
pub(crate) fn verify_blocking(
    data_dir: &Path,
    work_dir: &Path,
    layout: &Layout,
    covered: &ReadCoverage,
    cancel: &CancellationToken,
) -> Result<Scan> {
    let mut walk = Walk { layout, jobs: Vec::new() };
    walk.cluster(data_dir, work_dir)?;
    let mut scan = Scan::default();
    let jobs = skip_covered(walk.jobs, layout, covered, &mut scan);
    read_all(jobs, layout, cancel, &mut scan)?;
    Ok(scan)
}

/// Collects the files `pg_checksums` would read.
struct Walk<'a> {
    layout: &'a Layout,
    jobs: Vec<FileJob>,
}

/// A defect naming `path` relative to the data dir.
fn defect(rel: &str, why: impl std::fmt::Display) -> Error {
    Error::defect(format!("checksum verification: {rel} {why}"))
}

impl Walk<'_> {
    /// `global/`, `base/` and each tablespace's `PG_<major>_<catversion>/`, as pg_checksums.
    fn cluster(&mut self, data_dir: &Path, work_dir: &Path) -> Result<()> {
        for sub in ["global", "base"] {
            let dir = data_dir.join(sub);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_dir() => self.dir(&dir, sub)?,
                Ok(_) => return Err(defect(sub, "is not a folder (a link or a file); restorecheck never follows it")),
                Err(e) => return Err(Error::io("inspecting", &dir, e)),
            }
        }
        let tblspc = data_dir.join("pg_tblspc");
        let entries = match fs::read_dir(&tblspc) {
            Ok(e) => e,
            // A data dir without the folder has no tablespaces (the server recreates it).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("listing", &tblspc, e)),
        };
        let root = fs::canonicalize(work_dir).map_err(|e| Error::io("resolving", work_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &tblspc, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("pg_tblspc/{name}");
            let ty = entry.file_type().map_err(|e| Error::io("inspecting", entry.path(), e))?;
            if ty.is_symlink() {
                // The one link followed: only when it resolves inside the check's work dir.
                let resolved = fs::canonicalize(entry.path()).map_err(|e| Error::io("resolving", entry.path(), e))?;
                if !resolved.starts_with(&root) {
                    return Err(defect(
                        &rel,
                        format!(
                            "is a tablespace link to {}, outside the check's work dir; restorecheck does not read it",
                            resolved.display()
                        ),
                    ));
                }
            } else if !ty.is_dir() {
                continue;
            }
            let version = format!("{rel}/{}", self.layout.tablespace_version_dir);
            let dir = entry.path().join(&self.layout.tablespace_version_dir);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_dir() => self.dir(&dir, &version)?,
                Ok(_) => return Err(defect(&version, "is not a folder; restorecheck never follows it")),
                Err(e) => return Err(Error::io("inspecting", &dir, e)),
            }
        }
        Ok(())
    }

    /// Every relation file under `dir` (`rel` relative to the data dir), recursively.
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<()> {
        let entries = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("pgsql_tmp") {
                continue;
            }
            let rel = format!("{rel}/{name}");
            // Not followed: the type of the entry itself.
            let meta = fs::symlink_metadata(entry.path()).map_err(|e| Error::io("inspecting", entry.path(), e))?;
            let ty = meta.file_type();
            if ty.is_dir() {
                self.dir(&entry.path(), &rel)?;
            } else if ty.is_symlink() {
                return Err(defect(
                    &rel,
                    "is a symbolic link; restorecheck follows no link in a data dir but a tablespace's",
                ));
            } else if ty.is_file() && !skipped_file(&name) {
                let segno = segment_number(&name).map_err(|why| defect(&rel, why))?;
                self.jobs.push(FileJob { path: entry.path(), rel, segno, size: meta.len() });
            }
        }
        Ok(())
    }
}

/// Files pg_checksums skips (its `skip` list, prefix for `pg_internal.init` and
/// `config_exec_params`), plus temporary relations (`t<backend>_<relfilenode>`), which hold
/// no committed data and are removed when the server starts.
fn skipped_file(name: &str) -> bool {
    matches!(name, "pg_control" | "pg_filenode.map" | "PG_VERSION")
        || name.starts_with("pg_internal.init")
        || name.starts_with("config_exec_params")
        || is_temp_relation(name)
}

/// `t<digits>_<digits>…`.
fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else { return false };
    let Some((backend, node)) = rest.split_once('_') else { return false };
    !backend.is_empty()
        && backend.bytes().all(|b| b.is_ascii_digit())
        && node.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// The segment number of a relation file name (`16384`, `16384_fsm`, `16384.2`): 0 without a
/// `.` suffix; a suffix that is not a positive number is an error, as in pg_checksums.
fn segment_number(name: &str) -> std::result::Result<u32, String> {
    let Some((_, seg)) = name.split_once('.') else { return Ok(0) };
    match seg.parse::<u32>() {
        Ok(n) if n > 0 && seg.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("has an invalid segment number {seg:?} in its name (not a relation file PostgreSQL writes)")),
    }
}

/// The relation path of a main-fork file (`base/5/16384.1` → `base/5/16384`); `None` for
/// other forks (`_fsm`, `_vm`, `_init`), which no assertion reads.
fn main_fork_of(rel: &str) -> Option<&str> {
    let (dir, name) = rel.rsplit_once('/')?;
    let stem = name.split('.').next().unwrap_or(name);
    if stem.contains('_') {
        return None;
    }
    Some(&rel[..dir.len() + 1 + stem.len()])
}

/// Drops the main-fork files of relations `covered` lists from `jobs`, counting them in
/// `scan`. A relation's files are only skipped as a whole, and only when they are exactly what
/// the server read: segments 0..n without a gap, every one but the last full, each a whole
/// number of blocks (the server ignores a partial last block and any segment after a short
/// one, so such files are read here).
fn skip_covered(jobs: Vec<FileJob>, layout: &Layout, covered: &ReadCoverage, scan: &mut Scan) -> Vec<FileJob> {
    if covered.is_empty() {
        return jobs;
    }
    let mut keep = Vec::with_capacity(jobs.len());
    let mut relations: BTreeMap<String, (String, Vec<FileJob>)> = BTreeMap::new();
    for job in jobs {
        let by = main_fork_of(&job.rel).and_then(|r| covered.covered_by(r).map(|by| (r.to_string(), by.to_string())));
        match by {
            Some((relation, by)) => relations.entry(relation).or_insert_with(|| (by, Vec::new())).1.push(job),
            None => keep.push(job),
        }
    }
    let bs = layout.block_size as u64;
    let full = bs * u64::from(layout.blocks_per_segment);
    for (by, mut files) in relations.into_values() {
        files.sort_by_key(|f| f.segno);
        let last = files.len() - 1;
        let exact = files.iter().enumerate().all(|(i, f)| {
            u64::from(f.segno) == i as u64 && f.size % bs == 0 && (i == last || f.size == full) && f.size <= full
        });
        if !exact {
            keep.extend(files);
            continue;
        }
        for f in files {
            scan.skipped_files += 1;
            scan.skipped_blocks += f.size / bs;
            *scan.covered_by.entry(by.clone()).or_default() += 1;
        }
    }
    keep
}

/// Per-thread tallies, merged at the end.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    blocks: u64,
    bad_count: u64,
    bad: Vec<BadPage>,
}

/// Bytes read per `read` call: large sequential reads (the files are read once, in order).
const CHUNK: usize = 256 << 10;
/// Reader threads at most (the work is mostly reading; more does not help).
const MAX_THREADS: usize = 4;

/// Bytes of a file one thread reads in one go: large files are split so that one big table
/// does not leave the other threads idle.
const PIECE: u64 = 32 << 20;

/// A part of a file: from `offset` (a multiple of the block size) for [`PIECE`] bytes, or to
/// the end for the last part.
#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    job: &'a FileJob,
    offset: u64,
    last: bool,
}

/// The pieces of `jobs`, largest files first.
fn pieces(jobs: &mut [FileJob]) -> Vec<Piece<'_>> {
    jobs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel)));
    let mut out = Vec::new();
    for job in jobs.iter() {
        let mut offset = 0;
        while job.size.saturating_sub(offset) > PIECE {
            out.push(Piece { job, offset, last: false });
            offset += PIECE;
        }
        out.push(Piece { job, offset, last: true });
    }
    out
}

/// Reads `jobs` over a few threads, largest files first, into `scan`.
fn read_all(mut jobs: Vec<FileJob>, layout: &Layout, cancel: &CancellationToken, scan: &mut Scan) -> Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jobs = pieces(&mut jobs);
    let threads = cores.min(MAX_THREADS).min(jobs.len()).max(1);
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut tally = Tally::default();
                    let mut buf = vec![0u8; CHUNK.max(layout.block_size)];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        let stop = first_error.lock().map(|e| e.is_some()).unwrap_or(true);
                        if stop {
                            break;
                        }
                        let result = if cancel.is_cancelled() {
                            Err(Error::Cancelled { phase: crate::report::Phase::Assert })
                        } else {
                            read_piece(*job, layout, &mut buf, &mut tally)
                        };
                        if let Err(e) = result {
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                            break;
                        }
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect::<Option<Vec<Tally>>>()
    })
    .ok_or_else(|| Error::internal("a page checksum reader thread panicked"))?;
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    scan.threads = threads;
    for t in tallies {
        scan.files_scanned += t.files;
        scan.blocks_scanned += t.blocks;
        scan.bad_checksums += t.bad_count;
        scan.bad.extend(t.bad);
    }
    scan.bad.sort();
    scan.bad.truncate(KEEP_BAD);
    Ok(())
}

/// Fills `buf` from `r` as far as it goes; returns the bytes read (less only at the end).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Verifies every page of one piece of a file.
fn read_piece(piece: Piece<'_>, layout: &Layout, buf: &mut [u8], tally: &mut Tally) -> Result<()> {
    use std::io::Seek;
    let (job, bs) = (piece.job, layout.block_size);
    let mut file = crate::safefs::open_nofollow(&job.path).map_err(|e| Error::io("opening", &job.path, e))?;
    if piece.offset > 0 {
        file.seek(io::SeekFrom::Start(piece.offset)).map_err(|e| Error::io("reading", &job.path, e))?;
    } else {
        tally.files += 1;
    }
    // Two threads may read parts of one file: ask for a large read-ahead for each part.
    let len = if piece.last { 0 } else { PIECE as i64 };
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        i64::try_from(piece.offset).unwrap_or(0),
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
    let mut f = file.take(if piece.last { u64::MAX } else { PIECE });
    let whole = buf.len() / bs * bs;
    let buf = &mut buf[..whole];
    let base = job.segno.wrapping_mul(layout.blocks_per_segment);
    let mut block = u32::try_from(piece.offset / bs as u64).unwrap_or(u32::MAX);
    loop {
        let n = fill(&mut f, buf).map_err(|e| Error::io("reading", &job.path, e))?;
        for page in buf[..n].chunks(bs) {
            if page.len() < bs {
                return Err(defect(
                    &job.rel,
                    format!("could not read block {block}: read {} of {bs} (the file ends inside a block)", page.len()),
                ));
            }
            tally.blocks += 1;
            if !page_is_new(page) {
                let calculated = page_checksum(page, base.wrapping_add(block));
                let stored = stored_checksum(page);
                if calculated != stored {
                    tally.bad_count += 1;
                    if tally.bad.len() < KEEP_BAD {
                        tally.bad.push(BadPage { rel: job.rel.clone(), block, calculated, stored });
                    }
                }
            }
            block = block.wrapping_add(1);
        }
        if n < whole {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_as_pg_checksums_reads_them() {
        assert_eq!(segment_number("16384"), Ok(0));
        assert_eq!(segment_number("16384_fsm"), Ok(0));
        assert_eq!(segment_number("16384.3"), Ok(3));
        assert_eq!(segment_number("16384_vm.12"), Ok(12));
        assert!(segment_number("16384.0").is_err());
        assert!(segment_number("16384.x").is_err());
        assert!(segment_number("16384.+1").is_err());
        assert!(skipped_file("pg_internal.init") && skipped_file("pg_internal.init.123"));
        assert!(skipped_file("PG_VERSION") && skipped_file("pg_filenode.map") && skipped_file("pg_control"));
        assert!(
            skipped_file("t3_16384") && skipped_file("t12_16384_fsm") && !skipped_file("t_1") && !skipped_file("16384")
        );
        assert_eq!(main_fork_of("base/5/16384"), Some("base/5/16384"));
        assert_eq!(main_fork_of("base/5/16384.2"), Some("base/5/16384"));
        assert_eq!(main_fork_of("pg_tblspc/9/PG_15_1/5/16384.1"), Some("pg_tblspc/9/PG_15_1/5/16384"));
        assert_eq!(main_fork_of("base/5/16384_vm"), None);
        assert_eq!(main_fork_of("global/1262_fsm.1"), None);
    }

    #[test]
    fn new_pages_and_the_stored_checksum_are_read_from_the_header() {
        let mut page = vec![0u8; 8192];
        assert!(page_is_new(&page));
        page[PD_UPPER] = 0x20;
        assert!(!page_is_new(&page));
        let sum = page_checksum(&page, 7);
        page[PD_CHECKSUM..PD_CHECKSUM + 2].copy_from_slice(&sum.to_ne_bytes());
        // pd_checksum does not count, the block number does.
        assert_eq!(page_checksum(&page, 7), sum);
        assert_eq!(stored_checksum(&page), sum);
        assert_ne!(page_checksum(&page, 8), sum);
        page[5000] ^= 1;
        assert_ne!(page_checksum(&page, 7), sum);
    }

    /// A fake data dir under a fresh work dir: `global/`, `base/1/` and `pg_tblspc/`.
    fn fake_tree(name: &str) -> (PathBuf, PathBuf, Layout) {
        let work = std::env::temp_dir().join(format!("rc-checksums-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        for d in ["data/global", "data/base/1", "data/pg_tblspc"] {
            fs::create_dir_all(work.join(d)).unwrap();
        }
        let layout = Layout { block_size: 8192, blocks_per_segment: 131072, tablespace_version_dir: "PG_15_1".into() };
        (work.join("data"), work, layout)
    }

    /// A valid non-new page for block `blkno`.
    fn good_page(blkno: u32) -> Vec<u8> {
        let mut page = vec![0u8; 8192];
        page[PD_UPPER] = 0x20;
        page[100] = 42;
        let sum = page_checksum(&page, blkno);
        page[PD_CHECKSUM..PD_CHECKSUM + 2].copy_from_slice(&sum.to_ne_bytes());
        page
    }

    fn run(data: &Path, work: &Path, layout: &Layout, covered: &ReadCoverage) -> Result<Scan> {
        verify_blocking(data, work, layout, covered, &CancellationToken::new())
    }

    #[test]
    fn links_leaving_the_work_dir_partial_blocks_and_stray_links_are_defects() {
        let (data, work, layout) = fake_tree("hostile");
        let mut two = good_page(0);
        two.extend(good_page(1));
        fs::write(data.join("base/1/1000"), &two).unwrap();
        let ok = run(&data, &work, &layout, &ReadCoverage::new()).unwrap();
        assert_eq!((ok.files_scanned, ok.blocks_scanned, ok.bad_checksums), (1, 2, 0));

        // A tablespace inside the work dir is read; one leading out of it is refused.
        let inside = work.join("ts/PG_15_1/1");
        fs::create_dir_all(&inside).unwrap();
        fs::write(inside.join("2000"), good_page(0)).unwrap();
        std::os::unix::fs::symlink(work.join("ts"), data.join("pg_tblspc/16400")).unwrap();
        assert_eq!(run(&data, &work, &layout, &ReadCoverage::new()).unwrap().files_scanned, 2);
        let outside = std::env::temp_dir().join(format!("rc-checksums-outside-{}", std::process::id()));
        fs::create_dir_all(outside.join("PG_15_1")).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("pg_tblspc/16401")).unwrap();
        let e = run(&data, &work, &layout, &ReadCoverage::new()).unwrap_err().to_string();
        assert!(e.contains("pg_tblspc/16401") && e.contains("outside the check's work dir"), "{e}");
        fs::remove_file(data.join("pg_tblspc/16401")).unwrap();

        // Any other link is never followed.
        std::os::unix::fs::symlink("/etc/passwd", data.join("base/1/3000")).unwrap();
        let e = run(&data, &work, &layout, &ReadCoverage::new()).unwrap_err().to_string();
        assert!(e.contains("base/1/3000") && e.contains("symbolic link"), "{e}");
        fs::remove_file(data.join("base/1/3000")).unwrap();

        // A file ending inside a block, as pg_checksums' "could not read block".
        fs::write(data.join("base/1/1001"), &two[..8192 + 100]).unwrap();
        let e = run(&data, &work, &layout, &ReadCoverage::new()).unwrap_err().to_string();
        assert!(e.contains("base/1/1001") && e.contains("could not read block 1: read 100 of 8192"), "{e}");
        fs::remove_file(data.join("base/1/1001")).unwrap();

        // Segment 2 of a relation mixes its place into the block number.
        fs::write(data.join("base/1/1000.2"), good_page(2 * 131072)).unwrap();
        fs::write(data.join("base/1/1000.1"), good_page(0)).unwrap();
        let scan = run(&data, &work, &layout, &ReadCoverage::new()).unwrap();
        assert_eq!(scan.bad_checksums, 1, "{scan:?}");
        assert_eq!(scan.bad[0].rel, "base/1/1000.1");

        // A covered relation whose segments are not what the server reads (segment 1 short,
        // segment 2 beyond it) is read anyway.
        let mut covered = ReadCoverage::new();
        covered.insert("base/1/1000", "amcheck");
        let scan = run(&data, &work, &layout, &covered).unwrap();
        assert_eq!((scan.skipped_files, scan.bad_checksums), (0, 1), "{scan:?}");
        fs::remove_file(data.join("base/1/1000.1")).unwrap();
        fs::remove_file(data.join("base/1/1000.2")).unwrap();
        fs::write(data.join("base/1/1000_fsm"), good_page(0)).unwrap();
        let scan = run(&data, &work, &layout, &covered).unwrap();
        assert_eq!((scan.skipped_files, scan.skipped_blocks, scan.files_scanned), (1, 2, 2), "{scan:?}");
        assert_eq!(scan.covered_by.get("amcheck"), Some(&1));

        // A file larger than a piece is read by several threads; block numbers run on.
        let blocks = (PIECE / 8192 + 3) as u32;
        let mut big = Vec::with_capacity(blocks as usize * 8192);
        for b in 0..blocks {
            big.extend(good_page(b));
        }
        let bad_block = blocks - 2;
        big[bad_block as usize * 8192 + 300] ^= 0x80;
        fs::write(data.join("base/1/5000"), &big).unwrap();
        let scan = run(&data, &work, &layout, &ReadCoverage::new()).unwrap();
        assert_eq!((scan.files_scanned, scan.blocks_scanned), (4, u64::from(blocks) + 4), "{scan:?}");
        assert_eq!((scan.bad_checksums, scan.bad[0].block, scan.bad[0].rel.as_str()), (1, bad_block, "base/1/5000"));
        let _ = fs::remove_dir_all(&work);
        let _ = fs::remove_dir_all(&outside);
    }

    /// `pg_checksums --check` of `c`'s stopped cluster: (files, blocks, bad) or the error text.
    async fn pg_checksums(c: &crate::fixture::SampleCluster) -> std::result::Result<(u64, u64, u64), String> {
        let out = c
            .tool("pg_checksums", &["--check".into(), "-D".into(), c.pgdata().display().to_string()])
            .await
            .map_err(|e| e.to_string())?;
        let field = |name: &str| {
            out.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap()
        };
        Ok((field("Files scanned:"), field("Blocks scanned:"), field("Bad checksums:")))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn agrees_with_pg_checksums_on_a_real_cluster_and_both_find_one_flipped_byte() {
        use crate::fixture::{SampleCluster, SampleOptions};
        let root = std::env::temp_dir().join(format!("rc-checksums-real-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let opts = SampleOptions { major: Some(15), checksums: true, ..Default::default() };
        let mut c = SampleCluster::create(&root, opts).await.unwrap();
        c.create_app(5000).await.unwrap();
        // A tablespace (inside the work dir, here the cluster's root) is read through its link.
        let ts = root.join("ts");
        fs::create_dir_all(&ts).unwrap();
        c.os_user().chown_tree(&ts).unwrap();
        c.exec("postgres", &format!("create tablespace ts location '{}'", ts.display())).await.unwrap();
        c.exec("app", "create table elsewhere tablespace ts as select g from generate_series(1, 3000) g")
            .await
            .unwrap();
        let path_of = |rel: &'static str| {
            let c = &c;
            async move {
                c.client("app")
                    .await
                    .unwrap()
                    .query_one(&format!("select pg_catalog.pg_relation_filepath('{rel}')"), &[])
                    .await
                    .unwrap()
                    .get::<_, String>(0)
            }
        };
        let heap = path_of("registrations").await;
        let elsewhere = path_of("elsewhere").await;
        assert!(elsewhere.starts_with("pg_tblspc/"), "{elsewhere}");
        c.stop().await.unwrap();

        let pg = crate::postgres::binaries::PgTools::host(c.bin(), c.os_user());
        let control = crate::postgres::control::ControlData::read(&pg, &c.pgdata()).await.unwrap();
        let layout = Layout::new(&control, 15).unwrap();
        let (files, blocks, bad) = pg_checksums(&c).await.unwrap();
        let scan = run(&c.pgdata(), &root, &layout, &ReadCoverage::new()).unwrap();
        assert_eq!((scan.files_scanned, scan.blocks_scanned, scan.bad_checksums), (files, blocks, bad), "{scan:?}");
        assert!(blocks > 100 && bad == 0, "{blocks} {bad}");

        // One byte flipped in block 1 of a table: both report that block, with the same sums.
        for (rel, block) in [(&heap, 1u64), (&elsewhere, 2u64)] {
            let file = c.pgdata().join(rel);
            let mut bytes = fs::read(&file).unwrap();
            bytes[(block * 8192 + 5000) as usize] ^= 0x01;
            fs::write(&file, &bytes).unwrap();
            let theirs = pg_checksums(&c).await.unwrap_err();
            let scan = run(&c.pgdata(), &root, &layout, &ReadCoverage::new()).unwrap();
            assert_eq!((scan.blocks_scanned, scan.bad_checksums), (blocks, 1), "{scan:?}");
            let ours = scan.bad[0].to_string();
            assert_eq!((scan.bad[0].rel.as_str(), u64::from(scan.bad[0].block)), (rel.as_str(), block));
            let tail = ours.split_once("\", ").unwrap().1;
            assert!(theirs.contains(&format!("{}\", {tail}", file.display())), "ours: {ours}\ntheirs: {theirs}");
            match scan.outcome(0.0) {
                Outcome::Fail { message, .. } => assert!(message.contains(&ours), "{message}"),
                o => panic!("{o:?}"),
            }
            // Covered by an assertion that read it through the server: not read again.
            let mut covered = ReadCoverage::new();
            covered.insert(rel.as_str(), "read_all");
            let skipping = run(&c.pgdata(), &root, &layout, &covered).unwrap();
            assert_eq!((skipping.bad_checksums, skipping.skipped_files), (0, 1), "{skipping:?}");
            assert_eq!(skipping.blocks_scanned + skipping.skipped_blocks, blocks);
            bytes[(block * 8192 + 5000) as usize] ^= 0x01;
            fs::write(&file, &bytes).unwrap();
        }
        drop(c);
        let _ = fs::remove_dir_all(&root);
    }

    /// Median of `v` (sorted in place).
    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// A measurement, not a check: this verifier over a whole pgbench cluster against
    /// `pg_checksums --check`, and what amcheck's coverage skips in a real run. As root, with
    /// PostgreSQL 15 and a release build:
    /// `RC_BENCH_SCALE=50 cargo test --release -p restorecheck-core --lib measure_ -- --ignored --nocapture`.
    /// With `RC_BENCH_COLD=1` each timed read starts with the page cache dropped.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "a measurement that takes minutes"]
    async fn measure_against_pg_checksums_and_amcheck_coverage() {
        use crate::fixture::{SampleCluster, SampleOptions};
        use std::sync::Arc;
        let scale = std::env::var("RC_BENCH_SCALE").unwrap_or_else(|_| "50".into());
        let cold = std::env::var("RC_BENCH_COLD").is_ok_and(|v| v == "1");
        let root = PathBuf::from(format!("/var/tmp/rc-checksums-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let opts = SampleOptions { major: Some(15), checksums: true, ..Default::default() };
        let mut c = SampleCluster::create(&root, opts).await.unwrap();
        c.exec("postgres", "create database bench").await.unwrap();
        let sock = c.socket_dir().display().to_string();
        let args: Vec<String> =
            ["-i", "-q", "-s", &scale, "-h", &sock, "-p", &c.port().to_string(), "-U", "postgres", "bench"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        c.tool("pgbench", &args).await.unwrap();
        let backup = c.basebackup("b", &["-Fp", "-Xstream"]).await.unwrap();
        c.stop().await.unwrap();
        let pg = crate::postgres::binaries::PgTools::host(c.bin(), c.os_user());
        let control = crate::postgres::control::ControlData::read(&pg, &c.pgdata()).await.unwrap();
        let layout = Layout::new(&control, 15).unwrap();
        let drop_caches = || {
            if cold {
                let _ = std::process::Command::new("sync").status();
                fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
            }
        };
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        let (mut their_blocks, mut our_blocks) = (0, 0);
        for _ in 0..3 {
            drop_caches();
            let t = Instant::now();
            their_blocks = pg_checksums(&c).await.unwrap().1;
            theirs.push(t.elapsed().as_secs_f64());
            drop_caches();
            let t = Instant::now();
            let data = c.pgdata();
            let (l, r) = (layout.clone(), root.clone());
            let scan =
                tokio::task::spawn_blocking(move || run(&data, &r, &l, &ReadCoverage::new())).await.unwrap().unwrap();
            ours.push(t.elapsed().as_secs_f64());
            our_blocks = scan.blocks_scanned;
            assert_eq!(scan.bad_checksums, 0);
        }
        assert_eq!(their_blocks, our_blocks);
        let (t, o) = (median(&mut theirs), median(&mut ours));
        println!(
            "scale {scale}, {our_blocks} blocks ({:.0} MiB), {} page cache, median of 3:",
            our_blocks as f64 * 8192.0 / 1048576.0,
            if cold { "cold" } else { "warm" }
        );
        println!("  pg_checksums --check  {t:.3} s   (runs {theirs:.3?})");
        println!("  in-process verifier   {o:.3} s   (runs {ours:.3?}), ratio ours/theirs {:.2}", o / t);

        // A real run: amcheck (verify_heapam on every table) then the offline verification.
        let source = crate::sources::BaseBackupSource::new(crate::sources::BaseBackupConfig::new(&backup));
        let target = crate::targets::LocalTarget::new(crate::targets::LocalTargetConfig::default()).unwrap();
        let check = crate::runner::Check::new("bench", Arc::new(source), Arc::new(target))
            .database("bench")
            .timeout(std::time::Duration::from_secs(3600))
            .assert(crate::assertions::AmcheckAssertion { heapallindexed: false, jobs: 2, sample: None });
        let work = root.join("work");
        fs::create_dir_all(&work).unwrap();
        let report = crate::runner::run_check(&check, &work, 0, &crate::RunContext::new()).await;
        assert_eq!(report.verdict, crate::Verdict::Pass, "{:?}", report.failure);
        for a in &report.assertions {
            println!("  {}: {}", a.name, a.observed.clone().unwrap_or_default());
        }
        let sums = report.assertions.iter().find(|a| a.name == "checksums").and_then(|a| a.observed.clone()).unwrap();
        let skipped = sums["skipped"]["blocks"].as_f64().unwrap();
        let scanned = sums["blocks_scanned"].as_f64().unwrap();
        println!("  amcheck coverage skips {:.1}% of the blocks", 100.0 * skipped / (skipped + scanned));
        drop(c);
        let _ = fs::remove_dir_all(&root);
    }
}
