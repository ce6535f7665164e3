//! A private shadow of one Barman server's catalog, so that `barman recover` can do its own
//! bookkeeping (it archives what waits in `incoming`/`streaming` first, appending to
//! `wals/xlog.db` and renaming the files into `wals/`) without touching the real catalog.
//!
//! The shadow lives in the check's scratch space and is run under a generated configuration:
//! the user's `[barman]` and server sections, verbatim, except for the folders (`barman_home`,
//! the server's `backup_directory`, `basebackups_directory`, `wals_directory`,
//! `incoming_wals_directory`, `streaming_wals_directory`, `errors_directory`), the lock folder
//! and the log file, which all point into the shadow. Barman 3.4 honours every one of them.
//! The archive hook scripts are left out: archiving into the shadow is not a real archive.
//!
//! In the shadow, the small files Barman rewrites or appends to (`wals/xlog.db`,
//! `identity.json`, each backup's `backup.info`) are copies; everything else (backup data
//! folders, WAL files, each file waiting in `incoming` and `streaming`) is a symlink to the real
//! file, and every folder is a real folder of the shadow. Observed with Barman 3.4: archiving a
//! waiting file `rename()`s the symlink itself into the shadow's `wals/` (or, with WAL
//! compression, writes the compressed copy there and unlinks the symlink), and `barman recover`
//! copies WAL with `rsync -L`, so `pg_wal` gets the files' contents. Renames, deletes and
//! appends land in the shadow; the real files are only read.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The server's folders that get a shadow, as (configuration key, default relative to the
/// server's `backup_directory`).
const SERVER_DIRS: &[(&str, &str)] = &[
    ("basebackups_directory", "base"),
    ("wals_directory", "wals"),
    ("incoming_wals_directory", "incoming"),
    ("streaming_wals_directory", "streaming"),
    ("errors_directory", "errors"),
];

/// `[barman]` keys the generated configuration replaces.
const GLOBAL_REPLACED: &[&str] = &["barman_home", "barman_lock_directory", "log_file", "configuration_files_directory"];

/// Hook scripts the generated configuration leaves out (in any section): archiving into the
/// shadow is no real archiving, and a hook such as `barman-cloud-wal-archive` would copy the
/// WAL to another backup location.
const DROPPED_HOOKS: &[&str] =
    &["pre_archive_script", "pre_archive_retry_script", "post_archive_script", "post_archive_retry_script"];

/// One `key = value` entry of a ConfigParser file: the key (lower case, as ConfigParser
/// folds it), its raw lines (the key line and any continuation lines) and its value.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    raw: String,
    value: String,
}

/// The sections of Barman's configuration files, merged in reading order.
#[derive(Debug, Default)]
pub(super) struct BarmanIni {
    sections: Vec<(String, Vec<Entry>)>,
}

