//! Source `pg_dump`: logical dumps — custom (`-Fc`), directory (`-Fd`), tar (`-Ft`) or plain SQL,
//! optionally gzip/zstd/lz4-compressed as a whole file. The target restores them into a fresh
//! cluster it creates (see [`crate::postgres::logical`]).

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
use crate::postgres::binaries;
use crate::source::{BackupInfo, BackupSource, DumpFormat, FetchRequest, FetchedBackup, LogicalDump, WalSupply};
use crate::storage::{self, BackupFile, Location, Remote, RemoteObject, StorageOptions};

/// Options of source `pg_dump` (`[check.source] kind = "pg_dump"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PgDumpConfig {
    /// One dump (file or `-Fd` folder), or a folder of dumps (newest chosen): a local path,
    /// `file://…`, `s3://bucket/prefix`, `gs://…` or `az://…`.
    pub path: PathBuf,
    /// `"latest"` (default), `"oldest"`, or a dump's file/folder name.
    pub backup: Option<String>,
    /// Database to restore into (default: the name recorded in the dump, else the check's
    /// `database`).
    pub database: Option<String>,
    /// Output of `pg_dumpall --globals-only` to run first (roles, tablespaces).
    pub globals: Option<PathBuf>,
    /// Do not restore ownership (`--no-owner`); otherwise roles the dump references are created.
    #[serde(default)]
    pub no_owner: bool,
    /// Parallel jobs for `pg_restore -j` (custom and directory formats; default 2).
    pub jobs: Option<u32>,
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

/// Recognises a dump file or `-Fd` folder: its format and whole-file compression.
pub fn detect_dump(path: &Path) -> Option<(DumpFormat, Compression)> {
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
        Some(DumpFormat::Custom)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(DumpFormat::Tar)
    } else {
        String::from_utf8_lossy(head).contains("PostgreSQL database dump").then_some(DumpFormat::Plain)
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

/// Facts read from a dump's header (`pg_restore -l`, or the plain file's comments).
#[derive(Debug, Default, Clone)]
struct Header {
    created_at: Option<DateTime<Utc>>,
    dbname: Option<String>,
    server_major: Option<u32>,
}

fn major_of(version: &str) -> Option<u32> {
    version.trim().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Runs `pg_restore -l` (the newest installed one reads every older format).
fn read_archive_header(path: &Path) -> Result<Header> {
    let bin = binaries::newest()?;
    let out = std::process::Command::new(bin.exe("pg_restore"))
        .arg("-l")
        .arg(path)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| Error::io("running pg_restore -l", path, e))?;
    if !out.status.success() {
        return Err(Error::defect(format!(
            "{} is not a readable dump: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut h = Header::default();
    for line in text.lines() {
        let l = line.trim_start_matches(';').trim();
        if let Some(v) = l.strip_prefix("Archive created at ") {
            h.created_at = crate::sources::basebackup::parse_label_time(v.trim());
        } else if let Some(v) = l.strip_prefix("dbname: ") {
            h.dbname = Some(v.trim().to_string());
        } else if let Some(v) = l.strip_prefix("Dumped from database version: ") {
            h.server_major = major_of(v);
        }
    }
    Ok(h)
}

fn read_plain_header(path: &Path) -> Header {
    let mut h = Header::default();
    if let Ok(r) = archive::open_decompressed(path, None) {
        for line in BufReader::new(r).lines().take(40).map_while(|l| l.ok()) {
            if let Some(v) = line.strip_prefix("-- Dumped from database version ") {
                h.server_major = major_of(v);
            }
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
    // A compressed archive needs decompressing before pg_restore can list it; its mtime is the
    // best cheap time stamp. Uncompressed archives carry their creation time.
    let header = match (&d.format, d.compression) {
        (DumpFormat::Plain, _) => read_plain_header(path),
        (_, Compression::None) => read_archive_header(path).unwrap_or_default(),
        _ => Header::default(),
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
                });
            }
            if let Some(d) = detect(&root) {
                return Ok(vec![info_for(&root, &d)]);
            }
            let rd = fs::read_dir(&root).map_err(|e| Error::Source {
                source_kind: "pg_dump",
                message: format!("cannot list {}: {e}", root.display()),
            })?;
            let mut out: Vec<BackupInfo> =
                rd.flatten().filter_map(|e| detect(&e.path()).map(|d| info_for(&e.path(), &d))).collect();
            crate::source::sort_newest_first(&mut out);
            Ok(out)
        })
        .await
        .map_err(|e| Error::Source { source_kind: "pg_dump", message: format!("listing failed: {e}") })?
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<FetchedBackup> {
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
        if f.pg_major == 0 {
            f.pg_major = backup.pg_major.unwrap_or(0);
        }
        f.bytes_restored = backup.size_bytes.unwrap_or(0);
        Ok(f)
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
                    message: format!("cannot list {}: {e}", root.display()),
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
    .map_err(|e| Error::Source { source_kind: "pg_dump", message: format!("listing failed: {e}") })?
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
        let det = tokio::task::spawn_blocking(move || detect_file(&file, d2.as_ref()))
            .await
            .map_err(|e| Error::Source { source_kind: "pg_dump", message: format!("listing failed: {e}") })??;
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
        .map_err(|e| Error::defect(format!("download task failed: {e}")))?;
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
pub async fn fetch_dump(
    ctx: &RunContext,
    path: &Path,
    req: &FetchRequest,
    opts: &PgDumpConfig,
) -> Result<FetchedBackup> {
    let path = path.to_path_buf();
    let d = detect(&path).ok_or_else(|| Error::defect(format!("{} is not a readable dump", path.display())))?;
    // Archives compressed as a whole are decompressed into scratch space: pg_restore needs
    // a seekable file for parallel restore. Plain SQL streams through the decompressor.
    let file = if d.format != DumpFormat::Plain && d.compression != Compression::None {
        let dest = req.scratch_dir.join(format!("dump.{}", d.format));
        ctx.progress.begin(&format!("decompressing {}", path.display()), fs::metadata(&path).ok().map(|m| m.len()));
        let (src, dst, progress) = (path.clone(), dest.clone(), ctx.progress.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut r = archive::open_decompressed(&src, Some(progress))?;
            let mut w = fs::File::create(&dst).map_err(|e| Error::io("creating", &dst, e))?;
            std::io::copy(&mut r, &mut w)
                .map_err(|e| Error::defect(format!("{} is damaged or truncated: {e}", src.display())))?;
            Ok(())
        })
        .await
        .map_err(|e| Error::defect(format!("decompression failed: {e}")))??;
        ctx.progress.end();
        dest
    } else {
        path.clone()
    };
    let header = match d.format {
        DumpFormat::Plain => read_plain_header(&file),
        _ => read_archive_header(&file)?,
    };
    let dump = LogicalDump {
        path: file,
        format: d.format,
        compression: if d.format == DumpFormat::Plain { d.compression } else { Compression::None },
        database: opts.database.clone().or(header.dbname),
        globals: opts.globals.clone(),
        no_owner: opts.no_owner,
        jobs: opts.jobs.unwrap_or(2).max(1),
    };
    let mut f = FetchedBackup::new(req.data_dir.clone(), header.server_major.unwrap_or(0), WalSupply::SelfContained);
    f.logical = Some(dump);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(major_of("15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(major_of("9.6.24"), Some(9));
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
