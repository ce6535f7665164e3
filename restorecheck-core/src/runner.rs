//! The pipeline, in one place: **select → fetch → restore → wait (recovery) → assert → report
//! → teardown**, with a timing per phase, a deadline per check, and teardown on every path
//! (failure, timeout, panic in an assertion, cancellation).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::assertion::{Assertion, AssertionContext, Outcome};
use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::postgres::{Lsn, WalSegment};
use crate::report::{
    AssertionReport, BackupReport, CheckReport, ExpectedEndReport, Failure, Phase, RecoveryReport, Report, Timings,
    Verdict,
};
use crate::source::{Artifact, ArtifactKind, BackupInfo, BackupSource, FetchRequest, FetchedBackup};
use crate::target::{RecoveryInfo, RestoreRequest, RestoreTarget, RunningServer};
use crate::workdir::WorkDir;

/// One check: a source, a target and the assertions, composed.
#[derive(Debug, Clone)]
pub struct Check {
    /// Name in reports.
    pub name: String,
    /// Database assertions run in by default.
    pub database: String,
    /// Where the backup comes from.
    pub source: Arc<dyn BackupSource>,
    /// Where it is restored.
    pub target: Arc<dyn RestoreTarget>,
    /// What must hold afterwards, in order.
    pub assertions: Vec<Arc<dyn Assertion>>,
    /// Deadline for the whole check (teardown excluded).
    pub timeout: Duration,
    /// Backup id to test instead of the newest.
    pub backup: Option<String>,
    /// Check physical backups against their `backup_manifest` before starting.
    pub verify_manifest: bool,
    /// After the assertions, stop the server cleanly and verify the page checksums of what the
    /// assertions did not read in full through the server (clusters with data checksums,
    /// targets that can).
    pub verify_checksums: bool,
    /// Database role the user's assertions run as (`SET ROLE`); `None`: the target's superuser.
    /// restorecheck's own checks (amcheck, read_all, …) always run as superuser.
    pub role: Option<String>,
    /// Recovery time objective: a check that restored but took longer (total time) fails with
    /// an `rto` assertion.
    pub rto: Option<Duration>,
    /// Coverage window ([`crate::coverage`]): fail when a listed backup older than this never
    /// passed a restore test.
    pub coverage: Option<Duration>,
    /// What earlier runs tested (from the history), for `backup = "rotate"` and `coverage`;
    /// the front end fills it in ([`Check::tested`]). Empty: nothing tested yet.
    pub tested: Arc<crate::coverage::TestedBackups>,
    /// Where recovery stops, overriding the source's own `recovery_target`.
    pub recovery_target: Option<crate::source::RecoveryTarget>,
}

impl Check {
    /// The raw composition: a check with the default database (`postgres`), timeout (30 min),
    /// manifest and checksum verification, and **only the assertions added** with
    /// [`assert`](Self::assert) — no amcheck. To get exactly what a `[[check]]` table gets
    /// (built-in integrity assertions, `max_backup_age`, `rto`, …), build it from a
    /// [`crate::CheckSpec`].
    pub fn new(name: impl Into<String>, source: Arc<dyn BackupSource>, target: Arc<dyn RestoreTarget>) -> Self {
        Check {
            name: name.into(),
            database: "postgres".into(),
            source,
            target,
            assertions: Vec::new(),
            timeout: crate::spec::DEFAULT_TIMEOUT,
            backup: None,
            verify_manifest: true,
            verify_checksums: true,
            role: None,
            rto: None,
            coverage: None,
            tested: Default::default(),
            recovery_target: None,
        }
    }

    /// Sets what earlier runs tested (for `backup = "rotate"` and `coverage`).
    pub fn tested(mut self, tested: crate::coverage::TestedBackups) -> Self {
        self.tested = Arc::new(tested);
        self
    }

    /// True when the check needs the source's whole list: rotation or a coverage window.
    pub fn needs_listing(&self) -> bool {
        self.coverage.is_some() || self.wanted_backup() == Some(crate::coverage::ROTATE)
    }

    fn wanted_backup(&self) -> Option<&str> {
        self.backup.as_deref().or(self.source.configured_backup())
    }

    /// Sets the default database.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.database = db.into();
        self
    }

    /// Adds an assertion.
    pub fn assert(mut self, a: impl Assertion + 'static) -> Self {
        self.assertions.push(Arc::new(a));
        self
    }

    /// Sets the deadline.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Runs the user's assertions as database role `role` (`SET ROLE`).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Sets the recovery time objective.
    pub fn rto(mut self, rto: Duration) -> Self {
        self.rto = Some(rto);
        self
    }
}

