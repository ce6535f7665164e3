//! Many databases: split the checks of one config over N machines (shards), gather the shards'
//! reports in one results location, and merge them into one report.
//!
//! - A check belongs to shard `fnv1a64(name) mod N` ([`shard_of`]): it depends only on the check's
//!   own name and N, so adding or removing a check never moves another one.
//! - A shard's JSON report goes to `<results>/<run_key>/shard-<I>-of-<N>.json` (a run without
//!   `--shard`: `all.json`), atomically ([`Results::write`]).
//! - [`merge`] puts the reports of one run key together, records which shards reported and which
//!   did not ([`Shards`]), and turns every configured check that no shard reported into an
//!   `error` check naming it: a lost shard never looks like a pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::{BackupReport, CheckReport, Failure, Phase, RecoveryReport, Report, Timings, Verdict};
use crate::storage::{Location, StorageOptions};

/// The environment variable a Kubernetes Indexed Job sets in each pod (`--shard auto/N`).
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The file name of a run's report when it was not sharded.
pub const ALL: &str = "all";

/// FNV-1a (64 bit) of `name`'s UTF-8 bytes, modulo `n`: the shard a check named `name` belongs
/// to among `n`. Stable across versions and machines (it is part of the CLI contract).
pub fn shard_of(name: &str, n: u32) -> u32 {
    (fnv1a64(name) % u64::from(n.max(1))) as u32
}

/// FNV-1a 64 of the UTF-8 bytes of `s`: stable across builds, platforms and releases (shard
/// assignment and `[check.integrity] sample` subsets depend on it).
pub(crate) fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One shard: index `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard's index.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` or `auto/N`; `auto` takes I from `index_env` (the value of
    /// [`INDEX_ENV`], `None` when unset).
    pub fn parse(spec: &str, index_env: Option<&str>) -> Result<Shard> {
        let bad = |why: String| Error::config(format!("--shard {spec:?}: {why}; use I/N (0 <= I < N) or auto/N"));
        let (i, n) = spec.split_once('/').ok_or_else(|| bad("not of the form I/N".into()))?;
        let count: u32 = n.trim().parse().map_err(|_| bad(format!("{n:?} is not a number of shards")))?;
        if count == 0 {
            return Err(bad("N must be at least 1".into()));
        }
        let index: u32 = if i.trim() == "auto" {
            let v = index_env.ok_or_else(|| {
                bad(format!(
                    "auto takes the index from {INDEX_ENV}, which is not set (a Kubernetes Indexed Job sets it)"
                ))
            })?;
            v.trim().parse().map_err(|_| bad(format!("{INDEX_ENV}={v:?} is not a shard index")))?
        } else {
            i.trim().parse().map_err(|_| bad(format!("{i:?} is not a shard index")))?
        };
        if index >= count {
            return Err(bad(format!("index {index} is not below the number of shards {count}")));
        }
        Ok(Shard { index, count })
    }

    /// Whether the check named `name` belongs to this shard.
    pub fn contains(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }

    /// `shard-I-of-N`, the report's name in the results location (without `.json`).
    pub fn name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// The shard named `shard-I-of-N` (or `None` for another name).
    pub fn from_name(name: &str) -> Option<Shard> {
        let (i, n) = name.strip_prefix("shard-")?.split_once("-of-")?;
        let (index, count) = (i.parse().ok()?, n.parse().ok()?);
        (index < count && format!("shard-{index}-of-{count}") == name).then_some(Shard { index, count })
    }
}

/// Which shards a merged report is made of (the report's `shards` field).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Shards {
    /// The run key the reports were gathered under.
    pub run_key: String,
    /// The reports found and merged (`shard-0-of-4`, … or `all`).
    pub reported: Vec<String>,
    /// The shards expected (from the N of the shards that reported) that did not report, or
    /// whose report could not be read.
    pub missing: Vec<String>,
}

impl Shards {
    /// One line for the text report.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        format!("run {}: shards reported: {}; missing: {}", self.run_key, list(&self.reported), list(&self.missing))
    }
}

/// Checks that a run key is one path component of safe characters (`2026-12-01`,
/// `nightly.42`): letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn check_run_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "run key {key:?}: use letters, digits, '.', '_' and '-' only (not starting with '.'), e.g. 2026-12-01"
        )))
    }
}

/// The default run key: today's UTC date (`2026-12-01`).
pub fn default_run_key() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