impl BarmanIni {
    /// Parses `text` (one file) into the sections read so far; later files override keys.
    fn read(&mut self, text: &str) {
        let mut current: Option<usize> = None;
        let mut last: Option<usize> = None;
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            let indented = line.starts_with([' ', '\t']);
            if indented {
                // A continuation line of the last value.
                if let (Some(s), Some(e)) = (current, last) {
                    let entry = &mut self.sections[s].1[e];
                    entry.raw.push('\n');
                    entry.raw.push_str(line);
                    entry.value.push('\n');
                    entry.value.push_str(t);
                }
                continue;
            }
            if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                let name = name.trim().to_string();
                let at = self.sections.iter().position(|(n, _)| *n == name).unwrap_or_else(|| {
                    self.sections.push((name, Vec::new()));
                    self.sections.len() - 1
                });
                current = Some(at);
                last = None;
                continue;
            }
            let Some(s) = current else { continue };
            let (key, value) = match t.find(['=', ':']) {
                Some(at) => (t[..at].trim().to_ascii_lowercase(), t[at + 1..].trim().to_string()),
                None => (t.to_ascii_lowercase(), String::new()),
            };
            let entry = Entry { key, raw: line.to_string(), value };
            let entries = &mut self.sections[s].1;
            last = Some(match entries.iter().position(|e| e.key == entry.key) {
                Some(i) => {
                    entries[i] = entry;
                    i
                }
                None => {
                    entries.push(entry);
                    entries.len() - 1
                }
            });
        }
    }

    /// Reads Barman's main configuration file (`config`, or the first of Barman's own search
    /// order) and the `*.conf` files of its `configuration_files_directory`.
    pub(super) fn load(config: Option<&Path>) -> Result<Self> {
        let main = main_config(config)?;
        let mut ini = BarmanIni::default();
        let text = std::fs::read_to_string(&main).map_err(|e| Error::io("reading Barman's configuration", &main, e))?;
        ini.read(&text);
        if let Some(dir) = ini.include_dir()? {
            if dir.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(|e| Error::io("listing Barman's configuration folder", &dir, e))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    let text =
                        std::fs::read_to_string(&f).map_err(|e| Error::io("reading Barman's configuration", &f, e))?;
                    ini.read(&text);
                }
            }
        }
        Ok(ini)
    }

    /// The `configuration_files_directory` of `[barman]`, if set.
    fn include_dir(&self) -> Result<Option<PathBuf>> {
        self.get("barman", "configuration_files_directory")
            .map(|dir| Ok(expand_home(&self.interpolate("barman", &dir, &[])?)))
            .transpose()
    }

    fn section(&self, name: &str) -> Option<&[Entry]> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, e)| e.as_slice())
    }

    /// The raw (not interpolated) value of `key` in `[section]`.
    fn get(&self, section: &str, key: &str) -> Option<String> {
        self.section(section)?.iter().find(|e| e.key == key).map(|e| e.value.clone())
    }

    /// `value` with ConfigParser's `%(key)s` references resolved against `vars` first, then
    /// `[section]`; `%%` is a percent sign. Quotes around the whole value are dropped, as
    /// Barman does.
    fn interpolate(&self, section: &str, value: &str, vars: &[(&str, String)]) -> Result<String> {
        fn go(ini: &BarmanIni, section: &str, value: &str, vars: &[(&str, String)], depth: u32) -> Result<String> {
            if depth > 10 {
                return Err(Error::config(format!(
                    "source barman: too deep `%(…)s` references in [{section}] of Barman's configuration"
                )));
            }
            let mut out = String::new();
            let mut rest = value;
            while let Some(at) = rest.find('%') {
                out.push_str(&rest[..at]);
                rest = &rest[at..];
                if let Some(r) = rest.strip_prefix("%%") {
                    out.push('%');
                    rest = r;
                } else if let Some((name, r)) = rest.strip_prefix("%(").and_then(|r| r.split_once(")s")) {
                    let name = name.to_ascii_lowercase();
                    let v = match vars.iter().find(|(k, _)| *k == name) {
                        Some((_, v)) => v.clone(),
                        None => {
                            let raw = ini.get(section, &name).ok_or_else(|| {
                                Error::config(format!(
                                    "source barman: Barman's configuration refers to %({name})s in [{section}], \
                                     which is not set"
                                ))
                            })?;
                            go(ini, section, &raw, vars, depth + 1)?
                        }
                    };
                    out.push_str(&v);
                    rest = r;
                } else {
                    return Err(Error::config(format!(
                        "source barman: a bare `%` in [{section}] of Barman's configuration: {value:?}"
                    )));
                }
            }
            out.push_str(rest);
            Ok(out)
        }
        let v = go(self, section, value, vars, 0)?;
        let unquoted = ['"', '\''].iter().find_map(|q| v.strip_prefix(*q).and_then(|s| s.strip_suffix(*q)));
        Ok(unquoted.map(str::to_string).unwrap_or(v))
    }
}

/// Barman's main configuration file: `config`, else the first of Barman's own search order.
fn main_config(config: Option<&Path>) -> Result<PathBuf> {
    match config {
        Some(c) => Ok(c.to_path_buf()),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".barman.conf"))
            .into_iter()
            .chain(["/etc/barman.conf", "/etc/barman/barman.conf"].map(PathBuf::from))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Tooling {
                what: "no Barman configuration file (~/.barman.conf, /etc/barman.conf, /etc/barman/barman.conf)".into(),
                hint: "set `config` in the source options to Barman's configuration file".into(),
                source: None,
            }),
    }
}

