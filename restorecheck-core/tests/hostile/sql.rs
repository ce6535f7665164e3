//! Hostile inputs: SQL planted in the restored database. An application role (no superuser)
//! shadows catalog functions and operators with SECURITY INVOKER functions that run
//! `COPY … TO PROGRAM 'touch <marker>'` — which only works when a superuser calls them — and a
//! DBA-installed event trigger does the same on any DDL (and, on 17, a login trigger).
//! restorecheck's own queries (readiness, recovery facts, amcheck, read_all,
//! compare_to_previous, the canary's age) run as superuser, so none of them may reach that code;
//! user assertions run as the check's `role` when it sets one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use restorecheck_core::assertions::{
    AmcheckAssertion, CanaryAssertion, CompareConfig, CompareToPrevious, ReadAllAssertion, SqlAssertion,
    SqlAssertionConfig,
};
use restorecheck_core::fixture::SampleCluster;
use restorecheck_core::report::{CheckReport, Verdict};
use restorecheck_core::{Assertion, AssertionContext, Outcome};

use super::common::*;

/// A folder the server's OS user (whichever it is) can create marker files in.
fn marker_dir(dir: &TestDir) -> PathBuf {
    let p = dir.sub("markers");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    p
}

fn markers(p: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(p).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Plants the traps in database `app` of `c`; every trap touches `<markers>/<its name>`.
async fn plant_traps(c: &SampleCluster, markers: &Path) {
    let m = markers.display().to_string();
    // What a DBA set up in production: the application role owns its database (and so its
    // public schema), and an audit event trigger runs on every DDL statement.
    c.exec(
        "app",
        &format!(
            "create role app login;
             alter database app owner to app;
             alter table registrations owner to app;
             create schema dba;
             create function dba.audit_ddl() returns event_trigger language plpgsql as $f$
             begin
               copy (select 1) to program 'touch {m}/event_trigger; cat >/dev/null';
             exception when insufficient_privilege then null; -- the application's own DDL
             end $f$;
             create extension amcheck schema public;
             create event trigger audit_ddl on ddl_command_start execute function dba.audit_ddl();"
        ),
    )
    .await
    .unwrap();
    // What the application role can do on its own, as a non-superuser.
    c.exec(
        "app",
        &format!(
            "set role app;
             create function public.trap(what text) returns void language plpgsql as $f$
             begin
               execute pg_catalog.format('copy (select 1) to program %L', 'touch {m}/' || what || '; cat >/dev/null');
             exception when insufficient_privilege then null; -- a non-superuser called: harmless
             end $f$;
             -- better matches than pg_catalog's for catalog types (name), under any search_path
             create function public.cat_names(a name, b name) returns text language plpgsql as $f$
             begin perform public.trap('operator_concat_name'); return a::text || b::text; end $f$;
             create operator public.|| (leftarg = name, rightarg = name, function = public.cat_names);
             create function public.quote_ident(s name) returns text language plpgsql as $f$
             begin perform public.trap('quote_ident_name'); return pg_catalog.quote_ident(s::text); end $f$;
             -- same signatures as pg_catalog's: they win where public comes first in search_path
             create function public.quote_ident(s text) returns text language plpgsql as $f$
             begin perform public.trap('quote_ident_text'); return pg_catalog.quote_ident(s); end $f$;
             create function public.pg_is_in_recovery() returns bool language plpgsql as $f$
             begin perform public.trap('pg_is_in_recovery'); return pg_catalog.pg_is_in_recovery(); end $f$;
             create function public.now() returns timestamptz language plpgsql as $f$
             begin perform public.trap('now'); return pg_catalog.now(); end $f$;
             create function public.current_setting(s text) returns text language plpgsql as $f$
             begin perform public.trap('current_setting'); return pg_catalog.current_setting(s); end $f$;
             create function public.count_trap() returns bigint language plpgsql as $f$
             begin perform public.trap('pg_namespace_view'); return 0; end $f$;
             create view public.pg_namespace as
               select * from pg_catalog.pg_namespace where public.count_trap() = 0;
             -- overloads next to the DBA's amcheck in public: as good a match as the real ones
             create function public.bt_index_check(i regclass, h boolean, x int default 0) returns void
               language plpgsql as $f$ begin perform public.trap('bt_index_check_overload'); end $f$;
             create function public.verify_heapam(r regclass, s boolean default false, t boolean default false,
                 k text default 'none', b bigint default null, e bigint default null, x int default 0)
               returns table (blkno bigint, offnum int, attnum int, msg text)
               language plpgsql as $f$ begin perform public.trap('verify_heapam_overload'); end $f$;
             -- an index expression heapallindexed evaluates
             create function public.lower_trap(t text) returns text language plpgsql immutable as $f$
             begin perform public.trap('index_expression'); return pg_catalog.lower(t); end $f$;
             create index registrations_lower on registrations (public.lower_trap(email));
             alter database app set search_path = public, pg_catalog;"
        ),
    )
    .await
    .unwrap();
}

/// Traps for the readiness poll and the recovery facts, which connect to `template1` and
/// `postgres`: a DBA's `ALTER DATABASE … SET search_path = public, pg_catalog` there (or, before
/// PostgreSQL 15, anyone's CREATE in `public`) puts same-named functions first.
async fn plant_readiness_traps(c: &SampleCluster, markers: &Path) {
    let m = markers.display().to_string();
    for db in ["template1", "postgres"] {
        c.exec(
            db,
            &format!(
                "create function public.trap(what text) returns void language plpgsql as $f$
                 begin
                   execute pg_catalog.format('copy (select 1) to program %L', 'touch {m}/' || what || '; cat >/dev/null');
                 end $f$;
                 create function public.pg_is_in_recovery() returns bool language plpgsql as $f$
                 begin perform public.trap('{db}_pg_is_in_recovery'); return pg_catalog.pg_is_in_recovery(); end $f$;
                 create function public.pg_last_wal_replay_lsn() returns pg_lsn language plpgsql as $f$
                 begin perform public.trap('{db}_pg_last_wal_replay_lsn'); return pg_catalog.pg_last_wal_replay_lsn(); end $f$;
                 create function public.current_setting(s text) returns text language plpgsql as $f$
                 begin perform public.trap('{db}_current_setting'); return pg_catalog.current_setting(s); end $f$;
                 alter database {db} set search_path = public, pg_catalog;"
            ),
        )
        .await
        .unwrap();
    }
}

fn canary() -> CanaryAssertion {
    // The user's own SQL is qualified; only restorecheck's age computation could hit a trap.
    CanaryAssertion::new(
        SqlAssertionConfig::new("select pg_catalog.max(created_at) from public.registrations")
            .max_age(Duration::from_secs(24 * 3600)),
    )
    .unwrap()
}

fn assertion<'a>(r: &'a CheckReport, name: &str) -> &'a restorecheck_core::report::AssertionReport {
    r.assertions.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no assertion {name}: {:?}", r.assertions))
}

