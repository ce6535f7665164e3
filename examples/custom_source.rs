//! A custom backup source: backups named `<host>-<YYYYMMDD>` in one folder, of which only the
//! given host's are considered. It wraps the built-in `basebackup` source for the real work,
//! and is composed in Rust (no TOML) with a custom target wrapper that adds a server setting.
//!
//! ```text
//! cargo run -p restorecheck-examples --example custom_source -- /backups db1
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use restorecheck_core::assertions::SqlAssertion;
use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
use restorecheck_core::targets::{LocalTarget, LocalTargetConfig};
use restorecheck_core::{runner, Artifact, BackupInfo, BackupSource, CheckSpec, FetchRequest, RunContext, RunOptions};

/// Backups of one host among many in a shared folder.
#[derive(Debug)]
struct HostBackups {
    host: String,
    inner: BaseBackupSource,
}

#[async_trait]
impl BackupSource for HostBackups {
    fn kind(&self) -> &'static str {
        "host-backups"
    }

    fn describe(&self) -> String {
        format!("{} (host {})", self.inner.describe(), self.host)
    }

    async fn list(&self, ctx: &RunContext) -> restorecheck_core::Result<Vec<BackupInfo>> {
        let prefix = format!("{}-", self.host);
        Ok(self.inner.list(ctx).await?.into_iter().filter(|b| b.id.starts_with(&prefix)).collect())
    }

    async fn fetch(&self, ctx: &RunContext, b: &BackupInfo, req: &FetchRequest) -> restorecheck_core::Result<Artifact> {
        self.inner.fetch(ctx, b, req).await
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(host)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: custom_source BACKUP_FOLDER HOST");
        std::process::exit(2);
    };
    let source = HostBackups { host: host.clone(), inner: BaseBackupSource::new(BaseBackupConfig::new(path)) };
    let mut target_cfg = LocalTargetConfig::default();
    target_cfg.settings.insert("work_mem".into(), "64MB".into());
    let target = match LocalTarget::new(target_cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let assertions: Vec<Arc<dyn restorecheck_core::Assertion>> =
        vec![Arc::new(SqlAssertion::min("select count(*) from pg_database", 1.0))];
    let check = match CheckSpec::new(format!("{host} nightly")).build(Arc::new(source), Arc::new(target), assertions) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let report = runner::run(&[check], &RunOptions::default(), &RunContext::new()).await;
    print!("{}", report.to_text());
    std::process::exit(report.exit_status().code());
}