/// A results location (`--results`): a local folder or an object-store prefix.
#[derive(Debug, Clone)]
pub struct Results {
    location: Location,
}

impl Results {
    /// Opens `spec` (a folder, `file://…`, `s3://…`, `gs://…`, `az://…`) with the provider's
    /// standard credentials. For `s3://` the standard `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`
    /// variables name an S3-compatible endpoint (MinIO, Ceph): requests then go path-style, and
    /// plain `http://` is allowed only when the endpoint says `http://`.
    pub fn open(spec: &str) -> Result<Results> {
        let mut opts = StorageOptions::default();
        if spec.starts_with("s3://") {
            opts.endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
        }
        Ok(Results { location: Location::parse(Path::new(spec), &opts)? })
    }

    /// The location, for messages.
    pub fn display(&self) -> String {
        self.location.display()
    }

    /// Where `<run_key>/<file>` is, for messages.
    pub fn display_of(&self, run_key: &str, file: &str) -> String {
        match &self.location {
            Location::Local(p) => p.join(run_key).join(file).display().to_string(),
            Location::Remote(r) => r.url(&format!("{run_key}/{file}")),
        }
    }

    fn local_dir(root: &Path, run_key: &str) -> Result<PathBuf> {
        check_run_key(run_key)?;
        Ok(root.join(run_key))
    }

    /// Writes `bytes` as `<run_key>/<file>`: locally through a temp file renamed into place
    /// (mode `mode`, the run-key folder created as needed), remotely as one PUT.
    pub async fn write(&self, run_key: &str, file: &str, bytes: &[u8], mode: u32) -> Result<()> {
        check_run_key(run_key)?;
        match &self.location {
            Location::Local(root) => {
                let dir = Self::local_dir(root, run_key)?;
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the results folder", &dir, e))?;
                let path = dir.join(file);
                crate::outputs::write_atomic(&path, bytes, mode).map_err(|e| Error::io("writing", &path, e))
            }
            Location::Remote(r) => r.put(&format!("{run_key}/{file}"), bytes.to_vec()).await,
        }
    }

    /// The report names (`shard-0-of-2`, `all`) under `<run_key>/`, sorted; other files
    /// (signatures, temp files) are left out.
    pub async fn list(&self, run_key: &str) -> Result<Vec<String>> {
        let files: Vec<String> = match &self.location {
            Location::Local(root) => {
                let dir = Self::local_dir(root, run_key)?;
                match std::fs::read_dir(&dir) {
                    Ok(rd) => rd
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(Error::io("listing", &dir, e)),
                }
            }
            Location::Remote(r) => {
                check_run_key(run_key)?;
                r.list_dir(run_key).await?.1.into_iter().map(|o| o.rel).collect()
            }
        };
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_suffix(".json"))
            .filter(|n| *n == ALL || Shard::from_name(n).is_some())
            .map(str::to_string)
            .collect();
        names.sort_by_key(|n| (Shard::from_name(n).map(|s| (s.count, s.index)), n.clone()));
        Ok(names)
    }

    /// Reads the report `<run_key>/<name>.json`.
    pub async fn read(&self, run_key: &str, name: &str) -> Result<Report> {
        let file = format!("{name}.json");
        let bytes = match &self.location {
            Location::Local(root) => {
                let path = Self::local_dir(root, run_key)?.join(&file);
                crate::outputs::read_nofollow(&path).map_err(|e| Error::io("reading", &path, e))?.into_bytes()
            }
            Location::Remote(r) => r.get_bytes(&format!("{run_key}/{file}")).await?,
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::config(format!("{}: not a restorecheck JSON report", self.display_of(run_key, &file))).with_source(e)
        })
    }
}