#[tokio::test]
async fn planted_operators_functions_and_event_triggers_never_run_during_a_check() {
    let dir = TestDir::new("hostile-sql");
    let c = cluster(&dir, 50).await;
    let m = marker_dir(&dir);
    plant_traps(&c, &m).await;
    plant_readiness_traps(&c, &m).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    assert!(markers(&m).is_empty(), "planting fired a trap: {:?}", markers(&m));

    let state = dir.path().join("state.json");
    let ch = check(&c.backups_dir(), None)
        .assert(AmcheckAssertion { heapallindexed: true, jobs: 2, sample: None })
        .assert(ReadAllAssertion::default())
        .assert(CompareToPrevious::new("test", &CompareConfig::new(0.1).state_file(state)).unwrap())
        .assert(canary())
        // The user's own SQL (superuser, the database's search_path: so fully qualified here).
        .assert(named(
            "amcheck put back",
            "select pg_catalog.string_agg(n.nspname::pg_catalog.text, ',') from pg_catalog.pg_namespace n \
             where n.nspname OPERATOR(pg_catalog.~~) 'restorecheck%' \
                or n.oid OPERATOR(pg_catalog.=) (select e.extnamespace from pg_catalog.pg_extension e \
                                                  where e.extname OPERATOR(pg_catalog.=) 'amcheck')",
            Some(toml::Value::String("public".into())),
            None,
        ));
    let r = run(&dir, ch).await;
    assert!(markers(&m).is_empty(), "code planted in the restored database ran as superuser: {:?}", markers(&m));
    assert_pass(&r);
    for name in ["amcheck", "read_all", "compare_to_previous", "canary (RPO)", "amcheck put back"] {
        assert_eq!(assertion(&r, name).verdict, Verdict::Pass);
    }
    let amcheck = assertion(&r, "amcheck").observed.clone().unwrap();
    assert!(amcheck["indexes"].as_u64().unwrap() >= 2, "{amcheck}");
    let notes = amcheck["notes"].to_string();
    assert!(notes.contains("app: disabled event triggers audit_ddl"), "{notes}");
    assert!(notes.contains("app: amcheck lives in schema \\\"public\\\""), "{notes}");

    // The traps were armed: the same calls made by a superuser in the source database fire them.
    c.exec(
        "app",
        "select n.nspname || c.relname from pg_catalog.pg_class c \
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace limit 1;
         select quote_ident('x'::name);
         select now();
         select count(*) from pg_namespace;
         select public.lower_trap('x');
         select bt_index_check('registrations_pkey'::regclass, true, 1);
         create table t_fires ();",
    )
    .await
    .unwrap();
    c.exec("template1", "select pg_is_in_recovery()").await.unwrap();
    assert_eq!(
        markers(&m),
        [
            "bt_index_check_overload",
            "event_trigger",
            "index_expression",
            "now",
            "operator_concat_name",
            "pg_namespace_view",
            "quote_ident_name",
            "template1_pg_is_in_recovery"
        ],
        "the traps must be live for this test to prove anything"
    );
}

