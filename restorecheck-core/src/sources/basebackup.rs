//! Source `basebackup`: what `pg_basebackup` writes, plain or tar format, optionally with a
//! folder of archived WAL.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::archive::{self, Compression};
use crate::context::RunContext;
use crate::decrypt::{DecryptConfig, Decryptor};
use crate::error::{Error, Result};
use crate::postgres::{datadir, Lsn};
use crate::safefs;
use crate::source::{BackupInfo, BackupSource, FetchRequest, FetchedBackup, WalSupply};
use crate::storage::{self, BackupFile, Location, Remote, RemoteObject, StorageOptions};
use crate::wal_archive::WalArchive;

/// Options of source `basebackup` (`[check.source] kind = "basebackup"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaseBackupConfig {
    /// One backup, or a folder with one backup per subfolder: a local path, `file://…`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
    pub path: PathBuf,
    /// Pick this backup (subfolder name) instead of the newest.
    pub backup: Option<String>,
    /// Folder of archived WAL segments (plain, .gz, .zst, .lz4; with `decrypt`, also encrypted
    /// like `….age` or `….gz.age`) for archive recovery; a local path or an object-storage URL
    /// like `path`.
    pub wal_archive: Option<PathBuf>,
    /// How far to recover (default `latest`: all archived WAL).
    #[serde(default)]
    pub recovery_target: crate::source::RecoveryTarget,
    /// Which timeline recovery follows (`"latest"`, default: the newest in the archive, as
    /// after a failover; `"current"`: the backup's own; or a timeline number).
    #[serde(default)]
    pub recovery_target_timeline: crate::source::RecoveryTargetTimeline,
    /// Object-storage options (endpoint, region, path style, profile, retries, parallelism).
    #[serde(default)]
    pub storage: StorageOptions,
    /// Decrypt files ending in `.age` (or `.gpg`) on the fly.
    pub decrypt: Option<DecryptConfig>,
}

/// Source `basebackup`.
#[derive(Debug, Clone)]
pub struct BaseBackupSource {
    cfg: BaseBackupConfig,
}

/// How one backup folder is laid out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layout {
    /// A data directory (`-Fp`).
    Plain,
    /// `base.tar[.gz|.zst|.lz4]` plus tablespace and `pg_wal` tars (`-Ft`).
    Tar { base: PathBuf },
}

impl BaseBackupConfig {
    /// Checks what can be checked before a run: the locations parse (and an object-store client
    /// can be built for them), and the decryption key loads.
    pub fn validate(&self) -> Result<()> {
        Location::parse(&self.path, &self.storage)?;
        if let Some(w) = &self.wal_archive {
            Location::parse(w, &self.storage)?;
        }
        if let Some(d) = &self.decrypt {
            d.prepare()?;
        }
        Ok(())
    }
}

impl BaseBackupSource {
    /// A source over `cfg`.
    pub fn new(cfg: BaseBackupConfig) -> Self {
        Self { cfg }
    }

    fn err(&self, message: String) -> Error {
        Error::Source { source_kind: "basebackup", message, source: None }
    }

    /// The folder of backup `id` under the local `root`.
    fn backup_dir(root: &Path, id: &str) -> PathBuf {
        if detect(root).is_some() {
            root.to_path_buf()
        } else {
            root.join(id)
        }
    }
}

/// Recognises a backup folder.
fn detect(dir: &Path) -> Option<Layout> {
    if dir.join("backup_label").is_file() || dir.join("PG_VERSION").is_file() {
        return Some(Layout::Plain);
    }
    for c in ["", ".gz", ".zst", ".lz4"] {
        for e in ENCRYPTED_SUFFIXES {
            let p = dir.join(format!("base.tar{c}{e}"));
            if p.is_file() {
                return Some(Layout::Tar { base: p });
            }
        }
    }
    None
}

/// Endings of encrypted files (`.age`, OpenPGP); `""` for plain files.
const ENCRYPTED_SUFFIXES: [&str; 5] = ["", ".age", ".gpg", ".pgp", ".asc"];

/// Recognises a backup from the names of the files in its folder (object storage):
/// the name of its `base.tar*` for tar format, `""` for plain format.
fn detect_names<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut plain = false;
    for n in names {
        let bare = ENCRYPTED_SUFFIXES.iter().filter(|e| !e.is_empty()).find_map(|e| n.strip_suffix(e)).unwrap_or(n);
        let stem = Compression::strip(bare);
        if stem == "base.tar" {
            return Some(n.to_string());
        }
        plain |= stem == "backup_label" || stem == "PG_VERSION";
    }
    plain.then(String::new)
}

