//! A real, throwaway *production-like* PostgreSQL cluster with WAL archiving, for `restorecheck
//! demo`, the integration tests and the benchmark: it makes real backups with the real
//! `pg_basebackup`, so everything downstream is tested against what PostgreSQL really writes.
//!
//! Not meant for production use; everything lives under one folder removed on drop.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::postgres::binaries::{self, BinDir};
use crate::postgres::user::OsUser;

/// A running sample cluster that archives its WAL to `archive_dir()`.
#[derive(Debug)]
pub struct SampleCluster {
    root: PathBuf,
    sock: PathBuf,
    archive: PathBuf,
    bin: BinDir,
    user: OsUser,
    port: u16,
    running: bool,
    keep: bool,
}

/// Options for [`SampleCluster::create`].
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// PostgreSQL major version to use (default: the newest installed).
    pub major: Option<u32>,
    /// Extra lines for postgresql.conf.
    pub extra_conf: Vec<String>,
    /// Enable data checksums.
    pub checksums: bool,
}

impl SampleCluster {
    /// Creates, configures and starts a cluster under `root` (which must not exist).
    pub async fn create(root: &Path, opts: SampleOptions) -> Result<Self> {
        let bin = match opts.major {
            Some(m) => binaries::find(m, None)?,
            None => binaries::newest()?,
        };
        let user = OsUser::resolve(None)?;
        let sock = Self::socket_dir_for(root);
        for p in [root.to_path_buf(), root.join("backups"), root.join("archive"), sock.clone()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|e| Error::io("creating", &p, e))?;
        }
        // The server user must be able to reach the root (it may sit in a root-only folder).
        user.chown_tree(root)?;
        user.chown_tree(&sock)?;
        let port = 20000 + (std::process::id() % 20000) as u16;
        let mut c = SampleCluster {
            root: root.to_path_buf(),
            sock,
            archive: root.join("archive"),
            bin,
            user,
            port,
            running: false,
            keep: false,
        };
        let mut initdb = vec![
            "-D".to_string(),
            c.pgdata().display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
        ];
        if opts.checksums {
            initdb.push("-k".into());
        }
        c.tool("initdb", &initdb).await?;
        let mut conf = vec![
            format!("port = {}", c.port),
            "listen_addresses = ''".into(),
            format!("unix_socket_directories = '{}'", c.socket_dir().display()),
            "wal_level = replica".into(),
            "archive_mode = on".into(),
            format!("archive_command = 'test ! -f {a}/%f && cp %p {a}/%f'", a = c.archive_dir().display()),
            "max_wal_senders = 5".into(),
            "fsync = off".into(),
            "shared_buffers = 64MB".into(),
            "max_connections = 40".into(),
        ];
        conf.extend(opts.extra_conf);
        let path = c.pgdata().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
        text.push_str("\n# restorecheck sample cluster\n");
        text.push_str(&conf.join("\n"));
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))?;
        c.start().await?;
        if c.user.name != "postgres" {
            // Tools that connect as their OS user's name (pgBackRest, WAL-E) find a role, as on
            // a Debian host where the cluster runs as `postgres`.
            c.exec("postgres", &format!("create role {} superuser login", crate::postgres::quote_ident(&c.user.name)))
                .await?;
        }
        Ok(c)
    }

    /// Unix socket paths must fit in 107 bytes: deep roots get a short socket dir in /tmp.
    fn socket_dir_for(root: &Path) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if root.join("sock/.s.PGSQL.65535").as_os_str().len() <= 100 {
            root.join("sock")
        } else {
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            PathBuf::from(format!("/tmp/rcfx-{}-{n}", std::process::id()))
        }
    }

    /// Creates and starts a streaming standby of this cluster under `root` (which must not
    /// exist): `pg_basebackup -R` of this cluster, its own socket dir and port, archiving (once
    /// promoted) into this cluster's archive, as a real failover pair does.
    pub async fn standby(&self, root: &Path) -> Result<SampleCluster> {
        let sock = Self::socket_dir_for(root);
        for p in [root.to_path_buf(), root.join("backups"), sock.clone()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|e| Error::io("creating", &p, e))?;
        }
        self.user.chown_tree(root)?;
        self.user.chown_tree(&sock)?;
        let port = self.port.wrapping_add(1).max(1024);
        let mut c = SampleCluster {
            root: root.to_path_buf(),
            sock,
            archive: self.archive.clone(),
            bin: self.bin.clone(),
            user: self.user.clone(),
            port,
            running: false,
            keep: false,
        };
        let args: Vec<String> = [
            "-D",
            &c.pgdata().display().to_string(),
            "-h",
            &self.socket_dir().display().to_string(),
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-c",
            "fast",
            "--no-sync",
            "-R",
            "-Xstream",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.tool("pg_basebackup", &args).await?;
        let path = c.pgdata().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
        // Once promoted it archives what it holds, including segments the primary archived
        // already (its base backup's): an identical copy counts as archived, as careful
        // archive commands have it.
        text.push_str(&format!(
            "\n# restorecheck sample standby\nport = {port}\nunix_socket_directories = '{}'\n\
             archive_command = '(test ! -f {a}/%f && cp %p {a}/%f) || cmp -s %p {a}/%f'\n",
            c.socket_dir().display(),
            a = c.archive_dir().display()
        ));
        std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))?;
        c.start().await?;
        Ok(c)
    }

    /// Promotes a standby (`pg_ctl promote -w`): it switches to a new timeline and, with
    /// `archive_mode = on`, archives the new timeline's history file and segments.
    pub async fn promote(&self) -> Result<()> {
        self.tool("pg_ctl", &["-D".into(), self.pgdata().display().to_string(), "-w".into(), "promote".into()])
            .await
            .map(|_| ())
    }

    /// Keeps the folder on drop (for debugging).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The cluster's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The data directory.
    pub fn pgdata(&self) -> PathBuf {
        self.root.join("pgdata")
    }
    /// The WAL archive (`archive_command` copies here).
    pub fn archive_dir(&self) -> PathBuf {
        self.archive.clone()
    }
    /// A folder for backups.
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }
    /// The socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.sock.clone()
    }
    /// The port (it names the socket file in `socket_dir()`).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The binaries in use.
    pub fn bin(&self) -> &BinDir {
        &self.bin
    }
    /// The OS user the cluster runs as.
    pub fn os_user(&self) -> &OsUser {
        &self.user
    }

    /// Runs a PostgreSQL program from the cluster's bin dir as the server's OS user.
    pub async fn tool(&self, name: &str, args: &[String]) -> Result<String> {
        let exe = self.bin.exe(name);
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(args).stdin(Stdio::null()).current_dir(&self.root);
        crate::process::clean_env(&mut cmd, Some(&self.bin.path), Some(&self.user), &[]);
        self.user.apply(&mut cmd);
        let out = cmd.output().await.map_err(|e| Error::io(format!("running {name}"), &exe, e))?;
        if !out.status.success() {
            return Err(Error::Tooling {
                what: format!(
                    "{name} {} failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                hint: "see the message above".into(),
                source: None,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the cluster (`pg_ctl -w`: this is the *source* cluster, not a restore).
    pub async fn start(&mut self) -> Result<()> {
        let log = self.root.join("server.log").display().to_string();
        self.tool(
            "pg_ctl",
            &["-D".into(), self.pgdata().display().to_string(), "-l".into(), log, "-w".into(), "start".into()],
        )
        .await?;
        self.running = true;
        Ok(())
    }

    /// Stops the cluster (fast shutdown).
    pub async fn stop(&mut self) -> Result<()> {
        if self.running {
            self.tool(
                "pg_ctl",
                &[
                    "-D".into(),
                    self.pgdata().display().to_string(),
                    "-m".into(),
                    "fast".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            )
            .await?;
            self.running = false;
        }
        Ok(())
    }

    /// Connects as `postgres` to `db`.
    pub async fn client(&self, db: &str) -> Result<tokio_postgres::Client> {
        let conn = crate::target::Connection {
            host: self.socket_dir().display().to_string(),
            port: self.port,
            user: "postgres".into(),
            password: None,
        };
        conn.connect(db).await
    }

    /// Runs SQL statements in `db`.
    pub async fn exec(&self, db: &str, sql: &str) -> Result<()> {
        self.client(db)
            .await?
            .batch_execute(sql)
            .await
            .map_err(|e| Error::postgres(format!("sample cluster: {sql}"), e))
    }

    /// Creates database `app` with table `registrations(id, email, created_at)` holding `rows` rows.
    pub async fn create_app(&self, rows: u32) -> Result<()> {
        self.exec("postgres", "create database app").await?;
        self.exec(
            "app",
            &format!(
                "create table registrations (id bigserial primary key, email text not null, created_at timestamptz not null default now());\n\
                 insert into registrations (email) select 'user' || g || '@example.com' from generate_series(1, {rows}) g;"
            ),
        )
        .await
    }

    /// Adds `rows` registrations.
    pub async fn add_rows(&self, rows: u32) -> Result<()> {
        self.exec(
            "app",
            &format!("insert into registrations (email) select 'later' || g || '@example.com' from generate_series(1, {rows}) g;"),
        )
        .await
    }

    /// Switches to a new WAL segment and waits (bounded) until the finished one is archived.
    /// Returns the archived segment's name.
    pub async fn switch_and_archive(&self) -> Result<String> {
        let c = self.client("postgres").await?;
        let row = c
            .query_one("select pg_walfile_name(pg_switch_wal())", &[])
            .await
            .map_err(|e| Error::postgres("pg_switch_wal", e))?;
        let seg: String = row.get(0);
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.archive_dir().join(&seg).exists() {
                return Ok(seg);
            }
            if std::time::Instant::now() > until {
                return Err(Error::Tooling {
                    what: format!("segment {seg} was not archived within 60s"),
                    hint: "see the sample cluster's server.log".into(),
                    source: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes a backup with `pg_basebackup` into `backups/<name>` with the given extra options
    /// (e.g. `["-Ft", "-z", "-Xstream"]`) and returns its folder.
    pub async fn basebackup(&self, name: &str, options: &[&str]) -> Result<PathBuf> {
        let dest = self.backups_dir().join(name);
        let mut args = vec![
            "-D".to_string(),
            dest.display().to_string(),
            "-h".into(),
            self.socket_dir().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-c".into(),
            "fast".into(),
            "--no-sync".into(),
            "-l".into(),
            format!("restorecheck {name}"),
        ];
        args.extend(options.iter().map(|s| s.to_string()));
        self.tool("pg_basebackup", &args).await?;
        Ok(dest)
    }
}

impl Drop for SampleCluster {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = std::process::Command::new(self.bin.exe("pg_ctl"));
            cmd.args(["-D", &self.pgdata().display().to_string(), "-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.user.apply_std(&mut cmd);
            let _ = cmd.status();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        if !self.sock.starts_with(&self.root) {
            let _ = std::fs::remove_dir_all(&self.sock);
        }
    }
}
