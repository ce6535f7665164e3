//! Who may connect to a restored copy. No `trust`, in two stages:
//!
//! 1. While it recovers (read-only, so no password can be set): `peer` over the private socket,
//!    through a user name map that lets only the OS user restorecheck runs as connect, only as
//!    the roles it tries ([`settings::HBA_CONF`], [`settings::ident_conf`]). Another OS user —
//!    including the server's own, which runs `restore_command` and anything planted SQL starts —
//!    cannot connect.
//! 2. Right after promotion, before any assertion ([`lock_down`]): a per-run random password
//!    (32 bytes from the kernel) is set on restorecheck's role as a SCRAM-SHA-256 verifier
//!    computed here (the password itself never reaches the server or its log), the hba file is
//!    rewritten to `scram-sha-256` for that role only and `reject` for everything else, and the
//!    server reloads it. From then on every connection carries the password
//!    ([`Connection::password`]), and a process of the same OS user without it cannot connect.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::error::{Error, Result};
use crate::postgres::settings;
use crate::postgres::user::OsUser;
use crate::target::{Connection, RunPassword};

/// Databases tried for our own session (the same as the readiness wait).
const DBS: [&str; 2] = ["template1", "postgres"];

/// Stage 2 (see the module docs): sets a fresh password on `conn.user`, switches `hba_path`
/// to password-only for that role, reloads, and waits until the server enforces it. Returns
/// the connection with the password. `kind` names the target for errors.
pub(crate) async fn lock_down(
    kind: &'static str,
    conn: &Connection,
    hba_path: &Path,
    os_user: &OsUser,
) -> Result<Connection> {
    let fail = |message: String| Error::Target { target_kind: kind, message, log_tail: None, source: None };
    let password = RunPassword::generate()?;
    let client = connect_any(conn).await?;
    // The statement carries only the verifier, but keep it out of the log all the same (the
    // backup's postgresql.conf may say log_statement = all). Superuser-only settings: a role
    // that is no superuser still sets its own password.
    for set in [
        "set log_statement = 'none'",
        "set log_min_duration_statement = -1",
        "set log_min_error_statement = 'panic'",
        "set pgaudit.log = 'none'",
    ] {
        let _ = client.batch_execute(set).await;
    }
    let role = crate::postgres::quote_ident(&conn.user);
    let verifier = password.scram_verifier().replace('\'', "''");
    // A password that expired in production would be refused: superusers lift that too. A
    // role that is no superuser may only set its own password.
    let full = format!("alter role {role} with login password '{verifier}' valid until 'infinity'");
    if let Err(e) = client.batch_execute(&full).await {
        tracing::debug!("setting the password with VALID UNTIL failed ({e}); setting the password only");
        client
            .batch_execute(&format!("alter role {role} password '{verifier}'"))
            .await
            .map_err(|e| fail("setting the run's password on the restored copy".to_string()).with_source(e))?;
    }
    write_hba(hba_path, &settings::hba_conf_password(&conn.user), os_user)?;
    client
        .batch_execute("select pg_catalog.pg_reload_conf()")
        .await
        .map_err(|e| fail("reloading the restored copy's pg_hba.conf".to_string()).with_source(e))?;
    drop(client);
    let locked = Connection { password: Some(password), ..conn.clone() };
    // The postmaster reloads asynchronously: wait until a wrong password is refused.
    let wrong = Connection { password: Some(RunPassword::generate()?), ..conn.clone() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match connect_any(&wrong).await {
            Ok(_) => {}
            Err(Error::Postgres { source, .. })
                if source.as_db_error().map(|d| d.code()) == Some(&SqlState::INVALID_PASSWORD) =>
            {
                break
            }
            Err(e) => tracing::debug!("waiting for the hba reload: {}", e.chain()),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(fail(
                "the restored copy did not switch to password authentication within 15s after pg_reload_conf()".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connect_any(&locked)
        .await
        .map_err(|e| fail("connecting with the run's password failed".to_string()).with_source(e))?;
    Ok(locked)
}

async fn connect_any(conn: &Connection) -> Result<tokio_postgres::Client> {
    match conn.connect(DBS[0]).await {
        Err(Error::Postgres { source, .. })
            if source.as_db_error().map(|d| d.code()) == Some(&SqlState::UNDEFINED_DATABASE) =>
        {
            conn.connect(DBS[1]).await
        }
        r => r,
    }
}

/// Replaces `path` by a new file (never written through a link planted there), readable by
/// the server's OS user only.
fn write_hba(path: &Path, text: &str, os_user: &OsUser) -> Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io("writing", &tmp, e))?;
    drop(f);
    os_user.chown_tree(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("replacing", path, e))
}
