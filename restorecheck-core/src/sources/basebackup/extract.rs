//! Restoring a tar-format backup, from a local folder or object storage: every tar streamed
//! (decrypted, decompressed) into the data directory or its tablespace folder, then
//! `tablespace_map` pointed at the extracted tablespaces and `backup_manifest` put in place.

use std::fs;
use std::path::{Path, PathBuf};

use crate::archive::{self, Compression};
use crate::context::RunContext;
use crate::decrypt::Decryptor;
use crate::error::{Error, Result};
use crate::postgres::manifest::{Manifest, StreamVerified};
use crate::safefs;
use crate::source::FetchRequest;
use crate::storage::{self, BackupFile};

/// What restoring a backup's files wrote, and what of it was checked in the same stream.
#[derive(Debug, Default)]
pub(super) struct Restored {
    /// Bytes written.
    pub(super) bytes: u64,
    /// What the in-stream `backup_manifest` check verified (tar format with a manifest, when
    /// the check verifies manifests).
    pub(super) verified: Option<StreamVerified>,
}

/// Streams every tar of a tar-format backup (`base.tar*`, tablespace `<oid>.tar*`,
/// `pg_wal.tar*`; any of them encrypted) into place, `parallel` at a time, then points
/// `tablespace_map` at the extracted tablespaces and places `backup_manifest`. With
/// [`FetchRequest::verify_manifest`] and a manifest, every member the manifest lists is checked
/// against its size and checksum while it is written (the first mismatch stops everything).
pub(super) async fn extract_backup_files(
    ctx: &RunContext,
    shown: &str,
    files: Vec<BackupFile>,
    req: &FetchRequest,
    decrypt: Option<&Decryptor>,
    parallel: usize,
) -> Result<Restored> {
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
    // The manifest first (it is small): into the scratch folder, read, and moved into the data
    // dir once everything is extracted.
    let staged = req.scratch_dir.join("backup_manifest");
    let checked = match &manifest {
        Some(m) => {
            let (m, to, decrypt, cancel) = (m.clone(), staged.clone(), decrypt.cloned(), ctx.cancel.clone());
            tokio::task::spawn_blocking(move || m.save_to(&to, decrypt.as_ref(), None, cancel))
                .await
                .map_err(|e| Error::defect(format!("copying backup_manifest failed: {e}")))??;
            if req.verify_manifest {
                Some(std::sync::Arc::new(Manifest::read(&staged)?))
            } else {
                None
            }
        }
        None => None,
    };
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
    let mut tasks: Vec<Box<dyn FnOnce() -> Result<archive::Extracted> + Send>> = Vec::new();
    for (file, dest) in jobs {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dest).map_err(|e| Error::io("creating", &dest, e))?;
        let progress = Some(ctx.progress.clone());
        let cancel = ctx.cancel.clone();
        let decrypt = decrypt.cloned();
        // Members of base.tar are at the data dir's root, those of <oid>.tar under
        // pg_tblspc/<oid>; pg_wal is not in the manifest.
        let prefix = if dest == req.data_dir {
            Some(PathBuf::new())
        } else if dest == req.data_dir.join("pg_wal") {
            None
        } else {
            dest.file_name().map(|oid| Path::new("pg_tblspc").join(oid))
        };
        let manifest = checked.clone().zip(prefix);
        let split = splits(&file, decrypt.as_ref());
        tasks.push(Box::new(move || {
            let verify = manifest.as_ref().map(|(m, prefix)| archive::Verify { manifest: m, prefix: prefix.clone() });
            // Decompression on its own thread, 8 × 1 MiB ahead of extraction.
            let open = |pass: usize| -> Result<Box<dyn std::io::Read + Send>> {
                let progress = if pass == 0 { progress.clone() } else { None };
                let (reader, _) = file.open(decrypt.as_ref(), progress, cancel.clone())?;
                Ok(archive::read_ahead(reader, 1 << 20, 8))
            };
            if split {
                tracing::debug!("{}: extracting in two passes at once", file.display());
                archive::extract_tar_split(&open, &file.display(), &dest, cancel.clone(), verify)
            } else {
                archive::extract_tar_verified(open(0)?, &file.display(), &dest, Some(cancel.clone()), verify)
            }
        }));
    }
    let done = storage::run_parallel(tasks, parallel, &ctx.cancel).await;
    ctx.progress.end();
    let mut restored = Restored::default();
    let mut verified = StreamVerified::default();
    for e in done? {
        restored.bytes += e.bytes;
        verified.add(&e.verified);
    }
    if checked.is_some() {
        restored.verified = Some(verified);
    }
    rewrite_tablespace_map(&req.data_dir, &tablespaces)?;
    if manifest.is_some() {
        let to = req.data_dir.join("backup_manifest");
        // Whatever base.tar put there (a link, say) is replaced, never written through.
        if safefs::present(&to) && fs::symlink_metadata(&to).is_ok_and(|md| !md.is_dir()) {
            fs::remove_file(&to).map_err(|e| Error::io("replacing", &to, e))?;
        }
        fs::rename(&staged, &to).map_err(|e| Error::io("placing backup_manifest", &to, e))?;
    }
    Ok(restored)
}

/// Whether `file` is extracted in two passes at once ([`archive::extract_tar_split`]): a local,
/// unencrypted zstd or lz4 archive of at least 32 MiB on a host with two cores or more. Reading
/// it twice costs little there (zstd and lz4 inflate far faster than the kernel fills the page
/// cache); a gzip stream, a download or a decryption would cost twice.
fn splits(file: &BackupFile, decrypt: Option<&Decryptor>) -> bool {
    let BackupFile::Local(_) = file else { return false };
    let name = file.name();
    if storage::plain_name(&name, decrypt) != name {
        return false;
    }
    matches!(Compression::from_name(&name), Compression::Zstd | Compression::Lz4)
        && file.size() >= 32 << 20
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
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
