//! On-the-fly decryption of backup files (`decrypt = { kind = "age", … }` on a source).
//!
//! A [`DecryptConfig`] is validated and its keys are loaded once by [`DecryptConfig::prepare`];
//! the resulting [`Decryptor`] wraps each encrypted file's bytes in a streaming reader
//! ([`Decryptor::wrap`]). Errors keep three cases apart:
//!
//! - the configured key cannot open the file (wrong identity, wrong passphrase, no key at all):
//!   [`Error::Decryption`], raised by `wrap` itself because the header is read eagerly. The
//!   backup may be perfectly fine, so the check *errors*;
//! - the file is not encrypted in this format at all, or its header is damaged:
//!   [`Error::BackupDefect`], also from `wrap`;
//! - damage found while streaming (an age chunk fails authentication, gpg reports a bad MDC or
//!   a broken compression stream, the file is truncated): an [`io::Error`](std::io::Error) from `read()` that
//!   says the file is damaged; callers map read errors to [`Error::BackupDefect`].
//!
//! Passphrases and key material never appear in messages or in `Debug` output.
//!
//! age files are decrypted in-process with the `age` crate (binary or ASCII-armored); OpenPGP
//! files by the installed `gpg`, which reads the passphrase (if any) from a private FIFO, never
//! from its command line or environment.
//!
//! Both need the `encryption` feature; without it [`DecryptConfig::prepare`] fails with a
//! configuration error naming the feature (the `decrypt` table still parses as usual).

#[cfg(feature = "encryption")]
mod age;
#[cfg(feature = "encryption")]
mod gpg;

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "encryption")]
use ::age::secrecy::SecretString;

use crate::error::{Error, Result};

/// How a source's encrypted files are decrypted.
///
/// `decrypt = { kind = "age", identity_file = "/etc/restorecheck/backup.key" }` on a source, or
/// `{ kind = "age", passphrase_env = "BACKUP_PASSPHRASE" }`, or
/// `{ kind = "gpg", homedir = "/etc/restorecheck/gnupg", passphrase_env = "…" }` (both optional
/// for gpg).
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum DecryptConfig {
    /// age (<https://age-encryption.org>): X25519 identities or a passphrase (scrypt).
    #[non_exhaustive]
    Age {
        /// An identity file as written by `age-keygen` (one or more `AGE-SECRET-KEY-1…` lines,
        /// `#` comments allowed).
        identity_file: Option<PathBuf>,
        /// The name of the environment variable holding the passphrase (not the passphrase).
        passphrase_env: Option<String>,
    },
    /// OpenPGP, decrypted by the installed `gpg`.
    #[non_exhaustive]
    Gpg {
        /// GnuPG home directory with the secret keys (default: gpg's own, `~/.gnupg`).
        homedir: Option<PathBuf>,
        /// The name of the environment variable holding the passphrase of the secret key, or of
        /// a symmetrically encrypted file (`gpg --symmetric`).
        passphrase_env: Option<String>,
    },
}

// Kinds and their options are `#[non_exhaustive]` (adding one never breaks a caller), so code
// outside this crate builds a config with these.
impl DecryptConfig {
    /// age with the identity file `path` (as written by `age-keygen`).
    pub fn age_identity_file(path: impl Into<PathBuf>) -> Self {
        DecryptConfig::Age { identity_file: Some(path.into()), passphrase_env: None }
    }

    /// age with the passphrase held by environment variable `name` (the name, not the passphrase).
    pub fn age_passphrase_env(name: impl Into<String>) -> Self {
        DecryptConfig::Age { identity_file: None, passphrase_env: Some(name.into()) }
    }

    /// OpenPGP with gpg's own home directory and no passphrase.
    pub fn gpg() -> Self {
        DecryptConfig::Gpg { homedir: None, passphrase_env: None }
    }

    /// OpenPGP with the secret keys in GnuPG home directory `dir`.
    pub fn gpg_homedir(dir: impl Into<PathBuf>) -> Self {
        DecryptConfig::Gpg { homedir: Some(dir.into()), passphrase_env: None }
    }

