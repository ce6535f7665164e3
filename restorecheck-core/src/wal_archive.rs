//! A folder of archived WAL segments (plain, `.gz`, `.zst` or `.lz4`), served read-only to the
//! restored server's `restore_command`, and the newest segment it holds (where recovery must
//! get to).

use std::path::{Path, PathBuf};

use crate::archive::Compression;
use crate::error::{Error, Result};

/// Facts about a WAL archive folder.
#[derive(Debug, Clone, PartialEq)]
pub struct WalArchive {
    /// The folder.
    pub path: PathBuf,
    /// Name of the newest segment (highest segment number, then timeline), if any.
    pub newest_segment: Option<String>,
    /// Number of segment files.
    pub segments: usize,
    /// Compressions present.
    pub compressions: Vec<Compression>,
}

impl WalArchive {
    /// Lists `path` (read only).
    pub fn scan(path: &Path) -> Result<Self> {
        let rd = std::fs::read_dir(path).map_err(|e| Error::Source {
            source_kind: "basebackup",
            message: format!("cannot read wal_archive {}: {e}", path.display()),
        })?;
        let mut newest: Option<(String, String)> = None; // (log+seg part, full name)
        let mut segments = 0;
        let mut compressions = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let comp = Compression::from_name(&name);
            let base = name.strip_suffix(comp.suffix()).unwrap_or(&name);
            if base.len() != 24 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue; // .history, .backup, .partial and strangers
            }
            segments += 1;
            if !compressions.contains(&comp) {
                compressions.push(comp);
            }
            let key = format!("{}{}", &base[8..24], &base[0..8]).to_ascii_uppercase();
            if newest.as_ref().is_none_or(|(k, _)| key > *k) {
                newest = Some((key, base.to_ascii_uppercase()));
            }
        }
        Ok(WalArchive { path: path.to_path_buf(), newest_segment: newest.map(|x| x.1), segments, compressions })
    }

    /// Writes the `restore_command` script into `dir` and returns the command line for
    /// PostgreSQL. The script exits 0 when it restored the file, 1 when the archive does not
    /// have it, and 200 (which makes PostgreSQL stop recovery with an error rather than treat
    /// the file as missing) when the file exists but cannot be read or decompressed.
    pub fn write_restore_command(&self, dir: &Path) -> Result<String> {
        let tool = |name: &str| -> Result<String> {
            which(name).map(|p| p.display().to_string()).ok_or_else(|| Error::Tooling {
                what: format!("the WAL archive holds {name}-compressed segments but `{name}` is not installed"),
                hint: format!("install {name} (Debian: apt-get install {name})"),
            })
        };
        let mut branches = vec![format!("if [ -f \"$a/$f\" ]; then cp \"$a/$f\" \"$t\" || exit 200")];
        for (comp, name, args) in
            [(Compression::Gzip, "gzip", "-dc"), (Compression::Zstd, "zstd", "-qdc"), (Compression::Lz4, "lz4", "-qdc")]
        {
            if self.compressions.contains(&comp) {
                let exe = tool(name)?;
                branches.push(format!(
                    "elif [ -f \"$a/$f{sfx}\" ]; then {exe} {args} \"$a/$f{sfx}\" > \"$t\" || exit 200",
                    sfx = comp.suffix()
                ));
            }
        }
        let script = format!(
            "#!/bin/sh\n# written by restorecheck: serves WAL from a read-only archive; never writes to it\n\
             a=\"$1\"; f=\"$2\"; p=\"$3\"; t=\"$p.restorecheck-tmp\"\n\
             {}\nelse exit 1; fi\nmv \"$t\" \"$p\" || exit 200\n",
            branches.join("\n")
        );
        let path = dir.join("restore_wal.sh");
        std::fs::write(&path, script).map_err(|e| Error::io("writing restore script", &path, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &path, e))?;
        Ok(format!(
            "{} {} %f %p",
            shell_quote(&path.display().to_string()),
            shell_quote(&self.path.display().to_string())
        ))
    }
}

/// Quotes `s` for /bin/sh and for a PostgreSQL string setting (no single quotes inside).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_segment_ignores_history_and_partial() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "000000010000000000000003",
            "000000010000000000000004.gz",
            "000000020000000000000004.zst",
            "00000002.history",
            "000000010000000000000009.partial",
            "000000010000000000000002.00000028.backup",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let a = WalArchive::scan(d.path()).unwrap();
        assert_eq!(a.segments, 3);
        assert_eq!(a.newest_segment.as_deref(), Some("000000020000000000000004"));
        assert!(a.compressions.contains(&Compression::Zstd));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
