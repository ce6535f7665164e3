//! Fault injection: real backups made here, good and deliberately damaged in many distinct
//! ways, each restored through a target and compared with the verdict and phase it must
//! produce. The test suite runs the full set; `restorecheck selftest` runs it on a user's own
//! machine and tooling — proof that their restore tests catch what they claim to catch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::assertions::{AmcheckAssertion, ReadAllAssertion, SqlAssertion};
use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::fixture::{SampleCluster, SampleOptions};
use crate::report::{Phase, Verdict};
use crate::runner::{run_check, Check};
use crate::sources::{BaseBackupConfig, BaseBackupSource, PgDumpConfig, PgDumpSource};
use crate::target::RestoreTarget;

/// How big a self test to run.
#[derive(Debug, Clone)]
pub struct SelftestOptions {
    /// Folder for the sample clusters, backups and work dirs (created; removed afterwards).
    pub root: PathBuf,
    /// Every case (the test suite) or a quick subset (`restorecheck selftest`).
    pub full: bool,
    /// Where backups are restored.
    pub target: Arc<dyn RestoreTarget>,
}

/// One case's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// What was done to the backup.
    pub case: String,
    /// The verdict it must produce.
    pub expected_verdict: Verdict,
    /// The phase it must fail in.
    pub expected_phase: Option<Phase>,
    /// What it produced.
    pub verdict: Verdict,
    /// Where it failed.
    pub phase: Option<Phase>,
    /// The failure message, if any.
    pub message: Option<String>,
    /// Whether expected and observed agree.
    pub ok: bool,
}

struct Case {
    name: &'static str,
    check: Check,
    verdict: Verdict,
    phase: Option<Phase>,
}

const ROWS: u32 = 2000;

fn sh(args: &[&str]) -> Result<std::process::Output> {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| Error::io(format!("running {}", args[0]), args[0], e))
}

fn cp(from: &Path, to: &Path) -> Result<()> {
    let out = sh(&["cp", "-a", &from.display().to_string(), &to.display().to_string()])?;
    if !out.status.success() {
        return Err(Error::io(
            "copying",
            from,
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).to_string()),
        ));
    }
    Ok(())
}

fn flip_byte(file: &Path, offset: u64) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let io = |e| Error::io("damaging", file, e);
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    f.write_all(&[b[0] ^ 0x10]).map_err(io)
}

fn truncate(file: &Path, keep: f64) -> Result<()> {
    let io = |e| Error::io("truncating", file, e);
    let len = std::fs::metadata(file).map_err(io)?.len();
    std::fs::OpenOptions::new().write(true).open(file).map_err(io)?.set_len((len as f64 * keep) as u64).map_err(io)
}

