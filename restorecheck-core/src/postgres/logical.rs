//! Loading a logical dump into a fresh cluster: `initdb`, then (once the server runs) globals,
//! the roles the dump references, the database, and `pg_restore --exit-on-error [-j]` or
//! `psql -v ON_ERROR_STOP=1`. Every byte of the dump is read: a truncated or damaged dump fails.
//!
//! SQL text from pg_dumpall (a whole cluster, or `--globals-only` as a `globals` file) goes
//! through [`Rewriter`] on its way into psql, which changes exactly these lines and nothing
//! else, so every other error still stops the load:
//! - `CREATE ROLE name;` in the globals section, for a role the fresh cluster already has (the
//!   bootstrap superuser `postgres`): a comment. The `ALTER ROLE name WITH …` that follows
//!   still runs.
//! - `pg_dumpall --clean`'s `DROP ROLE|TABLESPACE [IF EXISTS] name;` and `DROP DATABASE …;` of
//!   a database the fresh cluster lacks, in the globals section: comments (a fresh cluster has
//!   nothing to drop; its bootstrap superuser cannot be dropped).
//! - `CREATE TABLESPACE … LOCATION '<path>';`: the location becomes a fresh empty folder under
//!   the work dir, so the dump's original path (which may exist on this host) is never touched.
//!   A `CREATE TABLESPACE` line that cannot be rewritten stops the load.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::archive;
use crate::error::{Error, Result};
use crate::postgres::binaries::PgTools;
use crate::postgres::control::not_in_toolbox;
use crate::postgres::quote_ident;
use crate::postgres::user::OsUser;
use crate::source::{DumpFormat, LogicalDump};
use crate::target::Connection;
use crate::toolbox::RunAs;

