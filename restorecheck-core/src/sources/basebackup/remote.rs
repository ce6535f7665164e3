//! A `basebackup` source's backups in object storage (`s3://`, `gs://`, `az://`): listing
//! them from object names, and restoring one by streaming its tars or downloading the files of
//! a plain-format backup.

use std::fs;
use std::sync::Arc;

use super::extract::{extract_backup_files, Restored};
use super::layout::{detect_names, label_from_tar, tar_kind};
use super::BaseBackupSource;
use crate::context::RunContext;
use crate::decrypt::Decryptor;
use crate::error::{Error, Result};
use crate::postgres::label::BackupLabel;
use crate::safefs;
use crate::source::{BackupInfo, FetchRequest};
use crate::storage::{self, BackupFile, Remote, RemoteObject};

impl BaseBackupSource {
    /// Lists backups under an object-storage prefix: the prefix itself when it holds one, else
    /// one backup per sub-folder.
    pub(super) async fn list_remote(
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
                    kind: format!("unreadable: {}", e.chain()),
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
    pub(super) async fn fetch_remote(
        &self,
        ctx: &RunContext,
        remote: &Arc<Remote>,
        backup: &BackupInfo,
        req: &FetchRequest,
        decrypt: Option<Decryptor>,
    ) -> Result<(Option<String>, Restored)> {
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
            let restored = extract_backup_files(ctx, &shown, tars, req, decrypt.as_ref(), remote.parallel()).await?;
            return Ok((owner, restored));
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
        Ok((None, Restored { bytes, verified: None }))
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
