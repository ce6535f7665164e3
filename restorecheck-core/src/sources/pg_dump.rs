//! Source `pg_dump`: logical dumps — custom (`-Fc`), directory (`-Fd`), tar (`-Ft`) or plain SQL,
//! and `pg_dumpall` output (a whole cluster, plain SQL), optionally gzip/zstd/lz4-compressed as a
//! whole file. The target restores them into a fresh cluster it creates (see
//! `crate::postgres::logical`) with binaries of the dump's major or a newer one: the major
//! is read from the dump's own header (archives) or comments (plain) by restorecheck itself.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::archive::{self, Compression};
use crate::context::RunContext;
use crate::decrypt::{DecryptConfig, Decryptor};
use crate::error::{Error, Result};
use crate::source::{Artifact, BackupInfo, BackupSource, DumpFormat, FetchRequest, LogicalDump};
use crate::storage::{self, BackupFile, Location, Remote, RemoteObject, StorageOptions};

/// Options of source `pg_dump` (`[check.source] kind = "pg_dump"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct PgDumpConfig {
    /// One dump (file or `-Fd` folder), or a folder of dumps (newest chosen): a local path,
    /// `file://…`, `s3://bucket/prefix`, `gs://…` or `az://…`.
    pub path: PathBuf,
    /// `"latest"` (default), `"oldest"`, or a dump's file/folder name.
    pub backup: Option<String>,
    /// Database to restore into (default: the name recorded in the dump, else the check's
    /// `database`). Not used for pg_dumpall output, which creates and names its databases.
    pub database: Option<String>,
    /// Output of `pg_dumpall --globals-only` to run first (roles, tablespaces; held to the same
    /// standard as a whole pg_dumpall: any error fails). Other SQL files run leniently: errors
    /// other than "already exists" become notes. Tablespaces go into the work dir either way.
    pub globals: Option<PathBuf>,
    /// Do not restore ownership (`--no-owner`); otherwise roles the dump references are created.
    /// Not used for pg_dumpall output, which creates its roles itself.
    #[serde(default)]
    pub no_owner: bool,
    /// Parallel jobs for `pg_restore -j` (custom and directory formats; default 2).
    #[setters(into = false)]
    pub jobs: Option<u32>,
    /// Custom, directory and tar dumps: create the tablespaces their objects live in, as fresh
    /// folders in the work dir (never the original locations), and restore into them. Default
    /// `false`: `pg_restore --no-tablespaces`, every object in the default tablespace.
    /// (pg_dumpall output always creates its tablespaces, redirected into the work dir.)
    #[serde(default)]
    pub restore_tablespaces: bool,
    /// Object-storage options (endpoint, region, path style, profile, retries, parallelism).
    #[serde(default)]
    pub storage: StorageOptions,
    /// Decrypt dumps ending in `.age` (or `.gpg`) on the fly.
    pub decrypt: Option<DecryptConfig>,
}

/// Source `pg_dump`.
#[derive(Debug, Clone)]
pub struct PgDumpSource {
    cfg: PgDumpConfig,
}

impl PgDumpConfig {
    /// Options for the dump(s) at `path`, everything else at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), ..Self::default() }
    }

    /// Checks what can be checked before a run: the location parses (and an object-store client
    /// can be built for it), and the decryption key loads.
    pub fn validate(&self) -> Result<()> {
        Location::parse(&self.path, &self.storage)?;
        if let Some(d) = &self.decrypt {
            d.prepare()?;
        }
        Ok(())
    }
}

impl PgDumpSource {
    /// A source over `cfg`.
    pub fn new(cfg: PgDumpConfig) -> Self {
        Self { cfg }
    }
}

/// What a path holds, if it is a dump.
#[derive(Debug, Clone, PartialEq)]
struct Detected {
    format: DumpFormat,
    /// Whole-file compression around the dump (plain SQL or an archive).
    compression: Compression,
}

fn first_bytes(path: &Path, n: usize) -> Vec<u8> {
    let Ok(mut r) = archive::open_decompressed(path, None) else { return Vec::new() };
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    buf.truncate(got);
    buf
}

/// Whether a [`BackupInfo::kind`] names a logical dump (`pg_dump-custom`, `pg_dump-dumpall.gz`):
/// such a backup loads into its own major or any newer one, so a target's version preflight
/// for its exact major does not apply (the target picks binaries when it starts).
pub fn is_dump_kind(kind: &str) -> bool {
    kind.starts_with("pg_dump-")
}

