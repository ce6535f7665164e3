//! `restorecheck list`: the backups each check's source sees, newest first.

use restorecheck_core::{report::human_secs, ExitStatus, RunContext};

use crate::cli::{ConfigArgs, Format};

pub async fn run(args: ConfigArgs) -> ExitStatus {
    let config = match super::load(&args.config) {
        Ok(c) => c,
        Err(st) => return st,
    };
    let ctx = RunContext::new();
    let mut status = ExitStatus::Success;
    let mut json = Vec::new();
    for check in &config.checks {
        match check.source.list(&ctx).await {
            Ok(backups) => {
                if args.format == Format::Text {
                    println!("{} ({}): {} backups", check.name, check.source.describe(), backups.len());
                    for b in &backups {
                        let age = b
                            .taken_at
                            .map(|t| human_secs((chrono::Utc::now() - t).num_seconds() as f64) + " old")
                            .unwrap_or_else(|| "age unknown".into());
                        let size = b.size_bytes.map(|s| format!("{:.1} MB", s as f64 / 1e6)).unwrap_or_default();
                        // The timeline it was taken on: after a failover, older backups are on
                        // the old primary's timeline.
                        let timeline = b.timeline.map(|t| format!("timeline {t}")).unwrap_or_default();
                        println!(
                            "  {:<32} {:<25} {:<12} {:<10} {:<11} {size}",
                            b.id,
                            b.taken_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default(),
                            age,
                            b.kind,
                            timeline
                        );
                    }
                }
                json.push(
                    serde_json::json!({"check": check.name, "source": check.source.describe(), "backups": backups}),
                );
            }
            Err(e) => {
                status = status.max_with(super::report_error(&e));
                json.push(
                    serde_json::json!({"check": check.name, "source": check.source.describe(), "error": e.chain()}),
                );
            }
        }
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
    }
    status
}

trait MaxWith {
    fn max_with(self, other: ExitStatus) -> ExitStatus;
}
impl MaxWith for ExitStatus {
    fn max_with(self, other: ExitStatus) -> ExitStatus {
        if other.code() > self.code() {
            other
        } else {
            self
        }
    }
}