/// The WAL file named in a backup_label's START WAL LOCATION.
fn start_segment(label: &str) -> Option<String> {
    label
        .lines()
        .find(|l| l.starts_with("START WAL LOCATION"))
        .and_then(|l| l.split("(file ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
}

/// Runs the cases and returns their outcomes (the caller prints [`table`]).
pub async fn run(opts: &SelftestOptions, ctx: &RunContext) -> Result<Vec<CaseResult>> {
    let root = &opts.root;
    let mk = |p: &Path| -> Result<()> {
        std::fs::create_dir_all(p).map_err(|e| Error::io("creating", p, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(|e| Error::io("chmod", p, e))
    };
    mk(root)?;
    let damaged = root.join("damaged");
    let work = root.join("work");
    mk(&damaged)?;
    mk(&work)?;
    let target = opts.target.clone();
    let check_of = |name: &'static str, path: &Path, archive: Option<&Path>, verify: bool| -> Check {
        let source = BaseBackupSource::new(BaseBackupConfig {
            path: path.to_path_buf(),
            backup: None,
            wal_archive: archive.map(Path::to_path_buf),
            recovery_target: Default::default(),
            ..Default::default()
        });
        let mut c = integrity(Check::new(name, Arc::new(source), target.clone()));
        c.verify_manifest = verify;
        c
    };
    let dump_of = |name: &'static str, path: &Path| -> Check {
        let source = PgDumpSource::new(PgDumpConfig {
            path: path.to_path_buf(),
            backup: None,
            database: None,
            globals: None,
            no_owner: false,
            jobs: None,
            ..Default::default()
        });
        integrity(Check::new(name, Arc::new(source), target.clone()))
    };
    let copy_of = |name: &str, original: &Path| -> Result<PathBuf> {
        let to = damaged.join(name);
        cp(original, &to)?;
        Ok(to)
    };

    let c =
        SampleCluster::create(&root.join("cluster"), SampleOptions { checksums: true, ..Default::default() }).await?;
    c.create_app(ROWS).await?;
    let cl = c.client("app").await?;
    let path_of = |rel: &'static str| {
        let cl = &cl;
        async move {
            cl.query_one(&format!("select pg_catalog.pg_relation_filepath('{rel}')"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(|e| Error::postgres("locating a relation file", e))
        }
    };
    let heap = path_of("registrations").await?;
    // A page no query or amcheck reads (template1 is never connected to): only pg_checksums sees it.
    let template_file: String = c
        .client("template1")
        .await?
        .query_one("select pg_catalog.pg_relation_filepath('pg_description')", &[])
        .await
        .map_err(|e| Error::postgres("locating a relation file", e))?
        .get(0);
    let index = path_of("registrations_pkey").await?;

    // Good backups. The plain one has no writes during it, so no full-page image in its WAL
    // repairs damage injected into data files.
    let plain = c.basebackup("plain", &["-Fp", "-Xstream"]).await?;
    let targz = c.basebackup("targz", &["-Ft", "-z", "-Xnone"]).await?;
    let mut later = Vec::new();
    for _ in 0..3 {
        c.add_rows(100).await?;
        later.push(c.switch_and_archive().await?);
    }
    let archive = c.archive_dir();
    let targz_only = root.join("targz-only");
    mk(&targz_only)?;
    cp(&targz, &targz_only.join("targz"))?;
    let out = sh(&["tar", "-xzOf", &targz.join("base.tar.gz").display().to_string(), "backup_label"])?;
    let first = start_segment(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| Error::defect("the sample tar backup has no backup_label"))?;

    let mut cases = vec![
        Case {
            name: "good: plain, WAL streamed",
            check: check_of("plain", &plain, None, true),
            verdict: Verdict::Pass,
            phase: None,
        },
        Case {
            name: "good: tar.gz + WAL archive",
            check: check_of("targz", &targz_only, Some(&archive), true),
            verdict: Verdict::Pass,
            phase: None,
        },
    ];
    let a = copy_of("wal-gap", &archive)?;
    std::fs::remove_file(a.join(&later[1])).map_err(|e| Error::io("damaging", &a, e))?;
    cases.push(Case {
        name: "missing WAL segment after consistency",
        check: check_of("gap", &targz_only, Some(&a), true),
        verdict: Verdict::Fail,
        phase: Some(Phase::Recovery),
    });
    let b = copy_of("tar-truncated", &targz_only)?;
    truncate(&b.join("targz/base.tar.gz"), 0.6)?;
    cases.push(Case {
        name: "truncated tar",
        check: check_of("tar", &b, Some(&archive), true),
        verdict: Verdict::Fail,
        phase: Some(Phase::Fetch),
    });
    let b = copy_of("heap-bit-nomanifest", &plain)?;
    flip_byte(&b.join(&heap), 8000)?;
    cases.push(Case {
        name: "flipped bit in a heap page, manifest check off",
        check: check_of("heapbit", &b, None, false),
        verdict: Verdict::Fail,
        phase: Some(Phase::Assert),
    });

    if opts.full {
        let custom = dump_file(&c, "app.custom", "-Fc").await?;
        let dirdump = dump_file(&c, "app.dir", "-Fd").await?;
        cases.push(Case {
            name: "good: custom dump",
            check: dump_of("custom", &custom),
            verdict: Verdict::Pass,
            phase: None,
        });
        cases.push(Case {
            name: "good: directory dump",
            check: dump_of("dir", &dirdump),
            verdict: Verdict::Pass,
            phase: None,
        });
        let a = copy_of("wal-no-first", &archive)?;
        std::fs::remove_file(a.join(&first)).map_err(|e| Error::io("damaging", &a, e))?;
        cases.push(Case {
            name: "missing WAL segment before consistency",
            check: check_of("nofirst", &targz_only, Some(&a), true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Recovery),
        });
        let a = copy_of("wal-truncated", &archive)?;
        truncate(&a.join(&later[1]), 0.5)?;
        cases.push(Case {
            name: "truncated WAL segment",
            check: check_of("waltrunc", &targz_only, Some(&a), true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Recovery),
        });
        let a = copy_of("wal-timeline", &archive)?;
        std::fs::write(a.join("00000002.history"), "1\t0/1000000\tno recovery target specified\n")
            .map_err(|e| Error::io("damaging", &a, e))?;
        cases.push(Case {
            name: "wrong timeline history",
            check: check_of("tli", &targz_only, Some(&a), true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Recovery),
        });
        let b = copy_of("gzip-corrupt", &targz_only)?;
        let gz = b.join("targz/base.tar.gz");
        let len = std::fs::metadata(&gz).map_err(|e| Error::io("reading", &gz, e))?.len();
        for k in 1..8 {
            flip_byte(&gz, len * k / 10)?;
        }
        cases.push(Case {
            name: "corrupted gzip stream",
            check: check_of("gzip", &b, Some(&archive), true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Fetch),
        });
        for (name, nomanifest, phase) in [
            ("deleted relation file", false, Phase::Fetch),
            ("deleted relation file, manifest check off", true, Phase::Assert),
        ] {
            let b = copy_of(&format!("rel-deleted-{nomanifest}"), &plain)?;
            std::fs::remove_file(b.join(&heap)).map_err(|e| Error::io("damaging", &b, e))?;
            cases.push(Case {
                name,
                check: check_of("reldel", &b, None, !nomanifest),
                verdict: Verdict::Fail,
                phase: Some(phase),
            });
        }
        let b = copy_of("heap-bit", &plain)?;
        flip_byte(&b.join(&heap), 8000)?;
        cases.push(Case {
            name: "flipped bit in a heap page",
            check: check_of("heapbit2", &b, None, true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Fetch),
        });
        let b = copy_of("index-bit-nomanifest", &plain)?;
        flip_byte(&b.join(&index), 8192 + 4000)?;
        cases.push(Case {
            name: "flipped bit in an index page, manifest check off",
            check: check_of("indexbit", &b, None, false),
            verdict: Verdict::Fail,
            phase: Some(Phase::Assert),
        });
        let b = copy_of("template-bit-nomanifest", &plain)?;
        flip_byte(&b.join(&template_file), 4000)?;
        cases.push(Case {
            name: "flipped bit in an unread page, manifest check off",
            check: check_of("checksums", &b, None, false),
            verdict: Verdict::Fail,
            phase: Some(Phase::Assert),
        });
        let b = copy_of("no-label", &plain)?;
        std::fs::remove_file(b.join("backup_label")).map_err(|e| Error::io("damaging", &b, e))?;
        cases.push(Case {
            name: "removed backup_label",
            check: check_of("nolabel", &b, None, true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Fetch),
        });
        let b = copy_of("altered", &plain)?;
        std::fs::write(b.join("postgresql.conf"), "# changed after the backup\n")
            .map_err(|e| Error::io("damaging", &b, e))?;
        cases.push(Case {
            name: "file altered after the backup (manifest)",
            check: check_of("altered", &b, None, true),
            verdict: Verdict::Fail,
            phase: Some(Phase::Fetch),
        });
        let d = copy_of("custom-truncated", &custom)?;
        truncate(&d, 0.7)?;
        cases.push(Case {
            name: "truncated custom dump",
            check: dump_of("dumptrunc", &d),
            verdict: Verdict::Fail,
            phase: Some(Phase::Restore),
        });
        let d = copy_of("dir-missing-data", &dirdump)?;
        for e in std::fs::read_dir(&d).map_err(|e| Error::io("listing", &d, e))?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".dat.gz") {
                std::fs::remove_file(e.path()).map_err(|er| Error::io("damaging", e.path(), er))?;
            }
        }
        cases.push(Case {
            name: "missing data file in a directory dump",
            check: dump_of("dirmissing", &d),
            verdict: Verdict::Fail,
            phase: Some(Phase::Restore),
        });
    }

    // Data that restores fine but is wrong for the application.
    let empty = SampleCluster::create(&root.join("empty-cluster"), SampleOptions::default()).await?;
    empty.create_app(0).await?;
    empty.basebackup("b", &["-Ft", "-Xstream"]).await?;
    cases.push(Case {
        name: "empty application table",
        check: check_of("empty", &empty.backups_dir(), None, true),
        verdict: Verdict::Fail,
        phase: Some(Phase::Assert),
    });
    let stale = SampleCluster::create(&root.join("stale-cluster"), SampleOptions::default()).await?;
    stale.create_app(5).await?;
    stale.exec("app", "update registrations set created_at = now() - interval '2 days'").await?;
    stale.basebackup("b", &["-Ft", "-Xstream"]).await?;
    cases.push(Case {
        name: "stale data",
        check: check_of("stale", &stale.backups_dir(), None, true),
        verdict: Verdict::Fail,
        phase: Some(Phase::Assert),
    });

    let mut results = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Cancelled { phase: Phase::Select });
        }
        let r = run_check(&case.check, &work, i, ctx).await;
        let phase = r.failure.as_ref().map(|f| f.phase);
        results.push(CaseResult {
            case: case.name.to_string(),
            expected_verdict: case.verdict,
            expected_phase: case.phase,
            ok: r.verdict == case.verdict && phase == case.phase,
            verdict: r.verdict,
            phase,
            message: r.failure.map(|f| f.message),
        });
    }
    Ok(results)
}