/// Creates a fresh cluster in `data_dir` (empty, owned by the server's OS user) with the
/// `initdb` of `pg`, as that user.
pub(crate) async fn initdb(pg: &PgTools, data_dir: &Path) -> Result<()> {
    let mut cmd = pg.tokio("initdb", RunAs::Server, &[]).await?;
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .stdin(Stdio::null());
    let out = crate::process::output(cmd).await.map_err(|e| Error::io("running initdb", pg.program("initdb"), e))?;
    if !out.status.success() {
        if let Some(e) = not_in_toolbox(pg, "initdb", &out) {
            return Err(e);
        }
        return Err(Error::Tooling {
            what: format!("initdb of the fresh cluster failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            hint: "check the work dir's free space and permissions".into(),
            source: None,
        });
    }
    Ok(())
}

/// Names of roles a line of dump SQL refers to (owners, grantees, default-privilege roles).
pub(crate) fn referenced_roles(line: &str, out: &mut BTreeSet<String>) {
    let l = line.trim();
    let mut add_list = |list: &str| {
        let list = list.trim_end_matches(';');
        let list = list.split(" WITH GRANT OPTION").next().unwrap_or(list);
        let list = list.split(" GRANTED BY ").next().unwrap_or(list);
        for name in list.split(',') {
            let n = name.trim();
            let n = n.strip_prefix("GROUP ").unwrap_or(n);
            let n = if n.starts_with('"') && n.ends_with('"') && n.len() >= 2 {
                n[1..n.len() - 1].replace("\"\"", "\"")
            } else {
                n.to_string()
            };
            let upper = n.to_ascii_uppercase();
            if n.is_empty() || ["PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"].contains(&upper.as_str()) {
                continue;
            }
            out.insert(n);
        }
    };
    if let Some(i) = l.find(" OWNER TO ") {
        add_list(&l[i + 10..]);
    } else if l.starts_with("GRANT ") || (l.starts_with("ALTER DEFAULT PRIVILEGES") && l.contains(" GRANT ")) {
        if let Some(i) = l.rfind(" TO ") {
            add_list(&l[i + 4..]);
        }
    } else if l.starts_with("REVOKE ") || (l.starts_with("ALTER DEFAULT PRIVILEGES") && l.contains(" REVOKE ")) {
        if let Some(i) = l.rfind(" FROM ") {
            add_list(&l[i + 6..]);
        }
    }
    if let Some(rest) = l.strip_prefix("ALTER DEFAULT PRIVILEGES FOR ROLE ") {
        add_list(rest.split(" IN SCHEMA ").next().unwrap_or(rest).split(' ').next().unwrap_or(""));
    }
    if let Some(rest) = l.strip_prefix("SET SESSION AUTHORIZATION ") {
        out.insert(rest.trim_end_matches(';').trim_matches('\'').to_string());
    }
}

/// Names of tablespaces a line of dump SQL puts objects in (`SET default_tablespace = ts;`).
fn referenced_tablespace(line: &str, out: &mut BTreeSet<String>) {
    if let Some(v) = line.trim().strip_prefix("SET default_tablespace = ") {
        let v = v.trim_end_matches(';').trim().trim_matches('\'');
        if !v.is_empty() {
            out.insert(v.to_string());
        }
    }
}

/// Reads the dump's SQL (schema only for archives, with the `pg_restore` of `pg` as
/// [`PgTools::reader`]): the roles it references and the tablespaces it puts objects in.
async fn scan_dump(pg: &PgTools, dump: &LogicalDump) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let dump = dump.clone();
    let restore = pg.program("pg_restore");
    let cmd = if dump.format == DumpFormat::Plain { None } else { Some(pg.std("pg_restore", pg.reader(), &[]).await?) };
    let pg = pg.clone();
    tokio::task::spawn_blocking(move || -> Result<(BTreeSet<String>, BTreeSet<String>)> {
        let mut roles = BTreeSet::new();
        let mut tablespaces = BTreeSet::new();
        if dump.format == DumpFormat::Plain {
            let r = archive::open_decompressed(&dump.path, None)?;
            for line in BufReader::new(r).lines() {
                let line =
                    line.map_err(|e| Error::defect(format!("{} cannot be read", dump.path.display())).with_source(e))?;
                referenced_roles(&line, &mut roles);
                referenced_tablespace(&line, &mut tablespaces);
            }
        } else if let Some(mut cmd) = cmd {
            cmd.args(["--schema-only", "-f", "-"]).arg(&dump.path).stdin(Stdio::null());
            let out = cmd.output().map_err(|e| Error::io("running pg_restore --schema-only", &restore, e))?;
            if !out.status.success() {
                if let Some(e) = not_in_toolbox(&pg, "pg_restore", &out) {
                    return Err(e);
                }
                return Err(Error::defect(format!(
                    "{} is damaged: {}",
                    dump.path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                referenced_roles(line, &mut roles);
                referenced_tablespace(line, &mut tablespaces);
            }
        }
        Ok((roles, tablespaces))
    })
    .await
    .map_err(|e| Error::defect("reading the dump failed").with_source(e))?
}

fn tail(bytes: &[u8], n: usize) -> String {
    redact_passwords(&crate::postgres::server::last_lines(&String::from_utf8_lossy(bytes), n))
}

/// Masks password literals and hashes in psql's error output (which quotes the failing
/// statement): pg_dumpall's `ALTER ROLE … PASSWORD '…'` lines carry them.
fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut l = line.to_string();
        let upper = l.to_ascii_uppercase();
        if let Some(i) = upper.find("PASSWORD '") {
            let start = i + "PASSWORD '".len();
            let end = l[start..].find(['\'', '\n']).map_or(l.len(), |e| start + e);
            l.replace_range(start..end, "***");
        }
        for marker in ["SCRAM-SHA-256$", "md5"] {
            let mut from = 0;
            while let Some(i) = l[from..].find(marker).map(|i| i + from) {
                let end = l[i..].find(|c: char| c.is_whitespace() || c == '\'' || c == '"').map_or(l.len(), |e| i + e);
                let token_len = end - i;
                if marker == "md5" && token_len != 35 {
                    from = i + marker.len();
                    continue;
                }
                l.replace_range(i..end, "***");
                from = i + 3;
            }
        }
        out.push_str(&l);
    }
    out
}

/// Loads `dump` into the running fresh cluster reached through `conn`, with the `pg_restore`
/// and `psql` of `pg` run as the server's OS user. Tablespaces a pg_dumpall (or globals) file
/// creates go into fresh folders under `tablespace_dir`. Returns notes for the report. A dump
/// that cannot be loaded in full is a [`Error::BackupDefect`].
pub(crate) async fn load(
    pg: &PgTools,
    conn: &Connection,
    dump: &LogicalDump,
    default_db: &str,
    tablespace_dir: &Path,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    // A tool session: a globals file may have set search_path for the role or the database.
    let client = conn.tool_connect("postgres", Some(pg.major)).await?;
    let conn_args = |db: &str| conn_args(conn, db);
    // Roles of the fresh cluster before anything ran: only these may be "created" again.
    let fresh_roles = role_names(&client).await?;
    // CREATE TABLESPACE needs an absolute location.
    let tablespace_dir =
        std::fs::canonicalize(tablespace_dir).map_err(|e| Error::io("resolving the work dir", tablespace_dir, e))?;
    let mut rewriter = Rewriter::new(fresh_roles, tablespace_dir, pg.server_user.clone());
    rewriter.fresh_databases = client
        .query("select datname::pg_catalog.text from pg_catalog.pg_database", &[])
        .await
        .map_err(|e| Error::postgres("listing databases", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    if let Some(globals) = &dump.globals {
        // pg_dumpall --globals-only output is held to the same standard as a whole pg_dumpall;
        // other (hand-written) SQL keeps the lenient treatment: errors become notes.
        let cluster = starts_like_dumpall(globals);
        let sql = SqlFile {
            path: globals.clone(),
            globals_section: true,
            trailer: cluster.then_some(DUMPALL_TRAILER),
            strict: cluster,
        };
        rewriter = stream_sql(pg, conn, sql, conn_args("postgres"), rewriter).await?;
        notes.push(format!("ran globals file {}", globals.display()));
        notes.extend(rewriter.notes());
        rewriter.tablespaces.clear();
        rewriter.skipped_roles.clear();
        rewriter.ignored_errors.clear();
        // What the globals created exists now, like the bootstrap superuser.
        rewriter.fresh_roles = role_names(&client).await?;
    }
    if dump.format == DumpFormat::DumpAll {
        // Our own session must not hold database postgres: pg_dumpall --clean drops it.
        drop(client);
        notes.extend(load_dumpall(pg, conn, dump, rewriter).await?);
        return Ok(notes);
    }
    // Archives are always scanned (schema only): their tablespaces are created or reported.
    let create_roles = !(dump.no_owner && dump.format != DumpFormat::Plain);
    let (wanted, dump_tablespaces) =
        if create_roles || dump.format != DumpFormat::Plain { scan_dump(pg, dump).await? } else { Default::default() };
    if create_roles {
        let have = role_names(&client).await?;
        let missing: Vec<&String> = wanted.iter().filter(|r| !have.contains(*r)).collect();
        for r in &missing {
            client
                .batch_execute(&format!("create role {} nologin", quote_ident(r)))
                .await
                .map_err(|e| Error::postgres(format!("creating role {r}"), e))?;
        }
        if !missing.is_empty() {
            notes.push(format!(
                "created roles the dump references but the fresh cluster lacked (NOLOGIN): {}",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let db = dump.database.clone().unwrap_or_else(|| default_db.to_string());
    let exists = client
        .query_opt("select 1 from pg_catalog.pg_database d where d.datname = $1::pg_catalog.text", &[&db])
        .await
        .map_err(|e| Error::postgres("looking up the database", e))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("create database {} template template0", quote_ident(&db)))
            .await
            .map_err(|e| Error::postgres(format!("creating database {db}"), e))?;
    }
    notes.push(format!("loaded {} dump {} into database {db:?}", dump.format, dump.path.display()));

    if dump.format == DumpFormat::Plain {
        // A plain dump's `SET default_tablespace = ts;` fails unless `ts` exists, and psql has
        // no --no-tablespaces: its tablespaces are always created, as fresh work-dir folders.
        notes.extend(create_tablespaces(&client, &dump_tablespaces, &mut rewriter).await?);
        let sql =
            SqlFile { path: dump.path.clone(), globals_section: false, trailer: Some(DUMP_TRAILER), strict: true };
        let done = stream_sql(pg, conn, sql, conn_args(&db), rewriter).await?;
        notes.extend(done.notes());
    } else {
        let mut cmd = pg.tokio("pg_restore", RunAs::Server, &crate::process::client_env(conn)).await?;
        cmd.arg("--exit-on-error").args(conn_args(&db)).stdin(Stdio::null());
        if dump.restore_tablespaces {
            notes.extend(create_tablespaces(&client, &dump_tablespaces, &mut rewriter).await?);
        } else {
            // Tablespaces of the source cluster do not exist here (and their paths must never be
            // used): objects go to the default tablespace.
            cmd.arg("--no-tablespaces");
        }
        if !dump_tablespaces.is_empty() && !dump.restore_tablespaces {
            notes.push(format!(
                "restored without tablespaces (pg_restore --no-tablespaces): objects of {} went to the default \
                 tablespace (restore_tablespaces = true creates them in the work dir)",
                dump_tablespaces.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if dump.no_owner {
            cmd.arg("--no-owner");
        }
        if dump.format != DumpFormat::Tar && dump.jobs > 1 {
            cmd.arg(format!("--jobs={}", dump.jobs));
        }
        cmd.arg(&dump.path);
        let out = crate::process::output(cmd)
            .await
            .map_err(|e| Error::io("running pg_restore", pg.program("pg_restore"), e))?;
        if !out.status.success() {
            if let Some(e) = not_in_toolbox(pg, "pg_restore", &out) {
                return Err(e);
            }
            return Err(Error::BackupDefect {
                message: format!("pg_restore could not load {} ({})", dump.path.display(), out.status),
                log_tail: Some(tail(&out.stderr, 15)),
                source: None,
            });
        }
    }
    Ok(notes)
}

async fn role_names(client: &tokio_postgres::Client) -> Result<BTreeSet<String>> {
    Ok(client
        .query("select rolname::pg_catalog.text from pg_catalog.pg_roles", &[])
        .await
        .map_err(|e| Error::postgres("listing roles", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// psql/pg_restore arguments to reach database `db` of the fresh cluster.
fn conn_args(conn: &Connection, db: &str) -> Vec<String> {
    ["-h", &conn.host, "-p", &conn.port.to_string(), "-U", &conn.user, "-d", db].iter().map(|s| s.to_string()).collect()
}

/// Loads a whole cluster's pg_dumpall output: it creates its roles, tablespaces and databases.
async fn load_dumpall(pg: &PgTools, conn: &Connection, dump: &LogicalDump, rewriter: Rewriter) -> Result<Vec<String>> {
    let sql = SqlFile { path: dump.path.clone(), globals_section: true, trailer: Some(DUMPALL_TRAILER), strict: true };
    let done = stream_sql(pg, conn, sql, conn_args(conn, "postgres"), rewriter).await?;
    let dbs: Vec<String> = conn
        .connect("postgres")
        .await?
        .query(
            "select datname::pg_catalog.text from pg_catalog.pg_database where not datistemplate order by datname",
            &[],
        )
        .await
        .map_err(|e| Error::postgres("listing databases", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut notes = vec![format!(
        "loaded pg_dumpall output {} (databases now: {}); assertions choose one with database = \"…\"",
        dump.path.display(),
        dbs.join(", ")
    )];
    notes.extend(done.notes());
    Ok(notes)
}

/// `restore_tablespaces`: creates the tablespaces an archive's objects live in (and the fresh
/// cluster lacks) as fresh folders in the work dir; an archive never names their locations.
async fn create_tablespaces(
    client: &tokio_postgres::Client,
    names: &BTreeSet<String>,
    rewriter: &mut Rewriter,
) -> Result<Vec<String>> {
    let have: BTreeSet<String> = client
        .query("select spcname::pg_catalog.text from pg_catalog.pg_tablespace", &[])
        .await
        .map_err(|e| Error::postgres("listing tablespaces", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut created = Vec::new();
    for name in names.iter().filter(|n| !have.contains(*n)) {
        let dir = rewriter.new_tablespace_dir()?;
        let sql = format!(
            "create tablespace {} location '{}'",
            quote_ident(name),
            dir.display().to_string().replace('\'', "''")
        );
        client.batch_execute(&sql).await.map_err(|e| Error::postgres(format!("creating tablespace {name}"), e))?;
        created.push(format!("{name} in {}", dir.display()));
    }
    Ok(if created.is_empty() {
        Vec::new()
    } else {
        vec![format!("created the tablespaces the dump uses as fresh folders: {}", created.join(", "))]
    })
}

/// A database the dump creates with a locale this host lacks (`invalid locale name: "de_DE.UTF-8"`):
/// the tester's environment, not the backup, so an error rather than a failed check.
fn missing_locale(stderr: &str, pg: &PgTools) -> Option<Error> {
    let line = stderr.lines().find(|l| l.contains("ERROR:") && l.contains("locale name"))?;
    let name = line.rsplit_once(": ").map_or(line, |(_, n)| n).trim();
    Some(Error::Tooling {
        what: format!(
            "the dump creates a database with locale {name}, which {} does not have ({})",
            pg.describe(),
            line.trim()
        ),
        hint: if pg.on_host() {
            "install the locale on the testing host (Debian: add it to /etc/locale.gen and run locale-gen, \
             or install locales-all)"
                .into()
        } else {
            format!("rebuild the image with the locale (LOCALES=\"{name}\" docker/build-images.sh --force)")
        },
        source: None,
    })
}

/// Closing line of a pg_dump plain file (and of each database's section in a pg_dumpall file).
const DUMP_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";
/// Closing line of a pg_dumpall file (also `--globals-only`).
const DUMPALL_TRAILER: &[u8] = b"-- PostgreSQL database cluster dump complete";

/// Whether the file at `path` (decompressed) opens like pg_dumpall output.
fn starts_like_dumpall(path: &Path) -> bool {
    let Ok(r) = archive::open_decompressed(path, None) else { return false };
    BufReader::new(r)
        .lines()
        .take(5)
        .map_while(|l| l.ok())
        .any(|l| l.trim_end() == "-- PostgreSQL database cluster dump")
}

/// A file of SQL for psql.
#[derive(Debug, Clone)]
struct SqlFile {
    path: PathBuf,
    /// The file starts with pg_dumpall's globals section (roles, tablespaces), which ends at
    /// the first `\connect`.
    globals_section: bool,
    /// The closing line the file must have (a file cut at a statement boundary loads cleanly).
    trailer: Option<&'static [u8]>,
    /// `ON_ERROR_STOP=1`: any error fails the load. Otherwise errors other than "already
    /// exists" are kept as notes (hand-written globals files).
    strict: bool,
}

/// The line rewriting described in the module docs.
#[derive(Debug, Clone)]
struct Rewriter {
    /// Roles the fresh cluster had before the load.
    fresh_roles: BTreeSet<String>,
    /// Where new tablespace folders go.
    tablespace_root: PathBuf,
    /// Owner of the new tablespace folders (the server's OS user).
    user: OsUser,
    in_globals: bool,
    in_copy: bool,
    /// Tablespaces redirected: (name, original location, new location).
    tablespaces: Vec<(String, String, PathBuf)>,
    /// Databases of the fresh cluster (postgres, template0, template1).
    fresh_databases: BTreeSet<String>,
    /// `CREATE ROLE` statements turned into comments.
    skipped_roles: Vec<String>,
    /// `pg_dumpall --clean` statements turned into comments ("DROP ROLE app").
    skipped_drops: Vec<String>,
    /// Tablespace folders made so far (they are numbered).
    made_dirs: usize,
    /// Errors psql reported and went past (lenient files only).
    ignored_errors: Vec<String>,
}

impl Rewriter {
    fn new(fresh_roles: BTreeSet<String>, tablespace_root: PathBuf, user: OsUser) -> Self {
        Rewriter {
            fresh_roles,
            tablespace_root,
            user,
            in_globals: false,
            in_copy: false,
            tablespaces: Vec::new(),
            fresh_databases: BTreeSet::new(),
            skipped_roles: Vec::new(),
            skipped_drops: Vec::new(),
            made_dirs: 0,
            ignored_errors: Vec::new(),
        }
    }

    /// Creates the next fresh, empty tablespace folder (`ts-N`, mode 0700, owned by the
    /// server's OS user).
    fn new_tablespace_dir(&mut self) -> Result<PathBuf> {
        self.made_dirs += 1;
        let dir = self.tablespace_root.join(format!("ts-{}", self.made_dirs));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("creating a tablespace folder", &dir, e))?;
        self.user.chown_tree(&dir)?;
        Ok(dir)
    }

    /// Notes for the report about what was rewritten.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.skipped_roles.is_empty() {
            notes.push(format!(
                "skipped the dump's CREATE ROLE for roles the fresh cluster already has (their ALTER ROLE ran): {}",
                self.skipped_roles.join(", ")
            ));
        }
        if !self.skipped_drops.is_empty() {
            notes.push(format!(
                "skipped the dump's clean-up statements (pg_dumpall --clean) for objects a fresh cluster does not \
                 have, or cannot drop: {}",
                self.skipped_drops.join(", ")
            ));
        }
        for e in self.ignored_errors.iter().take(5) {
            notes.push(format!("globals: {e}"));
        }
        for (name, from, to) in &self.tablespaces {
            notes.push(format!(
                "tablespace {name}: created in {} instead of its original location {from} (left untouched)",
                to.display()
            ));
        }
        notes
    }

    /// The line to pass to psql instead of `line` (which ends with its newline, if any).
    fn line<'a>(&mut self, line: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let text = trim_eol(line);
        if self.in_copy {
            if text == b"\\." {
                self.in_copy = false;
            }
            return Ok(Cow::Borrowed(line));
        }
        if text.starts_with(b"\\connect ") || text.starts_with(b"\\c ") {
            self.in_globals = false;
        }
        if text.starts_with(b"COPY ") && text.ends_with(b" FROM stdin;") {
            self.in_copy = true;
            return Ok(Cow::Borrowed(line));
        }
        if self.in_globals {
            if let Some(name) = std::str::from_utf8(text).ok().and_then(parse_create_role) {
                if self.fresh_roles.contains(&name) {
                    let out = format!(
                        "-- restorecheck: CREATE ROLE {} skipped, the fresh cluster has this role\n",
                        quote_ident(&name)
                    );
                    self.skipped_roles.push(name);
                    return Ok(Cow::Owned(out.into_bytes()));
                }
            }
            // pg_dumpall --clean drops everything before creating it: in a fresh cluster there
            // is nothing to drop but the bootstrap superuser (which cannot be) and the
            // template1/postgres databases (which are dropped and recreated as the dump says).
            if let Some((kind, name)) = std::str::from_utf8(text).ok().and_then(parse_drop) {
                if kind != "DATABASE" || !self.fresh_databases.contains(&name) {
                    let what = format!("DROP {kind} {}", quote_ident(&name));
                    let out = format!("-- restorecheck: {what} skipped in the fresh cluster\n");
                    self.skipped_drops.push(what);
                    return Ok(Cow::Owned(out.into_bytes()));
                }
            }
        }
        let starts_tablespace = text.len() >= 17 && text[..17].eq_ignore_ascii_case(b"CREATE TABLESPACE");
        if starts_tablespace {
            let unusable = || Error::Source {
                source_kind: "pg_dump",
                message: format!(
                    "the dump has a CREATE TABLESPACE statement restorecheck cannot redirect into its work dir \
                     (expected pg_dumpall's `CREATE TABLESPACE name OWNER role LOCATION '…';`): {}",
                    String::from_utf8_lossy(&text[..text.len().min(200)])
                ),
                source: None,
            };
            let s = std::str::from_utf8(text).map_err(|_| unusable())?;
            let ts = parse_create_tablespace(s).ok_or_else(unusable)?;
            let dir = self.new_tablespace_dir()?;
            let location = dir.display().to_string();
            let out = format!(
                "CREATE TABLESPACE {} OWNER {} LOCATION '{}';\n",
                ts.name_sql,
                ts.owner_sql,
                location.replace('\'', "''")
            );
            self.tablespaces.push((ts.name, ts.location, dir));
            return Ok(Cow::Owned(out.into_bytes()));
        }
        Ok(Cow::Borrowed(line))
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// An SQL identifier at the start of `s` as pg_dump writes it (bare lower-case, or
/// double-quoted with `""` escapes): (the name, its SQL text, the rest of `s`).
fn take_ident(s: &str) -> Option<(String, &str, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if body[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                    continue;
                }
                let end = i + 2;
                return (!name.is_empty()).then(|| (name, &s[..end], &s[end..]));
            }
            name.push(c);
        }
        return None;
    }
    let end =
        s.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')).unwrap_or(s.len());
    let first = s.chars().next()?;
    (end > 0 && (first.is_ascii_lowercase() || first == '_')).then(|| (s[..end].to_string(), &s[..end], &s[end..]))
}

/// The role of a line that is exactly `CREATE ROLE name;` (what pg_dumpall writes before
/// `ALTER ROLE name WITH …`).
fn parse_create_role(line: &str) -> Option<String> {
    let rest = line.strip_prefix("CREATE ROLE ")?;
    let (name, _, rest) = take_ident(rest)?;
    (rest == ";").then_some(name)
}

/// A line that is exactly pg_dumpall --clean's `DROP ROLE|DATABASE|TABLESPACE [IF EXISTS] name;`.
fn parse_drop(line: &str) -> Option<(&'static str, String)> {
    let rest = line.strip_prefix("DROP ")?;
    let (kind, rest) = ["ROLE", "DATABASE", "TABLESPACE"]
        .into_iter()
        .find_map(|k| rest.strip_prefix(k).and_then(|r| r.strip_prefix(' ')).map(|r| (k, r)))?;
    let rest = rest.strip_prefix("IF EXISTS ").unwrap_or(rest);
    let (name, _, rest) = take_ident(rest)?;
    (rest == ";").then_some((kind, name))
}

/// A pg_dumpall `CREATE TABLESPACE name OWNER role LOCATION '…';` line.
#[derive(Debug, PartialEq)]
struct CreateTablespace<'a> {
    name: String,
    name_sql: &'a str,
    owner_sql: &'a str,
    location: String,
}

fn parse_create_tablespace(line: &str) -> Option<CreateTablespace<'_>> {
    let rest = line.strip_prefix("CREATE TABLESPACE ")?;
    let (name, name_sql, rest) = take_ident(rest)?;
    let rest = rest.strip_prefix(" OWNER ")?;
    let (_, owner_sql, rest) = take_ident(rest)?;
    let lit = rest.strip_prefix(" LOCATION '")?;
    let body = lit.strip_suffix("';")?;
    // The literal must be one string: any lone quote inside would end it early.
    if body.replace("''", "").contains('\'') {
        return None;
    }
    Some(CreateTablespace { name, name_sql, owner_sql, location: body.replace("''", "'") })
}

/// Streams an SQL file (decompressing on the fly, through `rewriter`) into
/// `psql -v ON_ERROR_STOP=1`, and requires its closing line, so a dump cut at a statement
/// boundary still fails. Returns the rewriter with what it did.
async fn stream_sql(
    pg: &PgTools,
    conn: &Connection,
    sql: SqlFile,
    conn_args: Vec<String>,
    mut rewriter: Rewriter,
) -> Result<Rewriter> {
    let mut cmd = pg.std("psql", RunAs::Server, &crate::process::client_env(conn)).await?;
    cmd.args(["-X", "-q", "-v", if sql.strict { "ON_ERROR_STOP=1" } else { "ON_ERROR_STOP=0" }, "-f", "-"])
        .args(&conn_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let exe = pg.program("psql");
    let version = pg.version.clone();
    let pg = pg.clone();
    rewriter.in_globals = sql.globals_section;
    rewriter.in_copy = false;
    tokio::task::spawn_blocking(move || -> Result<Rewriter> {
        let path = &sql.path;
        let mut child = cmd.spawn().map_err(|e| Error::io("running psql", &exe, e))?;
        let mut complete = false;
        let mut read_error = None;
        let mut rewrite_error = None;
        if let Some(mut stdin) = child.stdin.take() {
            let r = archive::open_decompressed(path, None)?;
            let mut reader = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if sql.trailer.is_some_and(|t| trim_eol(&line) == t) {
                            complete = true;
                        }
                        let out = match rewriter.line(&line) {
                            Ok(out) => out,
                            Err(e) => {
                                rewrite_error = Some(e);
                                break;
                            }
                        };
                        if stdin.write_all(&out).is_err() {
                            break; // psql stopped at an error; its exit status says why
                        }
                    }
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
        }
        if rewrite_error.is_some() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().map_err(|e| Error::io("waiting for psql", &exe, e))?;
        if let Some(e) = rewrite_error {
            return Err(e);
        }
        if let Some(e) = read_error {
            return Err(Error::defect(format!("{} is damaged or truncated", path.display())).with_source(e));
        }
        if !sql.strict {
            rewriter.ignored_errors = redact_passwords(&String::from_utf8_lossy(&out.stderr))
                .lines()
                .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
                .map(str::to_string)
                .collect();
        }
        if !out.status.success() {
            if let Some(e) = not_in_toolbox(&pg, "psql", &out) {
                return Err(e);
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("invalid command \\restrict") {
                return Err(Error::Tooling {
                    what: format!(
                        "psql {version} cannot read {}: the dump uses \\restrict, which psql understands from the \
                         August 2025 minor releases on (13.22, 14.19, 15.14, 16.10, 17.6)",
                        path.display()
                    ),
                    hint: if pg.on_host() {
                        "update the PostgreSQL packages to their latest minor release".into()
                    } else {
                        format!(
                            "rebuild {} with the latest minor release (docker/build-images.sh --force)",
                            pg.describe()
                        )
                    },
                    source: None,
                });
            }
            if let Some(e) = missing_locale(&stderr, &pg) {
                return Err(e);
            }
            return Err(Error::BackupDefect {
                message: format!("psql could not load {} ({})", path.display(), out.status),
                log_tail: Some(tail(&out.stderr, 15)),
                source: None,
            });
        }
        if let Some(t) = sql.trailer.filter(|_| !complete) {
            return Err(Error::defect(format!(
                "{} ends before its closing line \"{}\": the dump is truncated",
                path.display(),
                String::from_utf8_lossy(t)
            )));
        }
        Ok(rewriter)
    })
    .await
    .map_err(|e| Error::defect("loading the dump failed").with_source(e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_found_in_owner_grant_and_default_privileges() {
        let mut r = BTreeSet::new();
        for l in [
            "ALTER TABLE public.t OWNER TO appowner;",
            "GRANT SELECT ON TABLE public.t TO PUBLIC;",
            "GRANT SELECT,INSERT ON TABLE public.t TO reader, \"Mixed Case\" WITH GRANT OPTION;",
            "REVOKE ALL ON SCHEMA public FROM revoked;",
            "ALTER DEFAULT PRIVILEGES FOR ROLE admin IN SCHEMA public GRANT SELECT ON TABLES TO reporting;",
            "SET SESSION AUTHORIZATION 'sessionuser';",
            "CREATE TABLE owner_to (x int);",
        ] {
            referenced_roles(l, &mut r);
        }
        let v: Vec<&str> = r.iter().map(String::as_str).collect();
        assert_eq!(v, ["Mixed Case", "admin", "appowner", "reader", "reporting", "revoked", "sessionuser"]);
    }

    #[test]
    fn only_exact_create_role_lines_parse() {
        assert_eq!(parse_create_role("CREATE ROLE postgres;"), Some("postgres".into()));
        assert_eq!(parse_create_role("CREATE ROLE \"Mixed \"\"q\"\"\";"), Some("Mixed \"q\"".into()));
        assert_eq!(parse_create_role("CREATE ROLE postgres; DROP TABLE x;"), None);
        assert_eq!(parse_create_role("CREATE ROLE postgres WITH SUPERUSER;"), None);
        assert_eq!(parse_create_role("CREATE ROLE Postgres;"), None);
        assert_eq!(parse_create_role("create role postgres;"), None);
    }

    #[test]
    fn only_exact_drop_lines_parse() {
        assert_eq!(parse_drop("DROP ROLE postgres;"), Some(("ROLE", "postgres".into())));
        assert_eq!(parse_drop("DROP DATABASE IF EXISTS \"My db\";"), Some(("DATABASE", "My db".into())));
        assert_eq!(parse_drop("DROP TABLESPACE ts1;"), Some(("TABLESPACE", "ts1".into())));
        assert_eq!(parse_drop("DROP TABLE t;"), None);
        assert_eq!(parse_drop("DROP ROLE a, b;"), None);
        assert_eq!(parse_drop("DROP DATABASE app; DROP TABLE x;"), None);
    }

    #[test]
    fn tablespace_lines_parse_with_quotes() {
        let t = parse_create_tablespace("CREATE TABLESPACE ts1 OWNER postgres LOCATION '/srv/ts1';").unwrap();
        assert_eq!((t.name.as_str(), t.owner_sql, t.location.as_str()), ("ts1", "postgres", "/srv/ts1"));
        let t = parse_create_tablespace("CREATE TABLESPACE \"T s\" OWNER \"o\"\"x\" LOCATION '/srv/it''s';").unwrap();
        assert_eq!(
            (t.name.as_str(), t.name_sql, t.owner_sql, t.location.as_str()),
            ("T s", "\"T s\"", "\"o\"\"x\"", "/srv/it's")
        );
        assert!(parse_create_tablespace(
            "CREATE TABLESPACE ts1 OWNER postgres LOCATION '/a'; CREATE TABLESPACE x LOCATION '/b';"
        )
        .is_none());
        assert!(parse_create_tablespace("CREATE TABLESPACE ts1 LOCATION '/a';").is_none());
    }

    #[test]
    fn rewriter_touches_only_fresh_roles_and_tablespaces_outside_copy_data() {
        let d = tempfile::tempdir().unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        let user = OsUser { name: "me".into(), uid: me, gid: nix::unistd::Gid::effective().as_raw(), switched: false };
        let mut r = Rewriter::new(["postgres".to_string()].into(), d.path().to_path_buf(), user);
        r.in_globals = true;
        let mut run = |l: &str| String::from_utf8(r.line(l.as_bytes()).unwrap().into_owned()).unwrap();
        assert!(run("CREATE ROLE postgres;\n").starts_with("-- restorecheck:"));
        assert_eq!(run("CREATE ROLE app;\n"), "CREATE ROLE app;\n");
        assert_eq!(run("ALTER ROLE postgres WITH SUPERUSER;\n"), "ALTER ROLE postgres WITH SUPERUSER;\n");
        let ts = run("CREATE TABLESPACE ts1 OWNER postgres LOCATION '/srv/ts1';\n");
        assert_eq!(
            ts,
            format!("CREATE TABLESPACE ts1 OWNER postgres LOCATION '{}';\n", d.path().join("ts-1").display())
        );
        assert!(d.path().join("ts-1").is_dir());
        assert_eq!(run("\\connect app\n"), "\\connect app\n");
        // After the globals, an existing role's CREATE ROLE is no longer skipped.
        assert_eq!(run("CREATE ROLE postgres;\n"), "CREATE ROLE postgres;\n");
        assert_eq!(run("COPY public.t (x) FROM stdin;\n"), "COPY public.t (x) FROM stdin;\n");
        assert_eq!(run("CREATE TABLESPACE data LOCATION 'x';\n"), "CREATE TABLESPACE data LOCATION 'x';\n");
        assert_eq!(run("\\.\n"), "\\.\n");
        assert!(r.line(b"CREATE TABLESPACE evil LOCATION '/etc';\n").is_err());
        assert!(r.line(b"create tablespace evil owner x location '/etc';\n").is_err());
    }

    #[test]
    fn passwords_are_masked_in_psql_errors() {
        let t = "LINE 1: ALTER ROLE a WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc=$def:ghi' x\n\
                 ERROR: near \"md5d41d8cd98f00b204e9800998ecf8427e\"";
        let r = redact_passwords(t);
        assert_eq!(r.lines().count(), 2, "{r}");
        assert_eq!(redact_passwords("PASSWORD 'abc\n  ^\n"), "PASSWORD '***\n  ^\n");
        assert!(!r.contains("SCRAM-SHA-256$4096") && !r.contains("d41d8cd98f"), "{r}");
        assert!(r.contains("PASSWORD '***'"), "{r}");
    }
}
