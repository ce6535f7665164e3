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
//!   a broken compression stream, the file is truncated): an [`io::Error`] from `read()` that
//!   says the file is damaged; callers map read errors to [`Error::BackupDefect`].
//!
//! Passphrases and key material never appear in messages or in `Debug` output.
//!
//! age files are decrypted in-process with the `age` crate (binary or ASCII-armored); OpenPGP
//! files by the installed `gpg`, which reads the passphrase (if any) from a private FIFO, never
//! from its command line or environment.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use age::secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// Highest scrypt work factor (log2 N) accepted for age passphrase files, as in the reference
/// implementation (filippo.io/age): 2^22 needs up to 4 GiB of memory.
const MAX_SCRYPT_WORK_FACTOR: u8 = 22;
const AGE_SUFFIXES: &[&str] = &[".age"];
const GPG_SUFFIXES: &[&str] = &[".gpg", ".pgp", ".asc"];
const GPG_INSTALL_HINT: &str = "install GnuPG (Debian/Ubuntu: apt-get install gnupg) or put `gpg` on PATH";

/// How a source's encrypted files are decrypted.
///
/// `decrypt = { kind = "age", identity_file = "/etc/restorecheck/backup.key" }` on a source, or
/// `{ kind = "age", passphrase_env = "BACKUP_PASSPHRASE" }`, or
/// `{ kind = "gpg", homedir = "/etc/restorecheck/gnupg", passphrase_env = "…" }` (both optional
/// for gpg).
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecryptConfig {
    /// age (<https://age-encryption.org>): X25519 identities or a passphrase (scrypt).
    Age {
        /// An identity file as written by `age-keygen` (one or more `AGE-SECRET-KEY-1…` lines,
        /// `#` comments allowed).
        identity_file: Option<PathBuf>,
        /// The name of the environment variable holding the passphrase (not the passphrase).
        passphrase_env: Option<String>,
    },
    /// OpenPGP, decrypted by the installed `gpg`.
    Gpg {
        /// GnuPG home directory with the secret keys (default: gpg's own, `~/.gnupg`).
        homedir: Option<PathBuf>,
        /// The name of the environment variable holding the passphrase of the secret key, or of
        /// a symmetrically encrypted file (`gpg --symmetric`).
        passphrase_env: Option<String>,
    },
}

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
    pub fn prepare(&self) -> Result<Decryptor> {
        let inner = match self {
            DecryptConfig::Age { identity_file, passphrase_env } => match (identity_file, passphrase_env) {
                (Some(_), Some(_)) => {
                    return Err(Error::config("decrypt (age): set either identity_file or passphrase_env, not both"))
                }
                (None, None) => {
                    return Err(Error::config(
                        "decrypt (age): set identity_file (a key file written by age-keygen) or passphrase_env \
                         (the name of an environment variable holding the passphrase)",
                    ))
                }
                (Some(path), None) => {
                    let identities = load_identity_file(path)?;
                    Inner::Age(AgeKeys::Identities { file: path.clone(), identities })
                }
                (None, Some(var)) => {
                    let pass = passphrase_from_env("age", var)?;
                    let mut identity = age::scrypt::Identity::new(pass);
                    // The crate's default cap is measured on this host (its speed now + 4),
                    // which refuses files made on a faster machine; accept what the reference
                    // age implementation accepts (it writes 2^18).
                    identity.set_max_work_factor(MAX_SCRYPT_WORK_FACTOR);
                    Inner::Age(AgeKeys::Passphrase { var: var.clone(), identity })
                }
            },
            DecryptConfig::Gpg { homedir, passphrase_env } => {
                let program = crate::wal_archive::which("gpg").ok_or_else(|| Error::Tooling {
                    what: "decrypt (gpg): `gpg` is not installed (not found on PATH)".into(),
                    hint: GPG_INSTALL_HINT.into(),
                    source: None,
                })?;
                if let Some(h) = homedir {
                    if !h.is_dir() {
                        return Err(Error::config(format!(
                            "decrypt (gpg): homedir {} is not a directory; point it at the GnuPG home with the \
                             backup's secret key (gpg --homedir DIR --list-secret-keys shows them)",
                            h.display()
                        )));
                    }
                }
                let passphrase = match passphrase_env {
                    Some(var) => Some((var.clone(), passphrase_from_env("gpg", var)?)),
                    None => None,
                };
                Inner::Gpg(GpgSetup { program, homedir: homedir.clone(), passphrase })
            }
        };
        Ok(Decryptor { inner: Arc::new(inner) })
    }
}

