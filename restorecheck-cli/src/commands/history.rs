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
