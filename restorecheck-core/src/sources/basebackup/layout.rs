//! Recognising a backup's layout: plain (a data directory) or tar (`base.tar*` and friends),
//! from a local folder or from the names of objects in storage, and reading its
//! `backup_label` where that layout keeps it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::archive::{self, Compression};
use crate::decrypt::Decryptor;
use crate::error::{Error, Result};
use crate::safefs;
use crate::storage::{self, BackupFile};

/// How one backup folder is laid out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layout {
    /// A data directory (`-Fp`).
    Plain,
    /// `base.tar[.gz|.zst|.lz4]` plus tablespace and `pg_wal` tars (`-Ft`).
    Tar { base: PathBuf },
}

/// Recognises a backup folder.
pub(super) fn detect(dir: &Path) -> Option<Layout> {
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
pub(super) const ENCRYPTED_SUFFIXES: [&str; 5] = ["", ".age", ".gpg", ".pgp", ".asc"];

/// Recognises a backup from the names of the files in its folder (object storage):
/// the name of its `base.tar*` for tar format, `""` for plain format.
pub(super) fn detect_names<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
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

/// `tar.gz`, `tar.zst+age` …: the kind shown for a tar-format backup whose base is `name`.
pub(super) fn tar_kind(name: &str, decrypt: Option<&Decryptor>) -> String {
    let bare = storage::plain_name(name, decrypt);
    format!("tar{}{}", Compression::from_name(bare).suffix(), storage::encryption_tag(name, decrypt))
}

/// Reads `backup_label` of a backup folder: a file (plain) or the member of `base.tar*`.
/// Also returns the OS user that owned the data (a hint for the superuser name).
pub(super) fn read_label(
    dir: &Path,
    layout: &Layout,
    decrypt: Option<&Decryptor>,
) -> Result<(Option<String>, Option<String>)> {
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
pub(super) fn label_from_tar(
    base: &BackupFile,
    decrypt: Option<&Decryptor>,
) -> Result<(Option<String>, Option<String>)> {
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
