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

/// The good backup a case starts from.
#[derive(Debug, Clone, Copy)]
enum Good {
    /// `pg_basebackup -Fp -Xstream` with no writes during it (so no full-page image in its WAL
    /// repairs damage injected into data files).
    Plain,
    /// `pg_basebackup -Ft -z -Xnone`, recovered from the WAL archive (three segments later).
    TarGz,
    /// `pg_basebackup -Ft -Xstream` (uncompressed, so a member can be damaged with the tar
    /// itself intact), taken with no writes during it.
    Tar,
    /// `pg_dump -Fc` of the application database.
    CustomDump,
    /// `pg_dump -Fd` of the application database.
    DirDump,
    /// A tar backup of a cluster whose application table is empty.
    EmptyApp,
    /// A tar backup of a cluster whose newest row is two days old.
    StaleApp,
}

/// Where the good backups and the facts about them are.
struct Fixtures {
    plain: PathBuf,
    /// The folder holding the tar backup (and nothing else).
    targz: PathBuf,
    /// The uncompressed tar backup.
    tar: PathBuf,
    archive: PathBuf,
    custom: Option<PathBuf>,
    dirdump: Option<PathBuf>,
    empty: PathBuf,
    stale: PathBuf,
    /// Data files (relative to the data directory): the application table's heap, its primary
    /// key index, and a template1 catalog no query or amcheck reads (only the offline page checksum
    /// verification sees it).
    heap: String,
    index: String,
    template_file: String,
    /// The first WAL segment the tar backup needs, and three archived after it.
    first: String,
    later: Vec<String>,
    /// The sample clusters: their folders (backups, WAL archive) go when they are dropped.
    _clusters: [SampleCluster; 3],
}

/// Damages the copy at the path (of a backup or a WAL archive).
type DamageFn = fn(&Fixtures, &Path) -> Result<()>;

