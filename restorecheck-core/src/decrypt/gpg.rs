//! OpenPGP files, decrypted by the installed `gpg`, which reads the passphrase (if any) from a
//! private FIFO, never from its command line or environment.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use age::secrecy::{ExposeSecret, SecretString};

use super::passphrase_from_env;
use crate::error::{Error, Result};
use crate::process::GroupGuard;

pub(super) const SUFFIXES: &[&str] = &[".gpg", ".pgp", ".asc"];
const GPG_INSTALL_HINT: &str = "install GnuPG (Debian/Ubuntu: apt-get install gnupg) or put `gpg` on PATH";

/// A prepared gpg decryption.
pub(super) struct GpgSetup {
    pub(super) program: PathBuf,
    pub(super) homedir: Option<PathBuf>,
    /// (environment variable name, passphrase)
    pub(super) passphrase: Option<(String, SecretString)>,
}

impl GpgSetup {
    /// Checks `decrypt = { kind = "gpg", … }`: gpg installed, the homedir a folder, the
    /// passphrase variable set.
    pub(super) fn prepare(homedir: &Option<PathBuf>, passphrase_env: &Option<String>) -> Result<Self> {
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
        Ok(GpgSetup { program, homedir: homedir.clone(), passphrase })
    }
}

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

/// What gpg gets besides [`crate::process::pg_env`] (`PATH`, `LC_ALL=C`, `HOME` …): `LANGUAGE=C`
/// (its messages are parsed), and `HOME` and `GNUPGHOME` as restorecheck has them, which
/// locate the keyring when no homedir is configured (`$GNUPGHOME`, else `~/.gnupg`). Nothing
/// else of restorecheck's environment (cloud keys, passphrases) reaches it.
fn gpg_env() -> Vec<(String, String)> {
    let mut env = vec![("LANGUAGE".to_string(), "C".to_string())];
    for name in ["HOME", "GNUPGHOME"] {
        if let Ok(v) = std::env::var(name) {
            env.push((name.to_string(), v));
        }
    }
    env
}

/// What the thread feeding gpg's stdin ended with.
enum FeedEnd {
    Done,
    /// Reading the encrypted source failed (not gpg's or the file's fault).
    SourceFailed(io::Error),
}

pub(super) fn wrap(g: &GpgSetup, mut reader: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>> {
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
    cmd.arg("--decrypt").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Like every child: a clean environment (LC_ALL=C, as its messages are parsed), its own
    // process group, killed when the file is done with.
    crate::process::clean_env_std(&mut cmd, None, None, &gpg_env());
    crate::process::own_group_std(&mut cmd, libc::SIGKILL);
    let mut child = cmd.spawn().map_err(|e| Error::Tooling {
        what: format!("decrypt (gpg): cannot start {}", g.program.display()),
        hint: GPG_INSTALL_HINT.into(),
        source: Some(Box::new(e)),
    })?;
    let mut group = GroupGuard::new_std(&child);
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        group.kill();
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::internal("decrypt (gpg): gpg's pipes are missing"));
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
        group,
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
    /// gpg's process group: what it leaves running is killed when it ends or is dropped.
    group: GroupGuard,
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
        self.group.finished();
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
            self.group.kill();
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
    use std::io::Read;
    use std::path::Path;
    use std::process::Command;

    use super::super::test_util::*;
    use super::{wrap, GpgSetup};
    use crate::decrypt::{DecryptConfig, Decryptor};
    use crate::error::ErrorKind;

    /// A stand-in for gpg that records its environment and process group, then fails.
    #[test]
    fn gpg_runs_with_a_clean_environment_in_its_own_process_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let fake = dir.path().join("gpg");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n{{ env; echo \"pgid=$(cut -d' ' -f5 /proc/$$/stat)\"; }} > '{}'\ncat >/dev/null\nexit 2\n",
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::env::set_var("RC_TEST_GPG_LEAK", "cloud-key");
        let g = GpgSetup { program: fake, homedir: None, passphrase: None };
        let e = wrap(&g, Box::new(std::io::empty()), "x.gpg").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::BackupDefect, "{e}");
        let seen = std::fs::read_to_string(&seen).unwrap();
        assert!(!seen.contains("RC_TEST_GPG_LEAK") && !seen.contains("cloud-key"), "{seen}");
        assert!(seen.lines().any(|l| l == "LANGUAGE=C") && seen.lines().any(|l| l == "LC_ALL=C"), "{seen}");
        let pgid: i32 = seen.lines().find_map(|l| l.strip_prefix("pgid=")).unwrap().trim().parse().unwrap();
        assert_ne!(pgid, nix::unistd::getpgrp().as_raw(), "gpg ran in restorecheck's process group");
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
