//! `backup_manifest` checked in the same stream as the extraction: each regular file a tar
//! member writes is hashed while it is written (CRC32C or SHA-224/256/384/512, whatever the
//! manifest says) and compared with its size and checksum in the manifest as soon as the member
//! ends, so a damaged file stops the check at once, naming it, and the extracted cluster is not
//! read a second time. `pg_verifybackup --skip-checksums` then checks what only a look at the
//! whole tree can tell (missing and extra files, sizes, the manifest's own checksum) and the
//! WAL, by `stat` and without reading the data files again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest;

use crate::error::{Error, Result};

/// The largest `backup_manifest` read into memory (about 150 bytes per file of the cluster).
const MANIFEST_MAX: u64 = 512 << 20;

/// A checksum algorithm of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// No checksum: only the size is compared.
    None,
    /// CRC-32C (the default of `pg_basebackup`).
    Crc32c,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "NONE" => Algorithm::None,
            "CRC32C" => Algorithm::Crc32c,
            "SHA224" => Algorithm::Sha224,
            "SHA256" => Algorithm::Sha256,
            "SHA384" => Algorithm::Sha384,
            "SHA512" => Algorithm::Sha512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::None => "NONE",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha224 => "SHA224",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha384 => "SHA384",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// A running checksum of one file.
pub(crate) enum Hasher {
    None,
    Crc32c(u32),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::None => Hasher::None,
            Algorithm::Crc32c => Hasher::Crc32c(0),
            Algorithm::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::None => {}
            Hasher::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Lower-case hex, as the manifest writes it (a CRC-32C as its 4 bytes in little-endian
    /// order, the way PostgreSQL copies it out of memory).
    fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::None => Vec::new(),
            Hasher::Crc32c(c) => c.to_le_bytes().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "Files", default)]
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

/// What the manifest says about one file.
#[derive(Debug, Clone)]
struct Expected {
    size: u64,
    algorithm: Algorithm,
    checksum: String,
}

/// The files of a manifest, by their path relative to the data directory.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    files: HashMap<PathBuf, Expected>,
}

/// What the in-stream check covered, for the report.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StreamVerified {
    /// Files whose size and checksum matched.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Checksum algorithms seen (`CRC32C`, …).
    pub algorithms: Vec<String>,
}

impl StreamVerified {
    /// Adds another archive's counts.
    pub(crate) fn add(&mut self, other: &StreamVerified) {
        self.files += other.files;
        self.bytes += other.bytes;
        for a in &other.algorithms {
            if !self.algorithms.contains(a) {
                self.algorithms.push(a.clone());
            }
        }
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    (s.len() % 2 == 0)
        .then(|| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect())
        .flatten()
}

impl Manifest {
    /// Reads `path` (a `backup_manifest` already decrypted and copied into the work dir).
    pub(crate) fn read(path: &Path) -> Result<Manifest> {
        let bad = |m: String| Error::defect(format!("backup_manifest {}: {m}", path.display()));
        let text = crate::safefs::read_text(path, MANIFEST_MAX)?.ok_or_else(|| bad("missing".into()))?;
        let raw: RawManifest = serde_json::from_str(&text).map_err(|e| bad(format!("not a backup manifest: {e}")))?;
        let mut files = HashMap::with_capacity(raw.files.len());
        for f in raw.files {
            let path = match (f.path, f.encoded_path) {
                (Some(p), _) => PathBuf::from(p),
                (None, Some(e)) => {
                    use std::os::unix::ffi::OsStringExt;
                    let bytes = hex_decode(&e).ok_or_else(|| bad(format!("bad Encoded-Path {e:?}")))?;
                    PathBuf::from(std::ffi::OsString::from_vec(bytes))
                }
                (None, None) => return Err(bad("a file entry has no path".into())),
            };
            let algorithm = match f.algorithm.as_deref() {
                None => Algorithm::None,
                Some(a) => Algorithm::parse(a).ok_or_else(|| bad(format!("unknown checksum algorithm {a:?}")))?,
            };
            let checksum = f.checksum.unwrap_or_default().to_ascii_lowercase();
            files.insert(path, Expected { size: f.size, algorithm, checksum });
        }
        Ok(Manifest { files })
    }

    /// Number of files listed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// A hasher for the member at `path` (relative to the data dir), when the manifest lists it.
    pub(crate) fn start(&self, path: &Path) -> Option<FileCheck> {
        let e = self.files.get(path)?;
        Some(FileCheck { path: path.to_path_buf(), expected: e.clone(), hasher: Hasher::new(e.algorithm), seen: 0 })
    }
}

/// The check of one file in progress.
pub(crate) struct FileCheck {
    path: PathBuf,
    expected: Expected,
    hasher: Hasher,
    seen: u64,
}

impl FileCheck {
    /// Feeds file content.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.seen += data.len() as u64;
        self.hasher.update(data);
    }

    /// Compares with the manifest; `archive` names the archive in the error.
    pub(crate) fn finish(self, archive: &str, into: &mut StreamVerified) -> Result<()> {
        let where_ = format!("{} in {archive}", self.path.display());
        if self.seen != self.expected.size {
            return Err(Error::defect(format!(
                "{where_}: {} bytes, but backup_manifest says {}: the backup is damaged",
                self.seen, self.expected.size
            )));
        }
        let algorithm = self.expected.algorithm;
        let got = self.hasher.hex();
        if algorithm != Algorithm::None && got != self.expected.checksum {
            return Err(Error::defect(format!(
                "{where_}: {} checksum {got} does not match backup_manifest ({}): the file is damaged",
                algorithm.name(),
                self.expected.checksum
            )));
        }
        into.files += 1;
        into.bytes += self.seen;
        let name = algorithm.name().to_string();
        if !into.algorithms.contains(&name) {
            into.algorithms.push(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_written_as_its_little_endian_bytes() {
        // PostgreSQL's CRC-32C of "123456789" is 0xE3069283; the manifest shows 839206e3.
        let mut h = Hasher::new(Algorithm::Crc32c);
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(h.hex(), "839206e3");
        let mut s = Hasher::new(Algorithm::Sha256);
        s.update(b"abc");
        assert_eq!(s.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn manifests_parse_and_mismatches_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("backup_manifest");
        std::fs::write(
            &p,
            r#"{ "PostgreSQL-Backup-Manifest-Version": 1,
"Files": [
{ "Path": "PG_VERSION", "Size": 3, "Last-Modified": "2026-12-01 10:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "ABCDEF01" },
{ "Encoded-Path": "6162", "Size": 0, "Last-Modified": "2026-12-01 10:00:00 GMT" }
],
"Manifest-Checksum": "00" }"#,
        )
        .unwrap();
        let m = Manifest::read(&p).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m.start(Path::new("ab")).is_some());
        assert!(m.start(Path::new("nope")).is_none());
        let mut v = StreamVerified::default();
        let mut c = m.start(Path::new("PG_VERSION")).unwrap();
        c.update(b"15\n");
        let e = c.finish("base.tar.gz", &mut v).unwrap_err().to_string();
        assert!(e.contains("PG_VERSION in base.tar.gz") && e.contains("abcdef01"), "{e}");
        let mut c = m.start(Path::new("PG_VERSION")).unwrap();
        c.update(b"15");
        assert!(c.finish("base.tar", &mut v).unwrap_err().to_string().contains("2 bytes"));
        let c = m.start(Path::new("ab")).unwrap();
        c.finish("base.tar", &mut v).unwrap();
        assert_eq!((v.files, v.bytes), (1, 0));
    }
}