/// What Barman reads for `server` (besides a shadow): its configuration files (the main file
/// and the `configuration_files_directory`), `barman_home` and the server's folders. Best
/// effort: what cannot be resolved is left out (Barman itself then reports the problem).
pub(super) fn read_paths(config: Option<&Path>, server: &str) -> Vec<PathBuf> {
    let Ok(main) = main_config(config) else { return Vec::new() };
    let mut paths = vec![main];
    let Ok(ini) = BarmanIni::load(config) else { return paths };
    paths.extend(ini.include_dir().ok().flatten());
    if let Some(home) = ini.get("barman", "barman_home").and_then(|h| ini.interpolate("barman", &h, &[]).ok()) {
        paths.push(PathBuf::from(home));
    }
    if let Ok(dirs) = ServerDirs::resolve(&ini, server) {
        paths.push(dirs.backup);
        paths.extend(dirs.dirs.into_iter().map(|(_, p)| p));
    }
    paths
}

/// The folders Barman writes into for `server` even to list its backups (`barman_home` and
/// the server's catalog folders): what a toolbox that runs Barman elsewhere overlays
/// privately. Best effort, like [`read_paths`].
pub(super) fn write_paths(config: Option<&Path>, server: &str) -> Vec<PathBuf> {
    let Ok(ini) = BarmanIni::load(config) else { return Vec::new() };
    let mut paths = Vec::new();
    if let Some(home) = ini.get("barman", "barman_home").and_then(|h| ini.interpolate("barman", &h, &[]).ok()) {
        paths.push(PathBuf::from(home));
    }
    if let Ok(dirs) = ServerDirs::resolve(&ini, server) {
        paths.push(dirs.backup);
        paths.extend(dirs.dirs.into_iter().map(|(_, p)| p));
    }
    paths.retain(|p| p.is_dir());
    paths
}

/// The configuration Barman runs under where its catalog is a private copy-on-write view (a
/// container's overlay): the user's `[DEFAULT]`, `[barman]` and server sections with the
/// folders unchanged, but run as `user` (the one the tools run as there), the lock folder and
/// the log file in `scratch`, and without the archive hook scripts.
pub(super) fn in_place_config(ini: &BarmanIni, server: &str, user: &str, scratch: &Path) -> String {
    const REPLACED: &[&str] = &["barman_user", "barman_lock_directory", "log_file", "configuration_files_directory"];
    let mut out = String::from("# Generated by restorecheck: Barman over a private overlay of its catalog.\n");
    let keep = |e: &Entry| !REPLACED.contains(&e.key.as_str()) && !is_hook(e);
    push_global_sections(&mut out, ini, &keep);
    out.push_str(&format!(
        "barman_user = {user}\nbarman_lock_directory = {}\nlog_file = {}\n\n[{server}]\n",
        ini_path(&scratch.join("lock")),
        ini_path(&scratch.join("barman.log")),
    ));
    for e in ini.section(server).unwrap_or_default().iter().filter(|e| !is_hook(e)) {
        out.push_str(&e.raw);
        out.push('\n');
    }
    out
}

