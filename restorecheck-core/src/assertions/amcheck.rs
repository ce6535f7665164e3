//! Integrity assertions over every database of the restored cluster: `amcheck` (B-tree indexes,
//! and heap relations on PostgreSQL 14+) and `read_all` (every table read in full, which makes
//! PostgreSQL verify each page's checksum when the cluster has checksums).
//!
//! Both record the main forks they read in full through the server without an error
//! ([`AssertionContext::record_read`]): every table `verify_heapam` checked (it reads every
//! block) and every table `read_all` scanned. The offline page checksum verification after the
//! server stopped does not read those again. Indexes do not count: `bt_index_check` walks the
//! tree, and deleted pages (unlinked, waiting for reuse) are never visited.
//!
//! They use SQL only, so they work the same on every target. Every query runs on a
//! [tool session](AssertionContext::tool_connect) (`search_path = pg_catalog, pg_temp`) with
//! schema-qualified names; relation names are quoted in Rust, never concatenated in SQL, so an
//! operator or function the restored database defines is never called. amcheck itself is
//! created in a schema of restorecheck's own for the run, or, when the database already has it,
//! called through the schema it lives in when only superusers control that schema (else moved
//! into restorecheck's schema for the run), and only when a superuser owns the extension.

use std::time::Instant;

use async_trait::async_trait;
use tokio_postgres::error::SqlState;

use crate::assertion::{Assertion, AssertionContext, Outcome};
use crate::error::{Error, Result};
use crate::postgres::quote_ident;