/// Recognises a dump file or `-Fd` folder: its format and whole-file compression.
pub(crate) fn detect_dump(path: &Path) -> Option<(DumpFormat, Compression)> {
    detect(path).map(|d| (d.format, d.compression))
}

fn detect(path: &Path) -> Option<Detected> {
    if path.is_dir() {
        return path
            .join("toc.dat")
            .is_file()
            .then_some(Detected { format: DumpFormat::Directory, compression: Compression::None });
    }
    if !path.is_file() {
        return None;
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let compression = Compression::from_name(&name);
    let format = format_of(&first_bytes(path, 4096))?;
    Some(Detected { format, compression })
}

/// A dump's format from its first (decompressed) bytes.
fn format_of(head: &[u8]) -> Option<DumpFormat> {
    if head.starts_with(b"PGDMP") {
        return Some(DumpFormat::Custom);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Some(DumpFormat::Tar);
    }
    // pg_dumpall opens with "-- PostgreSQL database cluster dump"; each database's section
    // inside it (and a pg_dump file) with "-- PostgreSQL database dump".
    let text = String::from_utf8_lossy(head);
    let cluster = text.find("-- PostgreSQL database cluster dump");
    let single = text.find("PostgreSQL database dump");
    match (cluster, single) {
        (Some(c), s) if s.is_none_or(|s| c < s) => Some(DumpFormat::DumpAll),
        (_, Some(_)) => Some(DumpFormat::Plain),
        _ => None,
    }
}

/// Recognises an encrypted or remote dump file by decrypting and decompressing its first
/// bytes. A wrong key or lost storage access is an error, not "no dump here".
/// A file that cannot be decrypted with the configured key, or an encrypted file damaged at its
/// start, is taken for a dump of unknown format (custom, until fetched), so that the fetch phase
/// reports the wrong key or the damage: a damaged newest dump must neither hide the other dumps
/// nor be skipped in favour of an older one.
fn detect_file(file: &BackupFile, decrypt: Option<&Decryptor>) -> Result<Option<Detected>> {
    let bare = storage::plain_name(&file.name(), decrypt).to_string();
    let unknown = Detected { format: DumpFormat::Custom, compression: Compression::from_name(&bare) };
    let is_encrypted = encrypted(&file.name(), decrypt);
    let mut r = match file.head(256 * 1024).open(decrypt, None, tokio_util::sync::CancellationToken::new()) {
        Ok((r, _)) => r,
        Err(Error::Decryption { .. }) => return Ok(Some(unknown)),
        Err(Error::BackupDefect { .. }) if is_encrypted => return Ok(Some(unknown)),
        Err(e) => return Err(e),
    };
    let mut head = Vec::with_capacity(4096);
    if let Err(e) = (&mut r).take(4096).read_to_end(&mut head) {
        return match archive::read_error(&file.display(), e) {
            e @ (Error::Storage { .. } | Error::Cancelled { .. }) => Err(e),
            _ if is_encrypted => Ok(Some(unknown)),
            _ => Ok(None),
        };
    }
    Ok(format_of(&head).map(|format| Detected { format, compression: Compression::from_name(&bare) }))
}

/// Whether `name` carries the encryption suffix `decrypt` handles.
fn encrypted(name: &str, decrypt: Option<&Decryptor>) -> bool {
    decrypt.is_some_and(|d| d.strip(name).is_some())
}

/// Facts read from a dump's header (an archive's `toc.dat` header, or the plain file's comments).
#[derive(Debug, Default, Clone, PartialEq)]
struct Header {
    created_at: Option<DateTime<Utc>>,
    dbname: Option<String>,
    /// Major of the server the dump was taken from ("Dumped from database version").
    server_major: Option<u32>,
    /// Version of the pg_dump that wrote it ("Dumped by pg_dump version").
    dumped_by: Option<String>,
    /// Archive format version (custom, directory, tar): `(1, 16)`.
    archive_version: Option<(u8, u8)>,
}

impl Header {
    /// The lowest PostgreSQL major that can load the dump: the source server's major, raised to
    /// the oldest pg_restore that reads the archive format. 0 when unknown.
    fn min_major(&self) -> u32 {
        let format_needs = self.archive_version.map_or(0, |v| {
            archive_format_min_major(v).unwrap_or_else(|| self.dumped_by.as_deref().and_then(major_of).unwrap_or(0))
        });
        self.server_major.unwrap_or(0).max(format_needs)
    }

    /// "pg_dump 17.2, archive format 1.16", for messages.
    fn made_by(&self) -> Option<String> {
        let by = self.dumped_by.as_deref().map(|v| format!("pg_dump {}", v.split_whitespace().next().unwrap_or(v)));
        let fmt = self.archive_version.map(|(a, b)| format!("archive format {a}.{b}"));
        match (by, fmt) {
            (Some(a), Some(b)) => Some(format!("{a}, {b}")),
            (a, b) => a.or(b),
        }
    }
}

/// The oldest pg_restore major that reads archive format `version` (pg_restore reads every
/// older format, never a newer one: "unsupported version (1.16) in file header").
/// From `K_VERS_*` in PostgreSQL's `src/bin/pg_dump/pg_backup_archiver.h`: 1.14 (table access
/// methods) came with 12, 1.15 (compression algorithm in the header) with 16, 1.16 (BLOB
/// METADATA, relkind) with 17. `None` for formats newer than this table knows.
pub(crate) fn archive_format_min_major(version: (u8, u8)) -> Option<u32> {
    match version {
        (1, m) if m <= 13 => Some(0), // every supported pg_restore (12+) reads them
        (1, 14) => Some(12),
        (1, 15) => Some(16),
        (1, 16) => Some(17),
        _ => None,
    }
}

fn major_of(version: &str) -> Option<u32> {
    version.trim().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Reads the header `pg_dump` writes at the start of a custom file and of `toc.dat` (directory
/// and tar formats): `PGDMP`, the archive version, integer size, format, compression, creation
/// time, database name, server version and pg_dump version (`ReadHead` in PostgreSQL's
/// `pg_backup_archiver.c`). Read by restorecheck itself, so that a dump newer than every
/// installed pg_restore still tells which major it needs.
fn parse_archive_header(b: &[u8]) -> Option<Header> {
    struct R<'a> {
        b: &'a [u8],
        pos: usize,
        int_size: usize,
    }
    impl R<'_> {
        fn byte(&mut self) -> Option<u8> {
            let v = *self.b.get(self.pos)?;
            self.pos += 1;
            Some(v)
        }
        fn int(&mut self) -> Option<i64> {
            let negative = self.byte()? != 0;
            let mut v: i64 = 0;
            for i in 0..self.int_size {
                let byte = i64::from(self.byte()?);
                if i < 8 {
                    v |= byte << (8 * i);
                }
            }
            Some(if negative { -v } else { v })
        }
        fn string(&mut self) -> Option<Option<String>> {
            let n = self.int()?;
            if n < 0 {
                return Some(None);
            }
            let n = usize::try_from(n).ok()?;
            let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
            self.pos += n;
            Some(Some(String::from_utf8_lossy(s).into_owned()))
        }
    }
    if !b.starts_with(b"PGDMP") {
        return None;
    }
    let mut r = R { b, pos: 5, int_size: 4 };
    let (vmaj, vmin, _rev) = (r.byte()?, r.byte()?, r.byte()?);
    let mut h = Header { archive_version: Some((vmaj, vmin)), ..Header::default() };
    // Formats before 1.10 (PostgreSQL 8.0) carry no versions; pg_restore 12+ reads them anyway.
    if (vmaj, vmin) < (1, 10) {
        return Some(h);
    }
    r.int_size = usize::from(r.byte()?);
    if !(1..=8).contains(&r.int_size) {
        return None;
    }
    let _off_size = r.byte()?;
    let _format = r.byte()?;
    if (vmaj, vmin) >= (1, 15) {
        let _algorithm = r.byte()?;
    } else {
        let _level = r.int()?;
    }
    let mut tm = [0i64; 7];
    for f in &mut tm {
        *f = r.int()?;
    }
    // struct tm of pg_dump's local time; read as this host's local time, as pg_restore does.
    let [sec, min, hour, mday, mon, year, _isdst] = tm;
    h.created_at = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(year + 1900).ok()?,
        u32::try_from(mon + 1).ok()?,
        u32::try_from(mday).ok()?,
    )
    .and_then(|d| d.and_hms_opt(u32::try_from(hour).ok()?, u32::try_from(min).ok()?, u32::try_from(sec).ok()?))
    .and_then(|naive| {
        use chrono::TimeZone;
        chrono::Local.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
    });
    h.dbname = r.string()?;
    let remote = r.string()?;
    h.server_major = remote.as_deref().and_then(major_of);
    h.dumped_by = r.string()?;
    Some(h)
}

