//! Hostile inputs: process. What the restored server (and so any SQL planted in it) can see
//! of restorecheck's own process, who can connect to the copy, and whether a source's children
//! outlive their check.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use restorecheck_core::postgres::user::OsUser;
use restorecheck_core::report::{Phase, Verdict};
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource, CommandConfig, CommandSource};
use restorecheck_core::target::Connection;
use restorecheck_core::targets::docker::{DockerTarget, DockerTargetConfig};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{Assertion, AssertionContext, Check, Outcome, RestoreTarget};

use super::common::*;

/// What an assertion saw while the restored server was up.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// `env` as run by the server (`COPY … FROM PROGRAM 'env'`).
    sql_env: Vec<String>,
    /// `/proc/<postmaster>/environ` (local target only).
    proc_env: Option<Vec<String>>,
    /// Connecting without the run's password: the error.
    no_password: Option<String>,
    /// psql as the server's own OS user, without the password: exit code and stderr.
    server_user_psql: Option<(i32, String)>,
    /// The hba file the server uses, as the server reads it.
    hba: String,
    /// `pg_authid.rolpassword` of our role.
    rolpassword: String,
    /// The server log, read at the end of the assertion.
    log: String,
    /// The connection the assertion got.
    conn: Option<Connection>,
}

#[derive(Debug)]
struct Probe {
    seen: Arc<Mutex<Seen>>,
    read_proc: bool,
}

#[async_trait]
impl Assertion for Probe {
    fn name(&self) -> String {
        "probe".into()
    }