/// Reads and parses an age identity file, with errors that never quote its contents.
fn load_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::config(format!("decrypt (age): cannot read identity_file {}: {e}", path.display())))?;
    let parsed = age::IdentityFile::from_buffer(io::BufReader::new(&bytes[..])).map_err(|e| {
        // age reports a line number, never the line.
        Error::config(format!(
            "decrypt (age): identity_file {} is not an age identity file ({e}); it must hold AGE-SECRET-KEY-1… \
             lines as written by age-keygen",
            path.display()
        ))
    })?;
    let identities = parsed
        .into_identities()
        .map_err(|e| Error::config(format!("decrypt (age): identity_file {}: {e}", path.display())))?;
    if identities.is_empty() {
        return Err(Error::config(format!(
            "decrypt (age): identity_file {} holds no identities (AGE-SECRET-KEY-1… lines)",
            path.display()
        )));
    }
    Ok(identities)
}

enum AgeKeys {
    Identities { file: PathBuf, identities: Vec<Box<dyn age::Identity + Send + Sync>> },
    Passphrase { var: String, identity: age::scrypt::Identity },
}

struct GpgSetup {
    program: PathBuf,
    homedir: Option<PathBuf>,
    /// (environment variable name, passphrase)
    passphrase: Option<(String, SecretString)>,
}

enum Inner {
    Age(AgeKeys),
    Gpg(GpgSetup),
}

/// Prepared decryption, cheap to clone (`Arc` inside), `Send + Sync`, `Debug` without secrets.
#[derive(Clone)]
pub struct Decryptor {
    inner: Arc<Inner>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Decryptor");
        match &*self.inner {
            Inner::Age(AgeKeys::Identities { file, identities }) => {
                d.field("kind", &"age").field("identity_file", file).field("identities", &identities.len())
            }
            Inner::Age(AgeKeys::Passphrase { var, .. }) => d.field("kind", &"age").field("passphrase_env", var),
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
    pub fn suffixes(&self) -> &'static [&'static str] {
        match &*self.inner {
            Inner::Age(_) => AGE_SUFFIXES,
            Inner::Gpg(_) => GPG_SUFFIXES,
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
    /// later while streaming surfaces as an [`io::Error`] from `read()` whose message says the
    /// file is damaged.
    pub fn wrap(&self, reader: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>> {
        match &*self.inner {
            Inner::Age(keys) => age_wrap(keys, reader, file),
            Inner::Gpg(g) => gpg_wrap(g, reader, file),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// age

fn age_wrap(keys: &AgeKeys, reader: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>> {
    let armored = age::armor::ArmoredReader::new(reader);
    let dec = age::Decryptor::new_buffered(armored).map_err(|e| age_header_error(e, file))?;
    let scrypt_file = dec.is_scrypt();
    let wrong = |message: String, hint: &str| Error::Decryption {
        file: file.to_string(),
        message,
        hint: hint.to_string(),
        source: None,
    };
    let result = match keys {
        AgeKeys::Identities { file: key_file, identities } => {
            if scrypt_file {
                return Err(wrong(
                    format!(
                        "the key is wrong: this file was encrypted with a passphrase, but the configured key is the \
                         identity file {}",
                        key_file.display()
                    ),
                    "configure decrypt = { kind = \"age\", passphrase_env = \"VAR\" } with the backup passphrase",
                ));
            }
            dec.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => wrong(
                    format!(
                        "the key is wrong: none of the {} identities in {} can decrypt this file (it was encrypted \
                         to other recipients)",
                        identities.len(),
                        key_file.display()
                    ),
                    "use the identity file whose public key (`age-keygen -y FILE`) was a recipient when the backup \
                     was encrypted",
                ),
                other => age_payload_key_error(other, file),
            })
        }
        AgeKeys::Passphrase { var, identity } => {
            if !scrypt_file {
                return Err(wrong(
                    format!(
                        "the key is wrong: this file was encrypted to public keys (recipients), not with a \
                         passphrase, but the configured key is the passphrase in ${var}"
                    ),
                    "configure decrypt = { kind = \"age\", identity_file = \"…\" } with the matching age identity",
                ));
            }
            dec.decrypt(std::iter::once(identity as &dyn age::Identity)).map_err(|e| match e {
                // A wrong passphrase derives a wrong key, whose AEAD check of the file key fails.
                age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => wrong(
                    format!("the key is wrong: the passphrase in ${var} is wrong (it does not open this file)"),
                    &format!("set ${var} to the passphrase the backup was encrypted with"),
                ),
                age::DecryptError::ExcessiveWork { required, target } => wrong(
                    format!(
                        "the file demands a passphrase work factor of 2^{required}, above the accepted maximum \
                         2^{MAX_SCRYPT_WORK_FACTOR} (this host manages about 2^{target} per second)"
                    ),
                    "re-encrypt with a lower scrypt work factor, or decrypt on a faster host",
                ),
                other => age_payload_key_error(other, file),
            })
        }
    }?;
    Ok(Box::new(AgeStream { inner: result, file: file.to_string(), plain: 0 }))
}

/// An error while parsing the header: not an age file, a damaged header, or the reader failed.
fn age_header_error(e: age::DecryptError, file: &str) -> Error {
    match e {
        age::DecryptError::Io(io)
            if !matches!(io.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof) =>
        {
            Error::io("reading the age header", file, io)
        }
        age::DecryptError::UnknownFormat => {
            Error::defect(format!("{file} is not an age file of a version this build reads (unknown age format)"))
        }
        other => Error::defect(format!("{file} is not an age-encrypted file, or its header is damaged ({other})")),
    }
}

/// An error after the header parsed, other than "no key matched".
fn age_payload_key_error(e: age::DecryptError, file: &str) -> Error {
    match e {
        age::DecryptError::InvalidMac => Error::defect(format!(
            "{file} is damaged: the age header's MAC does not match (the header was modified or corrupted)"
        )),
        age::DecryptError::Io(io) => Error::io("reading the age header", file, io),
        other => Error::defect(format!("{file}: the age header is damaged ({other})")),
    }
}

/// The age payload stream, with errors that name the file and say it is damaged.
struct AgeStream<R> {
    inner: age::stream::StreamReader<R>,
    file: String,
    plain: u64,
}

impl<R: Read> Read for AgeStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.plain += n as u64;
                Ok(n)
            }
            Err(e) => match e.kind() {
                io::ErrorKind::UnexpectedEof => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} is damaged: the age file is truncated (it ends before its final chunk, after {} bytes of \
                         plaintext)",
                        self.file, self.plain
                    ),
                )),
                io::ErrorKind::InvalidData => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is damaged: an age chunk failed authentication after {} bytes of plaintext ({e}); the \
                         encrypted file was modified or corrupted",
                        self.file, self.plain
                    ),
                )),
                // The underlying reader failed (network, disk): not the file's fault.
                _ => Err(e),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gpg

