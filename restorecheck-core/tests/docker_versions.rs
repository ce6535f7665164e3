//! Target `docker` across PostgreSQL major versions: each version's own pg_basebackup (run in
//! its image) makes the backup, the `docker` target restores it in the same image. Good backups
//! pass; a missing WAL segment fails in the recovery phase. Needs the images that
//! `docker/build-images.sh` builds (`restorecheck/postgres:{13,15,17}`) and a Docker engine.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use restorecheck_core::report::{Phase, Verdict};
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
use restorecheck_core::targets::docker::{self, DockerTarget, DockerTargetConfig};
use restorecheck_core::Check;

const IMAGE: &str = "restorecheck/postgres:{major}";

/// Makes, inside the image of `major`, a cluster with archiving, a tar backup without WAL and
/// later writes that only the archive holds. Returns the test dir.
async fn backup_in_container(major: u32) -> TestDir {
    let dir = TestDir::new(&format!("docker{major}"));
    for d in ["backups", "archive", "sock"] {
        dir.sub(d);
    }
    // The image's own postgres user writes here.
    std::process::Command::new("chmod").args(["-R", "0777"]).arg(dir.path()).status().unwrap();
    let d = dir.path().display();
    let script = format!(
        r#"set -e
D={d}/cluster; S={d}/sock
initdb -D $D -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
cat >> $D/postgresql.conf <<EOC
listen_addresses = ''
unix_socket_directories = '$S'
wal_level = replica
archive_mode = on
archive_command = 'cp %p {d}/archive/%f'
max_connections = 60
EOC
pg_ctl -D $D -w -l {d}/source.log start >/dev/null
q() {{ psql -X -q -v ON_ERROR_STOP=1 -h $S -U postgres "$@"; }}
q -c "create database app"
q -d app -c "create table registrations (id bigserial primary key, email text, created_at timestamptz default now()); insert into registrations (email) select 'u' || g from generate_series(1, 100) g"
pg_basebackup -h $S -U postgres -D {d}/backups/b1 -Ft -Xnone -c fast
q -d app -c "insert into registrations (email) select 'later' || g from generate_series(1, 50) g"
seg=$(q -tA -c "select pg_walfile_name(pg_switch_wal())")
i=0; while [ ! -f {d}/archive/$seg ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.1; done
test -f {d}/archive/$seg
pg_ctl -D $D -m fast -w stop >/dev/null
echo $seg"#
    );
    let image = IMAGE.replace("{major}", &major.to_string());
    let out = docker::run_script(&image, "postgres", &[(dir.path(), false)], &script)
        .await
        .expect("backup inside the container");
    assert!(out.trim().len() >= 24, "{out}");
    // The image's postgres user wrote 0600 files; the server's OS user must be able to read them.
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path().join("backups"))
        .arg(dir.path().join("archive"))
        .status()
        .unwrap();
    dir
}