/// Databases worth checking (connectable, not templates).
async fn databases(ctx: &AssertionContext) -> Result<Vec<String>> {
    let c = match ctx.tool_connect(Some("postgres")).await {
        Ok(c) => c,
        Err(_) => ctx.tool_connect(None).await?,
    };
    let rows = c
        .query(
            "select d.datname from pg_catalog.pg_database d \
             where d.datallowconn and not d.datistemplate order by 1",
            &[],
        )
        .await
        .map_err(|e| Error::postgres("listing databases", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether this session's reads verify data checksums: the cluster has them, and neither
/// `ignore_checksum_failure` nor `zero_damaged_pages` is on (a restored database or role can
/// set them with `ALTER DATABASE/ROLE … SET`, which beats the server's command line). Only then
/// does a page read without an error prove its checksum right. `false` when it cannot tell.
async fn server_verifies_checksums(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "select pg_catalog.current_setting('data_checksums')::pg_catalog.bool \
           and not pg_catalog.current_setting('ignore_checksum_failure')::pg_catalog.bool \
           and not pg_catalog.current_setting('zero_damaged_pages')::pg_catalog.bool",
        &[],
    )
    .await
    .ok()
    .and_then(|r| r.try_get::<_, bool>(0).ok())
    .unwrap_or(false)
}

/// `"schema"."name"`, quoted in Rust.
fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
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

/// Disables every enabled event trigger of the session's database, so DDL restorecheck runs
/// itself (`CREATE SCHEMA`, `CREATE EXTENSION`) fires none. Needed before PostgreSQL 17, which
/// has no `event_triggers` setting; they stay disabled for the rest of the run (the copy is
/// thrown away). Returns the names it disabled.
pub(crate) async fn disable_event_triggers(
    c: &tokio_postgres::Client,
) -> std::result::Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<String> = c
        .query("select t.evtname from pg_catalog.pg_event_trigger t where t.evtenabled <> 'D' order by 1", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for n in &names {
        // ALTER EVENT TRIGGER is not itself a command event triggers fire on.
        c.batch_execute(&format!("ALTER EVENT TRIGGER {} DISABLE", quote_ident(n))).await?;
    }
    Ok(names)
}

/// A schema name no restored database can have prepared in advance.
fn run_schema() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("restorecheck_{:016x}", h.finish())
}

/// Where amcheck's functions are in one database, for this run.
#[derive(Debug, Clone)]
struct Amcheck {
    /// Schema holding `bt_index_check` and `verify_heapam` during the run.
    schema: String,
    /// What to undo afterwards.
    undo: Undo,
    /// `verify_heapam` is available (PostgreSQL 14+, amcheck 1.3+).
    heap: bool,
}

/// How [`Amcheck`] leaves the restored database afterwards.
#[derive(Debug, Clone, PartialEq)]
enum Undo {
    /// The database had amcheck in a schema only superusers control: used in place.
    Nothing,
    /// restorecheck created the extension in its own schema: drop that schema.
    DropSchema,
    /// The database had amcheck in a schema others can create in (an overload planted there
    /// could make our calls ambiguous): moved into our schema, moved back to this one.
    MoveBack(String),
}

impl Amcheck {
    /// Undoes what [`amcheck_in`] changed (best effort: the copy is thrown away anyway).
    async fn finish(&self, c: &tokio_postgres::Client, db: &str) {
        let ours = quote_ident(&self.schema);
        let sql = match &self.undo {
            Undo::Nothing => return,
            Undo::DropSchema => format!("DROP SCHEMA {ours} CASCADE"),
            Undo::MoveBack(to) => {
                format!("ALTER EXTENSION amcheck SET SCHEMA {}; DROP SCHEMA {ours}", quote_ident(to))
            }
        };
        if let Err(e) = c.batch_execute(&sql).await {
            tracing::debug!("cleaning up amcheck in {db}: {e}");
        }
    }
}

/// `"1.3"` → (1, 3).
fn ext_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Finds amcheck in the session's database, or creates it in a schema of our own.
async fn amcheck_in(c: &tokio_postgres::Client, db: &str, server: i32, notes: &mut Vec<String>) -> Result<Amcheck> {
    let could_not = |what: &str, e: tokio_postgres::Error| Error::Assertion {
        name: "amcheck".into(),
        message: format!("{what} in database {db:?}: {}", db_message(&e)),
        source: None,
    };
    // The schema is "controlled" when a superuser owns it and no other role may create in it.
    let found = c
        .query_opt(
            "select n.nspname, e.extversion, r.rolname, r.rolsuper, \
                    coalesce((select o.rolsuper from pg_catalog.pg_roles o where o.oid = n.nspowner), false) \
                    and not exists (select from pg_catalog.pg_roles x where not x.rolsuper \
                                    and pg_catalog.has_schema_privilege(x.oid, n.oid, 'CREATE')) \
             from pg_catalog.pg_extension e \
             join pg_catalog.pg_namespace n on n.oid = e.extnamespace \
             join pg_catalog.pg_roles r on r.oid = e.extowner \
             where e.extname = 'amcheck'",
            &[],
        )
        .await
        .map_err(|e| could_not("looking up amcheck", e))?;
    let existing = match found {
        Some(row) => {
            let (schema, version, owner, superuser, controlled): (String, String, String, bool, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            if !superuser {
                return Err(Error::Assertion {
                    name: "amcheck".into(),
                    message: format!(
                        "database {db:?} has amcheck owned by role {owner:?}, which is no superuser: restorecheck \
                         does not call functions an application role controls; drop the extension in production \
                         or set integrity.amcheck = false"
                    ),
                    source: None,
                });
            }
            let heap = server >= 140000 && ext_version(&version) >= (1, 3);
            if controlled {
                return Ok(Amcheck { schema, undo: Undo::Nothing, heap });
            }
            Some((schema, heap))
        }
        None => None,
    };
    if server < 170000 {
        let disabled = disable_event_triggers(c).await.map_err(|e| could_not("disabling event triggers", e))?;
        if !disabled.is_empty() {
            notes.push(format!(
                "{db}: disabled event triggers {} before restorecheck's own DDL (PostgreSQL {} has no \
                 event_triggers setting)",
                disabled.join(", "),
                server / 10000
            ));
        }
    }
    let schema = run_schema();
    let s = quote_ident(&schema);
    match existing {
        Some((from, heap)) => {
            c.batch_execute(&format!("CREATE SCHEMA {s}; ALTER EXTENSION amcheck SET SCHEMA {s}"))
                .await
                .map_err(|e| could_not("moving amcheck into a schema of restorecheck's own", e))?;
            notes.push(format!(
                "{db}: amcheck lives in schema {from:?}, where other roles can create functions; moved it to \
                 {schema:?} for the check and back afterwards"
            ));
            Ok(Amcheck { schema, undo: Undo::MoveBack(from), heap })
        }
        None => {
            c.batch_execute(&format!("CREATE SCHEMA {s}; CREATE EXTENSION amcheck SCHEMA {s}"))
                .await
                .map_err(|e| could_not("installing amcheck", e))?;
            Ok(Amcheck { schema, undo: Undo::DropSchema, heap: server >= 140000 })
        }
    }
}

/// `amcheck`: `bt_index_check` on every valid B-tree index (optionally `heapallindexed`) and,
/// on PostgreSQL 14+, `verify_heapam` on every table, materialized view and TOAST table, spread
/// over `jobs` connections per database.
///
/// Index expressions that `heapallindexed` evaluates run as the table's owner in a
/// security-restricted context (amcheck does this itself since PostgreSQL 14.3/13.7/12.11).
#[derive(Debug, Clone)]
pub struct AmcheckAssertion {
    /// Also verify that every heap tuple has its index entry (slower, ~4×).
    pub heapallindexed: bool,
    /// Parallel connections per database (at least 1); the work is spread by relation size.
    pub jobs: usize,
    /// With `heapallindexed`: only this run's share of the indexes gets it (the others get the
    /// plain structural check), see [`crate::assertions::sample`].
    pub sample: Option<crate::assertions::Sample>,
}

/// One relation to verify.
#[derive(Debug, Clone)]
struct Item {
    oid: u32,
    name: String,
    index: bool,
    /// Bytes of its main fork (`pg_relation_size`).
    size: i64,
    /// `heapallindexed` for this index.
    all: bool,
    /// Its `pg_relation_filepath`, for heaps: read in full, its main fork is covered
    /// ([`AssertionContext::record_read`]).
    path: Option<String>,
}

/// Spreads `items` over `jobs` lists of about equal bytes: largest first, each to the list
/// with the fewest bytes so far (so one huge table does not leave the other jobs idle at the
/// end, as a split by count does). Each list stays largest first.
fn by_size(mut items: Vec<Item>, jobs: usize) -> Vec<Vec<Item>> {
    let jobs = jobs.max(1);
    items.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let mut lists: Vec<(i64, Vec<Item>)> = vec![(0, Vec::new()); jobs];
    for it in items {
        if let Some(l) = lists.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            l.0 += it.size.max(1);
            l.1.push(it);
        }
    }
    lists.into_iter().map(|(_, l)| l).filter(|l| !l.is_empty()).collect()
}

/// Verifies `items` over one connection; returns corruption findings, or an error when it
/// could not check.
async fn verify(ctx: AssertionContext, db: String, am: Amcheck, items: Vec<Item>) -> Result<Vec<String>> {
    let c = ctx.tool_connect(Some(&db)).await?;
    let could_not = |what: String, e: tokio_postgres::Error| Error::Assertion {
        name: "amcheck".into(),
        message: format!("{what} in database {db:?}: {}", db_message(&e)),
        source: None,
    };
    let index_sql = format!(
        "select {}($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.bool)",
        qualified(&am.schema, "bt_index_check")
    );
    let heap_sql = format!(
        "select v.blkno, v.msg from {}($1::pg_catalog.oid::pg_catalog.regclass, false::pg_catalog.bool) v limit 3",
        qualified(&am.schema, "verify_heapam")
    );
    let index_stmt = c.prepare(&index_sql).await.map_err(|e| could_not("preparing bt_index_check".into(), e))?;
    let heap_stmt = if am.heap {
        Some(c.prepare(&heap_sql).await.map_err(|e| could_not("preparing verify_heapam".into(), e))?)
    } else {
        None
    };
    let verifies = server_verifies_checksums(&c).await;
    let mut problems = Vec::new();
    for it in items {
        let result = match (&heap_stmt, it.index) {
            (_, true) => c.execute(&index_stmt, &[&it.oid, &it.all]).await.map(|_| Vec::new()),
            (Some(stmt), false) => c.query(stmt, &[&it.oid]).await,
            (None, false) => continue,
        };
        match result {
            Ok(found) => {
                // verify_heapam (skip 'none') read every block of the main fork through the
                // buffer manager. bt_index_check does not count: it walks the tree, and deleted
                // pages (unlinked, waiting for reuse) are never visited.
                if let (true, true, Some(path)) = (verifies, found.is_empty(), &it.path) {
                    ctx.record_read(path.clone(), "amcheck");
                }
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
            Err(e) => return Err(could_not(format!("checking {}", it.name), e)),
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
        let mut notes = Vec::new();
        let mut sampled = Sampled::default();
        for db in databases(ctx).await? {
            let c = ctx.tool_connect(Some(&db)).await?;
            let could_not = |what: &str, e: tokio_postgres::Error| Error::Assertion {
                name: "amcheck".into(),
                message: format!("{what} in database {db:?}: {}", db_message(&e)),
                source: None,
            };
            let version: i32 = c
                .query_one("select pg_catalog.current_setting('server_version_num')::pg_catalog.int4", &[])
                .await
                .map_err(|e| could_not("reading the version", e))?
                .get(0);
            // The restored copy is throwaway: installing the extension there changes nothing real.
            let am = amcheck_in(&c, &db, version, &mut notes).await?;
            let listed = list_and_verify(self, ctx, &c, &db, &am, &mut sampled).await;
            am.finish(&c, &db).await;
            let (i, r, p) = listed?;
            indexes += i;
            relations += r;
            problems.extend(p);
        }
        let mut observed = serde_json::json!({
            "indexes": indexes,
            "relations": relations,
            "jobs": self.jobs.max(1),
            "seconds": started.elapsed().as_secs_f64(),
            "problems": problems.len(),
        });
        if !notes.is_empty() {
            observed["notes"] = notes.into();
        }
        if self.heapallindexed {
            observed["heapallindexed"] = sampled.json(self.sample.is_some());
        }
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

/// Lists one database's indexes (and heaps) and verifies them over `jobs` connections.
/// Returns (indexes, relations, problems).
async fn list_and_verify(
    a: &AmcheckAssertion,
    ctx: &AssertionContext,
    c: &tokio_postgres::Client,
    db: &str,
    am: &Amcheck,
    sampled: &mut Sampled,
) -> Result<(u64, u64, Vec<String>)> {
    let could_not = |what: &str, e: tokio_postgres::Error| Error::Assertion {
        name: "amcheck".into(),
        message: format!("{what} in database {db:?}: {}", db_message(&e)),
        source: None,
    };
    let mut items: Vec<Item> = c
        .query(
            "select c.oid, n.nspname, c.relname, pg_catalog.pg_relation_size(c.oid) from pg_catalog.pg_index i \
             join pg_catalog.pg_class c on c.oid = i.indexrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             join pg_catalog.pg_am a on a.oid = c.relam \
             where a.amname = 'btree' and c.relpersistence <> 't' and i.indisvalid and i.indisready",
            &[],
        )
        .await
        .map_err(|e| could_not("listing indexes", e))?
        .iter()
        .map(|r| Item {
            oid: r.get(0),
            name: format!("index {}.{}", r.get::<_, String>(1), r.get::<_, String>(2)),
            index: true,
            size: r.get(3),
            all: a.heapallindexed,
            path: None,
        })
        .collect();
    if a.heapallindexed {
        sampled.pick(a.sample, db, &mut items, &ctx.run_key);
    }
    let indexes = items.len() as u64;
    let mut relations = 0;
    if am.heap {
        let heaps: Vec<Item> = c
            .query(
                "select c.oid, n.nspname, c.relname, pg_catalog.pg_relation_size(c.oid), \
                 pg_catalog.pg_relation_filepath(c.oid) from pg_catalog.pg_class c \
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                 where c.relkind in ('r', 'm', 't') and c.relpersistence <> 't'",
                &[],
            )
            .await
            .map_err(|e| could_not("listing tables", e))?
            .iter()
            .map(|r| Item {
                oid: r.get(0),
                name: format!("table {}.{}", r.get::<_, String>(1), r.get::<_, String>(2)),
                index: false,
                size: r.get(3),
                all: false,
                path: r.get(4),
            })
            .collect();
        relations = heaps.len() as u64;
        items.extend(heaps);
    }
    let tasks: Vec<_> = by_size(items, a.jobs)
        .into_iter()
        .map(|chunk| tokio::spawn(verify(ctx.clone(), db.to_string(), am.clone(), chunk)))
        .collect();
    let mut problems = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => problems.extend(r?),
            Err(e) => {
                return Err(Error::Assertion {
                    name: a.name(),
                    message: "a check task failed".into(),
                    source: Some(e.into()),
                })
            }
        }
    }
    Ok((indexes, relations, problems))
}

/// What a sampled check covered, over every database.
#[derive(Debug, Default)]
struct Sampled {
    share: Option<(u64, u64)>,
    checked: u64,
    total: u64,
    checked_bytes: i64,
    total_bytes: i64,
}

impl Sampled {
    /// Keeps `all` (the expensive check) only on this run's share of `items` when sampling.
    fn pick(&mut self, sample: Option<crate::assertions::Sample>, db: &str, items: &mut [Item], run_key: &str) {
        let bytes: i64 = items.iter().map(|i| i.size.max(0)).sum();
        self.total += items.len() as u64;
        self.total_bytes += bytes;
        let Some(sample) = sample else {
            self.checked += items.len() as u64;
            self.checked_bytes += bytes;
            return;
        };
        // The split is per database, over its own size, so the rotation stays stable.
        let share = crate::assertions::sample::Share::new(sample, u64::try_from(bytes).unwrap_or(0), run_key);
        self.share = Some((share.index, share.of));
        for it in items.iter_mut() {
            it.all = share.holds(db, &it.name);
            if it.all {
                self.checked += 1;
                self.checked_bytes += it.size.max(0);
            }
        }
    }

    fn json(&self, sampling: bool) -> serde_json::Value {
        let fraction = if self.total_bytes > 0 { self.checked_bytes as f64 / self.total_bytes as f64 } else { 1.0 };
        let mut v = serde_json::json!({
            "checked": self.checked,
            "of": self.total,
            "checked_bytes": self.checked_bytes,
            "total_bytes": self.total_bytes,
            "fraction_of_bytes": fraction,
        });
        if sampling {
            if let Some((n, t)) = self.share {
                v["subset"] = serde_json::json!({ "index": n, "of": t });
            }
        }
        v
    }
}

/// `read_all`: reads every table in full (`COPY … TO '/dev/null'`, TOAST included), the cheap
/// check where amcheck is unavailable. With data checksums, every page's checksum is verified.
#[derive(Debug, Clone, Default)]
pub struct ReadAllAssertion {
    /// Read only this run's share of the tables ([`crate::assertions::sample`]).
    pub sample: Option<crate::assertions::Sample>,
}

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
        let mut sampled = Sampled::default();
        for db in databases(ctx).await? {
            let c = ctx.tool_connect(Some(&db)).await?;
            let rows = c
                .query(
                    "select c.oid, n.nspname, c.relname, pg_catalog.pg_total_relation_size(c.oid), \
                     pg_catalog.pg_relation_filepath(c.oid) from pg_catalog.pg_class c \
                     join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                     where c.relkind in ('r', 'm') and c.relpersistence <> 't' \
                       and n.nspname <> 'information_schema' and n.nspname !~ '^pg_temp'",
                    &[],
                )
                .await
                .map_err(|e| Error::Assertion {
                    name: self.name(),
                    message: format!("listing tables in {db:?}: {}", db_message(&e)),
                    source: None,
                })?;
            let mut items: Vec<Item> = rows
                .iter()
                .map(|r| Item {
                    oid: r.get(0),
                    name: qualified(r.get(1), r.get(2)),
                    index: false,
                    size: r.get(3),
                    all: true,
                    path: r.get(4),
                })
                .collect();
            sampled.pick(self.sample, &db, &mut items, &ctx.run_key);
            let verifies = server_verifies_checksums(&c).await;
            for it in items.into_iter().filter(|i| i.all) {
                let t = it.name;
                tables += 1;
                let read = c.simple_query(&format!("copy (select * from only {t}) to '/dev/null'")).await;
                if let (true, Ok(_), Some(path)) = (verifies, &read, it.path) {
                    // A sequential scan reads every block of the main fork (TOAST only where
                    // live rows point, so the TOAST table is not covered).
                    ctx.record_read(path, "read_all");
                }
                if let Err(e) = read {
                    if is_corruption(&e) {
                        problems.push(format!("{db}: {t}: {}", db_message(&e)));
                    } else {
                        return Err(Error::Assertion {
                            name: self.name(),
                            message: format!("reading {t} in {db:?}: {}", db_message(&e)),
                            source: None,
                        });
                    }
                }
            }
        }
        let mut observed = serde_json::json!({"tables": tables, "seconds": started.elapsed().as_secs_f64(), "problems": problems.len()});
        if self.sample.is_some() {
            observed["sample"] = sampled.json(true);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_versions_compare_numerically() {
        assert!(ext_version("1.3") >= (1, 3));
        assert!(ext_version("1.10") >= (1, 3));
        assert!(ext_version("1.2") < (1, 3));
        assert_eq!(ext_version("garbage"), (0, 0));
    }

    #[test]
    fn run_schemas_are_distinct_quoted_identifiers() {
        let (a, b) = (run_schema(), run_schema());
        assert_ne!(a, b);
        assert!(a.starts_with("restorecheck_") && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{a}");
        assert_eq!(qualified("we\"ird", "bt_index_check"), "\"we\"\"ird\".\"bt_index_check\"");
    }
}