/// A FIFO in a private folder through which gpg reads the passphrase (`--passphrase-file`). We
/// hold it open read-write so that gpg's open never blocks and the line stays in the pipe until
/// gpg reads it; nothing touches the disk. Removed on drop.
struct PassFifo {
    dir: PathBuf,
    path: PathBuf,
    _fd: std::fs::File,
}

impl PassFifo {
    fn new(pass: &SecretString) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("restorecheck-gpg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("creating a private folder for gpg's passphrase pipe", &dir, e))?;
        let path = dir.join("passphrase");
        let cleanup = |e: Error| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).map_err(|e| {
            cleanup(Error::io("creating gpg's passphrase pipe", &path, io::Error::from_raw_os_error(e as i32)))
        })?;
        // Read-write open of a FIFO does not block on Linux.
        let mut fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| cleanup(Error::io("opening gpg's passphrase pipe", &path, e)))?;
        let mut line = pass.expose_secret().as_bytes().to_vec();
        line.push(b'\n');
        let written = fd.write_all(&line);
        line.iter_mut().for_each(|b| *b = 0);
        written.map_err(|e| cleanup(Error::io("writing to gpg's passphrase pipe", &path, e)))?;
        Ok(Self { dir, path, _fd: fd })
    }
}

impl Drop for PassFifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// What the thread feeding gpg's stdin ended with.
enum FeedEnd {
    Done,
    /// Reading the encrypted source failed (not gpg's or the file's fault).
    SourceFailed(io::Error),
}

