//! Source `basebackup`: what `pg_basebackup` writes, plain or tar format, optionally with a
//! folder of archived WAL.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::archive::{self, Compression};
use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::Lsn;
use crate::source::{BackupInfo, BackupSource, ExpectedEnd, FetchRequest, FetchedBackup, WalSupply};
use crate::wal_archive::WalArchive;

/// Options of source `basebackup` (`[check.source] kind = "basebackup"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaseBackupConfig {
    /// One backup, or a folder with one backup per subfolder.
    pub path: PathBuf,
    /// Pick this backup (subfolder name) instead of the newest.
    pub backup: Option<String>,
    /// Folder of archived WAL segments (plain, .gz, .zst, .lz4) for archive recovery.
    pub wal_archive: Option<PathBuf>,
    /// How far to recover (default `latest`: all archived WAL).
    #[serde(default)]
    pub recovery_target: crate::source::RecoveryTarget,
}

/// Source `basebackup`.
#[derive(Debug, Clone)]
pub struct BaseBackupSource {
    cfg: BaseBackupConfig,
}

/// How one backup folder is laid out.
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    /// A data directory (`-Fp`).
    Plain,
    /// `base.tar[.gz|.zst|.lz4]` plus tablespace and `pg_wal` tars (`-Ft`).
    Tar { base: PathBuf },
}

impl BaseBackupSource {
    /// A source over `cfg`.
    pub fn new(cfg: BaseBackupConfig) -> Self {
        Self { cfg }
    }

    fn err(&self, message: String) -> Error {
        Error::Source { source_kind: "basebackup", message }
    }

    fn backup_dir(&self, id: &str) -> PathBuf {
        if detect(&self.cfg.path).is_some() {
            self.cfg.path.clone()
        } else {
            self.cfg.path.join(id)
        }
    }
}

/// Recognises a backup folder.
fn detect(dir: &Path) -> Option<Layout> {
    if dir.join("backup_label").is_file() || dir.join("PG_VERSION").is_file() {
        return Some(Layout::Plain);
    }
    for c in ["", ".gz", ".zst", ".lz4"] {
        let p = dir.join(format!("base.tar{c}"));
        if p.is_file() {
            return Some(Layout::Tar { base: p });
        }
    }
    None
}

/// Parsed `backup_label`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupLabel {
    /// START TIME, converted to UTC when the zone is known.
    pub start_time: Option<DateTime<Utc>>,
    /// LABEL.
    pub label: Option<String>,
    /// START WAL LOCATION.
    pub start_lsn: Option<Lsn>,
}

impl BackupLabel {
    /// Parses the text of a `backup_label` file.
    pub fn parse(text: &str) -> Self {
        let mut b = BackupLabel::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("START TIME: ") {
                b.start_time = parse_label_time(v.trim());
            } else if let Some(v) = line.strip_prefix("LABEL: ") {
                b.label = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("START WAL LOCATION: ") {
                b.start_lsn = v.split_whitespace().next().and_then(|s| s.parse().ok());
            }
        }
        b
    }
}