/// The first bytes of the archive header of the dump at `path` (custom file, `-Fd` folder's
/// `toc.dat`, or a tar's first member), decompressing whole-file compression.
fn archive_header_bytes(path: &Path, format: DumpFormat) -> Vec<u8> {
    match format {
        DumpFormat::Directory => first_bytes(&path.join("toc.dat"), 8192),
        DumpFormat::Tar => {
            let b = first_bytes(path, 512 + 8192);
            // pg_dump -Ft writes toc.dat as the first member: its data follows the 512-byte header.
            if b.len() > 512 && b.starts_with(b"toc.dat\0") {
                b[512..].to_vec()
            } else {
                Vec::new()
            }
        }
        _ => first_bytes(path, 8192),
    }
}

/// Reads an archive's header (custom, directory, tar). A file that does not start like one is
/// a defect.
fn read_archive_header(path: &Path, format: DumpFormat) -> Result<Header> {
    parse_archive_header(&archive_header_bytes(path, format)).ok_or_else(|| {
        Error::defect(format!("{} is not a readable dump: its {format} archive header is damaged", path.display()))
    })
}

/// Reads a plain dump's comments: "Dumped from database version", "Dumped by pg_dump
/// version". pg_dumpall puts them at the start of each database's section, after the globals,
/// so the search goes on until they appear (bounded).
fn read_plain_header(path: &Path) -> Header {
    let mut h = Header::default();
    let Ok(r) = archive::open_decompressed(path, None) else { return h };
    let mut read: u64 = 0;
    let mut buf = Vec::new();
    let mut reader = BufReader::new(r);
    while read < 64 * 1024 * 1024 {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n as u64,
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("-- Dumped from database version ") {
            h.server_major = major_of(v);
        } else if let Some(v) = line.strip_prefix("-- Dumped by pg_dump version ") {
            h.dumped_by = Some(v.trim().to_string());
            break;
        }
    }
    h
}