fn gpg_wrap(g: &GpgSetup, mut reader: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>> {
    let fifo = match &g.passphrase {
        Some((_, pass)) => Some(PassFifo::new(pass)?),
        None => None,
    };
    let mut cmd = Command::new(&g.program);
    // Not --quiet: gpg names the key a file was encrypted to and says "Bad passphrase" only
    // when not quiet, and both tell a wrong key from a damaged file.
    cmd.args(["--batch", "--no-tty", "--no-auto-key-retrieve"]);
    if let Some(h) = &g.homedir {
        cmd.arg("--homedir").arg(h);
    }
    if let Some(f) = &fifo {
        cmd.args(["--pinentry-mode", "loopback", "--passphrase-file"]).arg(&f.path);
    }
    cmd.arg("--decrypt")
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Tooling {
        what: format!("decrypt (gpg): cannot start {}: {e}", g.program.display()),
        hint: GPG_INSTALL_HINT.into(),
        source: None,
    })?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Tooling {
            what: "decrypt (gpg): gpg's pipes are missing".into(),
            hint: String::new(),
            source: None,
        });
    };
    let feeder = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return FeedEnd::Done,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return FeedEnd::SourceFailed(e),
            };
            // A write error means gpg stopped reading (it failed or was killed); its exit
            // status and stderr tell why.
            if stdin.write_all(&buf[..n]).is_err() {
                return FeedEnd::Done;
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut r = GpgReader {
        child: Some(child),
        stdout: io::BufReader::with_capacity(64 * 1024, stdout),
        feeder: Some(feeder),
        stderr: Some(stderr_reader),
        file: file.to_string(),
        plain: 0,
        fifo,
        passphrase_var: g.passphrase.as_ref().map(|(v, _)| v.clone()),
        homedir: g.homedir.clone(),
        finished: false,
    };
    // Read ahead: a wrong key makes gpg fail before it writes anything.
    let ahead = match r.stdout.fill_buf() {
        Ok(b) => b.len(),
        Err(e) => return Err(Error::io("reading gpg's output", file, e)),
    };
    if ahead == 0 {
        let (status, stderr, feed) = r.finish();
        if let Some(FeedEnd::SourceFailed(e)) = feed {
            return Err(Error::io("reading the encrypted file", file, e));
        }
        if !status.is_some_and(|s| s.success()) {
            return Err(r.classify(status, &stderr));
        }
    }
    Ok(Box::new(r))
}

struct GpgReader {
    child: Option<Child>,
    stdout: io::BufReader<ChildStdout>,
    feeder: Option<JoinHandle<FeedEnd>>,
    stderr: Option<JoinHandle<String>>,
    file: String,
    plain: u64,
    fifo: Option<PassFifo>,
    passphrase_var: Option<String>,
    homedir: Option<PathBuf>,
    finished: bool,
}

/// gpg's stderr lines, without the noise, for messages.
fn gpg_said(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        "gpg printed nothing".into()
    } else {
        tail.join("; ")
    }
}

impl GpgReader {
    /// Waits for gpg and the helper threads (stdout is at EOF or unwanted). Returns the exit
    /// status (None when waiting failed), its stderr and how feeding ended.
    fn finish(&mut self) -> (Option<ExitStatus>, String, Option<FeedEnd>) {
        self.finished = true;
        let status = self.child.take().and_then(|mut c| c.wait().ok());
        self.fifo = None;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let feed = self.feeder.take().and_then(|h| h.join().ok());
        (status, stderr, feed)
    }

    fn keyring(&self) -> String {
        match &self.homedir {
            Some(h) => format!("the GnuPG home {}", h.display()),
            None => "the default GnuPG home (~/.gnupg)".into(),
        }
    }

