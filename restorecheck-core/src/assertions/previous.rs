//! Assertion `compare_to_previous`: table row counts may not drop by more than a fraction since
//! the last passing run (kept in a small JSON state file, written only after a run passed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Deserialize;

use crate::assertion::{Assertion, AssertionContext, Outcome};
use crate::error::{Error, Result};
use crate::postgres::quote_ident;
use crate::report::Verdict;

/// Options: `compare_to_previous = { max_drop = 0.2, state_file = "…" }` in `[check.integrity]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct CompareConfig {
    /// Largest allowed drop of a table's row count, as a fraction (0.2 = 20 %).
    #[setters(into = false)]
    pub max_drop: f64,
    /// Where counts of the last passing run are kept (default: the user's state dir).
    pub state_file: Option<PathBuf>,
}

impl CompareConfig {
    /// Allow row counts to drop by at most `max_drop` (a fraction), counts kept in the default state file.
    pub fn new(max_drop: f64) -> Self {
        Self { max_drop, ..Self::default() }
    }
}

/// Row counts per check: `{ check: { "db.schema.table": rows } }`.
type State = BTreeMap<String, BTreeMap<String, i64>>;

/// Compares row counts with the last passing run of the same check.
#[derive(Debug)]
pub struct CompareToPrevious {
    check: String,
    max_drop: f64,
    state_file: PathBuf,
    pending: Mutex<Option<BTreeMap<String, i64>>>,
}

/// Default state file: `$XDG_STATE_HOME/restorecheck/state.json`, else `~/.local/state/…`.
pub(crate) fn default_state_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib")).join(".local/state")
    });
    base.join("restorecheck/state.json")
}

impl CompareToPrevious {
    /// For check `check` with `cfg`.
    pub fn new(check: &str, cfg: &CompareConfig) -> Result<Self> {
        if !(0.0..=1.0).contains(&cfg.max_drop) {
            return Err(Error::config("compare_to_previous.max_drop must be a fraction between 0 and 1"));
        }
        Ok(Self {
            check: check.to_string(),
            max_drop: cfg.max_drop,
            state_file: cfg.state_file.clone().unwrap_or_else(default_state_file),
            pending: Mutex::new(None),
        })
    }

    fn load(&self) -> State {
        std::fs::read(&self.state_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }
}

/// Exact counts for tables up to this estimated size, estimates (`reltuples`) above it.
const EXACT_BELOW: f64 = 1_000_000.0;

#[async_trait]
impl Assertion for CompareToPrevious {
    fn name(&self) -> String {
        "compare_to_previous".into()
    }

    fn expected(&self) -> Option<String> {
        Some(format!("no table lost more than {:.0}% of its rows since the last passing run", self.max_drop * 100.0))
    }

    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome> {
        // restorecheck's own queries: tool sessions, names quoted in Rust (see amcheck.rs).
        let admin = ctx.tool_connect(Some("postgres")).await?;
        let dbs: Vec<String> = admin
            .query("select d.datname from pg_catalog.pg_database d where d.datallowconn and not d.datistemplate", &[])
            .await
            .map_err(|e| Error::postgres("listing databases", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut now = BTreeMap::new();
        for db in dbs {
            let c = ctx.tool_connect(Some(&db)).await?;
            let rows = c
                .query(
                    "select n.nspname, c.relname, c.reltuples::pg_catalog.float8 \
                     from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                     where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') \
                       and n.nspname !~ '^pg_toast'",
                    &[],
                )
                .await
                .map_err(|e| Error::postgres("listing tables", e))?;
            for r in rows {
                let (schema, table, est): (String, String, f64) = (r.get(0), r.get(1), r.get(2));
                let quoted = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
                let n = if est < EXACT_BELOW {
                    c.query_one(&format!("select pg_catalog.count(*) from {quoted}"), &[])
                        .await
                        .map_err(|e| Error::postgres(format!("counting {quoted}"), e))?
                        .get::<_, i64>(0)
                } else {
                    est as i64
                };
                now.insert(format!("{db}.{schema}.{table}"), n);
            }
        }
        let previous = self.load().remove(&self.check).unwrap_or_default();
        let mut problems = Vec::new();
        for (t, before) in &previous {
            match now.get(t) {
                None => problems.push(format!("{t} is gone (had {before} rows)")),
                Some(after) if *before > 0 && ((*before - *after) as f64) / (*before as f64) > self.max_drop => {
                    problems.push(format!("{t}: {after} rows, was {before}"))
                }
                _ => {}
            }
        }
        let observed = serde_json::json!({"tables": now.len(), "compared": previous.len()});
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(now);
        }
        if problems.is_empty() {
            return Ok(Outcome::Pass { observed: Some(observed) });
        }
        Ok(Outcome::Fail {
            observed: Some(observed),
            expected: self.expected(),
            message: format!("row counts dropped since the last passing run: {}", problems.join("; ")),
        })
    }

    fn check_finished(&self, verdict: Verdict) {
        if verdict != Verdict::Pass {
            return;
        }
        let Some(now) = self.pending.lock().ok().and_then(|mut p| p.take()) else { return };
        let mut state = self.load();
        state.insert(self.check.clone(), now);
        if let Some(dir) = self.state_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self.state_file.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&state)
            .ok()
            .map(|b| std::fs::write(&tmp, b).and_then(|_| std::fs::rename(&tmp, &self.state_file)));
        if !matches!(written, Some(Ok(()))) {
            tracing::warn!("could not write the state file {}", self.state_file.display());
        }
    }
}