/// Parsed `backup_label`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupLabel {
    /// The WAL file of START WAL LOCATION (`000000010000000000000002`).
    pub start_wal_file: Option<String>,
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
                b.start_wal_file = v
                    .split_once("(file ")
                    .and_then(|(_, f)| f.split(')').next())
                    .map(|f| f.trim().to_string())
                    .filter(|f| f.len() == 24);
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
fn read_label(dir: &Path, layout: &Layout, decrypt: Option<&Decryptor>) -> Result<(Option<String>, Option<String>)> {
    match layout {
        Layout::Plain => {
            // Read without following a link and at most 1 MiB: the backup is untrusted.
            let text = safefs::read_text(&dir.join("backup_label"), safefs::LABEL_MAX)?;
            let owner = fs::metadata(dir.join("PG_VERSION"))
                .ok()
                .and_then(|m| nix::unistd::User::from_uid(m.uid().into()).ok().flatten())
                .map(|u| u.name);
            Ok((text, owner))
        }
        Layout::Tar { base } => label_from_tar(&BackupFile::Local(base.clone()), decrypt),
    }
}

/// `backup_label` and its owner from the first entries of a `base.tar*` (local or remote).
/// Remote files are read only as far as their first MiB (pg_basebackup writes `backup_label`
/// first); a label further in is not looked for.
fn label_from_tar(base: &BackupFile, decrypt: Option<&Decryptor>) -> Result<(Option<String>, Option<String>)> {
    let base = base.head(1 << 20);
    let (reader, _) = base.open(decrypt, None, tokio_util::sync::CancellationToken::new())?;
    match archive::read_tar_member_from(reader, &base.display(), "backup_label", 1000) {
        Ok(Some((text, user))) => Ok((Some(text), user)),
        Ok(None) => Ok((None, None)),
        // The head ended inside the archive: no label near the start.
        Err(Error::BackupDefect { .. }) if base.is_partial() => Ok((None, None)),
        Err(e) => Err(e),
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
    /// [`Self::info`], or for a damaged backup an entry saying so: it still shows up (and
    /// fails when chosen).
    fn info_or_unreadable(&self, id: &str, dir: &Path, layout: &Layout, decrypt: Option<&Decryptor>) -> BackupInfo {
        self.info(id, dir, layout, decrypt).unwrap_or_else(|e| BackupInfo {
            id: id.to_string(),
            taken_at: fs::metadata(dir).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from),
            size_bytes: Some(dir_size(dir)),
            kind: format!("unreadable: {e}"),
            location: format!("basebackup:{}", dir.display()),
            pg_major: None,
            label: None,
            timeline: None,
        })
    }

    fn info(&self, id: &str, dir: &Path, layout: &Layout, decrypt: Option<&Decryptor>) -> Result<BackupInfo> {
        // With a wrong key the backup still lists (by file time) and the fetch phase says why.
        let (label_text, _) = match read_label(dir, layout, decrypt) {
            Err(Error::Decryption { .. }) => (None, None),
            r => r?,
        };
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
                tar_kind(&n, decrypt)
            }
        };
        let pg_major = safefs::read_text(&dir.join("PG_VERSION"), safefs::SMALL_MAX)
            .ok()
            .flatten()
            .and_then(|v| v.trim().parse().ok());
        Ok(BackupInfo {
            id: id.to_string(),
            taken_at,
            size_bytes: Some(dir_size(dir)),
            kind,
            location: format!("basebackup:{}", dir.display()),
            pg_major,
            timeline: label.start_wal_file.as_deref().and_then(crate::source::timeline_of_segment),
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

    async fn list(&self, ctx: &RunContext) -> Result<Vec<BackupInfo>> {
        let decrypt = self.decryptor()?;
        let root = match Location::parse(&self.cfg.path, &self.cfg.storage)? {
            Location::Local(p) => p,
            Location::Remote(r) => return self.list_remote(ctx, r, decrypt).await,
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let decrypt = decrypt.as_ref();
            if !root.is_dir() {
                return Err(this.err(format!("path {} does not exist or is not a folder", root.display())));
            }
            if let Some(layout) = detect(&root) {
                let id = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
                return Ok(vec![this.info_or_unreadable(&id, &root, &layout, decrypt)]);
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
                    out.push(this.info_or_unreadable(&id, &dir, &layout, decrypt));
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
        let decrypt = self.decryptor()?;
        let (origin, owner, bytes, label) = match Location::parse(&self.cfg.path, &self.cfg.storage)? {
            Location::Local(root) => {
                let dir = Self::backup_dir(&root, &backup.id);
                let layout =
                    detect(&dir).ok_or_else(|| Error::defect(format!("{} no longer holds a backup", dir.display())))?;
                let (label, owner) = read_label(&dir, &layout, decrypt.as_ref())?;
                let bytes = match &layout {
                    Layout::Plain => copy_plain(ctx, &dir, req).await?,
                    Layout::Tar { base } => extract_tars(ctx, &dir, base, req, decrypt.as_ref()).await?,
                };
                (dir, owner, bytes, label)
            }
            Location::Remote(r) => {
                let (owner, bytes) = self.fetch_remote(ctx, &r, backup, req, decrypt.clone()).await?;
                let label = safefs::read_text(&req.data_dir.join("backup_label"), safefs::LABEL_MAX)?;
                (PathBuf::from(backup.location.trim_start_matches("basebackup:")), owner, bytes, label)
            }
        };
        let data = &req.data_dir;
        let (pg_major, backup_end_lsn) = check_physical(data, &origin)?;
        datadir::check_tablespaces(data, data.parent().unwrap_or(data))?;
        let start_file = label.as_deref().map(BackupLabel::parse).and_then(|l| l.start_wal_file);
        let (wal, archive) = match &self.cfg.wal_archive {
            None => (WalSupply::SelfContained, None),
            Some(a) => {
                let (local, shown) = match Location::parse(a, &self.cfg.storage)? {
                    Location::Local(p) => {
                        let shown = p.display().to_string();
                        let files = encrypted_wal_files(&p, decrypt.as_ref())?;
                        if files.is_empty() {
                            (p.clone(), shown)
                        } else {
                            // Encrypted segments are decrypted into scratch space up front, as
                            // for object storage; the restore_command then serves plain files.
                            let dir = req.scratch_dir.join("wal-archive");
                            prefetch_wal(ctx, &shown, files, start_file.as_deref(), &dir, decrypt.clone(), 4).await?;
                            (dir, shown)
                        }
                    }
                    Location::Remote(r) => {
                        let dir = req.scratch_dir.join("wal-archive");
                        let files = r
                            .list_all("")
                            .await?
                            .into_iter()
                            .filter(|o| !o.rel.contains('/'))
                            .map(|o| BackupFile::Remote(r.clone(), o))
                            .collect();
                        let shown = r.url("");
                        prefetch_wal(ctx, &shown, files, start_file.as_deref(), &dir, decrypt.clone(), r.parallel())
                            .await?;
                        (dir, shown)
                    }
                };
                let archive = WalArchive::scan(&local)?;
                let command = archive.write_restore_command(&req.scratch_dir)?;
                // The runner turns the listing into where recovery must get to, following the
                // timeline recovery follows.
                let contents = crate::wal_archive::ArchiveContents {
                    described: format!("the WAL archive {shown}"),
                    ..archive.contents
                };
                (WalSupply::RestoreCommand { command, readable_paths: vec![local] }, Some(contents))
            }
        };
        let mut fetched = FetchedBackup::new(data.clone(), pg_major, wal);
        fetched.backup_end_lsn = backup_end_lsn;
        fetched.archive = archive;
        fetched.superuser_hints = owner.into_iter().collect();
        fetched.bytes_restored = bytes;
        fetched.recovery_target = self.cfg.recovery_target.clone();
        fetched.recovery_target_timeline = self.cfg.recovery_target_timeline;
        Ok(fetched)
    }
}

/// Checks a restored physical data directory before start: `backup_label` present (without it
/// PostgreSQL would start from the wrong checkpoint), `PG_VERSION` readable. Returns the major
/// version and the backup's end LSN from its `backup_manifest` when there is one. `origin`
/// names the backup in messages.
pub fn check_physical(data: &Path, origin: &Path) -> Result<(u32, Option<Lsn>)> {
    datadir::refuse_irregular_control_files(data)?;
    if !safefs::is_regular(&data.join("backup_label")) {
        return Err(Error::defect(format!(
            "{}: backup_label is missing; without it PostgreSQL would start from the wrong checkpoint and silently corrupt the copy",
            origin.display()
        )));
    }
    let pg_major: u32 = safefs::read_text(&data.join("PG_VERSION"), safefs::SMALL_MAX)?
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
    let f = match safefs::open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading backup manifest", path, e)),
    };
    if f.metadata().map(|m| m.len()).unwrap_or(0) > safefs::MANIFEST_MAX {
        return Err(Error::defect(format!(
            "{} is larger than {}; refusing to read it",
            path.display(),
            safefs::human_bytes(safefs::MANIFEST_MAX)
        )));
    }
    let capped = std::io::Read::take(std::io::BufReader::new(f), safefs::MANIFEST_MAX);
    let m: Manifest = serde_json::from_reader(capped)
        .map_err(|e| Error::defect(format!("{} is not a valid backup manifest: {e}", path.display())))?;
    Ok(m.wal_ranges.last().and_then(|r| r.end.parse().ok()))
}

/// Copies a plain-format backup (the backup is never modified; the server writes into the
/// copy). Links are never copied as links when they lead out: a `pg_wal` link (`pg_basebackup
/// --waldir`) becomes a folder with a copy of the WAL, each `pg_tblspc/<oid>` link a copy of
/// the tablespace's `PG_*` folder under `tablespace_dir`, linked from the copy; any other link
/// out is refused for the files that describe the backup and left out otherwise.
async fn copy_plain(ctx: &RunContext, src: &Path, req: &FetchRequest) -> Result<u64> {
    let total = dir_size(src) + linked_sizes(src);
    if let Some(work) = req.data_dir.parent() {
        crate::workdir::ensure_free_space(work, total, &format!("the backup {}", src.display()))?;
    }
    ctx.progress.begin(&format!("copying {}", src.display()), Some(total));
    let (src, req2, progress) = (src.to_path_buf(), req.clone(), ctx.progress.clone());
    let cancel = ctx.cancel.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut bytes = 0;
        let mut out_links = Vec::new();
        let mut copy =
            CopyState { bytes: &mut bytes, progress: &*progress, cancel: &cancel, out_links: &mut out_links };
        copy.tree(&src, &req2.data_dir, Path::new(""))?;
        for (rel, target) in out_links {
            let link = req2.data_dir.join(&rel);
            let abs = |base: &Path| if target.is_relative() { base.join(&target) } else { target.clone() };
            if rel == Path::new("pg_wal") {
                // Linked as in the backup for a moment, then replaced by a copy (never written).
                std::os::unix::fs::symlink(abs(&src), &link).map_err(|e| Error::io("linking", &link, e))?;
                let work = req2.data_dir.parent().unwrap_or(&req2.data_dir);
                datadir::materialize_wal(&req2.data_dir, work)?;
            } else if rel.parent() == Some(Path::new("pg_tblspc")) {
                let oid = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let dest = req2.tablespace_dir.join(&oid);
                let mut copy =
                    CopyState { bytes: &mut bytes, progress: &*progress, cancel: &cancel, out_links: &mut Vec::new() };
                copy_tablespace(&oid, &abs(&src.join("pg_tblspc")), &dest, &mut copy)?;
                std::os::unix::fs::symlink(&dest, &link).map_err(|er| Error::io("linking tablespace", &link, er))?;
            } else if datadir::is_control_file(&rel) {
                return Err(Error::defect(format!(
                    "{} in the backup {} is a symbolic link that leads out of the backup; restorecheck refuses to \
                     follow it (it could point anywhere on this host), so the backup cannot be checked",
                    rel.display(),
                    src.display()
                )));
            } else {
                tracing::warn!("{}: not copying {}, a symbolic link out of the backup", src.display(), rel.display());
            }
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| Error::defect(format!("copy task failed: {e}")))?;
    ctx.progress.end();
    r
}

/// Bytes behind the `pg_wal` and `pg_tblspc/<oid>` links of a plain backup (`dir_size` does
/// not follow links), counting only what [`copy_plain`] copies from there: the WAL folder's
/// own files, a tablespace's `PG_*` folders. A link to `/` costs one directory listing.
fn linked_sizes(src: &Path) -> u64 {
    let target = |l: &Path| {
        fs::symlink_metadata(l).is_ok_and(|m| m.file_type().is_symlink()).then(|| fs::canonicalize(l).ok()).flatten()
    };
    let listing = |d: &Path| fs::read_dir(d).map(|rd| rd.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let mut n = 0;
    if let Some(wal) = target(&src.join("pg_wal")) {
        n += listing(&wal)
            .iter()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum::<u64>();
    }
    for link in listing(&src.join("pg_tblspc")) {
        if let Some(t) = target(&link.path()) {
            n += listing(&t)
                .iter()
                .filter(|e| e.file_name().to_string_lossy().starts_with("PG_"))
                .map(|e| dir_size(&e.path()))
                .sum::<u64>();
        }
    }
    n
}

/// Copies the tablespace `oid` of a plain backup from `target` (where its `pg_tblspc` link
/// leads) to `dest`: only its `PG_<version>_<catversion>` folders, so a link to `/etc` or
/// `/root` copies nothing of them. A link to anything else is a defect.
fn copy_tablespace(oid: &str, target: &Path, dest: &Path, copy: &mut CopyState<'_>) -> Result<()> {
    if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::defect(format!("pg_tblspc/{oid:?} in the backup is not a tablespace OID (a number)")));
    }
    let folders: Vec<fs::DirEntry> = fs::read_dir(target)
        .map_err(|_| {
            Error::defect(format!("tablespace {oid} points to {}, which does not exist here", target.display()))
        })?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("PG_") && e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    if folders.is_empty() {
        return Err(Error::defect(format!(
            "tablespace {oid} points to {}, which holds no PG_<version>_<catversion> folder: not a tablespace",
            target.display()
        )));
    }
    for f in folders {
        copy.tree(&f.path(), &dest.join(f.file_name()), Path::new(""))?;
    }
    Ok(())
}

/// One copy of a folder tree: bytes copied, progress, cancellation, and the links that lead out
/// (relative path in the tree, link target), which are not created.
struct CopyState<'a> {
    bytes: &'a mut u64,
    progress: &'a dyn crate::context::Progress,
    cancel: &'a tokio_util::sync::CancellationToken,
    out_links: &'a mut Vec<(PathBuf, PathBuf)>,
}