    /// gpg failed before writing any plaintext: a key problem, or not/damaged OpenPGP data.
    fn classify(&self, status: Option<ExitStatus>, stderr: &str) -> Error {
        let file = self.file.clone();
        let said = gpg_said(stderr);
        let recipients: Vec<String> = stderr
            .lines()
            .filter_map(|l| l.trim().strip_prefix("gpg: encrypted with "))
            .map(|s| s.trim().to_string())
            .collect();
        let decryption =
            |message: String, hint: String| Error::Decryption { file: file.clone(), message, hint, source: None };
        let var = self.passphrase_var.as_deref();
        if stderr.contains("Bad passphrase") || stderr.contains("Bad session key") {
            return match var {
                Some(v) => decryption(
                    format!("the key is wrong: the passphrase in ${v} is wrong (gpg: {said})"),
                    format!("set ${v} to the passphrase of the backup's secret key (or of the symmetric encryption)"),
                ),
                None => decryption(
                    format!(
                        "the key is wrong: gpg needs a passphrase for this file and none is configured (gpg: {said})"
                    ),
                    "set passphrase_env to the name of an environment variable holding the passphrase".into(),
                ),
            };
        }
        if stderr.contains("No secret key") {
            let to = if recipients.is_empty() { "other recipients".to_string() } else { recipients.join(", ") };
            return decryption(
                format!(
                    "the key is wrong: no secret key in {} can decrypt this file (it was encrypted to {to})",
                    self.keyring()
                ),
                "import the secret key the backup was encrypted to (gpg --homedir DIR --import KEY) or point homedir \
                 at the GnuPG home that has it"
                    .into(),
            );
        }
        if stderr.contains("can't get input")
            || stderr.contains("No passphrase given")
            || stderr.contains("missing passphrase")
            || stderr.contains("Operation cancelled")
        {
            return decryption(
                format!("gpg needs a passphrase for this file and none is configured (gpg: {said})"),
                "set passphrase_env to the name of an environment variable holding the passphrase".into(),
            );
        }
        if stderr.contains("no valid OpenPGP data found") {
            return Error::defect(format!("{file} is not an OpenPGP (gpg) encrypted file (gpg: {said})"));
        }
        if stderr.contains("agent") || stderr.contains("keybox") || stderr.contains("keyring") {
            return Error::Tooling {
                what: format!("decrypt (gpg): gpg could not use {} for {file}: {said}", self.keyring()),
                hint: "check that homedir exists, is writable for gpg-agent's socket and holds the secret key".into(),
                source: None,
            };
        }
        let how = status.map(|s| s.to_string()).unwrap_or_else(|| "unknown status".into());
        Error::defect(format!("{file} is damaged: gpg could not decrypt it ({how}): {said}"))
    }
}

impl Read for GpgReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished && self.child.is_none() {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n > 0 {
            self.plain += n as u64;
            return Ok(n);
        }
        let (status, stderr, feed) = self.finish();
        if let Some(FeedEnd::SourceFailed(e)) = feed {
            return Err(io::Error::new(e.kind(), format!("reading {}: {e}", self.file)));
        }
        match status {
            Some(s) if s.success() => Ok(0),
            other => {
                let how = other.map(|s| s.to_string()).unwrap_or_else(|| "unknown status".into());
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is damaged: gpg failed after {} bytes of plaintext ({how}): {}",
                        self.file,
                        self.plain,
                        gpg_said(&stderr)
                    ),
                ))
            }
        }
    }
}

impl Drop for GpgReader {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Dropped before EOF: stop gpg and reap it (no zombie). Its stdin then breaks, which
            // ends the feeder once its current read returns.
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Fixtures are made by the real `age`, `age-keygen` and `gpg` command-line tools.

    use super::*;
    use crate::error::ErrorKind;
    use std::fs::File;

    /// The tool's path; a missing tool fails the test (CI installs them), never skips it.
    fn tool(name: &str) -> PathBuf {
        crate::wal_archive::which(name).unwrap_or_else(|| {
            panic!("`{name}` is not installed: these tests need the real age and gpg tools (apt-get install age gnupg)")
        })
    }