/// Options for a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Folder for work directories (default: `$TMPDIR`, else `/var/tmp`, which is on disk
    /// rather than in memory on most systems).
    pub work_root: Option<PathBuf>,
}

impl RunOptions {
    /// The effective work root.
    pub fn work_root(&self) -> PathBuf {
        self.work_root.clone().unwrap_or_else(|| {
            std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"))
        })
    }
}

/// Runs every check in order and returns the report. Never panics; never leaves a server
/// or work directory behind (a killed earlier run's leftovers are removed first).
pub async fn run(checks: &[Check], opts: &RunOptions, ctx: &RunContext) -> Report {
    run_parallel(checks, opts, ctx, 1).await
}

/// Like [`run`], with up to `jobs` checks running at the same time (each in its own work dir,
/// with its own server). The report lists the checks in their configured order.
pub async fn run_parallel(checks: &[Check], opts: &RunOptions, ctx: &RunContext, jobs: usize) -> Report {
    let started_at = Utc::now();
    let root = opts.work_root();
    for note in crate::workdir::remove_stale(&root) {
        tracing::warn!("{note}");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let (check, root, ctx, slots) = (check.clone(), root.clone(), ctx.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            if ctx.cancel.is_cancelled() {
                return skipped(&check, "the run was cancelled before this check started");
            }
            run_check(&check, &root, i, &ctx).await
        }));
    }
    let mut reports = Vec::new();
    for (task, check) in tasks.into_iter().zip(checks) {
        reports.push(task.await.unwrap_or_else(|e| skipped(check, &format!("the check's task failed: {e}"))));
    }
    Report::new(ctx.run_id.clone(), started_at, reports)
}

fn skipped(check: &Check, why: &str) -> CheckReport {
    CheckReport {
        name: check.name.clone(),
        verdict: Verdict::Error,
        failure: Some(Failure { phase: Phase::Select, message: why.into(), log_tail: None }),
        backup: BackupReport::default(),
        recovery: RecoveryReport::default(),
        assertions: vec![],
        timings: Timings::default(),
        warnings: vec![],
        notes: vec![],
    }
}

/// What the pipeline holds, kept outside its future so that teardown can reach it after a
/// timeout, a cancellation or an error.
struct State {
    phase: Phase,
    phase_started: Instant,
    timings: Timings,
    work: Option<WorkDir>,
    tools: Option<Arc<dyn crate::toolbox::ToolBox>>,
    server: Option<Box<dyn RunningServer>>,
    report: CheckReport,
}

impl State {
    fn enter(&mut self, phase: Phase, ctx: &RunContext) {
        self.close_phase();
        self.phase = phase;
        self.phase_started = Instant::now();
        ctx.progress.phase(&self.report.name, phase);
    }
    fn close_phase(&mut self) {
        let secs = self.phase_started.elapsed().as_secs_f64();
        self.timings.set(self.phase, secs);
    }
}