impl CopyState<'_> {
    fn tree(&mut self, src: &Path, dst: &Path, rel: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
        }
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dst).map_err(|e| Error::io("creating", dst, e))?;
        for entry in fs::read_dir(src).map_err(|e| Error::io("listing backup", src, e))? {
            let entry = entry.map_err(|e| Error::io("listing backup", src, e))?;
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
            }
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let rel = rel.join(entry.file_name());
            let ft = entry.file_type().map_err(|e| Error::io("reading", &from, e))?;
            if ft.is_symlink() {
                let t = fs::read_link(&from).map_err(|e| Error::io("reading link", &from, e))?;
                if safefs::link_stays_below(&t) {
                    std::os::unix::fs::symlink(t, &to).map_err(|e| Error::io("creating link", &to, e))?;
                } else {
                    self.out_links.push((rel, t));
                }
            } else if ft.is_dir() {
                self.tree(&from, &to, &rel)?;
            } else if ft.is_file() {
                let mut r = safefs::open_nofollow(&from).map_err(|e| Error::io("opening backup file", &from, e))?;
                let perm = r.metadata().map_err(|e| Error::io("reading", &from, e))?.permissions();
                let mut w = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&to)
                    .map_err(|e| Error::io("creating", &to, e))?;
                let n =
                    std::io::copy(&mut r, &mut w).map_err(|e| archive::read_error(&from.display().to_string(), e))?;
                fs::set_permissions(&to, perm).map_err(|e| Error::io("setting mode", &to, e))?;
                *self.bytes += n;
                self.progress.advance(n);
            }
        }
        Ok(())
    }
}