/// `2026-11-26 05:00:00 UTC` → UTC time. PostgreSQL writes the zone as an abbreviation of the
/// server's `log_timezone`; numeric zones (`+03`, `-0430`) and common abbreviations are known.
pub fn parse_label_time(s: &str) -> Option<DateTime<Utc>> {
    let (dt, zone) = s.rsplit_once(' ')?;
    let naive = chrono::NaiveDateTime::parse_from_str(dt, "%Y-%m-%d %H:%M:%S").ok()?;
    let offset_min: i64 = match zone {
        // Unambiguous abbreviations only; ambiguous ones (IST, CST) fall back to the file time.
        "UTC" | "GMT" | "Z" | "UCT" | "WET" => 0,
        "BST" | "CET" | "WEST" => 60,
        "CEST" | "EET" | "SAST" => 120,
        "EEST" | "MSK" => 180,
        "HKT" | "AWST" | "SGT" => 480,
        "JST" | "KST" => 540,
        "AEST" => 600,
        "AEDT" => 660,
        "NZST" => 720,
        "NZDT" => 780,
        "EST" | "CDT" => -300,
        "EDT" => -240,
        "MST" | "PDT" => -420,
        "MDT" => -360,
        "PST" => -480,
        "AKST" => -540,
        "HST" => -600,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits = &z[1..].replace(':', "");
            let (h, m) = match digits.len() {
                1 | 2 => (digits.parse::<i64>().ok()?, 0),
                4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
                _ => return None,
            };
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    Some((naive - chrono::Duration::minutes(offset_min)).and_utc())
}

/// Reads `backup_label` of a backup folder: a file (plain) or the member of `base.tar*`.
/// Also returns the OS user that owned the data (a hint for the superuser name).
fn read_label(dir: &Path, layout: &Layout) -> Result<(Option<String>, Option<String>)> {
    match layout {
        Layout::Plain => {
            let p = dir.join("backup_label");
            let text = fs::read_to_string(&p).ok();
            let owner = fs::metadata(dir.join("PG_VERSION"))
                .ok()
                .and_then(|m| nix::unistd::User::from_uid(m.uid().into()).ok().flatten())
                .map(|u| u.name);
            Ok((text, owner))
        }
        Layout::Tar { base } => match archive::read_tar_member(base, "backup_label", 1000)? {
            Some((text, user)) => Ok((Some(text), user)),
            None => Ok((None, None)),
        },
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(p) else { return 0 };
    if meta.is_dir() {
        fs::read_dir(p).map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum()).unwrap_or(0)
    } else {
        meta.len()
    }
}

impl BaseBackupSource {
    fn info(&self, id: &str, dir: &Path, layout: &Layout) -> Result<BackupInfo> {
        let (label_text, _) = read_label(dir, layout)?;
        let label = label_text.as_deref().map(BackupLabel::parse).unwrap_or_default();
        let taken_at = label.start_time.or_else(|| {
            // Unknown zone abbreviation: the label file's time stamp is the next best thing.
            let f = match layout {
                Layout::Plain => dir.join("backup_label"),
                Layout::Tar { base } => base.clone(),
            };
            fs::metadata(f).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from)
        });
        let kind = match layout {
            Layout::Plain => "plain".to_string(),
            Layout::Tar { base } => {
                let n = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                format!("tar{}", Compression::from_name(&n).suffix())
            }
        };
        let pg_major = fs::read_to_string(dir.join("PG_VERSION")).ok().and_then(|v| v.trim().parse().ok());
        Ok(BackupInfo {
            id: id.to_string(),
            taken_at,
            size_bytes: Some(dir_size(dir)),
            kind,
            location: format!("basebackup:{}", dir.display()),
            pg_major,
            label: label.label,
        })
    }
}

#[async_trait]
impl BackupSource for BaseBackupSource {
    fn kind(&self) -> &'static str {
        "basebackup"
    }

    fn describe(&self) -> String {
        format!("basebackup:{}", self.cfg.path.display())
    }

    async fn list(&self, _ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let root = self.cfg.path.clone();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if !root.is_dir() {
                return Err(this.err(format!("path {} does not exist or is not a folder", root.display())));
            }
            if let Some(layout) = detect(&root) {
                let id = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
                return Ok(vec![this.info(&id, &root, &layout)?]);
            }
            let rd = fs::read_dir(&root).map_err(|e| this.err(format!("cannot list {}: {e}", root.display())))?;
            let mut out = Vec::new();
            for entry in rd.flatten() {
                let dir = entry.path();
                if !dir.is_dir() {
                    continue;
                }
                if let Some(layout) = detect(&dir) {
                    let id = entry.file_name().to_string_lossy().into_owned();
                    match this.info(&id, &dir, &layout) {
                        Ok(i) => out.push(i),
                        // A damaged backup still shows up (and fails when chosen).
                        Err(e) => out.push(BackupInfo {
                            id: id.clone(),
                            taken_at: fs::metadata(&dir).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from),
                            size_bytes: Some(dir_size(&dir)),
                            kind: format!("unreadable: {e}"),
                            location: format!("basebackup:{}", dir.display()),
                            pg_major: None,
                            label: None,
                        }),
                    }
                }
            }
            crate::source::sort_newest_first(&mut out);
            Ok(out)
        })
        .await
        .map_err(|e| self.err(format!("listing task failed: {e}")))?
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<FetchedBackup> {
        let dir = self.backup_dir(&backup.id);
        let layout =
            detect(&dir).ok_or_else(|| Error::defect(format!("{} no longer holds a backup", dir.display())))?;
        let (_, owner) = read_label(&dir, &layout)?;
        let bytes = match &layout {
            Layout::Plain => copy_plain(ctx, &dir, req).await?,
            Layout::Tar { base } => extract_tars(ctx, &dir, base, req).await?,
        };
        let data = &req.data_dir;
        let (pg_major, backup_end_lsn) = check_physical(data, &dir)?;
        let (wal, expected_end) = match &self.cfg.wal_archive {
            None => (WalSupply::SelfContained, Vec::new()),
            Some(a) => {
                let archive = WalArchive::scan(a)?;
                let command = archive.write_restore_command(&req.scratch_dir)?;
                let expected = archive
                    .newest_segment
                    .iter()
                    .map(|seg| ExpectedEnd {
                        lsn: None,
                        wal_segment: Some(seg.clone()),
                        reason: format!("the WAL archive {} continues to segment {seg}", a.display()),
                    })
                    .collect();
                (WalSupply::RestoreCommand { command, readable_paths: vec![a.clone()] }, expected)
            }
        };
        let mut fetched = FetchedBackup::new(data.clone(), pg_major, wal);
        fetched.backup_end_lsn = backup_end_lsn;
        fetched.expected_end = expected_end;
        fetched.superuser_hints = owner.into_iter().collect();
        fetched.bytes_restored = bytes;
        fetched.recovery_target = self.cfg.recovery_target.clone();
        Ok(fetched)
    }
}

