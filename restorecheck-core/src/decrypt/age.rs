//! age files (<https://age-encryption.org>), decrypted in-process with the `age` crate:
//! X25519 identities or a passphrase (scrypt), binary or ASCII-armored.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::passphrase_from_env;
use crate::error::{Error, Result};

/// Highest scrypt work factor (log2 N) accepted for age passphrase files, as in the reference
/// implementation (filippo.io/age): 2^22 needs up to 4 GiB of memory.
const MAX_SCRYPT_WORK_FACTOR: u8 = 22;
pub(super) const SUFFIXES: &[&str] = &[".age"];

/// The keys of a prepared age decryption.
pub(super) enum AgeKeys {
    Identities { file: PathBuf, identities: Vec<Box<dyn age::Identity + Send + Sync>> },
    Passphrase { var: String, identity: age::scrypt::Identity },
}

impl AgeKeys {
    /// Checks `decrypt = { kind = "age", … }` (exactly one of the two) and loads the key.
    pub(super) fn prepare(identity_file: &Option<PathBuf>, passphrase_env: &Option<String>) -> Result<Self> {
        Ok(match (identity_file, passphrase_env) {
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
                AgeKeys::Identities { file: path.clone(), identities }
            }
            (None, Some(var)) => {
                let pass = passphrase_from_env("age", var)?;
                let mut identity = age::scrypt::Identity::new(pass);
                // The crate's default cap is measured on this host (its speed now + 4),
                // which refuses files made on a faster machine; accept what the reference
                // age implementation accepts (it writes 2^18).
                identity.set_max_work_factor(MAX_SCRYPT_WORK_FACTOR);
                AgeKeys::Passphrase { var: var.clone(), identity }
            }
        })
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

pub(super) fn wrap(keys: &AgeKeys, reader: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::process::Command;

    use super::super::test_util::*;
    use super::*;
    use crate::decrypt::{DecryptConfig, Decryptor};
    use crate::error::ErrorKind;

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
}