fn named(name: &str, sql: &str, equals: Option<toml::Value>, min: Option<f64>) -> SqlAssertion {
    let mut cfg = SqlAssertionConfig::new(sql).name(name);
    cfg.equals = equals;
    cfg.min = min;
    SqlAssertion::new(cfg).unwrap()
}

/// A custom (Rust) assertion: `ctx.connect` is the user's session (the check's role, the
/// database's search_path), `ctx.tool_connect` restorecheck's own (superuser, pg_catalog only).
#[derive(Debug)]
struct Sessions;

#[async_trait::async_trait]
impl Assertion for Sessions {
    fn name(&self) -> String {
        "sessions".into()
    }

    async fn check(&self, ctx: &AssertionContext) -> restorecheck_core::Result<Outcome> {
        let row = |c: tokio_postgres::Client| async move {
            let r =
                c.query_one("select current_user::text, pg_catalog.current_setting('search_path')", &[]).await.unwrap();
            (r.get::<_, String>(0), r.get::<_, String>(1))
        };
        let user = row(ctx.connect(None).await?).await;
        let tool = row(ctx.tool_connect(None).await?).await;
        Ok(Outcome::pass(serde_json::json!({"user": [user.0, user.1], "tool": [tool.0, tool.1]})))
    }
}

#[tokio::test]
async fn user_assertions_run_as_the_checks_role_and_builtin_checks_as_superuser() {
    let dir = TestDir::new("hostile-sql-role");
    let c = cluster(&dir, 12).await;
    c.exec(
        "app",
        "create role app_reader nologin;
         grant select on registrations to app_reader;
         create table secrets (s text);
         insert into secrets values ('only for the owner');",
    )
    .await
    .unwrap();
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    let ch = check(&c.backups_dir(), None)
        .role("app_reader")
        .assert(AmcheckAssertion { heapallindexed: false, jobs: 1, sample: None })
        .assert(ReadAllAssertion::default())
        .assert(named("whoami", "select current_user", Some(toml::Value::String("app_reader".into())), None))
        .assert(named("registrations", "select count(*) from registrations", Some(toml::Value::Integer(12)), None))
        .assert(named("secrets", "select count(*) from secrets", None, Some(0.0)))
        .assert(Sessions);
    let r = run(&dir, ch).await;
    // One assertion could not run as the role: the check is an error, not a pass and not a fail.
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.failure);
    for name in ["amcheck", "read_all", "whoami", "registrations", "sessions"] {
        assert_eq!(assertion(&r, name).verdict, Verdict::Pass, "{name}: {:?}", assertion(&r, name));
    }
    let secrets = assertion(&r, "secrets");
    assert_eq!(secrets.verdict, Verdict::Error);
    assert!(secrets.message.as_deref().unwrap_or("").contains("permission denied for table secrets"), "{secrets:?}");
    let read_all = assertion(&r, "read_all").observed.clone().unwrap();
    assert!(read_all["tables"].as_u64().unwrap() >= 2, "read_all reads secrets as superuser: {read_all}");
    let sessions = assertion(&r, "sessions").observed.clone().unwrap();
    assert_eq!(sessions["user"][0], "app_reader", "{sessions}");
    assert_eq!(sessions["user"][1], "\"$user\", public", "{sessions}");
    assert_eq!(sessions["tool"][0], "postgres", "{sessions}");
    assert_eq!(sessions["tool"][1], "pg_catalog,pg_temp", "{sessions}");
}