/// Runs one check; `index` keeps work dirs of several checks in one run apart.
pub async fn run_check(check: &Check, work_root: &Path, index: usize, ctx: &RunContext) -> CheckReport {
    let started = Instant::now();
    let mut st = State {
        phase: Phase::Select,
        phase_started: started,
        timings: Timings::default(),
        work: None,
        tools: None,
        server: None,
        report: CheckReport {
            name: check.name.clone(),
            verdict: Verdict::Pass,
            failure: None,
            backup: BackupReport::default(),
            recovery: RecoveryReport::default(),
            assertions: vec![],
            timings: Timings::default(),
            warnings: vec![],
            notes: vec![],
        },
    };
    ctx.progress.phase(&check.name, Phase::Select);
    enum End {
        Done(Result<()>),
        TimedOut,
        Cancelled,
    }
    // The check's own token: cancelled on timeout too, so blocking work (extraction, copies)
    // stops before teardown removes the work dir under it.
    let check_ctx = RunContext { cancel: ctx.cancel.child_token(), ..ctx.clone() };
    let end = {
        let fut = pipeline(check, work_root, index, &check_ctx, &mut st);
        tokio::select! {
            r = tokio::time::timeout(check.timeout, fut) => match r {
                Ok(r) => End::Done(r),
                Err(_) => End::TimedOut,
            },
            _ = ctx.cancel.cancelled() => End::Cancelled,
        }
    };
    check_ctx.cancel.cancel();
    let result = match end {
        End::Done(r) => r,
        End::TimedOut => Err(Error::Timeout { phase: st.phase, after: check.timeout }),
        End::Cancelled => Err(Error::Cancelled { phase: st.phase }),
    };
    if let Err(e) = result {
        let log_tail = e.log_tail().map(str::to_string).or_else(|| match st.phase {
            Phase::Restore | Phase::Recovery => st.server.as_ref().and_then(|s| s.log_tail(20)),
            _ => None,
        });
        st.report.verdict = if e.is_backup_defect() { Verdict::Fail } else { Verdict::Error };
        st.report.failure = Some(Failure { phase: st.phase, message: e.chain(), log_tail });
    }

    // Teardown: always, bounded, and outside the check's deadline.
    st.enter(Phase::Teardown, ctx);
    if let Some(mut server) = st.server.take() {
        st.report.notes.extend(server.notes());
        match tokio::time::timeout(Duration::from_secs(120), server.teardown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => teardown_problem(&mut st.report, format!("stopping the server: {}", e.chain())),
            Err(_) => teardown_problem(&mut st.report, "stopping the server took more than 120s".into()),
        }
    }
    if let Some(tools) = st.tools.take() {
        match tokio::time::timeout(Duration::from_secs(60), tools.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                teardown_problem(&mut st.report, format!("stopping the tools ({}): {}", tools.describe(), e.chain()))
            }
            Err(_) => teardown_problem(
                &mut st.report,
                format!("stopping the tools ({}) took more than 60s", tools.describe()),
            ),
        }
    }
    if let Some(work) = st.work.take() {
        let t = std::time::Instant::now();
        let removed = work.remove();
        tracing::debug!("work dir removed in {:.3}s", t.elapsed().as_secs_f64());
        if let Err(e) = removed {
            teardown_problem(&mut st.report, format!("removing the work dir: {}", e.chain()));
        }
    }
    st.close_phase();
    st.timings.total = started.elapsed().as_secs_f64();
    st.report.timings = st.timings.clone();
    if let Some(rto) = check.rto {
        crate::rto::judge(&mut st.report, rto);
    }
    for a in &check.assertions {
        a.check_finished(st.report.verdict);
    }
    st.report
}

fn teardown_problem(report: &mut CheckReport, message: String) {
    tracing::error!("teardown: {message}");
    if report.failure.is_none() {
        report.verdict = Verdict::Error;
        report.failure = Some(Failure { phase: Phase::Teardown, message, log_tail: None });
    } else {
        report.warnings.push(format!("teardown: {message}"));
    }
}