    async fn check(&self, ctx: &AssertionContext) -> restorecheck_core::Result<Outcome> {
        let pg = |e| restorecheck_core::Error::postgres("probe", e);
        let c = ctx.connect(Some("postgres")).await?;
        c.batch_execute("create temp table e(l text); copy e from program 'env'").await.map_err(pg)?;
        let sql_env: Vec<String> =
            c.query("select l from e", &[]).await.map_err(pg)?.iter().map(|r| r.get::<_, String>(0)).collect();
        let data: String = c.query_one("select current_setting('data_directory')", &[]).await.map_err(pg)?.get(0);
        let hba_file: String = c.query_one("select current_setting('hba_file')", &[]).await.map_err(pg)?.get(0);
        let hba: String =
            c.query_one("select pg_read_file(current_setting('hba_file'))", &[]).await.map_err(pg)?.get(0);
        let rolpassword: String = c
            .query_one("select coalesce(rolpassword, '') from pg_authid where rolname = current_user", &[])
            .await
            .map_err(pg)?
            .get(0);
        let proc_env = if self.read_proc {
            let pid_file = std::fs::read_to_string(Path::new(&data).join("postmaster.pid")).unwrap();
            let pid: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
            let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
            Some(
                raw.split(|b| *b == 0)
                    .filter(|l| !l.is_empty())
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect(),
            )
        } else {
            None
        };
        let bare = Connection { password: None, ..ctx.connection.clone() };
        let no_password = bare.connect("postgres").await.err().map(|e| format!("{e:?}"));
        let server_user_psql = if self.read_proc {
            let u = OsUser::resolve(None).unwrap();
            let psql = restorecheck_core::postgres::binaries::newest().unwrap().exe("psql");
            let mut cmd = std::process::Command::new(psql);
            cmd.args(["-X", "-w", "-h", &ctx.connection.host, "-p", &ctx.connection.port.to_string()])
                .args(["-U", &ctx.connection.user, "-d", "postgres", "-c", "select 1"])
                .env_remove("PGPASSWORD");
            if u.switched {
                cmd.uid(u.uid).gid(u.gid);
            }
            let out = cmd.output().unwrap();
            Some((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
        } else {
            None
        };
        let log = std::fs::read_to_string(Path::new(&hba_file).with_file_name("postgres.log")).unwrap_or_default();
        *self.seen.lock().unwrap() = Seen {
            sql_env,
            proc_env,
            no_password,
            server_user_psql,
            hba,
            rolpassword,
            log,
            conn: Some(ctx.connection.clone()),
        };
        Ok(Outcome::pass(1))
    }
}

/// A physical backup with a WAL archive, through source `command`, which declares one
/// variable for its `restore_command` (so the server must get exactly that one).
async fn command_backup(dir: &TestDir) -> (String, restorecheck_core::fixture::SampleCluster) {
    let c = cluster(dir, 10).await;
    let b = c.basebackup("b1", &["-Fp", "-Xnone"]).await.unwrap();
    c.add_rows(2).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let cfg = format!(
        r#"
list = "echo '{{\"id\": \"b1\"}}'"
fetch = "cp -a {b}/. \"$RESTORECHECK_DEST\""
restore_command = 'test "$DECLARED_FOR_RESTORE" = yes-declared && cp {a}/%f "%p"'
env = {{ DECLARED_FOR_RESTORE = "yes-declared" }}
"#,
        b = b.display(),
        a = c.archive_dir().display(),
    );
    (cfg, c)
}

fn command_check(cfg: &str, target: Arc<dyn RestoreTarget>) -> Check {
    let cfg: CommandConfig = toml::from_str(cfg).unwrap();
    Check::new("proc", Arc::new(CommandSource::new(cfg)), target).database("app").timeout(Duration::from_secs(300))
}

fn local_target(settings: &str) -> Arc<dyn RestoreTarget> {
    let cfg: LocalTargetConfig = toml::from_str(settings).unwrap();
    Arc::new(LocalTarget::new(cfg).unwrap())
}

/// A value unique to this test, for restorecheck's own environment.
fn secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("hostile-{tag}-{}-{nanos}", std::process::id())
}

fn assert_clean_env(seen: &Seen, secret_var: &str, secret_value: &str, declared: bool) {
    assert!(seen.sql_env.iter().any(|l| l.starts_with("PATH=")), "env from SQL returned nothing useful: {seen:?}");
    for l in &seen.sql_env {
        assert!(!l.contains(secret_value) && !l.contains(secret_var), "secret readable from SQL: {l}");
    }
    assert!(
        !declared || seen.sql_env.iter().any(|l| l == "DECLARED_FOR_RESTORE=yes-declared"),
        "the variable the source declares is missing: {:?}",
        seen.sql_env
    );
}

#[tokio::test]
async fn the_server_sees_none_of_restorecheck_s_environment() {
    const VAR: &str = "RESTORECHECK_HOSTILE_LOCAL_SECRET";
    let value = secret("local");
    std::env::set_var(VAR, &value);
    let dir = TestDir::new("hostile-env-local");
    let (cfg, _c) = command_backup(&dir).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let probe = Probe { seen: seen.clone(), read_proc: true };
    let r = run(&dir, command_check(&cfg, local_target("")).assert(probe)).await;
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"), "the restore_command ran");
    let seen = seen.lock().unwrap().clone();
    assert_clean_env(&seen, VAR, &value, true);
    let environ = seen.proc_env.clone().unwrap();
    assert!(!environ.is_empty());
    let mut names: Vec<&str> = environ.iter().map(|l| l.split_once('=').map(|x| x.0).unwrap_or(l)).collect();
    names.sort();
    let mut expected = vec!["DECLARED_FOR_RESTORE", "HOME", "LC_ALL", "LOGNAME", "PATH", "USER"];
    if std::env::var_os("TZ").is_some() {
        expected.push("TZ");
        expected.sort();
    }
    assert_eq!(names, expected, "postmaster environment: {environ:?}");
    assert!(!environ.iter().any(|l| l.contains(&value)), "secret in /proc/<postmaster>/environ");
    std::env::remove_var(VAR);
}

#[tokio::test]
async fn only_restorecheck_with_the_run_password_can_connect_and_it_is_never_logged() {
    let dir = TestDir::new("hostile-auth-local");
    let (cfg, _c) = command_backup(&dir).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let probe = Probe { seen: seen.clone(), read_proc: true };
    // log_statement = all: the password statement must still not reach the log.
    let target = local_target("[settings]\nlog_statement = \"all\"\n");
    let r = run(&dir, command_check(&cfg, target).assert(probe)).await;
    assert_pass(&r);
    let seen = seen.lock().unwrap().clone();
    let conn = seen.conn.clone().unwrap();
    let password = conn.password.clone().expect("assertions connect with the run's password");
    assert_eq!(password.expose().len(), 64, "32 random bytes, hex");
    assert!(password.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!format!("{conn:?}").contains(password.expose()), "the password shows in Debug");
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(password.expose()), "the password is in the report");
    // Without the password, restorecheck's own OS user is refused…
    let e = seen.no_password.clone().expect("a connection without the password was accepted");
    assert!(e.to_lowercase().contains("password"), "{e}");
    // …and so is the server's OS user (which runs restore_command and anything planted SQL starts).
    let (code, stderr) = seen.server_user_psql.clone().unwrap();
    assert_ne!(code, 0, "psql as the server's OS user connected: {stderr}");
    assert!(stderr.contains("password") || stderr.contains("authentication"), "{stderr}");
    // The copy's hba: scram for our role, everything else rejected; never trust or peer.
    assert!(seen.hba.contains("scram-sha-256"), "{}", seen.hba);
    assert!(!seen.hba.contains("trust") && !seen.hba.contains("peer"), "{}", seen.hba);
    assert!(seen.hba.trim_end().ends_with("reject"), "{}", seen.hba);
    assert!(seen.rolpassword.starts_with("SCRAM-SHA-256$4096:"), "{}", seen.rolpassword);
    assert!(seen.log.contains("statement:"), "log_statement = all did not take effect:\n{}", seen.log);
    assert!(!seen.log.contains(password.expose()), "the password is in the server log");
    assert!(!seen.log.contains("SCRAM-SHA-256$"), "the verifier is in the server log");
    assert!(!seen.log.to_lowercase().contains("alter role"), "the password statement was logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_container_gets_no_environment_and_no_trust() {
    if restorecheck_core::targets::docker::engine().await.is_err() {
        eprintln!("skipped: no Docker engine");
        return;
    }
    const VAR: &str = "RESTORECHECK_HOSTILE_DOCKER_SECRET";
    let value = secret("docker");
    std::env::set_var(VAR, &value);
    let dir = TestDir::new("hostile-env-docker");
    let c = cluster(&dir, 10).await;
    c.basebackup("b1", &["-Fp", "-Xnone"]).await.unwrap();
    c.add_rows(2).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let image = format!("restorecheck/postgres:{}", c.bin().major);
    let target = DockerTarget::new(DockerTargetConfig::default().image(image)).unwrap();
    let source = BaseBackupSource::new(BaseBackupConfig::new(c.backups_dir()).wal_archive(c.archive_dir()));
    let check =
        Check::new("docker", Arc::new(source), Arc::new(target)).database("app").timeout(Duration::from_secs(300));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let probe = Probe { seen: seen.clone(), read_proc: false };
    let r = run(&dir, check.assert(probe)).await;
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    let seen = seen.lock().unwrap().clone();
    assert_clean_env(&seen, VAR, &value, false);
    assert!(seen.conn.as_ref().unwrap().password.is_some());
    assert!(seen.no_password.is_some(), "a connection without the password was accepted");
    assert!(seen.hba.contains("scram-sha-256") && !seen.hba.contains("trust"), "{}", seen.hba);
    std::env::remove_var(VAR);
}

/// Pids of live (non-zombie) processes whose command line is exactly `needle` (arguments
/// joined by spaces).
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            !zombie && args.join(" ") == needle
        })
        .collect()
}

