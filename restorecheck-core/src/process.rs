//! How restorecheck starts child processes: a clean environment, its own process group and a
//! parent-death signal, and the whole group killed when the check ends.
//!
//! The restored database is untrusted: anything the server can see (its environment, the
//! environment of programs it starts) is readable from SQL (`COPY … FROM PROGRAM 'env'`). So
//! PostgreSQL programs get [`env_clear`](std::process::Command::env_clear) plus only what they
//! need ([`pg_env`]), and every child runs in its own process group ([`own_group`]) that is
//! killed as a whole ([`GroupGuard`]) at the deadline, on cancellation or when the future that
//! waits for it is dropped, so no helper a tool forked outlives its check.

use std::path::Path;

use crate::postgres::user::OsUser;

/// The variables a PostgreSQL program (server, client or tool) gets: `PATH` (its own bin dir,
/// then `/usr/bin:/bin`), `LC_ALL=C` (messages we parse), `TZ` when set, and for the OS user it
/// runs as `HOME`, `USER` and `LOGNAME`. Everything else of restorecheck's environment (cloud
/// keys, SMTP and webhook settings, passphrases) is removed.
pub(crate) fn pg_env(bin_dir: Option<&Path>, user: Option<&OsUser>) -> Vec<(String, String)> {
    let mut path = String::new();
    if let Some(b) = bin_dir {
        path.push_str(&b.display().to_string());
        path.push(':');
    }
    path.push_str("/usr/local/bin:/usr/bin:/bin");
    let mut env = vec![("PATH".to_string(), path), ("LC_ALL".to_string(), "C".to_string())];
    if let Ok(tz) = std::env::var("TZ") {
        env.push(("TZ".into(), tz));
    }
    let (name, home) = match user {
        Some(u) => (u.name.clone(), home_of(u.uid)),
        None => {
            let me = nix::unistd::Uid::effective();
            let u = nix::unistd::User::from_uid(me).ok().flatten();
            (u.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| me.to_string()), home_of(me.as_raw()))
        }
    };
    env.push(("HOME".into(), home));
    env.push(("USER".into(), name.clone()));
    env.push(("LOGNAME".into(), name));
    env
}

fn home_of(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.dir.display().to_string())
        .unwrap_or_else(|| "/".into())
}

/// Replaces the environment of `cmd` with [`pg_env`] plus `extra` (e.g. the variables a source
/// declares for its `restore_command`).
pub(crate) fn clean_env(
    cmd: &mut tokio::process::Command,
    bin_dir: Option<&Path>,
    user: Option<&OsUser>,
    extra: &[(String, String)],
) {
    clean_env_std(cmd.as_std_mut(), bin_dir, user, extra);
}

/// [`clean_env`] for a `std::process::Command`.
pub(crate) fn clean_env_std(
    cmd: &mut std::process::Command,
    bin_dir: Option<&Path>,
    user: Option<&OsUser>,
    extra: &[(String, String)],
) {
    cmd.env_clear();
    cmd.envs(pg_env(bin_dir, user));
    cmd.envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

/// The environment a PostgreSQL client program (`psql`, `pg_restore`) that connects to the
/// restored copy through `conn` gets besides [`pg_env`]: `PGPASSWORD` once the target switched
/// the copy to the run's password ([`crate::postgres::auth::lock_down`]). Such a program runs
/// as the server's OS user — never root, since a plain dump's psql meta-commands (`\!`) are the
/// dump author's code — in its own process group ([`crate::postgres::binaries::PgTools`]).
pub(crate) fn client_env(conn: &crate::target::Connection) -> Vec<(String, String)> {
    conn.password.iter().map(|p| ("PGPASSWORD".to_string(), p.expose().to_string())).collect()
}

/// Puts the child in its own process group (a terminal's Ctrl-C reaches restorecheck only, and
/// [`kill_group`] reaches every process the child forks) and gives it a parent-death signal:
/// if restorecheck itself dies, the child gets `signal` (PostgreSQL: `SIGQUIT`, tools: `SIGKILL`).
pub(crate) fn own_group(cmd: &mut tokio::process::Command, signal: libc::c_int) {
    own_group_std(cmd.as_std_mut(), signal);
}

/// [`own_group`] for a `std::process::Command`.
pub(crate) fn own_group_std(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    set_parent_death_signal(cmd, signal);
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), which are async-signal-safe. pre_exec runs after the uid/gid switch, which
    // would otherwise clear the setting.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("restorecheck exited while starting a child"));
            }
            Ok(())
        });
    }
}

/// Sends `SIGKILL` to the process group `pgid`.
pub(crate) fn kill_group(pgid: i32) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Runs `cmd` (set up with [`own_group`]) to completion and captures its output, like
/// `Command::output`, but kills the child's whole group when the returned future is dropped
/// (the check's deadline) and kills what the child left running in its group when it exits.
pub(crate) async fn output(mut cmd: tokio::process::Command) -> std::io::Result<std::process::Output> {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn()?;
    let mut guard = GroupGuard::new(&child);
    let out = child.wait_with_output().await;
    guard.finished();
    out
}

/// Kills a child's whole process group when dropped, unless [`disarm`](GroupGuard::disarm)ed.
/// Keep it alive for as long as the child may run: dropping the future that waits for the
/// child (the check's deadline) then kills every process of the group, not just the leader.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    /// A guard for the group led by `child` (started with [`own_group`]).
    pub(crate) fn new(child: &tokio::process::Child) -> Self {
        GroupGuard { pgid: child.id().and_then(|p| i32::try_from(p).ok()) }
    }

    /// [`Self::new`] for a `std::process::Child` (started with [`own_group_std`]).
    #[cfg(feature = "encryption")]
    pub(crate) fn new_std(child: &std::process::Child) -> Self {
        GroupGuard { pgid: i32::try_from(child.id()).ok() }
    }

    /// The process group id, while armed.
    #[cfg(test)]
    pub(crate) fn pgid(&self) -> Option<i32> {
        self.pgid
    }

    /// Kills the group now (idempotent).
    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }

    /// The leader finished on its own: kill what it left behind in its group (a helper it
    /// forked into the background) right away, then forget the group id, which the kernel may
    /// hand out again once the group is empty.
    pub(crate) fn finished(&mut self) {
        self.kill();
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pg_env_has_only_what_postgres_needs() {
        let env = pg_env(Some(Path::new("/usr/lib/postgresql/15/bin")), None);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        for n in &names {
            assert!(["PATH", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME"].contains(n), "{n}");
        }
        let path = &env.iter().find(|(k, _)| k == "PATH").unwrap().1;
        assert!(path.starts_with("/usr/lib/postgresql/15/bin:"), "{path}");
    }

    #[tokio::test]
    async fn a_dropped_guard_kills_the_whole_group() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg("sleep 1000.4242 & sleep 1000.4242 & wait").stdin(std::process::Stdio::null());
        own_group(&mut cmd, libc::SIGKILL);
        let mut child = cmd.spawn().unwrap();
        let guard = GroupGuard::new(&child);
        let pgid = guard.pgid().unwrap();
        // Wait until both sleeps run in the group.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while members(pgid) < 3 {
            assert!(std::time::Instant::now() < deadline, "children did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(guard);
        let _ = child.wait().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while members(pgid) > 0 {
            assert!(std::time::Instant::now() < deadline, "group {pgid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Live (non-zombie) processes in group `pgid`.
    fn members(pgid: i32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|s| {
                let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            })
            .count()
    }
}