async fn pipeline(check: &Check, work_root: &Path, index: usize, ctx: &RunContext, st: &mut State) -> Result<()> {
    // The seam: a target that cannot take what the source produces is refused before
    // anything is listed or fetched.
    crate::target::check_compatible(check.source.as_ref(), check.target.as_ref())?;

    // The work dir first: the target's toolbox (where the source's tools run, e.g. in a
    // container of the check's image) mounts it, and listing may already run a tool.
    let work = WorkDir::create(work_root, &ctx.run_id, index)?;
    st.work = Some(work.clone());
    let tools = check
        .target
        .toolbox(
            ctx,
            &crate::toolbox::ToolboxRequest::new(work.path(), check.source.read_only_paths())
                .with_private_writes(check.source.private_write_paths()),
        )
        .await?;
    st.tools = Some(tools.clone());
    let ctx = &ctx.clone().with_tools(tools);

    // select (with the whole list when rotating or judging coverage)
    let listed = if check.needs_listing() { Some(check.source.list(ctx).await?) } else { None };
    let backup = match &listed {
        Some(all) => {
            let wanted = match check.wanted_backup() {
                Some(crate::coverage::ROTATE) => match check.tested.rotate(all) {
                    Some(b) => {
                        st.report.notes.push(match check.tested.0.get(&b.id) {
                            Some(t) => format!(
                                "backup = \"rotate\": {} was tested longest ago ({}, {})",
                                b.id,
                                t.last_tested.format("%Y-%m-%d %H:%M UTC"),
                                t.last_verdict
                            ),
                            None => format!("backup = \"rotate\": {} was never tested", b.id),
                        });
                        Some(b.id.clone())
                    }
                    None => None,
                },
                other => other.map(str::to_string),
            };
            crate::source::select_from(check.source.kind(), &check.source.describe(), all.clone(), wanted.as_deref())?
        }
        None => check.source.select(ctx, check.backup.as_deref()).await?,
    };
    st.report.backup = backup_report(&backup);
    // Dumps load into newer majors too: the target picks their binaries when it starts.
    let physical = match check.source.artifact_kind() {
        Some(kind) => kind == ArtifactKind::Physical,
        None => !crate::sources::pg_dump::is_dump_kind(&backup.kind),
    };
    if let Some(major) = backup.pg_major.filter(|_| physical) {
        check.target.preflight(Some(major)).await?;
    }

    // fetch
    st.enter(Phase::Fetch, ctx);
    let req = FetchRequest::new(work.data_dir(), work.tablespace_dir(), work.scratch_dir())
        .with_recovery_target(check.recovery_target.clone())
        .with_verify_manifest(check.verify_manifest);
    let mut artifact = check.source.fetch(ctx, &backup, &req).await?;
    if let Some(declared) = check.source.artifact_kind().filter(|k| *k != artifact.kind()) {
        return Err(Error::internal(format!(
            "source {} declared that it produces {declared} but produced {}",
            check.source.kind(),
            artifact.kind()
        )));
    }
    crate::target::check_artifact(artifact.kind(), check.source.as_ref(), check.target.as_ref())?;
    st.report.backup.pg_major = Some(artifact.pg_major());
    if let Artifact::Physical(fetched) = &mut artifact {
        if fetched.backup_timeline.is_none() {
            // Before start: a finished recovery renames backup_label.
            fetched.backup_timeline = crate::wal_archive::backup_label_timeline(&fetched.data_dir);
        }
        if check.verify_manifest && fetched.data_dir.join("backup_manifest").is_file() {
            let note = check.target.verify_backup(ctx, fetched).await?;
            st.report.notes.push(note);
        }
    }

    // restore
    st.enter(Phase::Restore, ctx);
    let req = RestoreRequest::new(work.path().to_path_buf(), work.socket_dir()).with_database(&check.database);
    let server = check.target.start(ctx, &artifact, &req).await?;
    st.server = Some(server);

    // recovery: wait for the real end, then prove it reached everything the source holds
    st.enter(Phase::Recovery, ctx);
    let server = st.server.as_mut().ok_or_else(|| Error::internal("the server vanished after start"))?;
    let mut info = server.wait_recovered(ctx).await?;
    let connection = server.connection();
    match &artifact {
        Artifact::Physical(fetched) => {
            let verdict = completeness(fetched, &mut info);
            st.report.recovery = recovery_report(&info);
            st.report.recovery.target = Some(fetched.recovery_target.to_string());
            if let Some(path) = timeline_path(fetched) {
                st.report.recovery.timeline_path = Some(path.timelines);
                st.report.recovery.timeline_switches = path.switches;
            }
            verdict?;
        }
        Artifact::Logical(_) => {
            // A dump carries no WAL: loaded is complete (load errors already failed the restore).
            st.report.recovery = recovery_report(&info);
            st.report.recovery.target = Some(crate::source::RecoveryTarget::Latest.to_string());
        }
    }

    // assert
    st.enter(Phase::Assert, ctx);
    let actx = AssertionContext {
        connection,
        database: check.database.clone(),
        backup,
        recovery: info,
        role: check.role.clone(),
        run_key: ctx.run_key.clone(),
        read_coverage: Default::default(),
    };
    for a in &check.assertions {
        st.report.assertions.push(run_assertion(a.clone(), actx.clone()).await);
    }
    if let (Some(window), Some(all)) = (check.coverage, &listed) {
        let outcome = crate::coverage::outcome(&check.tested, all, window, &actx.backup.id);
        st.report.assertions.push(assertion_report(
            "coverage".into(),
            Some(format!("every listed backup older than {} restore-tested", humantime::format_duration(window))),
            Ok(outcome),
        ));
    }
    if check.verify_checksums {
        // Last: it stops the server. Reported exactly like an assertion.
        let server = st.server.as_mut().ok_or_else(|| Error::internal("the server vanished before the checksums"))?;
        // Pages the assertions read in full through the server were verified as they were read.
        let covered = actx.read_coverage();
        if let Some(result) = server.verify_checksums(ctx, &covered).await.transpose() {
            let result = result.map_err(|e| e.chain());
            st.report.assertions.push(assertion_report("checksums".into(), Some("no bad checksums".into()), result));
        }
    }
    let failed: Vec<&AssertionReport> = st.report.assertions.iter().filter(|a| a.verdict == Verdict::Fail).collect();
    let errored: Vec<&AssertionReport> = st.report.assertions.iter().filter(|a| a.verdict == Verdict::Error).collect();
    let summary = |list: &[&AssertionReport]| {
        list.iter()
            .map(|a| format!("{}: {}", a.name, a.message.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !failed.is_empty() {
        st.report.verdict = Verdict::Fail;
        st.report.failure = Some(Failure {
            phase: Phase::Assert,
            message: format!(
                "{} of {} assertions failed: {}",
                failed.len(),
                st.report.assertions.len(),
                summary(&failed)
            ),
            log_tail: None,
        });
    } else if !errored.is_empty() {
        st.report.verdict = Verdict::Error;
        st.report.failure = Some(Failure {
            phase: Phase::Assert,
            message: format!("{} assertions could not be checked: {}", errored.len(), summary(&errored)),
            log_tail: None,
        });
    }
    Ok(())
}

/// Runs one assertion on its own task, so a panic becomes an `error` result, not a crash.
async fn run_assertion(a: Arc<dyn Assertion>, ctx: AssertionContext) -> AssertionReport {
    let name = a.name();
    let described = a.expected();
    let task = tokio::spawn(async move { a.check(&ctx).await });
    let result = match task.await {
        Ok(r) => r.map_err(|e| e.chain()),
        Err(join) => {
            let msg = if join.is_panic() {
                let p = join.into_panic();
                let text = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                format!("the assertion panicked: {text}")
            } else {
                "the assertion was cancelled".into()
            };
            Err(msg)
        }
    };
    assertion_report(name, described, result)
}

/// The report line of one assertion or post-stop check from its outcome: pass, fail (checked
/// and wrong) or error (could not check).
fn assertion_report(
    name: String,
    described: Option<String>,
    result: std::result::Result<Outcome, String>,
) -> AssertionReport {
    let (verdict, observed, expected, message) = match result {
        Ok(Outcome::Pass { observed }) => (Verdict::Pass, observed, described.clone(), None),
        Ok(Outcome::Fail { observed, expected, message }) => (Verdict::Fail, observed, expected, Some(message)),
        Err(message) => (Verdict::Error, None, None, Some(message)),
    };
    AssertionReport { name, verdict, observed, expected: expected.or(described), message }
}

/// The timeline path archive recovery of `fetched` follows (`recovery_target_timeline` through
/// the archive's history files), when the source listed its archive.
pub(crate) fn timeline_path(fetched: &FetchedBackup) -> Option<crate::wal_archive::TimelinePath> {
    if fetched.wal == crate::source::WalSupply::SelfContained {
        return None;
    }
    let archive = fetched.archive.as_ref()?;
    // Unknown (no backup_label timeline): PostgreSQL would start from pg_control's; 1 is
    // where every cluster starts.
    Some(archive.path(fetched.recovery_target_timeline, fetched.backup_timeline.unwrap_or(1)))
}

/// Recovery must have reached the backup's own end and every point the source says exists:
/// with a listed archive, the newest segment on the timeline path recovery follows (a parent
/// timeline's segments count only up to its switch point, so an old primary's segments past a
/// failover do not). Anything less is a failed check: the database would be older than the
/// backup claims.
pub(crate) fn completeness(fetched: &FetchedBackup, info: &mut RecoveryInfo) -> Result<()> {
    use crate::source::{ExpectedEnd, RecoveryTarget};
    let mut from_source = fetched.expected_end.clone();
    if let (Some(archive), Some(path)) = (&fetched.archive, timeline_path(fetched)) {
        let newest = info.wal_segment_size.and_then(|size| archive.newest_on(&path, size).map(|n| (n, size)));
        if let Some((seg, size)) = newest {
            let mut reason = format!(
                "{} continues to segment {seg} on the timeline path recovery follows (timeline {}; recovery_target_timeline {})",
                archive.described,
                path.describe(),
                fetched.recovery_target_timeline
            );
            if !archive.unreadable_histories.is_empty() {
                reason.push_str(&format!("; unreadable history files: {}", archive.unreadable_histories.join("; ")));
            }
            from_source.push(ExpectedEnd {
                lsn: WalSegment::parse(&seg, size).map(|s| s.start_lsn(size)),
                wal_segment: Some(seg),
                reason,
            });
        } else if info.wal_segment_size.is_none() && !archive.segments.is_empty() {
            from_source.push(ExpectedEnd {
                lsn: None,
                wal_segment: None,
                reason: format!("{} holds WAL, but the server did not report its WAL segment size", archive.described),
            });
        }
    }
    let mut expected = match (&fetched.recovery_target, &fetched.wal) {
        // Stopping early on purpose: the archive's end is no longer the goal, the target is.
        (RecoveryTarget::Latest, _) | (_, crate::source::WalSupply::SelfContained) => from_source,
        (RecoveryTarget::Lsn(l), _) => vec![ExpectedEnd {
            lsn: Some(*l),
            wal_segment: None,
            reason: format!("recovery_target lsn {l} was configured"),
        }],
        _ => Vec::new(),
    };
    if let Some(lsn) = fetched.backup_end_lsn {
        expected.insert(
            0,
            ExpectedEnd {
                lsn: Some(lsn),
                wal_segment: None,
                reason: "the backup's own end (where the source says the backup became consistent)".into(),
            },
        );
    }
    let seg_size = info.wal_segment_size;
    for e in &mut expected {
        if e.lsn.is_none() {
            if let (Some(seg), Some(size)) = (&e.wal_segment, seg_size) {
                e.lsn = WalSegment::parse(seg, size).map(|s| s.start_lsn(size));
            }
        }
    }
    info.expected_end = expected.clone();
    if expected.is_empty() {
        return Ok(());
    }
    let Some(end) = info.end_lsn else {
        return Err(Error::Target {
            target_kind: "runner",
            message: "the server did not say where recovery ended, so completeness cannot be proven".into(),
            log_tail: None,
            source: None,
        });
    };
    for e in &expected {
        let Some(lsn) = e.lsn else {
            return Err(Error::Target {
                target_kind: "runner",
                message: format!("cannot turn {:?} into a WAL position: {}", e.wal_segment, e.reason),
                log_tail: None,
                source: None,
            });
        };
        if end < lsn {
            return Err(Error::defect(format!(
                "recovery stopped at {end} but {} (at {lsn}): WAL is missing or damaged in between, \
                 so the restored database is older than the backup it claims to be",
                e.reason
            )));
        }
    }
    Ok(())
}

fn backup_report(b: &BackupInfo) -> BackupReport {
    BackupReport {
        id: Some(b.id.clone()),
        taken_at: b.taken_at,
        source: Some(b.location.clone()),
        kind: Some(b.kind.clone()),
        size_bytes: b.size_bytes,
        age_seconds: b.taken_at.map(|t| (Utc::now() - t).num_milliseconds() as f64 / 1000.0),
        pg_major: b.pg_major,
    }
}

fn recovery_report(i: &RecoveryInfo) -> RecoveryReport {
    RecoveryReport {
        end_lsn: i.end_lsn.map(|l: Lsn| l.to_string()),
        last_replayed_at: i.last_replayed_at,
        timeline: i.timeline,
        mode: i.mode.clone(),
        expected_end: i
            .expected_end
            .iter()
            .map(|e| ExpectedEndReport {
                lsn: e.lsn.map(|l| l.to_string()).or_else(|| e.wal_segment.clone()).unwrap_or_default(),
                reason: e.reason.clone(),
            })
            .collect(),
        server_version: i.server_version.clone(),
        target: None,
        timeline_path: None,
        timeline_switches: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ExpectedEnd, WalSupply};

    #[tokio::test]
    async fn parallel_runs_keep_the_configured_order_and_respect_the_limit() {
        use crate::sources::{BaseBackupConfig, BaseBackupSource};
        use crate::targets::{LocalTarget, LocalTargetConfig};
        let root = tempfile::tempdir().unwrap();
        let checks: Vec<Check> = (0..5)
            .map(|i| {
                let src = BaseBackupSource::new(BaseBackupConfig {
                    path: root.path().join(format!("missing-{i}")),
                    backup: None,
                    wal_archive: None,
                    recovery_target: Default::default(),
                    ..Default::default()
                });
                Check::new(
                    format!("c{i}"),
                    Arc::new(src),
                    Arc::new(LocalTarget::new(LocalTargetConfig::default()).unwrap()),
                )
            })
            .collect();
        let opts = RunOptions { work_root: Some(root.path().to_path_buf()) };
        let r = run_parallel(&checks, &opts, &RunContext::new(), 3).await;
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
        assert!(r.checks.iter().all(|c| c.verdict == Verdict::Error), "missing paths cannot be read");
    }

    fn fetched(expected: Vec<ExpectedEnd>, backup_end: Option<&str>) -> FetchedBackup {
        let mut f = FetchedBackup::new(PathBuf::from("/x"), 15, WalSupply::SelfContained);
        f.expected_end = expected;
        f.backup_end_lsn = backup_end.map(|s| s.parse().unwrap());
        f
    }

    #[test]
    fn recovery_short_of_the_archive_fails() {
        let f = fetched(
            vec![ExpectedEnd {
                lsn: None,
                wal_segment: Some("000000010000000000000008".into()),
                reason: "archive".into(),
            }],
            Some("0/3000100"),
        );
        let mut info = RecoveryInfo {
            end_lsn: Some("0/5000060".parse().unwrap()),
            wal_segment_size: Some(16 << 20),
            ..Default::default()
        };
        let e = completeness(&f, &mut info).unwrap_err();
        assert!(e.is_backup_defect());
        assert!(e.to_string().contains("recovery stopped at 0/5000060"), "{e}");
        assert_eq!(info.expected_end[1].lsn.unwrap().to_string(), "0/8000000");

        let mut info = RecoveryInfo {
            end_lsn: Some("0/8000108".parse().unwrap()),
            wal_segment_size: Some(16 << 20),
            ..Default::default()
        };
        completeness(&f, &mut info).unwrap();
    }

    #[test]
    fn after_a_failover_the_proof_follows_the_timeline_and_not_the_old_primarys_segments() {
        use crate::source::RecoveryTargetTimeline;
        use crate::wal_archive::{parse_history, ArchiveContents};
        let mut archive = ArchiveContents { described: "the WAL archive /a".into(), ..Default::default() };
        for n in [
            "00000001000000000000000B",
            "00000001000000000000000E",
            "00000002000000000000000B",
            "00000002000000000000000C",
        ] {
            archive.segments.push(n.into());
        }
        archive.histories.insert(2, parse_history("1\t0/B00A3C8\tno recovery target specified\n").unwrap());
        let mut f =
            FetchedBackup::new(PathBuf::from("/x"), 15, WalSupply::Fetch(crate::source::WalFetch::shell("true")));
        f.backup_end_lsn = Some("0/3000100".parse().unwrap());
        f.backup_timeline = Some(1);
        f.archive = Some(archive);
        let info = |end: &str| RecoveryInfo {
            end_lsn: Some(end.parse().unwrap()),
            wal_segment_size: Some(16 << 20),
            ..Default::default()
        };
        // Recovery reached the end of timeline 2: complete, although timeline 1 goes on to 0E.
        let mut i = info("0/C000108");
        completeness(&f, &mut i).unwrap();
        assert_eq!(i.expected_end[1].wal_segment.as_deref(), Some("00000002000000000000000C"));
        assert!(i.expected_end[1].reason.contains("1 → 2 (switch at 0/B00A3C8)"), "{}", i.expected_end[1].reason);
        assert_eq!(timeline_path(&f).unwrap().timelines, vec![1, 2]);
        // Stopped in timeline 2's 0B (its 0C missing): short.
        let e = completeness(&f, &mut info("0/B100000")).unwrap_err();
        assert!(e.is_backup_defect(), "{e}");
        // Staying on timeline 1 on purpose: its own segments, all of them, are the goal.
        f.recovery_target_timeline = RecoveryTargetTimeline::Current;
        let e = completeness(&f, &mut info("0/C000108")).unwrap_err();
        assert!(e.to_string().contains("00000001000000000000000E"), "{e}");
        completeness(&f, &mut info("0/E000108")).unwrap();
        assert_eq!(timeline_path(&f).unwrap().timelines, vec![1]);
    }

    #[test]
    fn unknown_end_with_expectations_is_an_error_not_a_pass() {
        let f = fetched(vec![], Some("0/3000100"));
        let mut info = RecoveryInfo::default();
        let e = completeness(&f, &mut info).unwrap_err();
        assert!(!e.is_backup_defect());
        let f = fetched(vec![], None);
        completeness(&f, &mut RecoveryInfo::default()).unwrap();
    }
}