/// Merges the shard reports of run `run_key` (`(name, report)`, name as in [`Results::list`];
/// `unreadable` names reports that exist but could not be read) into one report.
///
/// The shards expected are `0..N` for every N among the reported shard names; those absent
/// (or unreadable) are `missing`, and a missing shard makes the verdict `error`. With
/// `configured` (the check names of the config), every configured check no report holds becomes
/// an `error` check saying which shard should have reported it. A check reported twice keeps
/// its first (lowest shard) result, with a warning.
pub fn merge(
    run_key: &str,
    reports: Vec<(String, Report)>,
    unreadable: &[String],
    configured: Option<&[String]>,
) -> Report {
    let mut reported = Vec::new();
    let mut counts = BTreeSet::new();
    let mut checks: Vec<CheckReport> = Vec::new();
    let mut started = None;
    for (name, r) in reports {
        if let Some(s) = Shard::from_name(&name) {
            counts.insert(s.count);
        }
        started = Some(started.map_or(r.started_at, |t: chrono::DateTime<Utc>| t.min(r.started_at)));
        for c in r.checks {
            if let Some(first) = checks.iter_mut().find(|k| k.name == c.name) {
                first
                    .warnings
                    .push(format!("also reported by {name} (verdict {}); that result was ignored", c.verdict));
            } else {
                checks.push(c);
            }
        }
        reported.push(name);
    }
    let mut missing: Vec<String> = counts
        .iter()
        .flat_map(|&count| (0..count).map(move |index| Shard { index, count }.name()))
        .filter(|n| !reported.contains(n))
        .collect();
    for u in unreadable {
        if !missing.contains(u) {
            missing.push(u.clone());
        }
    }
    if let Some(names) = configured {
        let absent: Vec<&String> = names.iter().filter(|n| !checks.iter().any(|c| &c.name == *n)).collect();
        for name in absent {
            let whose = match counts.iter().next_back() {
                Some(&count) => {
                    format!(", which {} should have reported", Shard { index: shard_of(name, count), count }.name())
                }
                None => String::new(),
            };
            checks.push(not_reported(name, &format!("no shard of run {run_key} reported this check{whose}")));
        }
        // Configured order first, then any others (checks not in this config) by name.
        checks.sort_by_key(|c| (names.iter().position(|n| n == &c.name).unwrap_or(usize::MAX), c.name.clone()));
    } else {
        checks.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut report = Report::new(format!("merged-{run_key}"), started.unwrap_or_else(Utc::now), checks);
    if !missing.is_empty() || reported.is_empty() {
        report.verdict = Verdict::Error;
    }
    report.shards = Some(Shards { run_key: run_key.to_string(), reported, missing });
    report
}

fn not_reported(name: &str, message: &str) -> CheckReport {
    CheckReport {
        name: name.to_string(),
        verdict: Verdict::Error,
        failure: Some(Failure { phase: Phase::Select, message: message.to_string(), log_tail: None }),
        backup: BackupReport::default(),
        recovery: RecoveryReport::default(),
        assertions: vec![],
        timings: Timings::default(),
        warnings: vec![],
        notes: vec![],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(name: &str, v: Verdict) -> CheckReport {
        CheckReport { verdict: v, failure: None, ..not_reported(name, "") }
    }

    fn shard_report(checks: Vec<CheckReport>) -> Report {
        Report::new("r".into(), Utc::now(), checks)
    }

    #[test]
    fn shard_of_is_fnv1a_and_stable() {
        // FNV-1a 64 test vectors: "" → cbf29ce484222325, "a" → af63dc4c8601ec8c.
        assert_eq!(shard_of("", u32::MAX), (0xcbf2_9ce4_8422_2325u64 % u64::from(u32::MAX)) as u32);
        assert_eq!(shard_of("a", 1000), (0xaf63_dc4c_8601_ec8cu64 % 1000) as u32);
        let names: Vec<String> = (0..200).map(|i| format!("db-{i}")).collect();
        let before: Vec<u32> = names.iter().map(|n| shard_of(n, 7)).collect();
        // Every shard gets some of 200 checks, and the assignment depends on the name only.
        for s in 0..7 {
            assert!(before.contains(&s), "shard {s} is empty");
        }
        let again: Vec<u32> = names.iter().map(|n| shard_of(n, 7)).collect();
        assert_eq!(before, again);
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn shard_specs() {
        assert_eq!(Shard::parse("1/3", None).unwrap(), Shard { index: 1, count: 3 });
        assert_eq!(Shard::parse("auto/4", Some("3")).unwrap(), Shard { index: 3, count: 4 });
        for (spec, env) in [
            ("3/3", None),
            ("auto/2", None),
            ("auto/2", Some("2")),
            ("auto/2", Some("x")),
            ("1", None),
            ("0/0", None),
            ("-1/2", None),
        ] {
            assert!(Shard::parse(spec, env).is_err(), "{spec} {env:?}");
        }
        let e = Shard::parse("auto/2", None).unwrap_err().chain();
        assert!(e.contains(INDEX_ENV), "{e}");
        let s = Shard { index: 2, count: 5 };
        assert_eq!(s.name(), "shard-2-of-5");
        assert_eq!(Shard::from_name("shard-2-of-5"), Some(s));
        for bad in ["shard-5-of-5", "shard-02-of-5", "all", "shard-1-of-", "x"] {
            assert_eq!(Shard::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn run_keys_are_one_safe_path_component() {
        for ok in ["2026-12-01", "nightly.42", "a_b"] {
            check_run_key(ok).unwrap();
        }
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "ä"] {
            assert!(check_run_key(bad).is_err(), "{bad}");
        }
        check_run_key(&default_run_key()).unwrap();
    }

    #[test]
    fn merge_of_all_shards_passes_and_lists_them() {
        let r = merge(
            "k",
            vec![
                ("shard-0-of-2".into(), shard_report(vec![check("b", Verdict::Pass)])),
                ("shard-1-of-2".into(), shard_report(vec![check("a", Verdict::Pass), check("c", Verdict::Pass)])),
            ],
            &[],
            Some(&["c".into(), "a".into(), "b".into()]),
        );
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["c", "a", "b"]);
        let s = r.shards.as_ref().unwrap();
        assert_eq!(s.reported, ["shard-0-of-2", "shard-1-of-2"]);
        assert!(s.missing.is_empty());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["shards"]["reported"][1], "shard-1-of-2");
        // Read back: the merged report is itself a report.
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_missing_shard_is_an_error_naming_its_checks() {
        let names: Vec<String> = ["x", "y", "z", "w"].iter().map(|s| s.to_string()).collect();
        let (in0, in1): (Vec<_>, Vec<_>) = names.iter().partition(|n| shard_of(n, 2) == 0);
        assert!(!in0.is_empty() && !in1.is_empty());
        let reports =
            vec![("shard-0-of-2".to_string(), shard_report(in0.iter().map(|n| check(n, Verdict::Pass)).collect()))];
        let r = merge("k", reports.clone(), &[], Some(&names));
        assert_eq!(r.verdict, Verdict::Error);
        assert_eq!(r.shards.as_ref().unwrap().missing, ["shard-1-of-2"]);
        for n in &in1 {
            let c = r.checks.iter().find(|c| &&c.name == n).unwrap();
            assert_eq!(c.verdict, Verdict::Error);
            assert!(c.failure.as_ref().unwrap().message.contains("shard-1-of-2"));
        }
        assert!(r.to_text().contains("missing: shard-1-of-2"), "{}", r.to_text());
        // Without the config the missing shard alone makes it an error.
        let r = merge("k", reports, &[], None);
        assert_eq!(r.verdict, Verdict::Error);
        assert_eq!(r.checks.len(), in0.len());
        // Nothing reported at all is never a pass.
        assert_eq!(merge("k", vec![], &[], None).verdict, Verdict::Error);
    }

    #[test]
    fn worst_verdict_wins_and_duplicates_are_flagged() {
        let r = merge(
            "k",
            vec![
                ("all".into(), shard_report(vec![check("a", Verdict::Fail)])),
                ("shard-0-of-1".into(), shard_report(vec![check("a", Verdict::Pass)])),
            ],
            &["shard-9-of-10".into()],
            None,
        );
        assert_eq!(r.checks.len(), 1);
        assert_eq!(r.checks[0].verdict, Verdict::Fail);
        assert!(r.checks[0].warnings[0].contains("shard-0-of-1"));
        assert_eq!(r.shards.unwrap().missing, ["shard-9-of-10"]);
    }

    #[tokio::test]
    async fn folder_results_round_trip_atomically_and_privately() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let res = Results::open(d.path().to_str().unwrap()).unwrap();
        let r = shard_report(vec![check("a", Verdict::Pass)]);
        res.write("k", "shard-1-of-2.json", r.to_json().as_bytes(), 0o600).await.unwrap();
        res.write("k", "shard-1-of-2.json.sig", b"x", 0o600).await.unwrap();
        res.write("k", "all.json", r.to_json().as_bytes(), 0o600).await.unwrap();
        let p = d.path().join("k/shard-1-of-2.json");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(res.list("k").await.unwrap(), ["all", "shard-1-of-2"]);
        assert_eq!(res.read("k", "shard-1-of-2").await.unwrap(), r);
        assert!(res.list("none").await.unwrap().is_empty());
        assert!(res.write("../x", "all.json", b"{}", 0o600).await.is_err());
    }
}