/// What a case does before its check runs.
#[derive(Clone, Copy)]
enum Damage {
    /// Nothing: a good backup.
    None,
    /// Copies the backup into `damaged/<name>` and damages the copy.
    Backup(&'static str, DamageFn),
    /// Copies the WAL archive into `damaged/<name>` and damages the copy.
    Archive(&'static str, DamageFn),
}

/// One fault-injection case.
struct Case {
    /// What was done to the backup (shown).
    name: &'static str,
    /// Also in the quick set (`restorecheck selftest`), not only in the full one.
    quick: bool,
    /// The check's name.
    check: &'static str,
    from: Good,
    damage: Damage,
    /// Whether the check verifies the `backup_manifest` (physical backups).
    manifest: bool,
    /// The verdict it must produce and the phase it must fail in.
    expect: (Verdict, Option<Phase>),
}

const PASS: (Verdict, Option<Phase>) = (Verdict::Pass, None);

const fn fail(phase: Phase) -> (Verdict, Option<Phase>) {
    (Verdict::Fail, Some(phase))
}

/// Every case, in the order they run and are shown.
const CASES: &[Case] = &[
    Case {
        name: "good: plain, WAL streamed",
        quick: true,
        check: "plain",
        from: Good::Plain,
        damage: Damage::None,
        manifest: true,
        expect: PASS,
    },
    Case {
        name: "good: tar.gz + WAL archive",
        quick: true,
        check: "targz",
        from: Good::TarGz,
        damage: Damage::None,
        manifest: true,
        expect: PASS,
    },
    Case {
        name: "missing WAL segment after consistency",
        quick: true,
        check: "gap",
        from: Good::TarGz,
        damage: Damage::Archive("wal-gap", |f, a| remove(a, &f.later[1])),
        manifest: true,
        expect: fail(Phase::Recovery),
    },
    Case {
        name: "truncated tar",
        quick: true,
        check: "tar",
        from: Good::TarGz,
        damage: Damage::Backup("tar-truncated", |_, b| truncate(&b.join("targz/base.tar.gz"), 0.6)),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "flipped bit in a tar member (in-stream check)",
        quick: true,
        check: "tarbit",
        from: Good::Tar,
        damage: Damage::Backup("tar-member-bit", |f, b| flip_in_tar(&b.join("base.tar"), &f.heap, 8000)),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "flipped bit in a heap page, manifest check off",
        quick: true,
        check: "heapbit",
        from: Good::Plain,
        damage: Damage::Backup("heap-bit-nomanifest", |f, b| flip_byte(&b.join(&f.heap), 8000)),
        manifest: false,
        expect: fail(Phase::Assert),
    },
    Case {
        name: "good: custom dump",
        quick: false,
        check: "custom",
        from: Good::CustomDump,
        damage: Damage::None,
        manifest: true,
        expect: PASS,
    },
    Case {
        name: "good: directory dump",
        quick: false,
        check: "dir",
        from: Good::DirDump,
        damage: Damage::None,
        manifest: true,
        expect: PASS,
    },
    Case {
        name: "missing WAL segment before consistency",
        quick: false,
        check: "nofirst",
        from: Good::TarGz,
        damage: Damage::Archive("wal-no-first", |f, a| remove(a, &f.first)),
        manifest: true,
        expect: fail(Phase::Recovery),
    },
    Case {
        name: "truncated WAL segment",
        quick: false,
        check: "waltrunc",
        from: Good::TarGz,
        damage: Damage::Archive("wal-truncated", |f, a| truncate(&a.join(&f.later[1]), 0.5)),
        manifest: true,
        expect: fail(Phase::Recovery),
    },
    Case {
        name: "wrong timeline history",
        quick: false,
        check: "tli",
        from: Good::TarGz,
        damage: Damage::Archive("wal-timeline", |_, a| {
            std::fs::write(a.join("00000002.history"), "1\t0/1000000\tno recovery target specified\n")
                .map_err(|e| Error::io("damaging", a, e))
        }),
        manifest: true,
        expect: fail(Phase::Recovery),
    },
    Case {
        name: "corrupted gzip stream",
        quick: false,
        check: "gzip",
        from: Good::TarGz,
        damage: Damage::Backup("gzip-corrupt", |_, b| {
            let gz = b.join("targz/base.tar.gz");
            let len = std::fs::metadata(&gz).map_err(|e| Error::io("reading", &gz, e))?.len();
            (1..8).try_for_each(|k| flip_byte(&gz, len * k / 10))
        }),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "deleted relation file",
        quick: false,
        check: "reldel",
        from: Good::Plain,
        damage: Damage::Backup("rel-deleted-false", |f, b| remove(b, &f.heap)),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "deleted relation file, manifest check off",
        quick: false,
        check: "reldel",
        from: Good::Plain,
        damage: Damage::Backup("rel-deleted-true", |f, b| remove(b, &f.heap)),
        manifest: false,
        expect: fail(Phase::Assert),
    },
    Case {
        name: "flipped bit in a heap page",
        quick: false,
        check: "heapbit2",
        from: Good::Plain,
        damage: Damage::Backup("heap-bit", |f, b| flip_byte(&b.join(&f.heap), 8000)),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "flipped bit in an index page, manifest check off",
        quick: false,
        check: "indexbit",
        from: Good::Plain,
        damage: Damage::Backup("index-bit-nomanifest", |f, b| flip_byte(&b.join(&f.index), 8192 + 4000)),
        manifest: false,
        expect: fail(Phase::Assert),
    },
    Case {
        name: "flipped bit in an unread page, manifest check off",
        quick: false,
        check: "checksums",
        from: Good::Plain,
        damage: Damage::Backup("template-bit-nomanifest", |f, b| flip_byte(&b.join(&f.template_file), 4000)),
        manifest: false,
        expect: fail(Phase::Assert),
    },
    Case {
        name: "removed backup_label",
        quick: false,
        check: "nolabel",
        from: Good::Plain,
        damage: Damage::Backup("no-label", |_, b| remove(b, "backup_label")),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "file altered after the backup (manifest)",
        quick: false,
        check: "altered",
        from: Good::Plain,
        damage: Damage::Backup("altered", |_, b| {
            std::fs::write(b.join("postgresql.conf"), "# changed after the backup\n")
                .map_err(|e| Error::io("damaging", b, e))
        }),
        manifest: true,
        expect: fail(Phase::Fetch),
    },
    Case {
        name: "truncated custom dump",
        quick: false,
        check: "dumptrunc",
        from: Good::CustomDump,
        damage: Damage::Backup("custom-truncated", |_, d| truncate(d, 0.7)),
        manifest: true,
        expect: fail(Phase::Restore),
    },
    Case {
        name: "missing data file in a directory dump",
        quick: false,
        check: "dirmissing",
        from: Good::DirDump,
        damage: Damage::Backup("dir-missing-data", |_, d| {
            for e in std::fs::read_dir(d).map_err(|e| Error::io("listing", d, e))?.flatten() {
                if e.file_name().to_string_lossy().ends_with(".dat.gz") {
                    std::fs::remove_file(e.path()).map_err(|er| Error::io("damaging", e.path(), er))?;
                }
            }
            Ok(())
        }),
        manifest: true,
        expect: fail(Phase::Restore),
    },
    // Data that restores fine but is wrong for the application.
    Case {
        name: "empty application table",
        quick: true,
        check: "empty",
        from: Good::EmptyApp,
        damage: Damage::None,
        manifest: true,
        expect: fail(Phase::Assert),
    },
    Case {
        name: "stale data",
        quick: true,
        check: "stale",
        from: Good::StaleApp,
        damage: Damage::None,
        manifest: true,
        expect: fail(Phase::Assert),
    },
];

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

/// Flips a byte at `offset` of member `member`'s content inside the uncompressed tar `tar`
/// (the tar's own structure stays valid).
fn flip_in_tar(tar: &Path, member: &str, offset: u64) -> Result<()> {
    let bytes = std::fs::read(tar).map_err(|e| Error::io("reading", tar, e))?;
    let mut pos = 0usize;
    while pos + 512 <= bytes.len() {
        let h = &bytes[pos..pos + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name: String = h[..100].iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
        let size_field: String =
            h[124..136].iter().take_while(|b| **b != 0 && **b != b' ').map(|b| *b as char).collect();
        let size = u64::from_str_radix(size_field.trim(), 8).unwrap_or(0);
        if name.trim_start_matches("./") == member && offset < size {
            return flip_byte(tar, pos as u64 + 512 + offset);
        }
        pos += 512 + (size.div_ceil(512) * 512) as usize;
    }
    Err(Error::defect(format!("{member} (with {offset} bytes) is not in {}", tar.display())))
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

/// Removes `rel` from the copy `dir`.
fn remove(dir: &Path, rel: &str) -> Result<()> {
    std::fs::remove_file(dir.join(rel)).map_err(|e| Error::io("damaging", dir, e))
}

/// Runs the cases and returns their outcomes (the caller prints [`table`]).
pub async fn run(opts: &SelftestOptions, ctx: &RunContext) -> Result<Vec<CaseResult>> {
    let root = &opts.root;
    mk(root)?;
    let damaged = root.join("damaged");
    let work = root.join("work");
    mk(&damaged)?;
    mk(&work)?;
    let fx = fixtures(root, opts.full).await?;
    let mut results = Vec::new();
    for (i, case) in CASES.iter().filter(|c| c.quick || opts.full).enumerate() {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Cancelled { phase: Phase::Select });
        }
        let check = check_of(case, &fx, &damaged, opts.target.clone())?;
        let r = run_check(&check, &work, i, ctx).await;
        let phase = r.failure.as_ref().map(|f| f.phase);
        let (verdict, expected_phase) = case.expect;
        results.push(CaseResult {
            case: case.name.to_string(),
            expected_verdict: verdict,
            expected_phase,
            ok: r.verdict == verdict && phase == expected_phase,
            verdict: r.verdict,
            phase,
            message: r.failure.map(|f| f.message),
        });
    }
    Ok(results)
}

/// Creates a folder readable by the server's OS user.
fn mk(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::io("creating", p, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(|e| Error::io("chmod", p, e))
}

/// Makes the good backups under `root` (the dumps only for the `full` set).
async fn fixtures(root: &Path, full: bool) -> Result<Fixtures> {
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
    // A page no query or amcheck reads (template1 is never connected to): only the offline
    // checksum verification sees it.
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
    let tar = c.basebackup("tar", &["-Ft", "-Xstream"]).await?;
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
    let (custom, dirdump) = if full {
        (Some(dump_file(&c, "app.custom", "-Fc").await?), Some(dump_file(&c, "app.dir", "-Fd").await?))
    } else {
        (None, None)
    };

    let empty = SampleCluster::create(&root.join("empty-cluster"), SampleOptions::default()).await?;
    empty.create_app(0).await?;
    empty.basebackup("b", &["-Ft", "-Xstream"]).await?;
    let stale = SampleCluster::create(&root.join("stale-cluster"), SampleOptions::default()).await?;
    stale.create_app(5).await?;
    stale.exec("app", "update registrations set created_at = now() - interval '2 days'").await?;
    stale.basebackup("b", &["-Ft", "-Xstream"]).await?;
    Ok(Fixtures {
        plain,
        tar,
        targz: targz_only,
        archive,
        custom,
        dirdump,
        empty: empty.backups_dir(),
        stale: stale.backups_dir(),
        heap,
        index,
        template_file,
        first,
        later,
        _clusters: [c, empty, stale],
    })
}

/// The check of `case`: its good backup, or a damaged copy of it or of the WAL archive in
/// `damaged`, restored into `target` and checked for integrity.
fn check_of(case: &Case, fx: &Fixtures, damaged: &Path, target: Arc<dyn RestoreTarget>) -> Result<Check> {
    let copy_of = |name: &str, original: &Path, damage: DamageFn| -> Result<PathBuf> {
        let to = damaged.join(name);
        cp(original, &to)?;
        damage(fx, &to)?;
        Ok(to)
    };
    let dump = |p: &Option<PathBuf>| {
        p.clone().ok_or_else(|| Error::defect(format!("selftest case {:?} needs the full set", case.name)))
    };
    let (good, archive) = match case.from {
        Good::Plain => (fx.plain.clone(), None),
        Good::TarGz => (fx.targz.clone(), Some(fx.archive.clone())),
        Good::Tar => (fx.tar.clone(), None),
        Good::CustomDump => (dump(&fx.custom)?, None),
        Good::DirDump => (dump(&fx.dirdump)?, None),
        Good::EmptyApp => (fx.empty.clone(), None),
        Good::StaleApp => (fx.stale.clone(), None),
    };
    let (path, archive) = match case.damage {
        Damage::None => (good, archive),
        Damage::Backup(name, damage) => (copy_of(name, &good, damage)?, archive),
        Damage::Archive(name, damage) => {
            let a =
                archive.ok_or_else(|| Error::defect(format!("selftest case {:?} has no WAL archive", case.name)))?;
            (good, Some(copy_of(name, &a, damage)?))
        }
    };
    if matches!(case.from, Good::CustomDump | Good::DirDump) {
        let source = PgDumpSource::new(PgDumpConfig {
            path,
            backup: None,
            database: None,
            globals: None,
            no_owner: false,
            jobs: None,
            ..Default::default()
        });
        return Ok(integrity(Check::new(case.check, Arc::new(source), target)));
    }
    let source = BaseBackupSource::new(BaseBackupConfig {
        path,
        backup: None,
        wal_archive: archive,
        recovery_target: Default::default(),
        ..Default::default()
    });
    let mut c = integrity(Check::new(case.check, Arc::new(source), target));
    c.verify_manifest = case.manifest;
    Ok(c)
}

fn integrity(c: Check) -> Check {
    c.database("app")
        .timeout(Duration::from_secs(300))
        .assert(AmcheckAssertion { heapallindexed: true, jobs: 2, sample: None })
        .assert(ReadAllAssertion::default())
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