/// Extracts `base.tar*`, every `<oid>.tar*` (tablespaces) and `pg_wal.tar*`, in parallel, then
/// points `tablespace_map` at the extracted tablespaces.
async fn extract_tars(
    ctx: &RunContext,
    dir: &Path,
    _base: &Path,
    req: &FetchRequest,
    decrypt: Option<&Decryptor>,
) -> Result<u64> {
    let files: Vec<BackupFile> = fs::read_dir(dir)
        .map_err(|e| Error::io("listing backup", dir, e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| BackupFile::Local(e.path()))
        .collect();
    extract_backup_files(ctx, &dir.display().to_string(), files, req, decrypt, 8).await
}

/// Streams every tar of a tar-format backup (`base.tar*`, tablespace `<oid>.tar*`,
/// `pg_wal.tar*`; any of them encrypted) into place, `parallel` at a time, then points
/// `tablespace_map` at the extracted tablespaces and places `backup_manifest`.
async fn extract_backup_files(
    ctx: &RunContext,
    shown: &str,
    files: Vec<BackupFile>,
    req: &FetchRequest,
    decrypt: Option<&Decryptor>,
    parallel: usize,
) -> Result<u64> {
    use std::os::unix::fs::DirBuilderExt;
    let mut jobs: Vec<(BackupFile, PathBuf)> = Vec::new();
    let mut tablespaces = Vec::new();
    let mut manifest = None;
    for f in files {
        let name = f.name();
        let bare = storage::plain_name(&name, decrypt);
        let stem = Compression::strip(bare);
        if stem == "backup_manifest" {
            manifest = Some(f);
            continue;
        }
        let Some(stem) = stem.strip_suffix(".tar") else { continue };
        if stem == "base" {
            jobs.push((f, req.data_dir.clone()));
        } else if stem == "pg_wal" {
            jobs.push((f, req.data_dir.join("pg_wal")));
        } else if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
            let dest = req.tablespace_dir.join(stem);
            tablespaces.push((stem.to_string(), dest.clone()));
            jobs.push((f, dest));
        }
    }
    if jobs.len() > 1 {
        // The biggest first, so the longest download starts at once.
        jobs.sort_by_key(|(f, _)| std::cmp::Reverse(f.size()));
    }
    let total: u64 = jobs.iter().map(|(f, _)| f.size()).sum();
    // The archives' size: their content when uncompressed, a lower bound otherwise.
    if let Some(work) = req.data_dir.parent() {
        crate::workdir::ensure_free_space(work, total, &format!("the backup {shown}"))?;
    }
    ctx.progress.begin(&format!("extracting {shown}"), Some(total));
    let mut tasks: Vec<Box<dyn FnOnce() -> Result<u64> + Send>> = Vec::new();
    for (file, dest) in jobs {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dest).map_err(|e| Error::io("creating", &dest, e))?;
        let progress = Some(ctx.progress.clone());
        let cancel = ctx.cancel.clone();
        let decrypt = decrypt.cloned();
        tasks.push(Box::new(move || {
            let (reader, _) = file.open(decrypt.as_ref(), progress, cancel.clone())?;
            Ok(archive::extract_tar_from(reader, &file.display(), &dest, Some(cancel))?.bytes)
        }));
    }
    let bytes = storage::run_parallel(tasks, parallel, &ctx.cancel).await;
    ctx.progress.end();
    let bytes: u64 = bytes?.into_iter().sum();
    rewrite_tablespace_map(&req.data_dir, &tablespaces)?;
    if let Some(m) = manifest {
        let to = req.data_dir.join("backup_manifest");
        // Whatever base.tar put there (a link, say) is replaced, never written through.
        if safefs::present(&to) && fs::symlink_metadata(&to).is_ok_and(|md| !md.is_dir()) {
            fs::remove_file(&to).map_err(|e| Error::io("replacing", &to, e))?;
        }
        let decrypt = decrypt.cloned();
        let cancel = ctx.cancel.clone();
        tokio::task::spawn_blocking(move || m.save_to(&to, decrypt.as_ref(), None, cancel))
            .await
            .map_err(|e| Error::defect(format!("copying backup_manifest failed: {e}")))??;
    }
    Ok(bytes)
}

