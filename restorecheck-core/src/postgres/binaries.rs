//! Finding PostgreSQL server binaries of a given major version on this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A directory holding `postgres`, `pg_controldata`, … of one major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinDir {
    /// The directory.
    pub path: PathBuf,
    /// Major version reported by `postgres --version`.
    pub major: u32,
    /// Full version string (`15.18`).
    pub version: String,
}

impl BinDir {
    /// Path of the named program in this directory.
    pub fn exe(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into (15, "15.18").
pub fn parse_version(output: &str) -> Option<(u32, String)> {
    let after = output.split("(PostgreSQL)").nth(1)?.split_whitespace().next()?;
    let major: u32 = after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some((major, after.to_string()))
}

/// Asks `<dir>/postgres --version` (works as root).
pub fn probe(dir: &Path) -> Option<BinDir> {
    let exe = dir.join("postgres");
    if !exe.is_file() {
        return None;
    }
    let out = std::process::Command::new(&exe).arg("--version").output().ok()?;
    let (major, version) = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(BinDir { path: dir.to_path_buf(), major, version })
}

/// Candidate directories in search order: `pg_config --bindir`, `PATH`, distribution layouts.
fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for pattern_root in ["/usr/lib/postgresql", "/usr/local/lib/postgresql"] {
        if let Ok(rd) = std::fs::read_dir(pattern_root) {
            let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
            v.sort();
            v.reverse();
            dirs.extend(v);
        }
    }
    if let Ok(rd) = std::fs::read_dir("/usr") {
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pgsql-"))
            .map(|e| e.path().join("bin"))
            .collect();
        v.sort();
        v.reverse();
        dirs.extend(v);
    }
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs
}

/// Every PostgreSQL installation found, one per major version (first found wins).
pub fn discover() -> BTreeMap<u32, BinDir> {
    let mut found = BTreeMap::new();
    for d in candidates() {
        if let Some(b) = probe(&d) {
            found.entry(b.major).or_insert(b);
        }
    }
    found
}

/// Finds binaries for `major`: in `configured` if given (which must match), else by search.
pub fn find(major: u32, configured: Option<&Path>) -> Result<BinDir> {
    if let Some(dir) = configured {
        let b = probe(dir).ok_or_else(|| Error::Tooling {
            what: format!("no usable `postgres` binary in bin_dir {}", dir.display()),
            hint: "point target.bin_dir at the bin directory of a PostgreSQL installation".into(),
        })?;
        if b.major != major {
            return Err(Error::Tooling {
                what: format!(
                    "bin_dir {} holds PostgreSQL {}, but the backup is from PostgreSQL {major}",
                    dir.display(),
                    b.major
                ),
                hint: format!("set target.bin_dir to a PostgreSQL {major} installation"),
            });
        }
        return Ok(b);
    }
    let all = discover();
    all.get(&major).cloned().ok_or_else(|| Error::Tooling {
        what: format!(
            "PostgreSQL {major} binaries not found (the backup is from PostgreSQL {major}; found: {})",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            }
        ),
        hint: format!(
            "install postgresql-{major} (Debian/Ubuntu: apt-get install postgresql-{major}; \
             RHEL: postgresql{major}-server) or set target.bin_dir"
        ),
    })
}

/// The newest installation found, for commands that do not care about the version (`demo`).
pub fn newest() -> Result<BinDir> {
    discover().into_values().next_back().ok_or_else(|| Error::Tooling {
        what: "no PostgreSQL server binaries found (looked in pg_config, PATH, /usr/lib/postgresql/*/bin)".into(),
        hint: "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings() {
        assert_eq!(parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some((15, "15.18".into())));
        assert_eq!(parse_version("postgres (PostgreSQL) 17beta1"), Some((17, "17beta1".into())));
        assert_eq!(parse_version("nonsense"), None);
    }
}
