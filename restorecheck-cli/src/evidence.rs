//! Signed evidence: an Ed25519 signature over the exact bytes of a report file, written as the
//! raw 64 bytes to `FILE.sig`, so that `openssl pkeyutl -verify -pubin -inkey pub.pem -rawin
//! -in FILE -sigfile FILE.sig` checks it as well as `restorecheck verify-report`.
//!
//! Keys are PEM as openssl writes them: the private key PKCS#8 (`openssl genpkey -algorithm
//! ed25519`), the public key SPKI (`openssl pkey -in key.pem -pubout`). A key's fingerprint is
//! `ed25519:SHA256:<base64 of the SHA-256 of the 32-byte raw public key, unpadded>` (the
//! OpenSSH style). The private key never appears in a message, a log line or `Debug` output.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::Digest as _;

/// A loaded signing key (zeroized on drop by ed25519-dalek).
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads an Ed25519 private key in PKCS#8 PEM from `path`. The error never quotes the file.
    pub fn load(path: &Path) -> Result<Signer, String> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
            format!(
                "{}: not an Ed25519 private key in PKCS#8 PEM (make one with `openssl genpkey -algorithm ed25519 -out {}`)",
                path.display(),
                path.display()
            )
        });
        drop(pem);
        Ok(Signer { key: key? })
    }

    /// The public key's fingerprint (`ed25519:SHA256:…`), recorded in signed JSON reports.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key.verifying_key())
    }

    /// The raw 64-byte signature of `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }
}

/// `ed25519:SHA256:<unpadded base64 of sha256(raw public key)>`.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("ed25519:SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// Where a file's signature goes: `FILE.sig`.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Reads an Ed25519 public key in SPKI PEM (`openssl pkey -pubout`).
pub fn load_public(path: &Path) -> Result<VerifyingKey, String> {
    let pem =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the public key {}: {e}", path.display()))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        format!(
            "{}: not an Ed25519 public key in PEM ({e}; export one with `openssl pkey -in key.pem -pubout`)",
            path.display()
        )
    })
}

/// Whether `sig` (raw 64 bytes) is `key`'s signature over `bytes` (strict verification: no
/// malleable or weak-key signatures).
pub fn verify(key: &VerifyingKey, bytes: &[u8], sig: &[u8]) -> bool {
    Signature::from_slice(sig).is_ok_and(|s| key.verify_strict(bytes, &s).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_verify_and_fingerprint() {
        let s = Signer { key: SigningKey::from_bytes(&[7u8; 32]) };
        let sig = s.sign(b"report");
        let pubkey = s.key.verifying_key();
        assert!(verify(&pubkey, b"report", &sig));
        assert!(!verify(&pubkey, b"reporT", &sig));
        assert!(!verify(&pubkey, b"report", &sig[..63]));
        let fp = s.fingerprint();
        assert!(fp.starts_with("ed25519:SHA256:") && fp.len() == "ed25519:SHA256:".len() + 43, "{fp}");
        assert!(!format!("{s:?}").contains(&format!("{:?}", [7u8; 32])));
        assert_eq!(sig_path(Path::new("/x/r.json")), Path::new("/x/r.json.sig"));
    }
}