/// Checks a restored physical data directory before start: `backup_label` present (without it
/// PostgreSQL would start from the wrong checkpoint), `PG_VERSION` readable. Returns the major
/// version and the backup's end LSN from its `backup_manifest` when there is one. `origin`
/// names the backup in messages.
pub fn check_physical(data: &Path, origin: &Path) -> Result<(u32, Option<Lsn>)> {
    if !data.join("backup_label").is_file() {
        return Err(Error::defect(format!(
            "{}: backup_label is missing; without it PostgreSQL would start from the wrong checkpoint and silently corrupt the copy",
            origin.display()
        )));
    }
    let pg_major: u32 = fs::read_to_string(data.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::defect(format!("{}: PG_VERSION is missing or unreadable", origin.display())))?;
    Ok((pg_major, manifest_end_lsn(&data.join("backup_manifest"))?))
}

/// The end of the backup's WAL range from `backup_manifest` (`WAL-Ranges[-1].End-LSN`).
fn manifest_end_lsn(path: &Path) -> Result<Option<Lsn>> {
    #[derive(Deserialize)]
    struct Range {
        #[serde(rename = "End-LSN")]
        end: String,
    }
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(rename = "WAL-Ranges", default)]
        wal_ranges: Vec<Range>,
    }
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading backup manifest", path, e)),
    };
    let m: Manifest = serde_json::from_reader(std::io::BufReader::new(f))
        .map_err(|e| Error::defect(format!("{} is not a valid backup manifest: {e}", path.display())))?;
    Ok(m.wal_ranges.last().and_then(|r| r.end.parse().ok()))
}

/// Copies a plain-format backup (the backup is never modified; the server writes into the
/// copy). Tablespace symlinks are followed and their contents copied beside it.
async fn copy_plain(ctx: &RunContext, src: &Path, req: &FetchRequest) -> Result<u64> {
    let total = dir_size(src);
    ctx.progress.begin(&format!("copying {}", src.display()), Some(total));
    let (src, req2, progress) = (src.to_path_buf(), req.clone(), ctx.progress.clone());
    let cancel = ctx.cancel.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut bytes = 0;
        copy_tree(&src, &req2.data_dir, &mut bytes, &*progress, &cancel)?;
        let tbl = req2.data_dir.join("pg_tblspc");
        if let Ok(rd) = fs::read_dir(&tbl) {
            for e in rd.flatten() {
                let link = e.path();
                if !fs::symlink_metadata(&link).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                    continue;
                }
                let target = fs::read_link(&link).map_err(|e| Error::io("reading tablespace link", &link, e))?;
                let target = if target.is_relative() { src.join("pg_tblspc").join(target) } else { target };
                if !target.is_dir() {
                    return Err(Error::defect(format!(
                        "tablespace {} points to {}, which does not exist here",
                        e.file_name().to_string_lossy(),
                        target.display()
                    )));
                }
                let dest = req2.tablespace_dir.join(e.file_name());
                fs::create_dir_all(&dest).map_err(|er| Error::io("creating", &dest, er))?;
                copy_tree(&target, &dest, &mut bytes, &*progress, &cancel)?;
                fs::remove_file(&link).map_err(|er| Error::io("replacing tablespace link", &link, er))?;
                std::os::unix::fs::symlink(&dest, &link).map_err(|er| Error::io("linking tablespace", &link, er))?;
            }
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| Error::defect(format!("copy task failed: {e}")))?;
    ctx.progress.end();
    r
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    bytes: &mut u64,
    progress: &dyn crate::context::Progress,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if cancel.is_cancelled() {
        return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dst).map_err(|e| Error::io("creating", dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| Error::io("listing backup", src, e))? {
        let entry = entry.map_err(|e| Error::io("listing backup", src, e))?;
        if cancel.is_cancelled() {
            return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
        }
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().map_err(|e| Error::io("reading", &from, e))?;
        if ft.is_symlink() {
            let t = fs::read_link(&from).map_err(|e| Error::io("reading link", &from, e))?;
            std::os::unix::fs::symlink(t, &to).map_err(|e| Error::io("creating link", &to, e))?;
        } else if ft.is_dir() {
            copy_tree(&from, &to, bytes, progress, cancel)?;
        } else if ft.is_file() {
            let n = fs::copy(&from, &to).map_err(|e| Error::io("copying backup file", &from, e))?;
            *bytes += n;
            progress.advance(n);
        }
    }
    Ok(())
}