    fn sh(cmd: &mut Command) -> String {
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
    fn payload(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut v = vec![0u8; 1536 * 1024 + 123];
        File::open("/dev/urandom").unwrap().read_exact(&mut v).unwrap();
        let p = dir.join("payload");
        std::fs::write(&p, &v).unwrap();
        (p, v)
    }

    fn open(d: &Decryptor, p: &Path) -> Result<Box<dyn Read + Send>> {
        d.wrap(Box::new(File::open(p).unwrap()), &p.display().to_string())
    }

    fn decrypt_all(d: &Decryptor, p: &Path) -> io::Result<Vec<u8>> {
        let mut r = open(d, p).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    /// A copy of `p` with one byte in the middle of the payload flipped.
    fn flipped(p: &Path) -> PathBuf {
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        let q = p.with_extension("flipped");
        std::fs::write(&q, b).unwrap();
        q
    }

    /// A copy of `p` missing its last `cut` bytes.
    fn truncated(p: &Path, cut: usize) -> PathBuf {
        let b = std::fs::read(p).unwrap();
        let q = p.with_extension("truncated");
        std::fs::write(&q, &b[..b.len() - cut]).unwrap();
        q
    }

    fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
        let p = dir.join(name);
        sh(Command::new(tool("age-keygen")).arg("-o").arg(&p));
        let public = sh(Command::new(tool("age-keygen")).arg("-y").arg(&p)).trim().to_string();
        (p, public)
    }

    fn age_id(p: &Path) -> Decryptor {
        DecryptConfig::Age { identity_file: Some(p.into()), passphrase_env: None }.prepare().unwrap()
    }

    fn age_pass(var: &str) -> Result<Decryptor> {
        DecryptConfig::Age { identity_file: None, passphrase_env: Some(var.into()) }.prepare()
    }

    fn assert_damaged_read(e: &io::Error) {
        let m = e.to_string();
        assert!(m.contains("damaged"), "{m}");
        assert!(!m.contains("key is wrong"), "{m}");
    }

    #[test]
    fn age_identity_file_decrypts_binary_and_armored_and_rejects_others() {
        tool("age");
        let dir = tempfile::tempdir().unwrap();
        let (pt, bytes) = payload(dir.path());
        let (k1, pub1) = age_keygen(dir.path(), "k1");
        let (k2, _) = age_keygen(dir.path(), "k2");
        // Several keys with comments, as `cat k2 k1 > keys` gives.
        let both = dir.path().join("both.key");
        std::fs::write(
            &both,
            format!("{}\n{}", std::fs::read_to_string(&k2).unwrap(), std::fs::read_to_string(&k1).unwrap()),
        )
        .unwrap();
        let enc = dir.path().join("payload.age");
        sh(Command::new(tool("age")).arg("-r").arg(&pub1).arg("-o").arg(&enc).arg(&pt));
        let armored = dir.path().join("payload.asc.age");
        sh(Command::new(tool("age")).arg("-a").arg("-r").arg(&pub1).arg("-o").arg(&armored).arg(&pt));

        let d = age_id(&both);
        assert_eq!(decrypt_all(&d, &enc).unwrap(), bytes);
        assert_eq!(decrypt_all(&d, &armored).unwrap(), bytes);
        assert_eq!(d.suffixes(), &[".age"]);
        assert_eq!(d.strip("base.tar.gz.age"), Some("base.tar.gz"));
        assert_eq!(d.strip("base.tar.gz"), None);
        assert_eq!(d.strip(".age"), None);

        // The wrong identity: a key error, raised by wrap itself.
        let e = open(&age_id(&k2), &enc).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
        assert!(e.to_string().contains("key is wrong") && e.to_string().contains("k2"), "{e}");
        assert!(!e.to_string().contains("AGE-SECRET-KEY"), "{e}");
        // A passphrase for a file encrypted to recipients: a key error too.
        std::env::set_var("RC_TEST_AGE_PASS_FOR_RECIPIENTS", "whatever");
        let e = open(&age_pass("RC_TEST_AGE_PASS_FOR_RECIPIENTS").unwrap(), &enc).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");

        // A flipped bit in the middle: the header is fine, the stream fails when read.
        let e = decrypt_all(&d, &flipped(&enc)).unwrap_err();
        assert_damaged_read(&e);
        assert!(e.to_string().contains("authentication"), "{e}");
        // Truncated: an error at read, never a silent short file.
        let e = decrypt_all(&d, &truncated(&enc, 1000)).unwrap_err();
        assert_damaged_read(&e);
        let e = decrypt_all(&d, &truncated(&armored, 200)).unwrap_err();
        assert_damaged_read(&e);
        // Not an age file at all: a backup defect.
        let e = open(&d, &pt).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::BackupDefect, "{e}");
        assert!(e.to_string().contains("not an age-encrypted file"), "{e}");
        let empty = dir.path().join("empty.age");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(open(&d, &empty).err().unwrap().kind(), ErrorKind::BackupDefect);
    }

