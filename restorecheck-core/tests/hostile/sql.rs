//! Hostile inputs: SQL planted in the restored database. An application role (no superuser)
//! shadows catalog functions and operators with SECURITY INVOKER functions that run
//! `COPY … TO PROGRAM 'touch <marker>'` — which only works when a superuser calls them — and a
//! DBA-installed event trigger does the same on any DDL. restorecheck's own queries (readiness,
//! recovery facts, amcheck, read_all, compare_to_previous, the canary's age) run as superuser,
//! so none of them may reach that code.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use restorecheck_core::assertions::{
    AmcheckAssertion, CanaryAssertion, CompareConfig, CompareToPrevious, ReadAllAssertion, SqlAssertionConfig,
};
use restorecheck_core::fixture::SampleCluster;
use restorecheck_core::report::{CheckReport, Verdict};

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
             alter database app set search_path = public, pg_catalog;"
        ),
    )
    .await
    .unwrap();
}

fn canary() -> CanaryAssertion {
    // The user's own SQL is qualified; only restorecheck's age computation could hit a trap.
    CanaryAssertion::new(SqlAssertionConfig {
        name: None,
        sql: "select pg_catalog.max(created_at) from public.registrations".into(),
        database: None,
        equals: None,
        min: None,
        max: None,
        max_age: Some(Duration::from_secs(24 * 3600)),
    })
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
    c.basebackup("b1", &["-Ft", "-Xstream"]).await.unwrap();
    assert!(markers(&m).is_empty(), "planting fired a trap: {:?}", markers(&m));

    let state = dir.path().join("state.json");
    let ch = check(&c.backups_dir(), None)
        .assert(AmcheckAssertion { heapallindexed: true, jobs: 2 })
        .assert(ReadAllAssertion)
        .assert(CompareToPrevious::new("test", &CompareConfig { max_drop: 0.1, state_file: Some(state) }).unwrap())
        .assert(canary());
    let r = run(&dir, ch).await;
    assert!(markers(&m).is_empty(), "code planted in the restored database ran as superuser: {:?}", markers(&m));
    assert_pass(&r);
    for name in ["amcheck", "read_all", "compare_to_previous", "canary (RPO)"] {
        assert_eq!(assertion(&r, name).verdict, Verdict::Pass);
    }
    let amcheck = assertion(&r, "amcheck").observed.clone().unwrap();
    assert!(amcheck["indexes"].as_u64().unwrap() > 0, "{amcheck}");

    // The traps were armed: the same calls made by a superuser in the source database fire them.
    c.exec(
        "app",
        "select n.nspname || c.relname from pg_catalog.pg_class c \
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace limit 1;
         select quote_ident('x'::name);
         select now();
         select count(*) from pg_namespace;
         create table t_fires ();",
    )
    .await
    .unwrap();
    assert_eq!(
        markers(&m),
        ["event_trigger", "now", "operator_concat_name", "pg_namespace_view", "quote_ident_name"],
        "the traps must be live for this test to prove anything"
    );
}