fn integrity(c: Check) -> Check {
    c.database("app")
        .timeout(Duration::from_secs(300))
        .assert(AmcheckAssertion { heapallindexed: true, jobs: 2 })
        .assert(ReadAllAssertion)
        .assert(SqlAssertion::min("select count(*) from registrations", 1.0))
        .assert(SqlAssertion::max_age("select max(created_at) from registrations", Duration::from_secs(3600)))
}

async fn dump_file(c: &SampleCluster, name: &str, format: &str) -> Result<PathBuf> {
    let out = c.backups_dir().join(name);
    let args: Vec<String> = [
        "-h",
        &c.socket_dir().display().to_string(),
        "-p",
        &c.port().to_string(),
        "-U",
        "postgres",
        format,
        "-f",
        &out.display().to_string(),
        "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.tool("pg_dump", &args).await?;
    Ok(out)
}

/// The results as a table: case → expected → observed.
pub fn table(results: &[CaseResult]) -> String {
    let show = |v: Verdict, p: Option<Phase>| match p {
        Some(p) => format!("{v} in {p}"),
        None => v.to_string(),
    };
    let mut out = format!("{:<50} {:<18} {:<18}\n", "case", "expected", "observed");
    for r in results {
        out.push_str(&format!(
            "{:<50} {:<18} {:<18} {}\n",
            r.case,
            show(r.expected_verdict, r.expected_phase),
            show(r.verdict, r.phase),
            if r.ok { "ok" } else { "MISMATCH" }
        ));
    }
    let bad = results.iter().filter(|r| !r.ok).count();
    out.push_str(&format!("{} passed, {} failed\n", results.len() - bad, bad));
    out
}