/// Appends the `[DEFAULT]` section (when there is one) and the `[barman]` header and entries
/// of `ini` that `keep` keeps, one entry per line as written.
fn push_global_sections(out: &mut String, ini: &BarmanIni, keep: &dyn Fn(&Entry) -> bool) {
    if let Some(entries) = ini.section("DEFAULT") {
        out.push_str("[DEFAULT]\n");
        for e in entries.iter().filter(|e| keep(e)) {
            out.push_str(&e.raw);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str("[barman]\n");
    for e in ini.section("barman").unwrap_or_default().iter().filter(|e| keep(e)) {
        out.push_str(&e.raw);
        out.push('\n');
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// A ConfigParser value that is exactly `path` (`%` doubled).
fn ini_path(path: &Path) -> String {
    path.display().to_string().replace('%', "%%")
}

/// The real folders of one Barman server, as Barman 3.4 resolves them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ServerDirs {
    /// `backup_directory`.
    pub backup: PathBuf,
    /// (key of [`SERVER_DIRS`], folder), in that order.
    pub dirs: Vec<(&'static str, PathBuf)>,
}

impl ServerDirs {
    /// The real folder configured under `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Path> {
        self.dirs.iter().find(|(k, _)| *k == key).map(|(_, p)| p.as_path())
    }

    /// Resolves the folders of `server` the way Barman does: the server section's value
    /// (ConfigParser-interpolated, with `name`, `barman_home` and the folders resolved so far as
    /// variables), else Barman's default (`%(barman_home)s/%(name)s`, `%(backup_directory)s/base`, …).
    pub(super) fn resolve(ini: &BarmanIni, server: &str) -> Result<Self> {
        if ini.section(server).is_none() {
            return Err(Error::Source {
                source_kind: "barman",
                message: format!("Unknown server '{server}': no [{server}] section in Barman's configuration"),
                source: None,
            });
        }
        let home = ini
            .get("barman", "barman_home")
            .map(|h| ini.interpolate("barman", &h, &[]))
            .transpose()?
            .ok_or_else(|| Error::config("source barman: Barman's configuration sets no barman_home"))?;
        let mut vars: Vec<(&str, String)> = vec![("name", server.to_string()), ("barman_home", home.clone())];
        let value = |key: &'static str, default: String, vars: &mut Vec<(&str, String)>| -> Result<PathBuf> {
            let v = match ini.get(server, key) {
                Some(raw) if !raw.is_empty() && !raw.eq_ignore_ascii_case("none") => {
                    ini.interpolate(server, &raw, vars)?
                }
                _ => default,
            };
            vars.push((key, v.clone()));
            Ok(PathBuf::from(v))
        };
        let backup = value("backup_directory", format!("{home}/{server}"), &mut vars)?;
        let mut dirs = Vec::new();
        for (key, sub) in SERVER_DIRS {
            let default = format!("{}/{sub}", backup.display());
            dirs.push((*key, value(key, default, &mut vars)?));
        }
        Ok(ServerDirs { backup, dirs })
    }
}

/// A shadow catalog plus the configuration that points Barman at it.
#[derive(Debug)]
pub(super) struct Shadow {
    /// Everything of the shadow (configuration, catalog, locks, log): removed on drop.
    pub root: PathBuf,
    /// The generated `barman.conf` (`barman -c`).
    pub config: PathBuf,
}

impl Drop for Shadow {
    fn drop(&mut self) {
        // Symlinks are removed, never followed.
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("could not remove Barman's shadow catalog {}: {e}", self.root.display());
            }
        }
    }
}

fn io<'a>(what: &'a str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(what, p, e)
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(io("linking into Barman's shadow catalog", link))
}

/// Recreates the tree `src` at `dst`: real folders, regular files named in `copy` copied, every
/// other file (and symlink) a symlink to the source entry. `keep` filters entries directly under `src`.
fn mirror(
    src: &Path,
    dst: &Path,
    copy: &[&str],
    keep: &dyn Fn(&str) -> bool,
    cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(io("creating", dst))?;
    let entries = match std::fs::read_dir(src) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing Barman's catalog", src, e)),
    };
    for entry in entries {
        if cancelled() {
            return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
        }
        let entry = entry.map_err(io("listing Barman's catalog", src))?;
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else { continue };
        if !keep(name_str) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ft = entry.file_type().map_err(io("reading", &from))?;
        if ft.is_dir() {
            mirror(&from, &to, copy, &|_| true, cancelled)?;
        } else if ft.is_file() && copy.contains(&name_str) {
            std::fs::copy(&from, &to).map_err(io("copying into Barman's shadow catalog", &to))?;
        } else {
            symlink(&from, &to)?;
        }
    }
    Ok(())
}

