//! Finding PostgreSQL server binaries of a given major version on this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::postgres::user::OsUser;
use crate::toolbox::{HostTools, Prepared, RunAs, ToolBox, ToolCommand};

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
pub(crate) fn parse_version(output: &str) -> Option<(u32, String)> {
    let after = output.split("(PostgreSQL)").nth(1)?.split_whitespace().next()?;
    let major: u32 = after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some((major, after.to_string()))
}

/// Asks `<dir>/postgres --version` (works as root).
pub(crate) fn probe(dir: &Path) -> Option<BinDir> {
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
pub(crate) fn find(major: u32, configured: Option<&Path>) -> Result<BinDir> {
    if let Some(dir) = configured {
        let b = probe(dir).ok_or_else(|| Error::Tooling {
            what: format!("no usable `postgres` binary in bin_dir {}", dir.display()),
            hint: "point target.bin_dir at the bin directory of a PostgreSQL installation".into(),
            source: None,
        })?;
        if b.major != major {
            return Err(Error::Tooling {
                what: format!(
                    "bin_dir {} holds PostgreSQL {}, but the backup is from PostgreSQL {major}",
                    dir.display(),
                    b.major
                ),
                hint: format!("set target.bin_dir to a PostgreSQL {major} installation"),
                source: None,
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
        source: None,
    })
}

/// What a logical dump needs from the binaries that load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DumpNeeds<'a> {
    /// Major of the server the dump was taken from (0: unknown).
    pub(crate) source_major: u32,
    /// Lowest major whose pg_restore/psql and server can load it (0: any).
    pub(crate) min_major: u32,
    /// What made it ("pg_dump 17.2, archive format 1.16"), for messages.
    pub(crate) made_by: Option<&'a str>,
}

/// Picks the binaries to load a logical dump with: `configured` (target.bin_dir) if given and
/// new enough, else the dump's own major, else the oldest installed major that is newer than
/// the dump (PostgreSQL loads dumps of older majors; never the other way round), or the newest
/// when the dump does not name its major. Returns the
/// binaries and, when they are not the dump's own major, a note for the report. When nothing
/// suitable is installed, an [`Error::Tooling`] naming the major to install (verdict *error*,
/// never *fail*: the dump may be fine).
pub(crate) fn for_dump(needs: &DumpNeeds<'_>, configured: Option<&Path>) -> Result<(BinDir, Option<String>)> {
    let want = needs.source_major.max(needs.min_major);
    let made_by = needs.made_by.map(|m| format!(" ({m})")).unwrap_or_default();
    let note = |b: &BinDir| {
        (needs.source_major != 0 && b.major != needs.source_major).then(|| {
            format!(
                "dump from PostgreSQL {}{made_by} loaded with the newer PostgreSQL {} (pg_restore/psql and server): \
                 no PostgreSQL {} binaries {}",
                needs.source_major,
                b.version,
                needs.source_major,
                if configured.is_some() { "configured (target.bin_dir)" } else { "installed" }
            )
        })
    };
    if let Some(dir) = configured {
        let b = probe(dir).ok_or_else(|| Error::Tooling {
            what: format!("no usable `postgres` binary in bin_dir {}", dir.display()),
            hint: "point target.bin_dir at the bin directory of a PostgreSQL installation".into(),
            source: None,
        })?;
        if b.major < want {
            return Err(Error::Tooling {
                what: format!(
                    "bin_dir {} holds PostgreSQL {}, but the dump needs PostgreSQL {want} or newer{made_by}",
                    dir.display(),
                    b.major
                ),
                hint: format!("set target.bin_dir to a PostgreSQL {want} (or newer) installation"),
                source: None,
            });
        }
        let n = note(&b);
        return Ok((b, n));
    }
    let all = discover();
    let majors: std::collections::BTreeSet<u32> = all.keys().copied().collect();
    let chosen = pick_for_dump(needs, &majors).and_then(|m| all.get(&m)).cloned();
    match chosen {
        Some(b) => {
            let n = note(&b);
            Ok((b, n))
        }
        None => Err(Error::Tooling {
            what: format!(
                "PostgreSQL {want} binaries not found (the dump was made from PostgreSQL {}{made_by}; \
                 this host has: {})",
                if needs.source_major == 0 { "?".to_string() } else { needs.source_major.to_string() },
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
                }
            ),
            hint: format!(
                "install postgresql-{want} (Debian/Ubuntu: apt-get install postgresql-{want}; \
                 RHEL: postgresql{want}-server) or set target.bin_dir to a PostgreSQL {want}+ bin directory"
            ),
            source: None,
        }),
    }
}

/// The major to load a dump with, out of the `available` ones: the dump's own major, else the
/// oldest newer than what it needs (PostgreSQL loads dumps of older majors, never the other way
/// round), or the newest when the dump does not name its major; `None` when none will do.
/// Shared by the `local` target (installed binaries) and the `docker` target (present images).
pub(crate) fn pick_for_dump(needs: &DumpNeeds<'_>, available: &std::collections::BTreeSet<u32>) -> Option<u32> {
    let want = needs.source_major.max(needs.min_major);
    if needs.source_major == 0 {
        // The dump does not say: the newest reads every older format.
        available.iter().next_back().copied().filter(|m| *m >= want)
    } else {
        Some(needs.source_major)
            .filter(|m| *m >= want && available.contains(m))
            .or_else(|| available.iter().copied().find(|m| *m >= want))
    }
}

/// Where the PostgreSQL programs of one major run (`initdb`, `pg_controldata`, `pg_restore`,
/// `psql`, `pg_verifybackup`): a bin dir of this host, each program started with
/// a clean environment ([`crate::process::clean_env`]) exactly as the `local` target always
/// did, or a [`ToolBox`] that runs them elsewhere (the `docker` target's container of the
/// image of that major), where they are looked up by name on the image's `PATH`. Every
/// command runs in its own process group with a parent-death signal.
#[derive(Debug, Clone)]
pub(crate) struct PgTools {
    tools: Arc<dyn ToolBox>,
    /// This host's bin dir; `None`: programs run by name where `tools` runs them.
    bin_dir: Option<PathBuf>,
    /// The major of the programs.
    pub(crate) major: u32,
    /// Their version for messages (`15.18`, or `15 (image restorecheck/postgres:15)`).
    pub(crate) version: String,
    /// The restored server's OS user ([`RunAs::Server`]); it owns the folders made for it.
    pub(crate) server_user: OsUser,
}

impl PgTools {
    /// The programs of `bin` on this host, [`RunAs::Server`] switching to `server_user`.
    pub(crate) fn host(bin: &BinDir, server_user: &OsUser) -> Self {
        PgTools {
            tools: Arc::new(HostTools { server_user: Some(server_user.clone()), work_dir: None }),
            bin_dir: Some(bin.path.clone()),
            major: bin.major,
            version: bin.version.clone(),
            server_user: server_user.clone(),
        }
    }

    /// The programs of major `major` where `tools` runs them (found on its `PATH`).
    #[cfg_attr(not(feature = "docker"), allow(dead_code))]
    pub(crate) fn in_toolbox(
        tools: Arc<dyn ToolBox>,
        major: u32,
        version: impl Into<String>,
        server_user: &OsUser,
    ) -> Self {
        PgTools { tools, bin_dir: None, major, version: version.into(), server_user: server_user.clone() }
    }

    /// Where the programs run, for messages (`this host`, `image restorecheck/postgres:15`).
    pub(crate) fn describe(&self) -> String {
        self.tools.describe()
    }

    /// True when the programs run on this host.
    pub(crate) fn on_host(&self) -> bool {
        self.bin_dir.is_some()
    }

    /// The user of programs that only read the backup (`pg_controldata`, `pg_restore
    /// --schema-only`): on this host restorecheck's own, as the `local` target always ran them;
    /// in a container the server's unprivileged user, which owns the files by then.
    pub(crate) fn reader(&self) -> RunAs {
        if self.on_host() {
            RunAs::Tester
        } else {
            RunAs::Server
        }
    }

    /// The program `name` (a path in the bin dir, or the bare name for the toolbox).
    pub(crate) fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(b) => b.join(name),
            None => PathBuf::from(name),
        }
    }

    async fn prepared(&self, name: &str, run_as: RunAs, env: &[(String, String)]) -> Result<Prepared> {
        // On this host the environment is replaced below anyway: `env` goes in there.
        let tool_env = if self.on_host() { Vec::new() } else { env.to_vec() };
        let cmd = ToolCommand::new(self.program(name)).run_as(run_as).major(Some(self.major)).env(tool_env);
        self.tools.prepare(&cmd).await
    }

    fn user_for(&self, run_as: RunAs) -> Option<&OsUser> {
        match run_as {
            RunAs::Server => Some(&self.server_user),
            RunAs::Tester => None,
        }
    }

    /// A command running program `name` as `run_as` with `env` added (`PGPASSWORD`); add its
    /// arguments.
    pub(crate) async fn tokio(
        &self,
        name: &str,
        run_as: RunAs,
        env: &[(String, String)],
    ) -> Result<tokio::process::Command> {
        let mut cmd = self.prepared(name, run_as, env).await?.tokio();
        if let Some(b) = &self.bin_dir {
            crate::process::clean_env(&mut cmd, Some(b), self.user_for(run_as), env);
        }
        crate::process::own_group(&mut cmd, libc::SIGKILL);
        Ok(cmd)
    }

    /// [`Self::tokio`] as a `std::process::Command` (for a thread that streams its stdin).
    pub(crate) async fn std(
        &self,
        name: &str,
        run_as: RunAs,
        env: &[(String, String)],
    ) -> Result<std::process::Command> {
        let mut cmd = self.prepared(name, run_as, env).await?.std();
        if let Some(b) = &self.bin_dir {
            crate::process::clean_env_std(&mut cmd, Some(b), self.user_for(run_as), env);
        }
        crate::process::own_group_std(&mut cmd, libc::SIGKILL);
        Ok(cmd)
    }
}