/// Waits (bounded) until no process with the command line `needle` is left.
fn assert_none_survives(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "children survived their check: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pids_in(file: &PathBuf) -> Vec<u32> {
    std::fs::read_to_string(file).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[tokio::test]
async fn a_command_source_s_children_die_at_the_check_timeout() {
    let dir = TestDir::new("hostile-children");
    let pids = dir.path().join("pids");
    // A unique duration: `sleep` accepts fractions, and it names exactly our children.
    let tag = format!("1000.{}", std::process::id());
    let cfg = format!(
        r#"
list = "echo '{{\"id\": \"b1\"}}'"
fetch = "for i in 1 2 3; do sleep {tag} & echo $! >> {p}; done; (sleep {tag} & echo $! >> {p}; wait) & wait"
"#,
        p = pids.display()
    );
    let check = command_check(&cfg, local_target("")).timeout(Duration::from_secs(3));
    let started = Instant::now();
    let r = run(&dir, check).await;
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.failure);
    let f = r.failure.clone().unwrap();
    assert_eq!(f.phase, Phase::Fetch, "{f:?}");
    assert!(f.message.contains("timed out after 3s"), "{}", f.message);
    assert!(started.elapsed() < Duration::from_secs(60));
    let forked = pids_in(&pids);
    assert_eq!(forked.len(), 4, "the script forked its children: {forked:?}");
    assert_none_survives(&format!("sleep {tag}"));
}

