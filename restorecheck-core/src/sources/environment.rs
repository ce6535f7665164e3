//! Environment for backup tools and the restored server's `restore_command`, read from the
//! places operators keep it: an `env_file` of `KEY=VALUE` lines (source `command`, `walg`) or a
//! daemontools-style `envdir` (source `wale`). Read fresh on every use, so a rotated secret takes
//! effect at once. Values may be secrets: callers never print them.

use std::path::Path;

use crate::error::{Error, Result};

fn err(source_kind: &'static str, message: String) -> Error {
    Error::Source { source_kind, message, source: None }
}

/// Reads an `env_file`: `KEY=VALUE` lines; blank lines and `#` comments are skipped, an
/// `export ` prefix and double quotes around the value are removed.
pub(crate) fn read_env_file(path: &Path, source_kind: &'static str) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(source_kind, format!("cannot read env_file {}", path.display())).with_source(e))?;
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or_else(|| {
            err(source_kind, format!("env_file {} line {}: expected KEY=VALUE", path.display(), n + 1))
        })?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
        vars.push((k.trim().to_string(), v.to_string()));
    }
    Ok(vars)
}

/// Reads a daemontools `envdir`: every file (names not starting with `.`) is a variable named
/// like the file, whose value is the file's first line without trailing spaces and tabs, NUL
/// bytes turned into newlines (as `envdir` does). Empty files are skipped (`envdir` would
/// *unset* the variable). Sorted by name.
pub(crate) fn read_envdir(dir: &Path, source_kind: &'static str) -> Result<Vec<(String, String)>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| err(source_kind, format!("cannot read envdir {}", dir.display())).with_source(e))?;
    let mut vars = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| err(source_kind, format!("cannot read envdir {}", dir.display())).with_source(e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if name.contains('=') || name.is_empty() {
            return Err(err(
                source_kind,
                format!("envdir {}: {name:?} is not a valid environment variable name", dir.display()),
            ));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| err(source_kind, format!("cannot read envdir file {}", path.display())).with_source(e))?;
        if bytes.is_empty() {
            continue;
        }
        let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let value: Vec<u8> = first.iter().map(|b| if *b == 0 { b'\n' } else { *b }).collect();
        let value = String::from_utf8_lossy(&value).trim_end_matches([' ', '\t']).to_string();
        vars.push((name, value));
    }
    vars.sort();
    Ok(vars)
}

/// Value of `key` in `vars` (the last one wins, as when they are applied in order).
pub(crate) fn lookup<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `vars` with each name once, keeping the value set last (what applying them in order gives):
/// a container toolbox writes one file per variable.
pub(crate) fn last_wins(vars: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(vars.len());
    for (k, v) in vars {
        out.retain(|(o, _)| *o != k);
        out.push((k, v));
    }
    out
}

/// A storage URL for reports: any `user:password@` part removed.
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("e");
        std::fs::write(&f, "# c\n\nexport A=1\nB = \"two words\"\n").unwrap();
        let v = read_env_file(&f, "walg").unwrap();
        assert_eq!(v, vec![("A".into(), "1".into()), ("B".into(), "two words".into())]);
        std::fs::write(&f, "A=1\nnonsense\n").unwrap();
        let e = read_env_file(&f, "walg").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.starts_with("source walg"), "{e}");
    }

    #[test]
    fn envdir_like_daemontools() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("WALE_FILE_PREFIX"), "file://localhost/x  \nignored\n").unwrap();
        std::fs::write(d.path().join("EMPTY"), "").unwrap();
        std::fs::write(d.path().join("NUL"), b"a\0b").unwrap();
        std::fs::write(d.path().join(".hidden"), "x").unwrap();
        let v = read_envdir(d.path(), "wale").unwrap();
        assert_eq!(v, vec![("NUL".into(), "a\nb".into()), ("WALE_FILE_PREFIX".into(), "file://localhost/x".into())]);
        assert_eq!(lookup(&v, "NUL"), Some("a\nb"));
        assert!(read_envdir(&d.path().join("missing"), "wale").is_err());
    }

    #[test]
    fn the_value_set_last_wins() {
        let v = |s: &[(&str, &str)]| s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(last_wins(v(&[("A", "1"), ("B", "2"), ("A", "3")])), v(&[("B", "2"), ("A", "3")]));
    }

    #[test]
    fn urls_lose_credentials() {
        assert_eq!(redact_url("s3://bucket/path"), "s3://bucket/path");
        assert_eq!(redact_url("ssh://user:pw@host/p"), "ssh://host/p");
        assert_eq!(redact_url("/plain/path"), "/plain/path");
    }
}