    #[test]
    fn age_passphrase_right_decrypts_and_wrong_is_a_key_error_without_the_secret() {
        let age = tool("age");
        tool("script");
        let dir = tempfile::tempdir().unwrap();
        let (pt, bytes) = payload(dir.path());
        let secret = "Correct-Horse-7731";
        let enc = dir.path().join("payload.age");
        // age reads passphrases only from a terminal: give it one with script(1). The pauses let
        // age switch the terminal to no-echo before the line arrives (that switch flushes input).
        let typed = format!("sleep 2; printf '%s\\n' '{secret}'; sleep 2; printf '%s\\n' '{secret}'; sleep 3");
        let inner = format!("{} -p -o '{}' '{}'", age.display(), enc.display(), pt.display());
        sh(Command::new("sh").arg("-c").arg(format!("({typed}) | script -qec \"{inner}\" /dev/null >/dev/null")));
        assert!(std::fs::read(&enc).unwrap().starts_with(b"age-encryption.org/v1\n-> scrypt "), "age -p made no file");

        std::env::set_var("RC_TEST_AGE_PASS_RIGHT", secret);
        std::env::set_var("RC_TEST_AGE_PASS_WRONG", "Correct-Horse-7732");
        let right = age_pass("RC_TEST_AGE_PASS_RIGHT").unwrap();
        assert_eq!(decrypt_all(&right, &enc).unwrap(), bytes);
        let dbg = format!("{right:?}");
        assert!(!dbg.contains(secret) && dbg.contains("RC_TEST_AGE_PASS_RIGHT"), "{dbg}");

        let wrong = age_pass("RC_TEST_AGE_PASS_WRONG").unwrap();
        let e = open(&wrong, &enc).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
        let m = e.to_string();
        assert!(m.contains("key is wrong") && m.contains("passphrase in $RC_TEST_AGE_PASS_WRONG is wrong"), "{m}");
        assert!(!m.contains(secret) && !m.contains("Correct-Horse-7732") && !format!("{e:?}").contains("7732"), "{m}");

        // An identity file for a passphrase file: a key error.
        let (k1, _) = age_keygen(dir.path(), "k1");
        assert_eq!(open(&age_id(&k1), &enc).err().unwrap().kind(), ErrorKind::Decryption);
        // Damage in a passphrase file is still damage.
        assert_damaged_read(&decrypt_all(&right, &flipped(&enc)).unwrap_err());
    }