/// The files of a local WAL archive folder, when any of them is encrypted in the format
/// `decrypt` handles (`000000010000000000000003.age`, `….gz.age`); an empty list otherwise.
fn encrypted_wal_files(dir: &Path, decrypt: Option<&Decryptor>) -> Result<Vec<BackupFile>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::Source {
        source_kind: "basebackup",
        message: format!("cannot read wal_archive {}: {e}", dir.display()),
        source: None,
    })?;
    let files: Vec<(PathBuf, String)> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
        .collect();
    check_wal_decryptable(files.iter().map(|(_, n)| n.as_str()), decrypt, &dir.display().to_string())?;
    let Some(d) = decrypt else { return Ok(Vec::new()) };
    Ok(if files.iter().any(|(_, n)| d.strip(n).is_some()) {
        files.into_iter().map(|(p, _)| BackupFile::Local(p)).collect()
    } else {
        Vec::new()
    })
}

/// A WAL archive with encrypted segments the configured decryption does not handle (none is
/// configured, or the other kind) would look empty to recovery, which would then end early and
/// pass on old data: a configuration error instead.
fn check_wal_decryptable<'a>(
    names: impl Iterator<Item = &'a str>,
    decrypt: Option<&Decryptor>,
    shown: &str,
) -> Result<()> {
    for n in names {
        if decrypt.is_some_and(|d| d.strip(n).is_some()) {
            continue;
        }
        let Some(bare) = ENCRYPTED_SUFFIXES.iter().filter(|e| !e.is_empty()).find_map(|e| n.strip_suffix(e)) else {
            continue;
        };
        let stem = Compression::strip(bare);
        if stem.len() == 24 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
            let why = match decrypt {
                None => "the source has no decrypt setting".to_string(),
                Some(d) => format!("the source's decrypt handles only {} files", d.suffixes().join("/")),
            };
            return Err(Error::config(format!(
                "wal_archive {shown} holds encrypted WAL segments ({n}) but {why}; set decrypt = {{ kind = \"age\", … }} \
                 or {{ kind = \"gpg\", … }} on the source to match them"
            )));
        }
    }
    Ok(())
}