fn size_of(p: &Path) -> u64 {
    if p.is_dir() {
        fs::read_dir(p).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
    } else {
        fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }
}

fn info_for(path: &Path, d: &Detected) -> BackupInfo {
    let mtime = fs::metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
    // Archives carry their creation time and versions in the header restorecheck reads itself
    // (through whole-file compression too); plain dumps their versions in comments.
    let header = match d.format {
        DumpFormat::Plain | DumpFormat::DumpAll => read_plain_header(path),
        f => read_archive_header(path, f).unwrap_or_default(),
    };
    BackupInfo {
        id: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        taken_at: header.created_at.or(mtime),
        size_bytes: Some(size_of(path)),
        kind: format!("pg_dump-{}{}", d.format, d.compression.suffix()),
        location: format!("pg_dump:{}", path.display()),
        pg_major: header.server_major,
        label: header.dbname,
        timeline: None,
    }
}

#[async_trait]
impl BackupSource for PgDumpSource {
    fn kind(&self) -> &'static str {
        "pg_dump"
    }

    fn describe(&self) -> String {
        format!("pg_dump:{}", self.cfg.path.display())
    }

    async fn list(&self, _ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let decrypt = self.decryptor()?;
        let root = match Location::parse(&self.cfg.path, &self.cfg.storage)? {
            Location::Local(p) => p,
            Location::Remote(r) => return list_remote(r, decrypt).await,
        };
        if decrypt.is_some() {
            return list_local_encrypted(root, decrypt).await;
        }
        tokio::task::spawn_blocking(move || {
            if !root.exists() {
                return Err(Error::Source {
                    source_kind: "pg_dump",
                    message: format!("path {} does not exist", root.display()),
                    source: None,
                });
            }
            if let Some(d) = detect(&root) {
                return Ok(vec![info_for(&root, &d)]);
            }
            let rd = fs::read_dir(&root).map_err(|e| Error::Source {
                source_kind: "pg_dump",
                message: format!("cannot list {}", root.display()),
                source: Some(e.into()),
            })?;
            let mut out: Vec<BackupInfo> =
                rd.flatten().filter_map(|e| detect(&e.path()).map(|d| info_for(&e.path(), &d))).collect();
            crate::source::sort_newest_first(&mut out);
            Ok(out)
        })
        .await
        .map_err(|e| Error::Source {
            source_kind: "pg_dump",
            message: "listing failed".into(),
            source: Some(e.into()),
        })?
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    fn artifact_kind(&self) -> Option<crate::source::ArtifactKind> {
        Some(crate::source::ArtifactKind::Logical)
    }

    /// What `pg_restore` and `psql` (run by the target, possibly in its image) read: a local
    /// `path` (the dump, or the folder of dumps) and the `globals` file. A dump in object
    /// storage, or one restorecheck decompresses or decrypts, is read from the work dir.
    fn read_only_paths(&self) -> Vec<PathBuf> {
        let local = |p: &Path| {
            let s = p.to_string_lossy();
            match s.strip_prefix("file://") {
                Some(rest) => Some(PathBuf::from(rest)),
                None => (!s.contains("://")).then(|| p.to_path_buf()),
            }
        };
        let paths =
            [Some(self.cfg.path.as_path()), self.cfg.globals.as_deref()].into_iter().flatten().filter_map(local);
        crate::sources::tool::existing_roots(paths)
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        let decrypt = self.decryptor()?;
        let path = match Location::parse(&self.cfg.path, &self.cfg.storage)? {
            Location::Remote(r) => materialize_remote(ctx, &r, backup, req, decrypt).await?,
            Location::Local(root) => {
                let path = if root.is_file() || detect(&root).is_some() { root } else { root.join(&backup.id) };
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if path.is_file() && encrypted(&name, decrypt.as_ref()) {
                    materialize(ctx, BackupFile::Local(path), req, decrypt).await?
                } else {
                    path
                }
            }
        };
        let mut f = fetch_dump(ctx, &path, req, &self.cfg).await?;
        if f.server_major == 0 {
            f.server_major = backup.pg_major.unwrap_or(0);
        }
        Ok(Artifact::Logical(f))
    }
}