    #[test]
    fn age_configuration_is_validated_without_quoting_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let both = DecryptConfig::Age { identity_file: Some("/x".into()), passphrase_env: Some("X".into()) };
        assert_eq!(both.prepare().unwrap_err().kind(), ErrorKind::Config);
        let none = DecryptConfig::Age { identity_file: None, passphrase_env: None };
        assert_eq!(none.prepare().unwrap_err().kind(), ErrorKind::Config);
        let e = age_pass("RC_TEST_AGE_PASS_SURELY_UNSET").unwrap_err();
        assert!(e.kind() == ErrorKind::Config && e.to_string().contains("is not set"), "{e}");
        let missing = DecryptConfig::Age { identity_file: Some(dir.path().join("nope")), passphrase_env: None };
        assert_eq!(missing.prepare().unwrap_err().kind(), ErrorKind::Config);
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "# comment\nAGE-SECRET-KEY-1NOTAKEYBUTSECRETISH\n").unwrap();
        let e = DecryptConfig::Age { identity_file: Some(bad), passphrase_env: None }.prepare().unwrap_err();
        assert!(e.kind() == ErrorKind::Config && !e.to_string().contains("SECRETISH"), "{e}");
        let t: toml::Table = toml::from_str("d = { kind = \"gpg\", homedir = \"/h\" }").unwrap();
        let c: DecryptConfig = t["d"].clone().try_into().unwrap();
        assert_eq!(c, DecryptConfig::Gpg { homedir: Some("/h".into()), passphrase_env: None });
        let t: toml::Table = toml::from_str("d = { kind = \"age\", identity = \"/h\" }").unwrap();
        assert!(t["d"].clone().try_into::<DecryptConfig>().is_err());
    }

    /// A private GnuPG home; its agent is stopped on drop.
    struct GnupgHome(tempfile::TempDir);

    impl GnupgHome {
        fn new() -> Self {
            use std::os::unix::fs::PermissionsExt;
            let d = tempfile::Builder::new().prefix("rcg").tempdir_in("/tmp").unwrap();
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            GnupgHome(d)
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
        fn gpg(&self) -> Command {
            let mut c = Command::new(tool("gpg"));
            c.arg("--homedir").arg(self.path()).args(["--batch", "--no-tty", "--pinentry-mode", "loopback"]);
            c
        }
        /// A new key pair for `email`, protected by `pass` (may be empty).
        fn key(&self, email: &str, pass: &str) {
            sh(self.gpg().args(["--passphrase", pass, "--quick-gen-key", email, "future-default", "default", "never"]));
        }
        fn encrypt_to(&self, email: &str, from: &Path, to: &Path) {
            sh(self.gpg().args(["--trust-model", "always", "-r", email, "-o"]).arg(to).arg("-e").arg(from));
        }
        fn decryptor(&self, passphrase_env: Option<&str>) -> Decryptor {
            DecryptConfig::Gpg { homedir: Some(self.path().into()), passphrase_env: passphrase_env.map(Into::into) }
                .prepare()
                .unwrap()
        }
    }

    impl Drop for GnupgHome {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf").arg("--homedir").arg(self.path()).args(["--kill", "all"]).status();
        }
    }

    #[test]
    fn gpg_right_key_decrypts_wrong_key_is_a_key_error_and_damage_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (pt, bytes) = payload(dir.path());
        let mine = GnupgHome::new();
        mine.key("backup@example.invalid", "");
        let other = GnupgHome::new();
        other.key("other@example.invalid", "");
        let enc = dir.path().join("payload.gpg");
        mine.encrypt_to("backup@example.invalid", &pt, &enc);

        let d = mine.decryptor(None);
        assert_eq!(decrypt_all(&d, &enc).unwrap(), bytes);
        assert_eq!(d.strip("base.tar.gpg"), Some("base.tar"));
        assert_eq!(d.strip("x.asc"), Some("x"));

        let e = open(&other.decryptor(None), &enc).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
        assert!(e.to_string().contains("key is wrong") && e.to_string().contains("no secret key"), "{e}");

        let e = decrypt_all(&d, &flipped(&enc)).unwrap_err();
        assert_damaged_read(&e);
        let e = decrypt_all(&d, &truncated(&enc, 1000)).unwrap_err();
        assert_damaged_read(&e);

        // Bytes that are no OpenPGP packet at all are a defect. (Random bytes are not used here:
        // gpg reads some of them as a symmetrically encrypted packet and asks for a passphrase.)
        let zeros = dir.path().join("zeros.bin");
        std::fs::write(&zeros, vec![0u8; 100_000]).unwrap();
        let e = open(&d, &zeros).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::BackupDefect, "{e}");
        let text = dir.path().join("plain.txt");
        std::fs::write(&text, "select 1;\n".repeat(1000)).unwrap();
        let e = open(&d, &text).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::BackupDefect, "{e}");
        assert!(e.to_string().contains("not an OpenPGP"), "{e}");

        // Dropped early: gpg is killed and reaped, the drop does not hang.
        let mut r = open(&d, &enc).unwrap();
        let mut buf = [0u8; 10];
        r.read_exact(&mut buf).unwrap();
        let t = std::time::Instant::now();
        drop(r);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn gpg_passphrases_of_keys_and_symmetric_files_right_and_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (pt, bytes) = payload(dir.path());
        let secret = "Gpg-Sekrit-4410";
        std::env::set_var("RC_TEST_GPG_PASS_RIGHT", secret);
        std::env::set_var("RC_TEST_GPG_PASS_WRONG", "Gpg-Sekrit-4411");

        // A passphrase-protected secret key. Wrong first: gpg-agent caches a right one.
        let home = GnupgHome::new();
        home.key("pw@example.invalid", secret);
        let enc = dir.path().join("payload.gpg");
        home.encrypt_to("pw@example.invalid", &pt, &enc);
        let wrong = home.decryptor(Some("RC_TEST_GPG_PASS_WRONG"));
        let e = open(&wrong, &enc).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
        let m = e.to_string();
        assert!(m.contains("passphrase in $RC_TEST_GPG_PASS_WRONG is wrong"), "{m}");
        assert!(!m.contains(secret) && !m.contains("4411"), "{m}");
        let dbg = format!("{wrong:?}");
        assert!(!dbg.contains("4411") && !dbg.contains(secret), "{dbg}");
        let right = home.decryptor(Some("RC_TEST_GPG_PASS_RIGHT"));
        assert_eq!(decrypt_all(&right, &enc).unwrap(), bytes);

        // gpg --symmetric, in a fresh home (no cached passphrase).
        let sym_home = GnupgHome::new();
        let sym = dir.path().join("payload.sym.gpg");
        sh(sym_home
            .gpg()
            .args(["--no-symkey-cache", "--passphrase", secret, "-o"])
            .arg(&sym)
            .arg("--symmetric")
            .arg(&pt));
        let e = open(&sym_home.decryptor(Some("RC_TEST_GPG_PASS_WRONG")), &sym).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
        assert!(e.to_string().contains("is wrong") && !e.to_string().contains(secret), "{e}");
        let e = open(&sym_home.decryptor(None), &sym).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Decryption, "{e}");
        assert_eq!(decrypt_all(&sym_home.decryptor(Some("RC_TEST_GPG_PASS_RIGHT")), &sym).unwrap(), bytes);
        let e = decrypt_all(&sym_home.decryptor(Some("RC_TEST_GPG_PASS_RIGHT")), &flipped(&sym)).unwrap_err();
        assert_damaged_read(&e);
        assert!(!e.to_string().contains(secret), "{e}");
    }
}
