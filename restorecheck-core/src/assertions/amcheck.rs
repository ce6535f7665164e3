//! Integrity assertions over every database of the restored cluster: `amcheck` (B-tree indexes,
//! and heap relations on PostgreSQL 14+) and `read_all` (every table read in full, which makes
//! PostgreSQL verify each page's checksum when the cluster has checksums).
//!
//! They use SQL only, so they work the same on every target.

use std::time::Instant;

use async_trait::async_trait;
use tokio_postgres::error::SqlState;

use crate::assertion::{Assertion, AssertionContext, Outcome};
use crate::error::{Error, Result};

/// Databases worth checking (connectable, not templates).
async fn databases(ctx: &AssertionContext) -> Result<Vec<String>> {
    let c = ctx.connect(Some("postgres")).await.or(ctx.connect(None).await)?;
    let rows = c
        .query("select datname from pg_database where datallowconn and not datistemplate order by 1", &[])
        .await
        .map_err(|e| Error::postgres("listing databases", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Errors that mean the data is damaged (as opposed to "could not check").
fn is_corruption(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        let c = d.code();
        *c == SqlState::DATA_CORRUPTED
            || *c == SqlState::INDEX_CORRUPTED
            || c.code().starts_with("58")
            || c.code().starts_with("XX")
    })
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

/// `amcheck`: `bt_index_check` on every valid B-tree index (optionally `heapallindexed`) and,
/// on PostgreSQL 14+, `verify_heapam` on every table, materialized view and TOAST table, spread
/// over `jobs` connections per database.
#[derive(Debug, Clone)]
pub struct AmcheckAssertion {
    /// Also verify that every heap tuple has its index entry (slower, ~4×).
    pub heapallindexed: bool,
    /// Parallel connections per database (at least 1).
    pub jobs: usize,
}

/// One relation to verify.
#[derive(Debug, Clone)]
struct Item {
    oid: i64,
    name: String,
    index: bool,
}

/// Verifies `items` over one connection; returns corruption findings, or an error when it
/// could not check.
async fn verify(ctx: AssertionContext, db: String, items: Vec<Item>, heapallindexed: bool) -> Result<Vec<String>> {
    let c = ctx.connect(Some(&db)).await?;
    let mut problems = Vec::new();
    for it in items {
        let sql = if it.index {
            format!(
                "select null::int8, null::text where bt_index_check({}::oid::regclass, {heapallindexed}) is null",
                it.oid
            )
        } else {
            format!("select blkno, msg from verify_heapam({}::oid::regclass, on_error_stop => false) limit 3", it.oid)
        };
        match c.query(&sql, &[]).await {
            Ok(found) => {
                for f in found {
                    let blk: Option<i64> = f.get(0);
                    let msg: Option<String> = f.get(1);
                    problems.push(format!(
                        "{db}: {} block {}: {}",
                        it.name,
                        blk.unwrap_or(-1),
                        msg.unwrap_or_default()
                    ));
                }
            }
            Err(e) if is_corruption(&e) => problems.push(format!("{db}: {}: {}", it.name, db_message(&e))),
            Err(e) => {
                return Err(Error::Assertion {
                    name: "amcheck".into(),
                    message: format!("checking {} in database {db:?}: {}", it.name, db_message(&e)),
                })
            }
        }
    }
    Ok(problems)
}

#[async_trait]
impl Assertion for AmcheckAssertion {
    fn name(&self) -> String {
        "amcheck".into()
    }

    fn expected(&self) -> Option<String> {
        Some("no index or heap corruption".into())
    }

    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome> {
        let started = Instant::now();
        let (mut indexes, mut relations) = (0u64, 0u64);
        let mut problems = Vec::new();
        for db in databases(ctx).await? {
            let c = ctx.connect(Some(&db)).await?;
            let could_not = |what: &str, e: tokio_postgres::Error| Error::Assertion {
                name: "amcheck".into(),
                message: format!("{what} in database {db:?}: {}", db_message(&e)),
            };
            // The restored copy is throwaway: installing the extension there changes nothing real.
            c.batch_execute("create extension if not exists amcheck")
                .await
                .map_err(|e| could_not("installing amcheck", e))?;
            let version: i32 = c
                .query_one("select current_setting('server_version_num')::int", &[])
                .await
                .map_err(|e| could_not("reading the version", e))?
                .get(0);
            let mut items: Vec<Item> = c
                .query(
                    "select c.oid::int8, n.nspname || '.' || c.relname from pg_index i \
                     join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace \
                     join pg_am a on a.oid = c.relam \
                     where a.amname = 'btree' and c.relpersistence <> 't' and i.indisvalid and i.indisready",
                    &[],
                )
                .await
                .map_err(|e| could_not("listing indexes", e))?
                .iter()
                .map(|r| Item { oid: r.get(0), name: format!("index {}", r.get::<_, String>(1)), index: true })
                .collect();
            indexes += items.len() as u64;
            if version >= 140000 {
                let heaps: Vec<Item> = c
                    .query(
                        "select c.oid::int8, n.nspname || '.' || c.relname from pg_class c \
                         join pg_namespace n on n.oid = c.relnamespace \
                         where c.relkind in ('r', 'm', 't') and c.relpersistence <> 't'",
                        &[],
                    )
                    .await
                    .map_err(|e| could_not("listing tables", e))?
                    .iter()
                    .map(|r| Item { oid: r.get(0), name: format!("table {}", r.get::<_, String>(1)), index: false })
                    .collect();
                relations += heaps.len() as u64;
                items.extend(heaps);
            }
            let jobs = self.jobs.max(1);
            let mut chunks: Vec<Vec<Item>> = vec![Vec::new(); jobs];
            for (i, it) in items.into_iter().enumerate() {
                chunks[i % jobs].push(it);
            }
            let tasks: Vec<_> = chunks
                .into_iter()
                .filter(|c| !c.is_empty())
                .map(|chunk| tokio::spawn(verify(ctx.clone(), db.clone(), chunk, self.heapallindexed)))
                .collect();
            for t in tasks {
                match t.await {
                    Ok(r) => problems.extend(r?),
                    Err(e) => {
                        return Err(Error::Assertion {
                            name: self.name(),
                            message: format!("a check task failed: {e}"),
                        })
                    }
                }
            }
        }
        let observed = serde_json::json!({
            "indexes": indexes,
            "relations": relations,
            "jobs": self.jobs.max(1),
            "seconds": started.elapsed().as_secs_f64(),
            "problems": problems.len(),
        });
        if problems.is_empty() {
            return Ok(Outcome::Pass { observed: Some(observed) });
        }
        Ok(Outcome::Fail {
            observed: Some(observed),
            expected: self.expected(),
            message: format!(
                "amcheck found corruption: {}",
                problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ),
        })
    }
}

/// `read_all`: reads every table in full (`COPY … TO '/dev/null'`, TOAST included), the cheap
/// check where amcheck is unavailable. With data checksums, every page's checksum is verified.
#[derive(Debug, Clone, Default)]
pub struct ReadAllAssertion;

#[async_trait]
impl Assertion for ReadAllAssertion {
    fn name(&self) -> String {
        "read_all".into()
    }

    fn expected(&self) -> Option<String> {
        Some("every table readable".into())
    }

    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome> {
        let started = Instant::now();
        let mut tables = 0u64;
        let mut problems = Vec::new();
        for db in databases(ctx).await? {
            let c = ctx.connect(Some(&db)).await?;
            let rows = c
                .query(
                    "select quote_ident(n.nspname) || '.' || quote_ident(c.relname) from pg_class c \
                     join pg_namespace n on n.oid = c.relnamespace \
                     where c.relkind in ('r', 'm') and c.relpersistence <> 't' \
                       and n.nspname not in ('information_schema') and n.nspname not like 'pg\\_temp%'",
                    &[],
                )
                .await
                .map_err(|e| Error::Assertion {
                    name: self.name(),
                    message: format!("listing tables in {db:?}: {e}"),
                })?;
            for row in rows {
                let t: String = row.get(0);
                tables += 1;
                if let Err(e) = c.simple_query(&format!("copy (select * from {t}) to '/dev/null'")).await {
                    if is_corruption(&e) {
                        problems.push(format!("{db}: {t}: {}", db_message(&e)));
                    } else {
                        return Err(Error::Assertion {
                            name: self.name(),
                            message: format!("reading {t} in {db:?}: {}", db_message(&e)),
                        });
                    }
                }
            }
        }
        let observed = serde_json::json!({"tables": tables, "seconds": started.elapsed().as_secs_f64(), "problems": problems.len()});
        if problems.is_empty() {
            return Ok(Outcome::Pass { observed: Some(observed) });
        }
        Ok(Outcome::Fail {
            observed: Some(observed),
            expected: self.expected(),
            message: format!("unreadable data: {}", problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ")),
        })
    }
}
