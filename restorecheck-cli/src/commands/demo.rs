//! `restorecheck demo`: a sample production-like cluster with WAL archiving, a real
//! `pg_basebackup`, later writes that only the archive holds, and a restore test of it all.

use restorecheck_core::fixture::{SampleCluster, SampleOptions};
use restorecheck_core::{runner, Config, Error, ExitStatus, Registry, RunOptions};

use crate::cli::DemoArgs;

pub async fn run(args: DemoArgs, quiet: bool) -> ExitStatus {
    let opts = RunOptions { work_root: args.work_dir.clone() };
    let root = opts.work_root().join(format!("restorecheck-demo-{}", std::process::id()));
    let say = |m: &str| {
        if !quiet {
            eprintln!("demo: {m}");
        }
    };
    // A missing --work-dir is created like `mkdir -p` (umask modes): the sample cluster's OS user
    // must be able to traverse it.
    if let Err(e) = std::fs::create_dir_all(opts.work_root()) {
        return super::report_error(&Error::io("creating", opts.work_root(), e));
    }
    let config = match prepare(&root, &say).await {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return super::report_error(&e);
        }
    };
    say("restore-testing the newest backup (config below)");
    if !quiet {
        eprintln!("{}", indent(&config));
    }
    let checks = match Config::parse(&config, &Registry::default()) {
        Ok(c) => c.checks,
        Err(e) => return super::report_error(&e),
    };
    let ctx = super::context(quiet);
    let report = runner::run(&checks, &opts, &ctx).await;
    let status = super::print_report(&report, args.format);
    let _ = std::fs::remove_dir_all(&root);
    say("cleaned up");
    if !quiet {
        eprintln!("{}", next_steps(&std::env::current_dir().unwrap_or_default()));
    }
    status
}

/// The three commands a user runs next on their own backups, with the paths they would use.
fn next_steps(cwd: &std::path::Path) -> String {
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "restorecheck".into());
    let cfg = cwd.join("restorecheck.toml");
    let cfg = cfg.display();
    format!(
        "demo: next, on your own backups:\n\
         \x20   {exe} init -o {cfg}          # annotated config: set [check.source] path/wal_archive and your assertions\n\
         \x20   {exe} validate -c {cfg}      # checks the config, paths and PostgreSQL binaries; restores nothing\n\
         \x20   {exe} run -c {cfg}           # the restore test; exit 0 pass, 1 fail, 2 error"
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

async fn prepare(root: &std::path::Path, say: &impl Fn(&str)) -> Result<String, Error> {
    let mut cluster = SampleCluster::create(root, SampleOptions::default()).await?;
    say(&format!(
        "sample cluster: PostgreSQL {} in {} (OS user {})",
        cluster.bin().version,
        cluster.pgdata().display(),
        cluster.os_user().name
    ));
    cluster.create_app(1000).await?;
    say("database app: 1000 registrations; taking a pg_basebackup (tar, gzip, WAL streamed)");
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    cluster.basebackup(&stamp, &["-Ft", "-z", "-Xstream"]).await?;
    cluster.add_rows(500).await?;
    let seg = cluster.switch_and_archive().await?;
    say(&format!("500 more registrations after the backup; WAL archived up to {seg}"));
    cluster.stop().await?;
    let backups = cluster.backups_dir();
    let archive = cluster.archive_dir();
    // The cluster's folder is removed by the caller after the run; keep it past this drop.
    cluster.keep();
    Ok(format!(
        r#"[[check]]
name = "demo"
database = "app"
max_backup_age = "1h"
timeout = "10m"

[check.source]
kind = "basebackup"
path = "{}"
wal_archive = "{}"

[[check.assert]]
name = "registrations made after the backup were replayed from the archive"
sql = "select count(*) from registrations"
equals = 1500

[[check.assert]]
name = "newest registration is recent"
sql = "select max(created_at) from registrations"
max_age = "1h"
"#,
        backups.display(),
        archive.display()
    ))
}