    /// Sets the name of the environment variable holding the passphrase (both kinds; for age,
    /// together with an identity file it is the same error as both keys in TOML).
    #[must_use]
    pub fn passphrase_env(mut self, name: impl Into<String>) -> Self {
        match &mut self {
            DecryptConfig::Age { passphrase_env, .. } | DecryptConfig::Gpg { passphrase_env, .. } => {
                *passphrase_env = Some(name.into());
            }
        }
        self
    }
}

#[cfg(feature = "encryption")]
/// Reads the passphrase from environment variable `name` (validated, never echoed).
fn passphrase_from_env(kind: &str, name: &str) -> Result<SecretString> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(Error::config(format!(
            "decrypt ({kind}): passphrase_env must be the NAME of an environment variable, got an invalid name"
        )));
    }
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Err(Error::config(format!(
            "decrypt ({kind}): environment variable {name} (passphrase_env) is empty; set it to the backup passphrase"
        ))),
        Ok(v) => Ok(SecretString::from(v)),
        Err(std::env::VarError::NotPresent) => Err(Error::config(format!(
            "decrypt ({kind}): environment variable {name} (passphrase_env) is not set; export it with the backup \
             passphrase before running restorecheck"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::config(format!(
            "decrypt ({kind}): environment variable {name} (passphrase_env) is not valid UTF-8"
        ))),
    }
}

impl DecryptConfig {
    /// Validates (exactly one of identity_file/passphrase_env for age; the file readable and
    /// parseable; the env var set; gpg on PATH) and loads keys once. Config/Tooling errors with
    /// actionable text.
    #[cfg(feature = "encryption")]
    pub fn prepare(&self) -> Result<Decryptor> {
        let inner = match self {
            DecryptConfig::Age { identity_file, passphrase_env } => {
                Inner::Age(age::AgeKeys::prepare(identity_file, passphrase_env)?)
            }
            DecryptConfig::Gpg { homedir, passphrase_env } => {
                Inner::Gpg(gpg::GpgSetup::prepare(homedir, passphrase_env)?)
            }
        };
        Ok(Decryptor { inner: Arc::new(inner) })
    }

    /// Fails: decryption needs restorecheck-core's `encryption` feature.
    #[cfg(not(feature = "encryption"))]
    pub fn prepare(&self) -> Result<Decryptor> {
        let kind = match self {
            DecryptConfig::Age { .. } => "age",
            DecryptConfig::Gpg { .. } => "gpg",
        };
        Err(Error::feature_off("encryption", format_args!("decrypt ({kind})")))
    }
}

#[cfg(feature = "encryption")]
enum Inner {
    Age(age::AgeKeys),
    Gpg(gpg::GpgSetup),
}

/// Without the `encryption` feature no [`Decryptor`] can be prepared.
#[cfg(not(feature = "encryption"))]
enum Inner {}

/// Prepared decryption, cheap to clone (`Arc` inside), `Send + Sync`, `Debug` without secrets.
#[derive(Clone)]
pub struct Decryptor {
    inner: Arc<Inner>,
}

#[cfg(feature = "encryption")]
impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Decryptor");
        match &*self.inner {
            Inner::Age(age::AgeKeys::Identities { file, identities }) => {
                d.field("kind", &"age").field("identity_file", file).field("identities", &identities.len())
            }
            Inner::Age(age::AgeKeys::Passphrase { var, .. }) => d.field("kind", &"age").field("passphrase_env", var),
            Inner::Gpg(g) => d
                .field("kind", &"gpg")
                .field("program", &g.program)
                .field("homedir", &g.homedir)
                .field("passphrase_env", &g.passphrase.as_ref().map(|(v, _)| v)),
        };
        d.finish_non_exhaustive()
    }
}

