//! Source `pg_dump`: logical dumps — custom (`-Fc`), directory (`-Fd`), tar (`-Ft`) or plain SQL,
//! optionally gzip/zstd/lz4-compressed as a whole file. The target restores them into a fresh
//! cluster it creates (see [`crate::postgres::logical`]).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::archive::{self, Compression};
use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::binaries;
use crate::source::{BackupInfo, BackupSource, DumpFormat, FetchRequest, FetchedBackup, LogicalDump, WalSupply};

/// Options of source `pg_dump` (`[check.source] kind = "pg_dump"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PgDumpConfig {
    /// One dump (file or `-Fd` folder), or a folder of dumps (newest chosen).
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
}

/// Source `pg_dump`.
#[derive(Debug, Clone)]
pub struct PgDumpSource {
    cfg: PgDumpConfig,
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
    let head = first_bytes(path, 4096);
    let format = if head.starts_with(b"PGDMP") {
        DumpFormat::Custom
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        DumpFormat::Tar
    } else {
        let text = String::from_utf8_lossy(&head);
        if text.contains("PostgreSQL database dump") {
            DumpFormat::Plain
        } else {
            return None;
        }
    };
    Some(Detected { format, compression })
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
        let root = self.cfg.path.clone();
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
        let path =
            if detect(&self.cfg.path).is_some() { self.cfg.path.clone() } else { self.cfg.path.join(&backup.id) };
        let mut f = fetch_dump(ctx, &path, req, &self.cfg).await?;
        if f.pg_major == 0 {
            f.pg_major = backup.pg_major.unwrap_or(0);
        }
        f.bytes_restored = backup.size_bytes.unwrap_or(0);
        Ok(f)
    }
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
