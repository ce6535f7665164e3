//! A `basebackup` source's backups in a local folder: listing them, and restoring one by
//! copying a plain-format backup (never following links out of it) or extracting a tar-format
//! one.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::extract::{extract_backup_files, Restored};
use super::layout::{detect, read_label, tar_kind, Layout};
use super::BaseBackupSource;
use crate::archive;
use crate::context::RunContext;
use crate::decrypt::Decryptor;
use crate::error::{Error, Result};
use crate::postgres::datadir;
use crate::postgres::label::BackupLabel;
use crate::safefs;
use crate::source::{BackupInfo, FetchRequest};
use crate::storage::BackupFile;

impl BaseBackupSource {
    /// Lists the backups in the local folder `root`: `root` itself when it holds one, else one
    /// backup per subfolder.
    pub(super) async fn list_local(&self, root: PathBuf, decrypt: Option<Decryptor>) -> Result<Vec<BackupInfo>> {
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
}

/// The folder of backup `id` under the local `root`.
fn backup_dir(root: &Path, id: &str) -> PathBuf {
    if detect(root).is_some() {
        root.to_path_buf()
    } else {
        root.join(id)
    }
}

/// Restores backup `id` of the local folder `root` into `req.data_dir`. Returns the backup's
/// folder, the superuser hint (the data's owner), the bytes written and the text of its
/// `backup_label`.
pub(super) async fn fetch(
    ctx: &RunContext,
    root: &Path,
    id: &str,
    req: &FetchRequest,
    decrypt: Option<&Decryptor>,
) -> Result<(PathBuf, Option<String>, Restored, Option<String>)> {
    let dir = backup_dir(root, id);
    let layout = detect(&dir).ok_or_else(|| Error::defect(format!("{} no longer holds a backup", dir.display())))?;
    let (label, owner) = read_label(&dir, &layout, decrypt)?;
    let bytes = match &layout {
        Layout::Plain => Restored { bytes: copy_plain(ctx, &dir, req).await?, verified: None },
        Layout::Tar { base } => extract_tars(ctx, &dir, base, req, decrypt).await?,
    };
    Ok((dir, owner, bytes, label))
}

pub(super) fn dir_size(p: &Path) -> u64 {
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
            kind: format!("unreadable: {}", e.chain()),
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
) -> Result<Restored> {
    let files: Vec<BackupFile> = fs::read_dir(dir)
        .map_err(|e| Error::io("listing backup", dir, e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| BackupFile::Local(e.path()))
        .collect();
    extract_backup_files(ctx, &dir.display().to_string(), files, req, decrypt, 8).await
}