#[tokio::test]
async fn a_role_missing_from_the_restored_cluster_is_an_error_that_names_it() {
    let dir = TestDir::new("hostile-sql-norole");
    let c = cluster(&dir, 3).await;
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    let ch = check(&c.backups_dir(), None)
        .role("no_such_role")
        .assert(named("whoami", "select current_user", None, None))
        .assert(Sessions);
    let r = run(&dir, ch).await;
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.failure);
    for name in ["whoami", "sessions"] {
        let a = assertion(&r, name);
        assert_eq!(a.verdict, Verdict::Error, "{a:?}");
        let msg = a.message.as_deref().unwrap_or("");
        assert!(
            msg.contains("check.role \"no_such_role\"") && msg.contains("role \"no_such_role\" does not exist"),
            "{msg}"
        );
    }
}

/// The same kind of traps, planted by a script inside the image of `major` (its own initdb and
/// pg_basebackup), restored by the `docker` target. Traps raise an error when a superuser calls
/// them (a login trigger that raises even refuses the session), so a PASS proves none ran: on
/// 17 event and login triggers are off through the session's startup options, before 17 event
/// triggers are disabled before restorecheck's own DDL.
async fn planted_sql_in_docker(major: u32) {
    use restorecheck_core::sources::{BaseBackupConfig, BaseBackupSource};
    use restorecheck_core::targets::docker::{self, DockerTarget, DockerTargetConfig};

    let dir = TestDir::new(&format!("hostile-sql-docker{major}"));
    for d in ["backups", "sock"] {
        dir.sub(d);
    }
    std::process::Command::new("chmod").args(["-R", "0777"]).arg(dir.path()).status().unwrap();
    let d = dir.path().display();
    let login_trigger = if major >= 17 {
        "create function dba.on_login() returns event_trigger language plpgsql as $f$
         begin perform public.trap('login_trigger'); end $f$;
         create event trigger on_login on login execute function dba.on_login();"
    } else {
        ""
    };
    let script = format!(
        r#"set -e
D={d}/cluster; S={d}/sock
initdb -D $D -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
printf "listen_addresses = ''\nunix_socket_directories = '$S'\nwal_level = replica\n" >> $D/postgresql.conf
pg_ctl -D $D -w -l {d}/source.log start >/dev/null
q() {{ psql -X -q -v ON_ERROR_STOP=1 -h $S -U postgres "$@"; }}
q -c "create role app login" -c "create database app owner app"
q -d app <<'EOSQL'
create table registrations (id bigserial primary key, email text, created_at timestamptz default now());
insert into registrations (email) select 'u' || g from generate_series(1, 100) g;
alter table registrations owner to app;
alter sequence registrations_id_seq owner to app;
-- raises only for superusers; the application's own calls go through
create function public.trap(what text) returns void language plpgsql as $f$
begin
  if (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = pg_catalog.current_user()) then
    raise exception 'planted code ran as superuser: %', what;
  end if;
end $f$;
alter function public.trap(text) owner to app;
create schema dba;
create function dba.audit() returns event_trigger language plpgsql as $f$
begin perform public.trap('event_trigger'); end $f$;
set role app;
create function public.cat_names(a name, b name) returns text language plpgsql as $f$
begin perform public.trap('operator_concat_name'); return a::text || b::text; end $f$;
create operator public.|| (leftarg = name, rightarg = name, function = public.cat_names);
create function public.quote_ident(s name) returns text language plpgsql as $f$
begin perform public.trap('quote_ident_name'); return pg_catalog.quote_ident(s::text); end $f$;
create function public.pg_is_in_recovery() returns bool language plpgsql as $f$
begin perform public.trap('pg_is_in_recovery'); return pg_catalog.pg_is_in_recovery(); end $f$;
create function public.now() returns timestamptz language plpgsql as $f$
begin perform public.trap('now'); return pg_catalog.now(); end $f$;
create function public.current_setting(s text) returns text language plpgsql as $f$
begin perform public.trap('current_setting'); return pg_catalog.current_setting(s); end $f$;
alter database app set search_path = public, pg_catalog;
reset role;
{login_trigger}
create event trigger audit on ddl_command_start execute function dba.audit();
EOSQL
pg_basebackup -h $S -U postgres -D {d}/backups/b1 -Ft -Xstream -c fast
pg_ctl -D $D -m fast -w stop >/dev/null
echo done"#
    );
    let image = format!("restorecheck/postgres:{major}");
    let out = docker::run_script(&image, "postgres", &[(dir.path(), false)], &script).await.expect("planting");
    assert!(out.contains("done"), "{out}");
    std::process::Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path().join("backups")).status().unwrap();

    let source = BaseBackupSource::new(BaseBackupConfig::new(dir.path().join("backups")));
    let target = DockerTarget::new(DockerTargetConfig::default().image("restorecheck/postgres:{major}")).unwrap();
    let state = dir.path().join("state.json");
    let ch = restorecheck_core::Check::new("docker", Arc::new(source), Arc::new(target))
        .database("app")
        .timeout(Duration::from_secs(300))
        .assert(AmcheckAssertion { heapallindexed: true, jobs: 2, sample: None })
        .assert(ReadAllAssertion::default())
        .assert(CompareToPrevious::new("docker", &CompareConfig::new(0.1).state_file(state)).unwrap())
        .assert(canary());
    let work = dir.sub("work");
    let r = restorecheck_core::runner::run_check(&ch, &work, 0, &restorecheck_core::RunContext::new()).await;
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(std::fs::read_dir(&work).unwrap().next().is_none(), "work dir left behind");
    assert_pass(&r);
    assert!(r.recovery.server_version.as_deref().unwrap().starts_with(&major.to_string()));
    let notes = assertion(&r, "amcheck").observed.clone().unwrap()["notes"].to_string();
    if major >= 17 {
        assert_eq!(notes, "null", "PostgreSQL 17+ needs no disabling: {notes}");
    } else {
        assert!(notes.contains("app: disabled event triggers audit"), "{notes}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_sql_and_event_triggers_never_run_on_postgres_13_in_docker() {
    planted_sql_in_docker(13).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_sql_event_and_login_triggers_never_run_on_postgres_17_in_docker() {
    planted_sql_in_docker(17).await;
}