/// The newest installation found, for commands that do not care about the version (`demo`).
pub fn newest() -> Result<BinDir> {
    discover().into_values().next_back().ok_or_else(|| Error::Tooling {
        what: "no PostgreSQL server binaries found (looked in pg_config, PATH, /usr/lib/postgresql/*/bin)".into(),
        hint: "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql)".into(),
        source: None,
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

    #[test]
    fn dumps_get_their_major_or_a_newer_one_never_an_older() {
        // This host's PostgreSQL 15 (the tests' premise), given as target.bin_dir.
        let dir = Path::new("/usr/lib/postgresql/15/bin");
        let needs = |source_major, min_major| DumpNeeds { source_major, min_major, made_by: Some("pg_dump 17.7") };
        let (b, note) = for_dump(&needs(15, 15), Some(dir)).unwrap();
        assert_eq!((b.major, note), (15, None));
        let (_, note) = for_dump(&needs(13, 13), Some(dir)).unwrap();
        assert!(note.unwrap().contains("dump from PostgreSQL 13 (pg_dump 17.7) loaded with the newer PostgreSQL 15"));
        // pg_dump 16+ of a 13 server writes a format pg_restore 15 cannot read.
        let e = for_dump(&needs(13, 16), Some(dir)).unwrap_err();
        assert!(matches!(e, Error::Tooling { .. }) && e.to_string().contains("needs PostgreSQL 16 or newer"), "{e}");
        if !discover().contains_key(&17) {
            let e = for_dump(&needs(17, 17), None).unwrap_err();
            assert!(
                e.to_string().contains("PostgreSQL 17 binaries not found") && e.to_string().contains("postgresql-17"),
                "{e}"
            );
        }
        assert_eq!(for_dump(&needs(0, 0), None).unwrap().0.major, newest().unwrap().major);
    }

    #[test]
    fn dumps_pick_their_own_major_else_the_oldest_newer_one() {
        let have: std::collections::BTreeSet<u32> = [13, 15, 17].into();
        let needs = |source_major, min_major| DumpNeeds { source_major, min_major, made_by: None };
        assert_eq!(pick_for_dump(&needs(15, 15), &have), Some(15));
        assert_eq!(pick_for_dump(&needs(14, 14), &have), Some(15));
        assert_eq!(pick_for_dump(&needs(13, 16), &have), Some(17));
        assert_eq!(pick_for_dump(&needs(0, 0), &have), Some(17));
        assert_eq!(pick_for_dump(&needs(0, 18), &have), None);
        assert_eq!(pick_for_dump(&needs(18, 18), &have), None);
        assert_eq!(pick_for_dump(&needs(12, 0), &[].into()), None);
    }
}
