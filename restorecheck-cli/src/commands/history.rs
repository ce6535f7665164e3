//! `restorecheck history`: past runs from the history file.

use std::path::PathBuf;

use restorecheck_core::history::{self, History, Row};
use restorecheck_core::report::human_secs;
use restorecheck_core::{Config, ExitStatus};

use crate::cli::{HistoryArgs, HistoryFormat};

/// The history file: `--history`, else `history` in the `-c` config, else the default path.
fn path(args: &HistoryArgs) -> Result<PathBuf, ExitStatus> {
    if let Some(p) = &args.history {
        return Ok(p.clone());
    }
    if let Some(cfg) = &args.config {
        let config: Config = super::load(cfg)?;
        if let Some(p) = config.history {
            return Ok(p);
        }
    }
    history::default_path().ok_or_else(|| {
        eprintln!("error: neither XDG_STATE_HOME nor HOME is set; pass --history PATH");
        ExitStatus::Error
    })
}

/// `history --coverage -c CONFIG`: each check's listed backups with their last restore test.
pub async fn coverage(args: HistoryArgs) -> ExitStatus {
    use restorecheck_core::coverage::TestedBackups;
    let Some(cfg) = &args.config else {
        eprintln!("error: --coverage needs the config (-c) whose sources to list");
        return ExitStatus::Error;
    };
    let config: Config = match super::load(cfg) {
        Ok(c) => c,
        Err(st) => return st,
    };
    let path = match path(&args) {
        Ok(p) => p,
        Err(st) => return st,
    };
    let store = if path.exists() {
        match History::open(&path) {
            Ok(h) => Some(h),
            Err(e) => return super::report_error(&e),
        }
    } else {
        eprintln!("note: no runs recorded yet in {}: every backup shows as never tested", path.display());
        None
    };
    let ctx = super::context(true);
    let mut status = ExitStatus::Success;
    let mut out = Vec::new();
    for check in config.checks.iter().filter(|c| args.check.as_ref().is_none_or(|n| n == &c.name)) {
        let rows = match store.as_ref().map(|h| h.query(Some(&check.name), usize::MAX)).transpose() {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => return super::report_error(&e),
        };
        let tested = TestedBackups::from_rows(&rows);
        let listed = match check.source.list(&ctx).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: check {:?}: cannot list {}: {}", check.name, check.source.describe(), e.chain());
                status = ExitStatus::Error;
                continue;
            }
        };
        let backups: Vec<serde_json::Value> = listed
            .iter()
            .map(|b| {
                let t = tested.0.get(&b.id);
                serde_json::json!({
                    "id": b.id,
                    "taken_at": b.taken_at,
                    "last_tested": t.map(|t| t.last_tested),
                    "last_verdict": t.map(|t| t.last_verdict),
                    "last_passed": t.and_then(|t| t.last_passed),
                })
            })
            .collect();
        out.push(serde_json::json!({ "check": check.name, "backups": backups }));
    }
    match args.format {
        HistoryFormat::Json => match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot serialize the coverage: {e}");
                return ExitStatus::Error;
            }
        },
        HistoryFormat::Text => {
            let day = |v: &serde_json::Value| {
                v.as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            };
            for c in &out {
                println!("{}", c["check"].as_str().unwrap_or_default());
                for b in c["backups"].as_array().into_iter().flatten() {
                    let tested = match (day(&b["last_tested"]), b["last_verdict"].as_str()) {
                        (Some(t), Some(v)) => format!("last tested {t} ({v})"),
                        _ => "never tested".to_string(),
                    };
                    println!(
                        "  {:<32} taken {:<16}  {tested}",
                        b["id"].as_str().unwrap_or_default(),
                        day(&b["taken_at"]).unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
    }
    status
}

pub fn run(args: HistoryArgs) -> ExitStatus {
    let path = match path(&args) {
        Ok(p) => p,
        Err(st) => return st,
    };
    let rows = if path.exists() {
        match History::open(&path).and_then(|h| h.query(args.check.as_deref(), args.limit)) {
            Ok(rows) => rows,
            Err(e) => return super::report_error(&e),
        }
    } else {
        eprintln!("no runs recorded yet in {}", path.display());
        Vec::new()
    };
    match args.format {
        HistoryFormat::Json => match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot serialize the history: {e}");
                return ExitStatus::Error;
            }
        },
        HistoryFormat::Text => print!("{}", text(&rows)),
    }
    ExitStatus::Success
}

fn text(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let secs = |s: Option<f64>| s.map(human_secs).unwrap_or_else(|| "-".into());
    for r in rows {
        let backup = match (&r.backup_id, r.backup_age_seconds) {
            (Some(id), Some(age)) => format!("backup {id} ({} old)", human_secs(age)),
            (Some(id), None) => format!("backup {id}"),
            _ => "no backup".into(),
        };
        let t = &r.timings;
        let _ = writeln!(
            out,
            "{}  {:<5} {}  {backup}  total {}  (fetch {}, restore {}, recovery {}, assert {}, teardown {})",
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.verdict,
            r.check,
            human_secs(t.total),
            secs(t.fetch),
            secs(t.restore),
            secs(t.recovery),
            secs(t.assert),
            secs(t.teardown),
        );
        if let (Some(phase), Some(msg)) = (&r.failure_phase, &r.failure_message) {
            let _ = writeln!(out, "      {phase} phase: {msg}");
        }
        for a in r.assertions.as_array().into_iter().flatten() {
            let name = a["name"].as_str().unwrap_or("?");
            let verdict = a["verdict"].as_str().unwrap_or("?");
            if !a["observed"].is_null() {
                let _ = writeln!(out, "      {name}: {} ({verdict})", a["observed"]);
            }
        }
    }
    out
}
