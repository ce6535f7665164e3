//! An application's own sanity check, written in Rust and usable from TOML as
//! `[[check.assert]] kind = "orphans"`.
//!
//! ```text
//! cargo run -p restorecheck-examples --example custom_assertion -- restorecheck.toml
//! ```

use async_trait::async_trait;
use restorecheck_core::config::FromOptions;
use restorecheck_core::{
    runner, Assertion, AssertionContext, Config, Error, Outcome, Registry, RunContext, RunOptions,
};
use serde::Deserialize;

/// Options of `kind = "orphans"`: rows of `child` whose `fk` has no `parent` row.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrphansConfig {
    child: String,
    fk: String,
    parent: String,
}

/// Fails when a restored child table references missing parents (a sign of a torn restore).
#[derive(Debug)]
struct NoOrphans(OrphansConfig);

/// How `kind = "orphans"` is built from its `[[check.assert]]` table.
impl FromOptions for NoOrphans {
    type Options = OrphansConfig;
    fn from_options(options: OrphansConfig) -> restorecheck_core::Result<Self> {
        Ok(NoOrphans(options))
    }
}

#[async_trait]
impl Assertion for NoOrphans {
    fn name(&self) -> String {
        format!("no orphans in {}", self.0.child)
    }

    fn expected(&self) -> Option<String> {
        Some("0 orphan rows".into())
    }

    async fn check(&self, ctx: &AssertionContext) -> restorecheck_core::Result<Outcome> {
        let db = ctx.connect(None).await?;
        let sql = format!(
            "select count(*) from {c} x where not exists (select 1 from {p} y where y.id = x.{fk})",
            c = self.0.child,
            p = self.0.parent,
            fk = self.0.fk
        );
        let n: i64 = db.query_one(&sql, &[]).await.map_err(|e| Error::postgres("counting orphans", e))?.get(0);
        Ok(if n == 0 {
            Outcome::pass(0)
        } else {
            Outcome::Fail { observed: Some(n.into()), expected: self.expected(), message: format!("{n} orphan rows") }
        })
    }
}

#[tokio::main]
async fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: custom_assertion CONFIG.toml   (use kind = \"orphans\" in a [[check.assert]])");
        std::process::exit(2);
    };
    let mut registry = Registry::default();
    registry.register_assertion_type::<NoOrphans>("orphans");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let config = match Config::parse(&text, &registry) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let report = runner::run(&config.checks, &RunOptions { work_root: config.work_dir }, &RunContext::new()).await;
    print!("{}", report.to_text());
    std::process::exit(report.exit_status().code());
}