#[tokio::test]
async fn a_helper_left_in_the_background_dies_when_the_script_exits() {
    let dir = TestDir::new("hostile-bg-helper");
    let tag = format!("1000.{}1", std::process::id());
    // The helper closes its output, so nothing waits for it: the script exits at once.
    let cfg = format!(
        r#"
list = "echo '{{\"id\": \"b1\"}}'"
fetch = "sleep {tag} </dev/null >/dev/null 2>&1 & exit 3"
"#
    );
    let r = run(&dir, command_check(&cfg, local_target(""))).await;
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.failure);
    assert_eq!(r.failure.as_ref().map(|f| f.phase), Some(Phase::Fetch));
    assert!(r.failure.unwrap().message.contains("exited 3"));
    assert_none_survives(&format!("sleep {tag}"));
}

#[tokio::test]
async fn the_server_s_own_os_user_cannot_connect_while_the_copy_recovers() {
    let dir = TestDir::new("hostile-peer");
    let c = cluster(&dir, 10).await;
    let b = c.basebackup("b1", &["-Fp", "-Xnone"]).await.unwrap();
    // Several later segments: restore_command keeps running after the copy became consistent
    // and accepts (read-only) connections, which is when a connection attempt reaches
    // authentication.
    for _ in 0..6 {
        c.add_rows(2).await.unwrap();
        c.switch_and_archive().await.unwrap();
    }
    let attempts = dir.sub("attempts");
    OsUser::resolve(None).unwrap().chown_tree(&attempts).unwrap();
    let log = attempts.join("psql.log");
    // restore_command runs as the server's OS user, in the data dir: what planted code could
    // do. It reads the socket dir and port from postmaster.pid and tries to connect.
    let cfg = format!(
        r#"
list = "echo '{{\"id\": \"b1\"}}'"
fetch = "cp -a {b}/. \"$RESTORECHECK_DEST\""
restore_command = 'psql -X -w -h "$(sed -n 5p postmaster.pid)" -p "$(sed -n 4p postmaster.pid)" -U postgres -d postgres -tAc "select 4242" >> {log} 2>&1; cp {a}/%f "%p"'
"#,
        b = b.display(),
        a = c.archive_dir().display(),
        log = log.display(),
    );
    let r =
        run(&dir, command_check(&cfg, local_target("")).assert(sql_eq("select count(*) from registrations", 22))).await;
    assert_pass(&r);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.lines().any(|l| l.trim() == "4242"), "the server's OS user connected:\n{text}");
    assert!(
        text.contains("Peer authentication failed"),
        "no attempt reached authentication (only start-up refusals), so nothing was proven:\n{text}"
    );
}