/// Copies a WAL archive (`files`: the objects of an object-storage folder, or the files of a
/// local one holding encrypted segments; `shown` names it) into `dir`, decrypted and
/// decompressed: every segment from the backup's first one (`start`, e.g.
/// `000000010000000000000002`) on, on any timeline, and every timeline history file. Recovery
/// then reads them locally.
async fn prefetch_wal(
    ctx: &RunContext,
    shown: &str,
    files: Vec<BackupFile>,
    start: Option<&str>,
    dir: &Path,
    decrypt: Option<Decryptor>,
    parallel: usize,
) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io("creating", dir, e))?;
    let names: Vec<String> = files.iter().map(BackupFile::name).collect();
    check_wal_decryptable(names.iter().map(String::as_str), decrypt.as_ref(), shown)?;
    let start_key = start.filter(|s| s.len() == 24).map(|s| s[8..24].to_ascii_uppercase());
    let mut wanted: Vec<(BackupFile, String)> = Vec::new();
    for f in files {
        let name = f.name();
        let bare = storage::plain_name(&name, decrypt.as_ref());
        let bare = Compression::strip(bare).to_string();
        let is_segment = bare.len() == 24 && bare.bytes().all(|b| b.is_ascii_hexdigit());
        let keep = if is_segment {
            start_key.as_ref().is_none_or(|k| bare[8..24].to_ascii_uppercase() >= *k)
        } else {
            bare.ends_with(".history")
        };
        if keep {
            wanted.push((f, bare));
        }
    }
    let total: u64 = wanted.iter().map(|(f, _)| f.size()).sum();
    ctx.progress.begin(&format!("fetching {} WAL files from {shown}", wanted.len()), Some(total));
    let mut tasks: Vec<Box<dyn FnOnce() -> Result<u64> + Send>> = Vec::new();
    for (file, bare) in wanted {
        let (dest, decrypt, cancel) = (dir.join(bare), decrypt.clone(), ctx.cancel.clone());
        let progress = Some(ctx.progress.clone());
        tasks.push(Box::new(move || file.save_to(&dest, decrypt.as_ref(), progress, cancel)));
    }
    let r = storage::run_parallel(tasks, parallel, &ctx.cancel).await;
    ctx.progress.end();
    r.map(|_| ())
}

impl BaseBackupSource {
    fn decryptor(&self) -> Result<Option<Decryptor>> {
        self.cfg.decrypt.as_ref().map(DecryptConfig::prepare).transpose()
    }