/// Builds the shadow of `server`'s catalog under `root` (which must not exist) and the
/// configuration for it. `begin_wal` (the selected backup's first segment) lets the shadow skip
/// WAL folders of older log files, which no recovery from that backup reads.
pub(super) fn build(
    ini: &BarmanIni,
    server: &str,
    root: &Path,
    begin_wal: Option<&str>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Shadow> {
    let real = ServerDirs::resolve(ini, server)?;
    std::fs::create_dir_all(root).map_err(io("creating", root))?;
    let shadow = Shadow { root: root.to_path_buf(), config: root.join("barman.conf") };
    let home = root.join("home");
    let sdir = home.join(server);
    for d in [root.join("lock"), root.join("log"), sdir.clone()] {
        std::fs::create_dir_all(&d).map_err(io("creating", &d))?;
    }
    let shadow_dir = |key: &str| sdir.join(SERVER_DIRS.iter().find(|(k, _)| *k == key).map_or(key, |(_, s)| *s));

    // Top-level files of backup_directory (identity.json): copies.
    if let Ok(entries) = std::fs::read_dir(&real.backup) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let to = sdir.join(e.file_name());
                std::fs::copy(e.path(), &to).map_err(io("copying into Barman's shadow catalog", &to))?;
            }
        }
    }
    // Backups: a real folder each, backup.info copied, data and tablespace folders linked.
    if let Some(base) = real.get("basebackups_directory") {
        mirror_backups(base, &shadow_dir("basebackups_directory"), cancelled)?;
    }
    // WAL: xlog.db copied, every WAL file linked.
    if let Some(wals) = real.get("wals_directory") {
        let begin_log = begin_wal.filter(|w| w.len() >= 16).map(|w| w[8..16].to_ascii_uppercase());
        let keep = |name: &str| match &begin_log {
            // Hash folders are named after timeline and log (16 hex digits).
            Some(b) if name.len() == 16 && name.bytes().all(|c| c.is_ascii_hexdigit()) => {
                name[8..].to_ascii_uppercase() >= *b
            }
            _ => true,
        };
        mirror(wals, &shadow_dir("wals_directory"), &["xlog.db"], &keep, cancelled)?;
    }
    for key in ["incoming_wals_directory", "streaming_wals_directory"] {
        if let Some(d) = real.get(key) {
            mirror(d, &shadow_dir(key), &[], &|_| true, cancelled)?;
        }
    }
    // errors: only ever written to.
    let errors = shadow_dir("errors_directory");
    std::fs::create_dir_all(&errors).map_err(io("creating", &errors))?;

    std::fs::write(&shadow.config, config_text(ini, server, root, &sdir))
        .map_err(io("writing Barman's shadow configuration", &shadow.config))?;
    Ok(shadow)
}

fn mirror_backups(base: &Path, dst: &Path, cancelled: &dyn Fn() -> bool) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(io("creating", dst))?;
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing Barman's catalog", base, e)),
    };
    for e in entries {
        let e = e.map_err(io("listing Barman's catalog", base))?;
        let to = dst.join(e.file_name());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            // Only backup.info is copied: the data, tablespaces (and any tar files) are linked.
            let backup_dir = e.path();
            std::fs::create_dir_all(&to).map_err(io("creating", &to))?;
            for f in std::fs::read_dir(&backup_dir).map_err(io("listing Barman's catalog", &backup_dir))? {
                if cancelled() {
                    return Err(Error::Cancelled { phase: crate::report::Phase::Fetch });
                }
                let f = f.map_err(io("listing Barman's catalog", &backup_dir))?;
                let name = f.file_name();
                let target = to.join(&name);
                if name == "backup.info" && f.file_type().is_ok_and(|t| t.is_file()) {
                    std::fs::copy(f.path(), &target).map_err(io("copying into Barman's shadow catalog", &target))?;
                } else {
                    symlink(&f.path(), &target)?;
                }
            }
        } else {
            symlink(&e.path(), &to)?;
        }
    }
    Ok(())
}

/// An entry the generated configurations leave out: the archive hooks, and `recovery_options`
/// (its only value, `get-wal`, would make the copy fetch WAL through Barman; restorecheck
/// supplies the WAL itself, and Barman 2.12 fails on `--no-get-wal` without it).
fn is_hook(e: &Entry) -> bool {
    DROPPED_HOOKS.contains(&e.key.as_str()) || e.key == "recovery_options"
}