impl PgDumpSource {
    fn decryptor(&self) -> Result<Option<Decryptor>> {
        self.cfg.decrypt.as_ref().map(DecryptConfig::prepare).transpose()
    }
}

/// The kind shown for a dump: `pg_dump-custom.gz+age`.
fn kind_of(d: &Detected, name: &str, decrypt: Option<&Decryptor>) -> String {
    format!("pg_dump-{}{}{}", d.format, d.compression.suffix(), storage::encryption_tag(name, decrypt))
}

/// Lists a local folder (or file) of dumps, some of them encrypted.
async fn list_local_encrypted(root: PathBuf, decrypt: Option<Decryptor>) -> Result<Vec<BackupInfo>> {
    tokio::task::spawn_blocking(move || {
        let d = decrypt.as_ref();
        let candidates: Vec<PathBuf> = if root.is_file() {
            vec![root.clone()]
        } else {
            fs::read_dir(&root)
                .map_err(|e| Error::Source {
                    source_kind: "pg_dump",
                    message: format!("cannot list {}", root.display()),
                    source: Some(e.into()),
                })?
                .flatten()
                .map(|e| e.path())
                .collect()
        };
        let mut out = Vec::new();
        for p in candidates {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !(p.is_file() && encrypted(&name, d)) {
                if let Some(det) = detect(&p) {
                    out.push(info_for(&p, &det));
                }
                continue;
            }
            if let Some(det) = detect_file(&BackupFile::Local(p.clone()), d)? {
                let mtime = fs::metadata(&p).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
                out.push(BackupInfo {
                    id: name.clone(),
                    taken_at: mtime,
                    size_bytes: Some(size_of(&p)),
                    kind: kind_of(&det, &name, d),
                    location: format!("pg_dump:{}", p.display()),
                    pg_major: None,
                    label: None,
                    timeline: None,
                });
            }
        }
        crate::source::sort_newest_first(&mut out);
        Ok(out)
    })
    .await
    .map_err(|e| Error::Source {
        source_kind: "pg_dump",
        message: "listing failed".into(),
        source: Some(e.into()),
    })?
}

