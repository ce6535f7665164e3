//! Source `basebackup`: what `pg_basebackup` writes, plain or tar format, optionally with a
//! folder of archived WAL.
//!
//! This file holds the configuration and the orchestration (list, select, fetch); the parts:
//! `layout` recognises a backup (plain or tar) and reads its `backup_label`, `local` lists
//! and copies backups in a local folder, `remote` those in object storage, `extract`
//! unpacks the tars of a tar-format backup (from either), and `wal` supplies the WAL
//! archive to recovery.

mod extract;
mod layout;
mod local;
mod remote;
mod wal;

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::context::RunContext;
use crate::decrypt::{DecryptConfig, Decryptor};
use crate::error::{Error, Result};
use crate::postgres::datadir;
use crate::postgres::label::BackupLabel;
use crate::postgres::physical::check_physical;
use crate::safefs;
use crate::source::{Artifact, BackupInfo, BackupSource, FetchRequest, FetchedBackup};
use crate::storage::{Location, StorageOptions};

/// Options of source `basebackup` (`[check.source] kind = "basebackup"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
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

impl BaseBackupConfig {
    /// Options for the backup(s) at `path`, everything else at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), ..Self::default() }
    }

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

    fn decryptor(&self) -> Result<Option<Decryptor>> {
        self.cfg.decrypt.as_ref().map(DecryptConfig::prepare).transpose()
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
        match Location::parse(&self.cfg.path, &self.cfg.storage)? {
            Location::Local(root) => self.list_local(root, decrypt).await,
            Location::Remote(r) => self.list_remote(ctx, r, decrypt).await,
        }
    }

    fn configured_backup(&self) -> Option<&str> {
        self.cfg.backup.as_deref()
    }

    /// None: no external tool reads the backup. restorecheck copies (or downloads) it into the
    /// work dir itself, and the WAL archive the `restore_command` reads is declared by its
    /// [`WalFetch`](crate::source::WalFetch).
    fn read_only_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    async fn fetch(&self, ctx: &RunContext, backup: &BackupInfo, req: &FetchRequest) -> Result<Artifact> {
        let decrypt = self.decryptor()?;
        let (origin, owner, bytes, label) = match Location::parse(&self.cfg.path, &self.cfg.storage)? {
            Location::Local(root) => local::fetch(ctx, &root, &backup.id, req, decrypt.as_ref()).await?,
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
        let (wal, archive) = self.wal_supply(ctx, req, start_file.as_deref(), decrypt.as_ref(), pg_major).await?;
        let mut fetched = FetchedBackup::new(data.clone(), pg_major, wal);
        fetched.backup_end_lsn = backup_end_lsn;
        fetched.archive = archive;
        fetched.superuser_hints = owner.into_iter().collect();
        fetched.bytes_restored = bytes.bytes;
        fetched.manifest_stream_verified = bytes.verified;
        fetched.recovery_target = req.recovery_target_or(&self.cfg.recovery_target);
        fetched.recovery_target_timeline = self.cfg.recovery_target_timeline;
        Ok(Artifact::Physical(fetched))
    }
}