impl Decryptor {
    /// File-name endings this decryptor handles: `[".age"]` for age, `[".gpg", ".pgp", ".asc"]`
    /// for gpg.
    #[cfg(feature = "encryption")]
    pub fn suffixes(&self) -> &'static [&'static str] {
        match &*self.inner {
            Inner::Age(_) => age::SUFFIXES,
            Inner::Gpg(_) => gpg::SUFFIXES,
        }
    }

    /// `name` without its encryption suffix, or `None` when the name carries none of them.
    pub fn strip<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.suffixes().iter().find_map(|s| name.strip_suffix(s).filter(|rest| !rest.is_empty()))
    }

    /// Wraps `reader` (the encrypted bytes of `file`, a name or URL used only in messages) in a
    /// streaming decrypting reader. Reads the header eagerly: a wrong or missing key returns
    /// [`Error::Decryption`] right here (never a backup defect). A file that is not encrypted in
    /// this format at all, or whose header is damaged, is an [`Error::BackupDefect`]. Damage found
    /// later while streaming surfaces as an [`io::Error`](std::io::Error) from `read()` whose message says the
    /// file is damaged.
    #[cfg(feature = "encryption")]
    pub fn wrap(&self, reader: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>> {
        match &*self.inner {
            Inner::Age(keys) => age::wrap(keys, reader, file),
            Inner::Gpg(g) => gpg::wrap(g, reader, file),
        }
    }
}

/// Without the `encryption` feature a [`Decryptor`] never exists; these keep the callers' code
/// the same in every build.
#[cfg(not(feature = "encryption"))]
impl Decryptor {
    /// File-name endings this decryptor handles.
    pub fn suffixes(&self) -> &'static [&'static str] {
        match *self.inner {}
    }

    /// Wraps `reader` in a decrypting reader.
    pub fn wrap(&self, _reader: Box<dyn Read + Send>, _file: &str) -> Result<Box<dyn Read + Send>> {
        match *self.inner {}
    }
}

#[cfg(not(feature = "encryption"))]
impl fmt::Debug for Decryptor {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.inner {}
    }
}

#[cfg(all(test, feature = "encryption"))]
#[allow(clippy::unwrap_used)]
mod test_util {
    //! Helpers of the age and gpg tests. Fixtures are made by the real `age`, `age-keygen` and
    //! `gpg` command-line tools.

    use std::fs::File;
    use std::io::{self, Read};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::Decryptor;
    use crate::error::Result;

    /// The tool's path; a missing tool fails the test (CI installs them), never skips it.
    pub(super) fn tool(name: &str) -> PathBuf {
        crate::wal_archive::which(name).unwrap_or_else(|| {
            panic!("`{name}` is not installed: these tests need the real age and gpg tools (apt-get install age gnupg)")
        })
    }

    pub(super) fn sh(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// 1.5 MiB of random bytes (many 64 KiB age chunks).
    pub(super) fn payload(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut v = vec![0u8; 1536 * 1024 + 123];
        File::open("/dev/urandom").unwrap().read_exact(&mut v).unwrap();
        let p = dir.join("payload");
        std::fs::write(&p, &v).unwrap();
        (p, v)
    }

    pub(super) fn open(d: &Decryptor, p: &Path) -> Result<Box<dyn Read + Send>> {
        d.wrap(Box::new(File::open(p).unwrap()), &p.display().to_string())
    }

    pub(super) fn decrypt_all(d: &Decryptor, p: &Path) -> io::Result<Vec<u8>> {
        let mut r = open(d, p).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    /// A copy of `p` with one byte in the middle of the payload flipped.
    pub(super) fn flipped(p: &Path) -> PathBuf {
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        let q = p.with_extension("flipped");
        std::fs::write(&q, b).unwrap();
        q
    }

    /// A copy of `p` missing its last `cut` bytes.
    pub(super) fn truncated(p: &Path, cut: usize) -> PathBuf {
        let b = std::fs::read(p).unwrap();
        let q = p.with_extension("truncated");
        std::fs::write(&q, &b[..b.len() - cut]).unwrap();
        q
    }

    pub(super) fn assert_damaged_read(e: &io::Error) {
        let m = e.to_string();
        assert!(m.contains("damaged"), "{m}");
        assert!(!m.contains("key is wrong"), "{m}");
    }
}

#[cfg(all(test, not(feature = "encryption")))]
mod tests {
    use super::DecryptConfig;
    use crate::error::ErrorKind;

    #[test]
    fn decryption_needs_the_feature() {
        let age = DecryptConfig::Age { identity_file: Some("/nonexistent".into()), passphrase_env: None };
        let e = age.prepare().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("decrypt (age) needs restorecheck-core's `encryption` feature"), "{e}");
        let gpg = DecryptConfig::Gpg { homedir: None, passphrase_env: None };
        assert!(gpg.prepare().unwrap_err().to_string().contains("decrypt (gpg) needs"));
    }
}