/// Lists dumps in object storage: the object the location names, or every dump object and
/// `-Fd` folder (one holding `toc.dat`) directly under the prefix.
async fn list_remote(remote: Arc<Remote>, decrypt: Option<Decryptor>) -> Result<Vec<BackupInfo>> {
    let singles = remote.head_self().await?;
    let all = if singles.is_some() { Vec::new() } else { remote.list_all("").await? };
    if singles.is_none() && all.is_empty() {
        return Err(Error::Source {
            source_kind: "pg_dump",
            message: format!("{} holds no objects (wrong path, or no list permission?)", remote.url("")),
            source: None,
        });
    }
    let mut out = Vec::new();
    let files: Vec<RemoteObject> = match singles {
        Some(o) => vec![o],
        None => all.iter().filter(|o| !o.rel.contains('/')).cloned().collect(),
    };
    let self_object = files.len() == 1 && all.is_empty();
    for o in files {
        let name = o.rel.clone();
        let file = BackupFile::Remote(remote.clone(), o.clone());
        let d2 = decrypt.clone();
        let det = tokio::task::spawn_blocking(move || detect_file(&file, d2.as_ref())).await.map_err(|e| {
            Error::Source { source_kind: "pg_dump", message: "listing failed".into(), source: Some(e.into()) }
        })??;
        if let Some(det) = det {
            out.push(BackupInfo {
                id: name.clone(),
                taken_at: Some(o.modified),
                size_bytes: Some(o.size),
                kind: kind_of(&det, &name, decrypt.as_ref()),
                location: format!("pg_dump:{}", if self_object { remote.url("") } else { remote.url(&name) }),
                pg_major: None,
                label: None,
                timeline: None,
            });
        }
    }
    for (dir, files) in storage::group_by_folder(all) {
        if files.iter().any(|o| storage::plain_name(&o.rel, decrypt.as_ref()) == "toc.dat") {
            out.push(BackupInfo {
                id: dir.clone(),
                taken_at: files.iter().map(|o| o.modified).max(),
                size_bytes: Some(files.iter().map(|o| o.size).sum()),
                kind: "pg_dump-directory".into(),
                location: format!("pg_dump:{}", remote.url(&dir)),
                pg_major: None,
                label: None,
                timeline: None,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Source {
            source_kind: "pg_dump",
            message: format!("no dump found under {}", remote.url("")),
            source: None,
        });
    }
    crate::source::sort_newest_first(&mut out);
    Ok(out)
}

/// Decrypts and decompresses one dump file into scratch space (pg_restore needs a local,
/// seekable file); returns its path.
async fn materialize(
    ctx: &RunContext,
    file: BackupFile,
    req: &FetchRequest,
    decrypt: Option<Decryptor>,
) -> Result<PathBuf> {
    let dir = req.scratch_dir.join("dump-src");
    fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let bare = storage::plain_name(&file.name(), decrypt.as_ref()).to_string();
    let plain = Compression::strip(&bare).to_string();
    let dest = dir.join(if plain.is_empty() { "dump".to_string() } else { plain });
    ctx.progress.begin(&format!("fetching {}", file.display()), Some(file.size()));
    let (d2, progress, cancel) = (dest.clone(), Some(ctx.progress.clone()), ctx.cancel.clone());
    let r = tokio::task::spawn_blocking(move || file.save_to(&d2, decrypt.as_ref(), progress, cancel))
        .await
        .map_err(|e| Error::defect("download task failed").with_source(e))?;
    ctx.progress.end();
    r?;
    Ok(dest)
}

/// Fetches the chosen dump from object storage into scratch space: one file decrypted and
/// decompressed, or a `-Fd` folder's files (decrypted; pg_restore reads their compression).
async fn materialize_remote(
    ctx: &RunContext,
    remote: &Arc<Remote>,
    backup: &BackupInfo,
    req: &FetchRequest,
    decrypt: Option<Decryptor>,
) -> Result<PathBuf> {
    if let Some(o) = remote.head_self().await? {
        return materialize(ctx, BackupFile::Remote(remote.clone(), o), req, decrypt).await;
    }
    let all = remote.list_all("").await?;
    if let Some(o) = all.iter().find(|o| o.rel == backup.id) {
        return materialize(ctx, BackupFile::Remote(remote.clone(), o.clone()), req, decrypt).await;
    }
    let files = storage::group_by_folder(all)
        .remove(&backup.id)
        .ok_or_else(|| Error::defect(format!("{} no longer holds dump {}", remote.url(""), backup.id)))?;
    let dir = req.scratch_dir.join("dump-src").join(&backup.id);
    fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    ctx.progress.begin(&format!("fetching {}", remote.url(&backup.id)), Some(files.iter().map(|o| o.size).sum()));
    let mut tasks: Vec<Box<dyn FnOnce() -> Result<u64> + Send>> = Vec::new();
    for mut o in files {
        if o.rel.contains('/') {
            continue;
        }
        let dest = dir.join(storage::plain_name(&o.rel, decrypt.as_ref()));
        o.rel = format!("{}/{}", backup.id, o.rel);
        let file = BackupFile::Remote(remote.clone(), o);
        let (decrypt, cancel, progress) = (decrypt.clone(), ctx.cancel.clone(), Some(ctx.progress.clone()));
        tasks.push(Box::new(move || file.save_decrypted_to(&dest, decrypt.as_ref(), progress, cancel)));
    }
    let r = storage::run_parallel(tasks, remote.parallel(), &ctx.cancel).await;
    ctx.progress.end();
    r?;
    Ok(dir)
}

/// Prepares the dump at `path` (decompressing whole-file compression of archives into scratch
/// space) for the target to load, with `opts`' database, globals, ownership and jobs.
pub(crate) async fn fetch_dump(
    ctx: &RunContext,
    path: &Path,
    req: &FetchRequest,
    opts: &PgDumpConfig,
) -> Result<LogicalDump> {
    let path = path.to_path_buf();
    let d = detect(&path).ok_or_else(|| Error::defect(format!("{} is not a readable dump", path.display())))?;
    // Archives compressed as a whole are decompressed into scratch space: pg_restore needs
    // a seekable file for parallel restore. Plain SQL streams through the decompressor.
    let plain = matches!(d.format, DumpFormat::Plain | DumpFormat::DumpAll);
    let file = if !plain && d.compression != Compression::None {
        let dest = req.scratch_dir.join(format!("dump.{}", d.format));
        ctx.progress.begin(&format!("decompressing {}", path.display()), fs::metadata(&path).ok().map(|m| m.len()));
        let (src, dst, progress) = (path.clone(), dest.clone(), ctx.progress.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut r = archive::open_decompressed(&src, Some(progress))?;
            let mut w = fs::File::create(&dst).map_err(|e| Error::io("creating", &dst, e))?;
            std::io::copy(&mut r, &mut w)
                .map_err(|e| Error::defect(format!("{} is damaged or truncated", src.display())).with_source(e))?;
            Ok(())
        })
        .await
        .map_err(|e| Error::defect("decompression failed").with_source(e))??;
        ctx.progress.end();
        dest
    } else {
        path.clone()
    };
    let header = if plain { read_plain_header(&file) } else { read_archive_header(&file, d.format)? };
    Ok(LogicalDump {
        path: file,
        data_dir: req.data_dir.clone(),
        server_major: header.server_major.unwrap_or(0),
        format: d.format,
        compression: if plain { d.compression } else { Compression::None },
        // A pg_dumpall file creates and names its databases itself.
        database: if d.format == DumpFormat::DumpAll { None } else { opts.database.clone().or(header.dbname.clone()) },
        globals: opts.globals.clone(),
        no_owner: opts.no_owner,
        restore_tablespaces: opts.restore_tablespaces,
        jobs: opts.jobs.unwrap_or(2).max(1),
        min_major: header.min_major(),
        made_by: header.made_by(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_paths_are_the_local_dumps_and_globals() {
        let d = tempfile::tempdir().unwrap();
        let (dumps, globals) = (d.path().join("dumps"), d.path().join("globals.sql"));
        fs::create_dir_all(&dumps).unwrap();
        fs::write(&globals, "").unwrap();
        let mut cfg = PgDumpConfig::new(format!("file://{}", dumps.display()));
        cfg.globals = Some(globals.clone());
        assert_eq!(PgDumpSource::new(cfg).read_only_paths(), vec![dumps.clone(), globals]);
        assert!(PgDumpSource::new(PgDumpConfig::new("s3://bucket/dumps")).read_only_paths().is_empty());
        assert_eq!(PgDumpSource::new(PgDumpConfig::new(&dumps)).read_only_paths(), vec![dumps]);
    }

    #[test]
    fn versions() {
        assert_eq!(major_of("15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(major_of("9.6.24"), Some(9));
    }

    /// A custom-format header as pg_dump `vmin` writes it (`WriteHead`).
    fn header_bytes(vmin: u8, server: &str, pg_dump: &str) -> Vec<u8> {
        let int = |v: i64| {
            let mut b = vec![u8::from(v < 0)];
            b.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
            b
        };
        let string = |s: &str| {
            let mut b = int(s.len() as i64);
            b.extend_from_slice(s.as_bytes());
            b
        };
        let mut b = b"PGDMP".to_vec();
        b.extend_from_slice(&[1, vmin, 0, 4, 8, 1]);
        if vmin >= 15 {
            b.push(0);
        } else {
            b.extend(int(-1));
        }
        for v in [43, 25, 9, 1, 11, 126, 0] {
            b.extend(int(v));
        }
        b.extend(string("app"));
        b.extend(string(server));
        b.extend(string(pg_dump));
        b
    }

    #[test]
    fn archive_headers_name_the_major_they_need() {
        let h = parse_archive_header(&header_bytes(16, "17.7 (Debian 17.7-3)", "17.7 (Debian 17.7-3)")).unwrap();
        assert_eq!((h.server_major, h.archive_version, h.dbname.as_deref()), (Some(17), Some((1, 16)), Some("app")));
        assert_eq!(h.min_major(), 17);
        assert_eq!(h.made_by().as_deref(), Some("pg_dump 17.7, archive format 1.16"));
        assert!(h.created_at.is_some());
        // pg_dump 16 of a PostgreSQL 13 server: format 1.15 needs pg_restore 16.
        let h = parse_archive_header(&header_bytes(15, "13.23", "16.4")).unwrap();
        assert_eq!((h.server_major, h.min_major()), (Some(13), 16));
        let h = parse_archive_header(&header_bytes(14, "13.23", "13.23")).unwrap();
        assert_eq!(h.min_major(), 13);
        // A format newer than the table: the pg_dump version decides.
        let h = parse_archive_header(&header_bytes(17, "19.1", "19.1")).unwrap();
        assert_eq!(h.min_major(), 19);
        assert_eq!(parse_archive_header(b"PGDMP\x01\x10"), None);
        assert_eq!(parse_archive_header(b"not a dump"), None);
        assert_eq!(archive_format_min_major((1, 14)), Some(12));
    }

    #[test]
    fn dumpall_output_is_told_apart_from_pg_dump_output() {
        let all =
            "--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE x;\n--\n-- PostgreSQL database dump\n--\n";
        assert_eq!(format_of(all.as_bytes()), Some(DumpFormat::DumpAll));
        assert_eq!(format_of(b"--\n-- PostgreSQL database dump\n--\n"), Some(DumpFormat::Plain));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("all.sql");
        let mut text = all.to_string();
        for i in 0..3000 {
            text.push_str(&format!("CREATE ROLE r{i};\n"));
        }
        text.push_str("-- Dumped from database version 17.7\n-- Dumped by pg_dump version 17.7\n");
        fs::write(&p, text).unwrap();
        let h = read_plain_header(&p);
        assert_eq!((h.server_major, h.dumped_by.as_deref()), (Some(17), Some("17.7")));
    }

    #[test]
    fn plain_dumps_are_recognised_compressed_or_not() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.sql");
        fs::write(&p, "--\n-- PostgreSQL database dump\n--\n-- Dumped from database version 15.18\n").unwrap();
        assert_eq!(detect(&p), Some(Detected { format: DumpFormat::Plain, compression: Compression::None }));
        assert_eq!(read_plain_header(&p).server_major, Some(15));
        let gz = d.path().join("x.sql.gz");
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -c {} > {}", p.display(), gz.display()))
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(detect(&gz), Some(Detected { format: DumpFormat::Plain, compression: Compression::Gzip }));
        fs::write(d.path().join("notes.txt"), "hello").unwrap();
        assert_eq!(detect(&d.path().join("notes.txt")), None);
    }
}