/// The generated configuration: the user's `[DEFAULT]`, `[barman]` and server sections with
/// every folder, the lock folder and the log file pointed into the shadow, without the archive
/// hook scripts.
fn config_text(ini: &BarmanIni, server: &str, root: &Path, sdir: &Path) -> String {
    let mut out = String::from("# Generated by restorecheck: a private shadow of Barman's catalog.\n");
    let replaced_server: Vec<&str> =
        std::iter::once("backup_directory").chain(SERVER_DIRS.iter().map(|(k, _)| *k)).collect();
    push_global_sections(&mut out, ini, &|e| !GLOBAL_REPLACED.contains(&e.key.as_str()) && !is_hook(e));
    out.push_str(&format!(
        "barman_home = {}\nbarman_lock_directory = {}\nlog_file = {}\n\n[{server}]\n",
        ini_path(&root.join("home")),
        ini_path(&root.join("lock")),
        ini_path(&root.join("log").join("barman.log")),
    ));
    let own = ini.section(server).unwrap_or_default();
    for e in own.iter().filter(|e| !replaced_server.contains(&e.key.as_str()) && !is_hook(e)) {
        out.push_str(&e.raw);
        out.push('\n');
    }
    out.push_str(&format!("backup_directory = {}\n", ini_path(sdir)));
    for (key, sub) in SERVER_DIRS {
        out.push_str(&format!("{key} = {}\n", ini_path(&sdir.join(sub))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "[barman]\nbarman_user = barman\nbarman_home = /srv/barman\nlog_file: /var/log/b.log\n\
        compression = gzip\n\n; c\n[pg]\nconninfo = host=db\n  dbname=postgres\nwals_directory = %(backup_directory)s/w\n\
        recovery_options = 'get-wal'\npost_archive_retry_script = barman-cloud-wal-archive s3://b pg\n\
        pre_recovery_script = /bin/true\n[other]\nbackup_directory = /x\n";

    #[test]
    fn in_place_config_keeps_folders_and_drops_hooks() {
        let mut ini = BarmanIni::default();
        ini.read(CONF);
        let text = in_place_config(&ini, "pg", "root", Path::new("/w/barman"));
        let mut again = BarmanIni::default();
        again.read(&text);
        assert_eq!(again.get("barman", "barman_user").as_deref(), Some("root"));
        assert_eq!(again.get("barman", "barman_home").as_deref(), Some("/srv/barman"));
        assert_eq!(again.get("barman", "barman_lock_directory").as_deref(), Some("/w/barman/lock"));
        assert_eq!(again.get("pg", "wals_directory").as_deref(), Some("%(backup_directory)s/w"));
        assert_eq!(again.get("pg", "pre_recovery_script").as_deref(), Some("/bin/true"));
        assert!(again.get("pg", "post_archive_retry_script").is_none());
        assert!(again.section("other").is_none());
        assert_eq!(
            ServerDirs::resolve(&again, "pg").unwrap().get("wals_directory"),
            Some(Path::new("/srv/barman/pg/w"))
        );
    }

    #[test]
    fn folders_resolve_like_barman() {
        let mut ini = BarmanIni::default();
        ini.read(CONF);
        let d = ServerDirs::resolve(&ini, "pg").unwrap();
        assert_eq!(d.backup, PathBuf::from("/srv/barman/pg"));
        assert_eq!(d.get("wals_directory"), Some(Path::new("/srv/barman/pg/w")));
        assert_eq!(d.get("incoming_wals_directory"), Some(Path::new("/srv/barman/pg/incoming")));
        assert_eq!(d.get("basebackups_directory"), Some(Path::new("/srv/barman/pg/base")));
        assert!(ServerDirs::resolve(&ini, "nope").is_err());
    }

    #[test]
    fn generated_config_keeps_options_and_replaces_folders() {
        let mut ini = BarmanIni::default();
        ini.read(CONF);
        let text = config_text(&ini, "pg", Path::new("/s"), Path::new("/s/home/pg"));
        assert!(text.contains("compression = gzip\n"), "{text}");
        assert!(text.contains("conninfo = host=db\n  dbname=postgres\n"), "{text}");
        assert!(!text.contains("recovery_options"), "{text}");
        assert!(text.contains("wals_directory = /s/home/pg/wals\n"), "{text}");
        assert!(text.contains("log_file = /s/log/barman.log\n"), "{text}");
        assert!(!text.contains("/srv/barman") && !text.contains("/var/log") && !text.contains("[other]"), "{text}");
        assert!(!text.contains("%(backup_directory)s") && !text.contains("barman-cloud"), "{text}");
        assert!(text.contains("pre_recovery_script = /bin/true\n"), "{text}");
    }
}