    /// Lists backups under an object-storage prefix: the prefix itself when it holds one, else
    /// one backup per sub-folder.
    async fn list_remote(
        &self,
        ctx: &RunContext,
        remote: Arc<Remote>,
        decrypt: Option<Decryptor>,
    ) -> Result<Vec<BackupInfo>> {
        let all = remote.list_all("").await?;
        if all.is_empty() {
            return Err(self.err(format!("{} holds no objects (wrong path, or no list permission?)", remote.url(""))));
        }
        let top: Vec<RemoteObject> = all.iter().filter(|o| !o.rel.contains('/')).cloned().collect();
        let mut groups: Vec<(String, String, Vec<RemoteObject>)> = Vec::new(); // (id, rel dir, files)
        if detect_names(top.iter().map(|o| o.rel.as_str())).is_some() {
            let url = remote.url("");
            let id = url.rsplit('/').next().unwrap_or("backup").to_string();
            groups.push((id, String::new(), all));
        } else {
            for (dir, files) in storage::group_by_folder(all) {
                groups.push((dir.clone(), dir, files));
            }
        }
        let mut out = Vec::new();
        for (id, dir, files) in groups {
            let names: Vec<&str> = files.iter().filter(|o| !o.rel.contains('/')).map(|o| o.rel.as_str()).collect();
            let Some(base) = detect_names(names.into_iter()) else { continue };
            let size: u64 = files.iter().map(|o| o.size).sum();
            let newest = files.iter().map(|o| o.modified).max();
            let label_obj = if base.is_empty() {
                files.iter().find(|o| storage::plain_name(&o.rel, decrypt.as_ref()) == "backup_label").cloned()
            } else {
                files.iter().find(|o| o.rel == base).cloned()
            };
            let (r2, d2, tar) = (remote.clone(), decrypt.clone(), !base.is_empty());
            let cancel = ctx.cancel.clone();
            let label = match label_obj {
                None => Ok((None, None)),
                Some(o) => tokio::task::spawn_blocking(move || {
                    let f = BackupFile::Remote(r2, o);
                    if tar {
                        label_from_tar(&f, d2.as_ref())
                    } else {
                        let (rd, _) = f.open(d2.as_ref(), None, cancel)?;
                        let text = safefs::read_capped(rd, safefs::LABEL_MAX, &f.display())?;
                        Ok((Some(text), None))
                    }
                })
                .await
                .map_err(|e| self.err(format!("reading backup_label failed: {e}")))?,
            };
            let location = format!("basebackup:{}", remote.url(&dir));
            match label {
                Ok((text, _)) => {
                    let parsed = text.as_deref().map(BackupLabel::parse).unwrap_or_default();
                    out.push(BackupInfo {
                        id,
                        taken_at: parsed.start_time.or(newest),
                        size_bytes: Some(size),
                        kind: if base.is_empty() { "plain".into() } else { tar_kind(&base, decrypt.as_ref()) },
                        location,
                        pg_major: None,
                        timeline: parsed.start_wal_file.as_deref().and_then(crate::source::timeline_of_segment),
                        label: parsed.label,
                    });
                }
                // Lost access is an error of the run; a damaged backup still shows up (and
                // fails when chosen).
                Err(e @ Error::Storage { .. }) => return Err(e),
                // A wrong key: list the backup by its file times; fetching it says why it fails.
                Err(Error::Decryption { .. }) => out.push(BackupInfo {
                    id,
                    taken_at: newest,
                    size_bytes: Some(size),
                    kind: if base.is_empty() { "plain".into() } else { tar_kind(&base, decrypt.as_ref()) },
                    location,
                    pg_major: None,
                    label: None,
                    timeline: None,
                }),
                Err(e) => out.push(BackupInfo {
                    id,
                    taken_at: newest,
                    size_bytes: Some(size),
                    kind: format!("unreadable: {e}"),
                    location,
                    pg_major: None,
                    label: None,
                    timeline: None,
                }),
            }
        }
        if out.is_empty() {
            return Err(self.err(format!(
                "no backup found under {}: expected base.tar* (tar format) or backup_label (plain format) there or one folder down",
                remote.url("")
            )));
        }
        crate::source::sort_newest_first(&mut out);
        Ok(out)
    }

