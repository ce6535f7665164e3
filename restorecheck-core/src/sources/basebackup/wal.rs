//! The WAL archive of a `basebackup` source (`wal_archive`): a local folder recovery reads
//! directly, or, when its segments are encrypted or it lies in object storage, the segments
//! recovery needs copied into scratch space first (decrypted and decompressed).

use std::fs;
use std::path::{Path, PathBuf};

use super::layout::ENCRYPTED_SUFFIXES;
use super::BaseBackupSource;
use crate::archive::Compression;
use crate::context::RunContext;
use crate::decrypt::Decryptor;
use crate::error::{Error, Result};
use crate::source::{FetchRequest, WalSupply};
use crate::storage::{self, BackupFile, Location};
use crate::wal_archive::{ArchiveContents, WalArchive};

impl BaseBackupSource {
    /// Where recovery gets WAL from: the restored backup itself without `wal_archive`, else a
    /// `restore_command` over the archive, with the archive's listing for the runner. `start`
    /// is the backup's first WAL file (from `backup_label`).
    pub(super) async fn wal_supply(
        &self,
        ctx: &RunContext,
        req: &FetchRequest,
        start_file: Option<&str>,
        decrypt: Option<&Decryptor>,
        pg_major: u32,
    ) -> Result<(WalSupply, Option<ArchiveContents>)> {
        let Some(a) = &self.cfg.wal_archive else { return Ok((WalSupply::SelfContained, None)) };
        let (local, shown) = match Location::parse(a, &self.cfg.storage)? {
            Location::Local(p) => {
                let shown = p.display().to_string();
                let files = encrypted_wal_files(&p, decrypt)?;
                if files.is_empty() {
                    (p.clone(), shown)
                } else {
                    // Encrypted segments are decrypted into scratch space up front, as
                    // for object storage; the restore_command then serves plain files.
                    let dir = req.scratch_dir.join("wal-archive");
                    prefetch_wal(ctx, &shown, files, start_file, &dir, decrypt.cloned(), 4).await?;
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
                prefetch_wal(ctx, &shown, files, start_file, &dir, decrypt.cloned(), r.parallel()).await?;
                (dir, shown)
            }
        };
        let archive = WalArchive::scan(&local)?;
        let fetch = archive.write_restore_command(&req.scratch_dir, ctx, pg_major).await?;
        // The runner turns the listing into where recovery must get to, following the
        // timeline recovery follows.
        let contents = ArchiveContents { described: format!("the WAL archive {shown}"), ..archive.contents };
        // `fetch` reads the archive (`local`), which the target makes readable to its server.
        Ok((WalSupply::Fetch(fetch), Some(contents)))
    }
}

/// The files of a local WAL archive folder, when any of them is encrypted in the format
/// `decrypt` handles (`000000010000000000000003.age`, `….gz.age`); an empty list otherwise.
fn encrypted_wal_files(dir: &Path, decrypt: Option<&Decryptor>) -> Result<Vec<BackupFile>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::Source {
        source_kind: "basebackup",
        message: format!("cannot read wal_archive {}", dir.display()),
        source: Some(Box::new(e)),
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
