//! Loading a logical dump into a fresh cluster: `initdb`, then (once the server runs) globals,
//! the roles the dump references, the database, and `pg_restore --exit-on-error [-j]` or
//! `psql -v ON_ERROR_STOP=1`. Every byte of the dump is read: a truncated or damaged dump fails.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use crate::archive;
use crate::error::{Error, Result};
use crate::postgres::binaries::BinDir;
use crate::postgres::quote_ident;
use crate::postgres::user::OsUser;
use crate::source::{DumpFormat, LogicalDump};
use crate::target::Connection;

/// Creates a fresh cluster in `data_dir` (empty, owned by `user`).
pub async fn initdb(bin: &BinDir, user: &OsUser, data_dir: &Path) -> Result<()> {
    let mut cmd = tokio::process::Command::new(bin.exe("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .stdin(Stdio::null());
    crate::process::clean_env(&mut cmd, Some(&bin.path), Some(user), &[]);
    user.apply(&mut cmd);
    crate::process::own_group(&mut cmd, libc::SIGKILL);
    let out = crate::process::output(cmd).await.map_err(|e| Error::io("running initdb", bin.exe("initdb"), e))?;
    if !out.status.success() {
        return Err(Error::Tooling {
            what: format!("initdb of the fresh cluster failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            hint: "check the work dir's free space and permissions".into(),
        });
    }
    Ok(())
}

/// Names of roles a line of dump SQL refers to (owners, grantees, default-privilege roles).
pub fn referenced_roles(line: &str, out: &mut BTreeSet<String>) {
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

/// Reads the dump's SQL (schema only for archives) and collects the roles it references.
async fn roles_in_dump(bin: &BinDir, dump: &LogicalDump) -> Result<BTreeSet<String>> {
    let dump = dump.clone();
    let restore = bin.exe("pg_restore");
    tokio::task::spawn_blocking(move || -> Result<BTreeSet<String>> {
        let mut roles = BTreeSet::new();
        if dump.format == DumpFormat::Plain {
            let r = archive::open_decompressed(&dump.path, None)?;
            for line in BufReader::new(r).lines() {
                let line = line.map_err(|e| Error::defect(format!("{} cannot be read: {e}", dump.path.display())))?;
                referenced_roles(&line, &mut roles);
            }
        } else {
            let mut cmd = std::process::Command::new(&restore);
            cmd.args(["--schema-only", "-f", "-"]).arg(&dump.path).stdin(Stdio::null());
            crate::process::clean_env_std(&mut cmd, restore.parent(), None, &[]);
            crate::process::own_group_std(&mut cmd, libc::SIGKILL);
            let out = cmd.output().map_err(|e| Error::io("running pg_restore --schema-only", &restore, e))?;
            if !out.status.success() {
                return Err(Error::defect(format!(
                    "{} is damaged: {}",
                    dump.path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                referenced_roles(line, &mut roles);
            }
        }
        Ok(roles)
    })
    .await
    .map_err(|e| Error::defect(format!("reading the dump failed: {e}")))?
}

fn tail(bytes: &[u8], n: usize) -> String {
    crate::postgres::server::last_lines(&String::from_utf8_lossy(bytes), n)
}

/// Loads `dump` into the running fresh cluster reached through `conn`. Returns notes for the
/// report. A dump that cannot be loaded in full is a [`Error::BackupDefect`]. `psql` and
/// `pg_restore` run as `user` with the run's password from `conn`.
pub async fn load(
    bin: &BinDir,
    user: &OsUser,
    conn: &Connection,
    dump: &LogicalDump,
    default_db: &str,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let client = conn.connect("postgres").await?;
    let conn_args = |db: &str| -> Vec<String> {
        vec![
            "-h".into(),
            conn.host.clone(),
            "-p".into(),
            conn.port.to_string(),
            "-U".into(),
            conn.user.clone(),
            "-d".into(),
            db.into(),
        ]
    };
    if let Some(globals) = &dump.globals {
        let mut cmd = tokio::process::Command::new(bin.exe("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f"])
            .arg(globals)
            .args(conn_args("postgres"))
            .stdin(Stdio::null());
        crate::process::pg_client(&mut cmd, &bin.path, conn, user);
        let out = crate::process::output(cmd).await.map_err(|e| Error::io("running psql", bin.exe("psql"), e))?;
        let errs: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
            .map(str::to_string)
            .collect();
        notes.push(format!("ran globals file {}", globals.display()));
        for e in errs.iter().take(5) {
            notes.push(format!("globals: {e}"));
        }
    }
    if !(dump.no_owner && dump.format != DumpFormat::Plain) {
        let wanted = roles_in_dump(bin, dump).await?;
        let rows =
            client.query("select rolname from pg_roles", &[]).await.map_err(|e| Error::postgres("listing roles", e))?;
        let have: BTreeSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
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
        .query_opt("select 1 from pg_database where datname = $1", &[&db])
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
        load_plain(bin, user, conn, dump, conn_args(&db)).await?;
    } else {
        let mut cmd = tokio::process::Command::new(bin.exe("pg_restore"));
        cmd.args(["--exit-on-error", "--no-tablespaces"]).args(conn_args(&db)).stdin(Stdio::null());
        if dump.no_owner {
            cmd.arg("--no-owner");
        }
        if dump.format != DumpFormat::Tar && dump.jobs > 1 {
            cmd.arg(format!("--jobs={}", dump.jobs));
        }
        cmd.arg(&dump.path);
        crate::process::pg_client(&mut cmd, &bin.path, conn, user);
        let out =
            crate::process::output(cmd).await.map_err(|e| Error::io("running pg_restore", bin.exe("pg_restore"), e))?;
        if !out.status.success() {
            return Err(Error::BackupDefect {
                message: format!("pg_restore could not load {} ({})", dump.path.display(), out.status),
                log_tail: Some(tail(&out.stderr, 15)),
            });
        }
    }
    Ok(notes)
}

/// Streams a plain SQL dump (decompressing on the fly) into `psql -v ON_ERROR_STOP=1`, and
/// requires the dump's closing line, so a dump cut at a statement boundary still fails.
async fn load_plain(
    bin: &BinDir,
    user: &OsUser,
    conn: &Connection,
    dump: &LogicalDump,
    conn_args: Vec<String>,
) -> Result<()> {
    let mut cmd = std::process::Command::new(bin.exe("psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .args(&conn_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::process::pg_client_std(&mut cmd, &bin.path, conn, user);
    let path = dump.path.clone();
    let exe = bin.exe("psql");
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut child = cmd.spawn().map_err(|e| Error::io("running psql", &exe, e))?;
        let mut complete = false;
        let mut read_error = None;
        if let Some(mut stdin) = child.stdin.take() {
            let r = archive::open_decompressed(&path, None)?;
            let mut reader = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if line.starts_with(b"-- PostgreSQL database dump complete") {
                            complete = true;
                        }
                        if stdin.write_all(&line).is_err() {
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
        let out = child.wait_with_output().map_err(|e| Error::io("waiting for psql", &exe, e))?;
        if let Some(e) = read_error {
            return Err(Error::defect(format!("{} is damaged or truncated: {e}", path.display())));
        }
        if !out.status.success() {
            return Err(Error::BackupDefect {
                message: format!("psql could not load {} ({})", path.display(), out.status),
                log_tail: Some(tail(&out.stderr, 15)),
            });
        }
        if !complete {
            return Err(Error::defect(format!(
                "{} ends before its closing line \"-- PostgreSQL database dump complete\": the dump is truncated",
                path.display()
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::defect(format!("loading the dump failed: {e}")))?
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
}