/// Extracts `base.tar*`, every `<oid>.tar*` (tablespaces) and `pg_wal.tar*`, in parallel, then
/// points `tablespace_map` at the extracted tablespaces.
async fn extract_tars(ctx: &RunContext, dir: &Path, base: &Path, req: &FetchRequest) -> Result<u64> {
    let mut jobs: Vec<(PathBuf, PathBuf)> = vec![(base.to_path_buf(), req.data_dir.clone())];
    let mut tablespaces = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io("listing backup", dir, e))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(Compression::from_name(&name).suffix()).unwrap_or(&name);
        let Some(stem) = stem.strip_suffix(".tar") else { continue };
        if stem == "pg_wal" {
            jobs.push((e.path(), req.data_dir.join("pg_wal")));
        } else if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
            let dest = req.tablespace_dir.join(stem);
            tablespaces.push((stem.to_string(), dest.clone()));
            jobs.push((e.path(), dest));
        }
    }
    let total: u64 = jobs.iter().filter_map(|(p, _)| fs::metadata(p).ok()).map(|m| m.len()).sum();
    ctx.progress.begin(&format!("extracting {}", dir.display()), Some(total));
    let mut handles = Vec::new();
    for (archive, dest) in jobs {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dest).map_err(|e| Error::io("creating", &dest, e))?;
        let progress = Some(ctx.progress.clone());
        let cancel = Some(ctx.cancel.clone());
        handles.push(tokio::task::spawn_blocking(move || archive::extract_tar(&archive, &dest, progress, cancel)));
    }
    let mut bytes = 0;
    let mut first_err = None;
    for h in handles {
        tokio::select! {
            r = h => match r {
                Ok(Ok(s)) => bytes += s.bytes,
                Ok(Err(e)) => { first_err.get_or_insert(e); }
                Err(e) => { first_err.get_or_insert(Error::defect(format!("extraction task failed: {e}"))); }
            },
            _ = ctx.cancel.cancelled() => return Err(Error::Cancelled { phase: crate::report::Phase::Fetch }),
        }
    }
    ctx.progress.end();
    if let Some(e) = first_err {
        return Err(e);
    }
    rewrite_tablespace_map(&req.data_dir, &tablespaces)?;
    let manifest = dir.join("backup_manifest");
    if manifest.is_file() {
        let to = req.data_dir.join("backup_manifest");
        fs::copy(&manifest, &to).map_err(|e| Error::io("copying backup_manifest", &manifest, e))?;
    }
    Ok(bytes)
}

/// Rewrites `tablespace_map` so each tablespace points at its extracted copy instead of the
/// production path; a tablespace listed there without its tar is a defect.
fn rewrite_tablespace_map(data: &Path, extracted: &[(String, PathBuf)]) -> Result<()> {
    let map = data.join("tablespace_map");
    let Ok(text) = fs::read_to_string(&map) else { return Ok(()) };
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let oid = line.split_whitespace().next().unwrap_or("");
        let dest = extracted.iter().find(|(o, _)| o == oid).map(|(_, d)| d).ok_or_else(|| {
            Error::defect(format!("tablespace {oid} is listed in tablespace_map but {oid}.tar is not in the backup"))
        })?;
        out.push_str(&format!("{oid} {}\n", dest.display()));
    }
    fs::write(&map, out).map_err(|e| Error::io("writing tablespace_map", &map, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_parsing() {
        let l = BackupLabel::parse(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
             CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: 2026-11-26 05:00:00 CET\nLABEL: nightly\nSTART TIMELINE: 1\n",
        );
        assert_eq!(l.label.as_deref(), Some("nightly"));
        assert_eq!(l.start_lsn.unwrap().to_string(), "0/2000028");
        assert_eq!(l.start_time.unwrap().to_rfc3339(), "2026-11-26T04:00:00+00:00");
    }

    #[test]
    fn label_times_in_numeric_zones() {
        assert_eq!(parse_label_time("2026-01-01 03:00:00 +03").unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(parse_label_time("2026-01-01 00:00:00 -0430").unwrap().to_rfc3339(), "2026-01-01T04:30:00+00:00");
        assert!(parse_label_time("2026-01-01 00:00:00 XYZT").is_none());
    }
}