fn docker_check(dir: &TestDir, archive: &std::path::Path) -> Check {
    let source =
        BaseBackupSource::new(BaseBackupConfig::new(dir.path().join("backups")).wal_archive(archive.to_path_buf()));
    let target = DockerTarget::new(DockerTargetConfig::default().image(IMAGE)).unwrap();
    Check::new("docker", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", 150))
}

/// Runs a check and asserts no container of its run is left.
async fn run_docker(dir: &TestDir, check: Check) -> restorecheck_core::report::CheckReport {
    let ctx = restorecheck_core::RunContext::new();
    let work = dir.sub("work");
    let r = restorecheck_core::runner::run_check(&check, &work, 0, &ctx).await;
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(std::fs::read_dir(&work).unwrap().next().is_none(), "work dir left behind");
    assert_no_containers(&ctx.run_id).await;
    r
}

async fn version_round_trip(major: u32) {
    let dir = backup_in_container(major).await;
    let r = run_docker(&dir, docker_check(&dir, &dir.path().join("archive"))).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    assert!(r.recovery.server_version.as_deref().unwrap().starts_with(&major.to_string()));
    assert_eq!(r.recovery.timeline, Some(2));
    assert_eq!(r.backup.pg_major, Some(major));

    // The same backup with the first WAL segment it needs missing must fail in recovery.
    let label = String::from_utf8(
        std::process::Command::new("tar")
            .args(["-xOf"])
            .arg(dir.path().join("backups/b1/base.tar"))
            .arg("backup_label")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let broken = dir.sub("broken-archive");
    for s in segments(&dir.path().join("archive")) {
        std::fs::copy(dir.path().join("archive").join(&s), broken.join(&s)).unwrap();
    }
    std::fs::remove_file(broken.join(start_segment(&label))).unwrap();
    let r = run_docker(&dir, docker_check(&dir, &broken)).await;
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.failure);
    assert_eq!(r.failure.as_ref().unwrap().phase, Phase::Recovery);
    assert!(r.failure.unwrap().log_tail.is_some());
}

async fn assert_no_containers(run_id: &str) {
    use std::collections::HashMap;
    use testcontainers::bollard::query_parameters::ListContainersOptionsBuilder;
    let d = docker::engine().await.unwrap();
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_string(), vec![format!("{}={run_id}", docker::LABEL_RUN)])]);
    let list = d
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .unwrap();
    assert!(list.is_empty(), "containers left behind: {:?}", list.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_13_backup_restores_in_docker_and_missing_wal_fails() {
    version_round_trip(13).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_15_backup_restores_in_docker_and_missing_wal_fails() {
    version_round_trip(15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_17_backup_restores_in_docker_and_missing_wal_fails() {
    version_round_trip(17).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_a_clear_error_and_nothing_is_pulled() {
    let dir = TestDir::new("noimage");
    let c = cluster(&dir, 1).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    let source = BaseBackupSource::new(BaseBackupConfig::new(c.backups_dir()));
    let target = DockerTarget::new(DockerTargetConfig::default().image("restorecheck/no-such-image:{major}")).unwrap();
    let r = run_docker(&dir, Check::new("x", Arc::new(source), Arc::new(target))).await;
    assert_eq!(r.verdict, Verdict::Error);
    let msg = r.failure.unwrap().message;
    assert!(msg.contains("restorecheck/no-such-image:15") && msg.contains("never pulls"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_left_by_a_killed_run_are_removed_by_the_next() {
    use std::collections::HashMap;
    use testcontainers::bollard::models::ContainerCreateBody;
    use testcontainers::bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};
    let d = docker::engine().await.unwrap();
    // A container labelled as restorecheck's, owned by a process that no longer exists.
    let dead_pid = "999999";
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let labels = HashMap::from([
        (docker::LABEL_RUN.to_string(), "killedrun".to_string()),
        (docker::LABEL_PID.to_string(), dead_pid.to_string()),
        (docker::LABEL_HOST.to_string(), host),
    ]);
    let body = ContainerCreateBody {
        image: Some("restorecheck/postgres:15".into()),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let created = d.create_container(Some(CreateContainerOptionsBuilder::default().build()), body).await.unwrap();
    d.start_container(&created.id, None::<testcontainers::bollard::query_parameters::StartContainerOptions>)
        .await
        .unwrap();
    let notes = docker::remove_stale_containers(&d).await;
    assert!(notes.iter().any(|n| n.contains("left by a killed run")), "{notes:?}");
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_string(), vec![format!("{}=killedrun", docker::LABEL_RUN)])]);
    let list = d
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .unwrap();
    assert!(list.is_empty(), "the stale container is still there");
}

/// The ids of the containers of run `run_id` (by its label).
async fn containers_of(run_id: &str) -> Vec<String> {
    use std::collections::HashMap;
    use testcontainers::bollard::query_parameters::ListContainersOptionsBuilder;
    let d = docker::engine().await.unwrap();
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_string(), vec![format!("{}={run_id}", docker::LABEL_RUN)])]);
    d.list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// `docker inspect` of a container: its raw JSON text and the parsed object.
fn inspect(id: &str) -> (String, serde_json::Value) {
    let out = std::process::Command::new("docker").args(["inspect", id]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (text, v[0].clone())
}

/// What every container restorecheck starts must look like in `docker inspect`: no `secret`
/// anywhere, no environment but `LC_ALL=C` and the image's own `PATH`, no network, no new
/// privileges, the run's labels, and every mount but the work dir (and socket dir) read-only.
fn assert_sealed(id: &str, secret: &str, work_dir: &std::path::Path) {
    let (text, v) = inspect(id);
    assert!(!text.contains(secret), "container {id} shows the secret: {text}");
    let env: Vec<&str> = v["Config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(env.iter().all(|e| *e == "LC_ALL=C" || e.starts_with("PATH=")), "{env:?}");
    assert_eq!(v["HostConfig"]["NetworkMode"], "none", "{id}");
    let sec = v["HostConfig"]["SecurityOpt"].to_string();
    assert!(sec.contains("no-new-privileges"), "{sec}");
    for l in [docker::LABEL_RUN, docker::LABEL_PID, docker::LABEL_HOST, docker::LABEL_WORK] {
        assert!(v["Config"]["Labels"][l].is_string(), "{id} lacks label {l}");
    }
    for m in v["Mounts"].as_array().unwrap() {
        let dest = m["Destination"].as_str().unwrap();
        let writable = m["RW"].as_bool().unwrap();
        if writable {
            assert!(dest.starts_with(&*work_dir.to_string_lossy()) || dest.starts_with("/tmp/rc-"), "{id}: {m}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_run_in_the_image_with_their_env_in_files_read_only_mounts_and_no_network() {
    use restorecheck_core::target::RestoreTarget;
    use restorecheck_core::toolbox::{RunAs, ToolCommand, ToolboxRequest};
    let dir = TestDir::new("docker-tools");
    let work = dir.sub("work");
    let repo = dir.sub("repo");
    let conf = dir.sub("conf");
    std::fs::write(conf.join("tool.conf"), "x").unwrap();
    let target = DockerTarget::new(
        DockerTargetConfig::default().image(IMAGE).mounts(vec![docker::DockerMount::new(conf.clone(), "/etc/rc-tool")]),
    )
    .unwrap();
    let ctx = restorecheck_core::RunContext::new();
    let tools = target.toolbox(&ctx, &ToolboxRequest::new(&work, vec![repo.clone()])).await.unwrap();
    assert!(tools.locate("pg_restore", "", Some(15)).await.unwrap().starts_with("/usr/lib/postgresql/15/bin"));
    let e = tools.locate("wal-e", "pip install wal-e", Some(15)).await.unwrap_err().to_string();
    assert!(
        e.contains("wal-e not found in image restorecheck/postgres:15")
            && e.contains("build docker/Dockerfile.wale or set [check.target] image"),
        "{e}"
    );
    let e = tools.locate("pgbackrest", "", Some(13)).await.unwrap_err().to_string();
    assert!(e.contains("restorecheck/postgres:13") && e.contains("docker/Dockerfile.pgbackrest"), "{e}");

    let secret = format!("s3cr3t-{}-tools", std::process::id());
    let script = format!(
        r#"test "$RC_TOOL_SECRET" = '{secret}' || {{ echo no-secret; exit 1; }}
! touch {repo}/x 2>/dev/null || {{ echo repo-writable; exit 1; }}
! touch /etc/rc-tool/x 2>/dev/null || {{ echo mount-writable; exit 1; }}
test -f /etc/rc-tool/tool.conf || {{ echo mount-missing; exit 1; }}
touch {work}/written || {{ echo work-not-writable; exit 1; }}
ls /sys/class/net | tr '\n' ' '; id -u"#,
        repo = repo.display(),
        work = work.display()
    );
    let cmd = ToolCommand::new("sh").env([("RC_TOOL_SECRET".to_string(), secret.clone())]).major(Some(15));
    let out = tools.prepare(&cmd).await.unwrap().tokio().args(["-c", &script]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), format!("lo {}", nix::unistd::Uid::effective()), "only loopback, as the tester");
    assert!(work.join("written").is_file());
    assert!(!repo.join("x").exists() && !conf.join("x").exists());
    // The server's user has a name in the image (initdb needs one).
    let server = ToolCommand::new("sh").run_as(RunAs::Server).major(Some(15));
    let out = tools.prepare(&server).await.unwrap().tokio().args(["-c", "id -u; id -un"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let uid = restorecheck_core::postgres::user::OsUser::resolve(None).unwrap().uid;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{uid}\n")), "{out:?}");

    let ids = containers_of(&ctx.run_id).await;
    assert_eq!(ids.len(), 2, "one tools container per image (13 and 15): {ids:?}");
    for id in &ids {
        assert_sealed(id, &secret, &work);
    }
    tools.close().await.unwrap();
    tools.close().await.unwrap();
    assert!(containers_of(&ctx.run_id).await.is_empty(), "close leaves no container");
}

/// An assertion that looks at the run's containers while the restored server runs: none shows
/// the source's secret in `docker inspect`, and the declared mount is read-only to the server.
#[derive(Debug)]
struct InspectProbe {
    run_id: String,
    secret: String,
    mounted: std::path::PathBuf,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl restorecheck_core::Assertion for InspectProbe {
    fn name(&self) -> String {
        "inspect".into()
    }

    async fn check(
        &self,
        ctx: &restorecheck_core::AssertionContext,
    ) -> restorecheck_core::Result<restorecheck_core::Outcome> {
        let ids = containers_of(&self.run_id).await;
        for id in &ids {
            let (text, _) = inspect(id);
            assert!(!text.contains(&self.secret), "container {id} shows the secret: {text}");
        }
        let c = ctx.connect(Some("postgres")).await?;
        let write = c.batch_execute("copy (select 1) to program 'touch /etc/rc-wal/planted && echo written >&2'").await;
        assert!(write.is_err(), "the server wrote into a declared mount");
        let mut seen = self.seen.lock().unwrap();
        seen.extend(ids);
        seen.push(format!("{}", self.mounted.join("planted").exists()));
        Ok(restorecheck_core::Outcome::pass(serde_json::json!(true)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_command_s_secret_reaches_it_but_never_docker_inspect() {
    use restorecheck_core::sources::{CommandConfig, CommandSource};
    let dir = TestDir::new("docker-secret");
    let c = cluster(&dir, 100).await;
    c.basebackup("b1", &["-Fp", "-Xnone"]).await.unwrap();
    c.add_rows(50).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let backups = c.backups_dir();
    std::process::Command::new("chmod").args(["-R", "a+rX"]).arg(&backups).arg(c.archive_dir()).status().unwrap();
    // Writable to anyone: only the read-only mount keeps the server from writing there.
    std::process::Command::new("chmod").arg("0777").arg(c.archive_dir()).status().unwrap();
    let secret = format!("s3cr3t-{}-wal", std::process::id());
    let env_file = dir.path().join("wal.env");
    std::fs::write(&env_file, format!("RC_WAL_SECRET={secret}\n")).unwrap();
    std::fs::set_permissions(&env_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cfg = CommandConfig::new(
        r#"echo '{"id": "b1", "pg_major": 15}'"#,
        format!("cp -a {}/b1/. \"$RESTORECHECK_DEST\"/", backups.display()),
    );
    // Recovery only reaches the later rows if the secret arrives (compared by its digest: the
    // restore_command itself is in the server container's command line).
    let digest = std::process::Command::new("sh")
        .args(["-c", "echo \"$1\" | md5sum | cut -d' ' -f1", "sh", &secret])
        .output()
        .unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap().trim().to_string();
    assert_eq!(digest.len(), 32);
    cfg.restore_command = Some(format!(
        "test \"$(echo \"$RC_WAL_SECRET\" | md5sum | cut -d' ' -f1)\" = {digest} && cp /etc/rc-wal/%f %p"
    ));
    cfg.env_file = Some(env_file);
    let source = CommandSource::new(cfg);
    let target = DockerTarget::new(DockerTargetConfig::default().image(IMAGE).mounts(vec![
        docker::DockerMount::new(c.archive_dir(), "/etc/rc-wal"),
        docker::DockerMount::new(backups.clone(), backups.clone()),
    ]))
    .unwrap();
    let ctx = restorecheck_core::RunContext::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = InspectProbe {
        run_id: ctx.run_id.clone(),
        secret: secret.clone(),
        mounted: c.archive_dir(),
        seen: seen.clone(),
    };
    let check = Check::new("secret", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(std::time::Duration::from_secs(300))
        .assert(sql_eq("select count(*) from registrations", 150))
        .assert(probe);
    let work = dir.sub("work");
    let r = restorecheck_core::runner::run_check(&check, &work, 0, &ctx).await;
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_pass(&r);
    assert_eq!(r.recovery.mode.as_deref(), Some("archive"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last().map(String::as_str), Some("false"), "a file appeared in the read-only mount");
    assert!(seen.len() >= 3, "expected a server and a tools container while the server ran: {seen:?}");
    let report = serde_json::to_string(&r).unwrap();
    assert!(!report.contains(&secret), "the report shows the secret");
    assert!(std::fs::read_dir(&work).unwrap().next().is_none(), "work dir left behind");
    assert_no_containers(&ctx.run_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn page_checksums_of_a_docker_restore_are_verified_and_a_bad_page_fails_like_local() {
    use restorecheck_core::fixture::{SampleCluster, SampleOptions};
    use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
    let dir = TestDir::new("docker-checksums");
    let c = SampleCluster::create(&dir.path().join("cluster"), SampleOptions { checksums: true, ..Default::default() })
        .await
        .unwrap();
    c.create_app(100).await.unwrap();
    c.exec(
        "app",
        "create table other as select g, repeat('x', 100) as pad from generate_series(1, 2000) g; checkpoint",
    )
    .await
    .unwrap();
    let rel: String =
        c.client("app").await.unwrap().query_one("select pg_relation_filepath('other')", &[]).await.unwrap().get(0);
    let good = c.basebackup("b1", &["-Fp", "-Xstream"]).await.unwrap();
    let image = format!("restorecheck/postgres:{}", c.bin().major);
    let check = |path: &std::path::Path, target: Arc<dyn restorecheck_core::RestoreTarget>| {
        let source = BaseBackupSource::new(BaseBackupConfig::new(path));
        Check::new("checksums", Arc::new(source), target)
            .database("app")
            .timeout(std::time::Duration::from_secs(300))
            .assert(sql_eq("select count(*) from registrations", 100))
    };
    let docker_target = || -> Arc<dyn restorecheck_core::RestoreTarget> {
        Arc::new(DockerTarget::new(DockerTargetConfig::default().image(image.clone())).unwrap())
    };
    let r = run_docker(&dir, check(&good, docker_target())).await;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failure);
    let sums = r.assertions.iter().find(|a| a.name == "checksums").expect("a checksums result");
    assert_eq!(sums.verdict, Verdict::Pass, "{sums:?}");
    let observed = serde_json::to_value(sums).unwrap()["observed"].clone();
    assert!(observed["blocks_scanned"].as_u64().unwrap_or(0) > 0, "{observed}");

    // One bad page of a table no assertion reads (no manifest, so only the checksums see it).
    let bad = c.backups_dir().join("bad");
    copy(&good, &bad);
    std::fs::remove_file(bad.join("backup_manifest")).unwrap();
    let file = bad.join(&rel);
    let mut bytes = std::fs::read(&file).unwrap();
    for b in &mut bytes[4000..4016] {
        *b ^= 0xff;
    }
    std::fs::write(&file, bytes).unwrap();
    let r = run_docker(&dir, check(&bad, docker_target())).await;
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.failure);
    let sums = r.assertions.iter().find(|a| a.name == "checksums").expect("a checksums result");
    assert!(
        sums.message.as_deref().unwrap_or("").contains("bad page checksum(s): checksum verification failed in file"),
        "{sums:?}"
    );
    let local = run_docker(&dir, check(&bad, Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()))).await;
    assert_eq!(local.verdict, r.verdict);
}
