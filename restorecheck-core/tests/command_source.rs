//! Source `command`: a user's own list/fetch programs, physical and logical, with secrets only
//! through an env_file that never shows up in the report.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use restorecheck_core::report::{Phase, Verdict};
use restorecheck_core::source::FetchRequest;
use restorecheck_core::sources::{CommandConfig, CommandSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::workdir::WorkDir;
use restorecheck_core::{BackupSource, Check, ErrorKind};

const SECRET: &str = "tok-5f1e0c9a-very-secret";

fn command_check(cfg: &str) -> Check {
    let cfg: CommandConfig = toml::from_str(cfg).unwrap();
    Check::new(
        "cmd",
        Arc::new(CommandSource::new(cfg)),
        Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
    )
    .database("app")
    .timeout(std::time::Duration::from_secs(300))
}

#[tokio::test]
async fn physical_backup_through_commands_with_archive_recovery_and_a_secret() {
    let dir = TestDir::new("cmd-physical");
    let c = cluster(&dir, 40).await;
    let b = c.basebackup("b1", &["-Fp", "-Xnone"]).await.unwrap();
    c.add_rows(2).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let env_file = dir.path().join("tool.env");
    std::fs::write(
        &env_file,
        format!("# secrets for the tool\nWAL_DIR={}\nAPI_TOKEN={SECRET}\n", c.archive_dir().display()),
    )
    .unwrap();
    let cfg = format!(
        r#"
list = "echo '{{\"id\": \"b1\", \"taken_at\": \"2026-01-01T00:00:00Z\", \"kind\": \"mytool\"}}'; echo '{{\"id\": \"b0\", \"taken_at\": \"2025-01-01T00:00:00Z\"}}'"
fetch = "test \"${{#API_TOKEN}}\" = {len} && test \"$RESTORECHECK_BACKUP_ID\" = b1 && cp -a {b}/. \"$RESTORECHECK_DEST\""
restore_command = 'test -n "$API_TOKEN" && cp "$WAL_DIR/%f" "%p"'
env_file = "{env}"
"#,
        b = b.display(),
        env = env_file.display(),
        len = SECRET.len()
    );
    let r = run(&dir, command_check(&cfg).assert(sql_eq("select count(*) from registrations", 42))).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.backup.id.as_deref(), Some("b1"), "newest by taken_at");
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(SECRET), "the secret leaked into the report");
    let debug = format!("{:?}", command_check(&cfg));
    assert!(!debug.contains(SECRET), "the secret leaked into Debug output");
}

#[tokio::test]
async fn dump_through_commands() {
    let dir = TestDir::new("cmd-dump");
    let c = cluster(&dir, 7).await;
    let out = c.backups_dir().join("app.dump");
    let args: Vec<String> = [
        "-h",
        &c.socket_dir().display().to_string(),
        "-p",
        &c.port().to_string(),
        "-U",
        "postgres",
        "-Fc",
        "-f",
        &out.display().to_string(),
        "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.tool("pg_dump", &args).await.unwrap();
    let cfg = format!(
        "list = \"echo '{{\\\"id\\\": \\\"d1\\\"}}'\"\nfetch = \"cp {} \\\"$RESTORECHECK_DEST/\\\"\"\n",
        out.display()
    );
    let r = run(&dir, command_check(&cfg).assert(sql_eq("select count(*) from registrations", 7))).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert_eq!(r.recovery.mode.as_deref(), Some("logical"));
}

#[tokio::test]
async fn fetch_exit_codes_tell_a_bad_backup_from_a_broken_tool() {
    let dir = TestDir::new("cmd-exit");
    let bad = "list = \"echo '{\\\"id\\\": \\\"x\\\"}'\"\nfetch = \"echo checksum mismatch >&2; exit 65\"\n";
    let r = run(&dir, command_check(bad)).await;
    assert_eq!(r.verdict, Verdict::Fail);
    let f = r.failure.unwrap();
    assert_eq!(f.phase, Phase::Fetch);
    assert!(f.message.contains("checksum mismatch"), "{}", f.message);
    let broken = "list = \"echo '{\\\"id\\\": \\\"x\\\"}'\"\nfetch = \"exit 3\"\n";
    let r = run(&dir, command_check(broken)).await;
    assert_eq!(r.verdict, Verdict::Error);
    let garbled = "list = \"echo not-json\"\nfetch = \"true\"\n";
    let r = run(&dir, command_check(garbled)).await;
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(r.failure.unwrap().phase, Phase::Select);
}

#[tokio::test]
async fn commands_run_through_the_checks_toolbox_with_their_variables() {
    let dir = TestDir::new("cmd-toolbox");
    let env_file = dir.path().join("tool.env");
    std::fs::write(&env_file, format!("API_TOKEN={SECRET}\n")).unwrap();
    let cfg: CommandConfig = toml::from_str(&format!(
        r#"
list = "echo '{{\"id\": \"x\", \"pg_major\": 15}}'"
fetch = 'test -n "$API_TOKEN" && exit 3'
env = {{ A = "1" }}
env_file = "{}"
"#,
        env_file.display()
    ))
    .unwrap();
    let src = CommandSource::new(cfg);
    assert!(src.read_only_paths().is_empty());
    let tools = RecordingTools::new();
    let ctx = RecordingTools::context(&tools);
    let chosen = src.select(&ctx, None).await.unwrap();
    let work = WorkDir::create(&dir.sub("work"), &ctx.run_id, 0).unwrap();
    let req = FetchRequest::new(work.data_dir(), work.tablespace_dir(), work.scratch_dir());
    let e = src.fetch(&ctx, &chosen, &req).await.unwrap_err();
    assert!(e.to_string().contains("the fetch command exited 3"), "{e}");
    let prepared = tools.prepared();
    assert_eq!(prepared.len(), 2, "{prepared:?}");
    assert!(prepared.iter().all(|(p, _, _)| p == std::path::Path::new("/bin/sh")), "{prepared:?}");
    assert_eq!(prepared[0].1, ["A", "API_TOKEN"]);
    assert_eq!(prepared[1].1, ["A", "API_TOKEN", "RESTORECHECK_DEST", "RESTORECHECK_BACKUP_ID"]);
    assert_eq!((prepared[0].2, prepared[1].2), (None, Some(15)));
    work.remove().unwrap();

    let e = src.list(&RecordingTools::context(&RecordingTools::without(&["sh"]))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tooling, "{e}");
    assert!(e.to_string().contains(NOT_IN_IMAGE), "{e}");
}