    /// Restores a backup from object storage into `req.data_dir`: tar format streams each tar
    /// from storage through decryption and decompression straight into extraction; plain format
    /// downloads every file. Returns the superuser hint and the bytes written.
    async fn fetch_remote(
        &self,
        ctx: &RunContext,
        remote: &Arc<Remote>,
        backup: &BackupInfo,
        req: &FetchRequest,
        decrypt: Option<Decryptor>,
    ) -> Result<(Option<String>, u64)> {
        let all = remote.list_all("").await?;
        let top_is_backup = detect_names(all.iter().filter(|o| !o.rel.contains('/')).map(|o| o.rel.as_str())).is_some();
        let (dir, files) = if top_is_backup {
            (String::new(), all)
        } else {
            let mut groups = storage::group_by_folder(all);
            let files = groups
                .remove(&backup.id)
                .ok_or_else(|| Error::defect(format!("{} no longer holds backup {}", remote.url(""), backup.id)))?;
            (backup.id.clone(), files)
        };
        let shown = remote.url(&dir);
        let base = detect_names(files.iter().filter(|o| !o.rel.contains('/')).map(|o| o.rel.as_str()))
            .ok_or_else(|| Error::defect(format!("{shown} no longer holds a backup")))?;
        let prefixed = |o: &RemoteObject| {
            let mut o = o.clone();
            if !dir.is_empty() {
                o.rel = format!("{dir}/{}", o.rel);
            }
            o
        };
        if !base.is_empty() {
            let tars: Vec<BackupFile> = files
                .iter()
                .filter(|o| !o.rel.contains('/'))
                .map(|o| BackupFile::Remote(remote.clone(), prefixed(o)))
                .collect();
            let base_file = tars.iter().find(|f| f.name() == base).cloned();
            let owner = match base_file {
                Some(f) => {
                    let d2 = decrypt.clone();
                    tokio::task::spawn_blocking(move || label_from_tar(&f, d2.as_ref()))
                        .await
                        .map_err(|e| self.err(format!("reading backup_label failed: {e}")))??
                        .1
                }
                None => None,
            };
            let bytes = extract_backup_files(ctx, &shown, tars, req, decrypt.as_ref(), remote.parallel()).await?;
            return Ok((owner, bytes));
        }
        // Plain format: one object per file. Object stores have no empty folders, so the
        // folders PostgreSQL expects are made afterwards.
        use std::os::unix::fs::DirBuilderExt;
        let total: u64 = files.iter().map(|o| o.size).sum();
        ctx.progress.begin(&format!("downloading {shown}"), Some(total));
        let mut tasks: Vec<Box<dyn FnOnce() -> Result<u64> + Send>> = Vec::new();
        for o in &files {
            let bare = match o.rel.rsplit_once('/') {
                Some((d, n)) => format!("{d}/{}", storage::plain_name(n, decrypt.as_ref())),
                None => storage::plain_name(&o.rel, decrypt.as_ref()).to_string(),
            };
            if bare.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(Error::defect(format!("{shown}: object name {:?} escapes the backup", o.rel)));
            }
            let dest = req.data_dir.join(&bare);
            if let Some(parent) = dest.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| Error::io("creating", parent, e))?;
            }
            let file = BackupFile::Remote(remote.clone(), prefixed(o));
            let (decrypt, cancel, progress) = (decrypt.clone(), ctx.cancel.clone(), Some(ctx.progress.clone()));
            tasks.push(Box::new(move || file.save_decrypted_to(&dest, decrypt.as_ref(), progress, cancel)));
        }
        let r = storage::run_parallel(tasks, remote.parallel(), &ctx.cancel).await;
        ctx.progress.end();
        let bytes: u64 = r?.into_iter().sum();
        for d in PLAIN_EMPTY_DIRS {
            let p = req.data_dir.join(d);
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&p).map_err(|e| Error::io("creating", &p, e))?;
        }
        Ok((None, bytes))
    }
}

/// Folders of a data directory that may be empty (and so are absent from object storage).
const PLAIN_EMPTY_DIRS: [&str; 17] = [
    "global",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_logical/mappings",
    "pg_logical/snapshots",
    "pg_multixact/members",
    "pg_multixact/offsets",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_twophase",
    "pg_wal/archive_status",
];

/// `tar.gz`, `tar.zst+age` …: the kind shown for a tar-format backup whose base is `name`.
fn tar_kind(name: &str, decrypt: Option<&Decryptor>) -> String {
    let bare = storage::plain_name(name, decrypt);
    format!("tar{}{}", Compression::from_name(bare).suffix(), storage::encryption_tag(name, decrypt))
}

/// Rewrites `tablespace_map` so each tablespace points at its extracted copy instead of the
/// production path; a tablespace listed there without its tar is a defect.
fn rewrite_tablespace_map(data: &Path, extracted: &[(String, PathBuf)]) -> Result<()> {
    let map = data.join("tablespace_map");
    let Some(text) = safefs::read_text(&map, safefs::LABEL_MAX)? else { return Ok(()) };
    let mut out = String::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (oid, path) = line.split_once(' ').unwrap_or((line, ""));
        if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::defect(format!(
                "tablespace_map line {}: {oid:?} is not a tablespace OID (a number); refusing the backup",
                n + 1
            )));
        }
        if safefs::plain_absolute(Path::new(path)).is_none() {
            return Err(Error::defect(format!(
                "tablespace_map line {}: tablespace {oid} has location {path:?}, which is not an absolute path without \
                 `..`; refusing the backup",
                n + 1
            )));
        }
        let dest = extracted.iter().find(|(o, _)| o == oid).map(|(_, d)| d).ok_or_else(|| {
            Error::defect(format!("tablespace {oid} is listed in tablespace_map but {oid}.tar is not in the backup"))
        })?;
        out.push_str(&format!("{oid} {}\n", dest.display()));
    }
    safefs::write_file(&map, out.as_bytes())
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
