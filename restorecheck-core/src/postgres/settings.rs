//! The settings that make a restored copy safe and throwaway.
//!
//! Everything here is passed as `-c name=value` on the `postgres` command line, which beats
//! `postgresql.conf` and `postgresql.auto.conf` (verified: `pg_settings.source = command line`).
//! The list is the single place that knows how a restored copy is cut off from production.

use std::path::Path;

/// Inputs that vary per restore.
#[derive(Debug, Clone)]
pub(crate) struct SafeSettingsInput<'a> {
    /// Major version of the server (some settings exist only in some versions).
    pub(crate) major: u32,
    /// The data directory.
    pub(crate) data_dir: &'a Path,
    /// Unix socket directory.
    pub(crate) socket_dir: &'a Path,
    /// Port (names the socket file; nothing listens on TCP unless `listen_addresses` is given).
    pub(crate) port: u16,
    /// Our own `pg_hba.conf`.
    pub(crate) hba_file: &'a Path,
    /// Our own `pg_ident.conf`.
    pub(crate) ident_file: &'a Path,
    /// TCP listen addresses; empty = Unix socket only (the `local` target).
    pub(crate) listen_addresses: &'a str,
    /// `restore_command` for archive recovery, or `None` for crash recovery.
    pub(crate) restore_command: Option<&'a str>,
    /// Minimums recorded in pg_control (`max_connections`, …) that hot standby requires.
    pub(crate) hot_standby_minimums: &'a [(&'static str, u64)],
    /// How far archive recovery goes.
    pub(crate) recovery_target: &'a crate::source::RecoveryTarget,
    /// Which timeline archive recovery follows.
    pub(crate) recovery_target_timeline: crate::source::RecoveryTargetTimeline,
}

/// Throwaway-instance defaults that make recovery faster; the user's `settings` may override.
pub(crate) const FAST_DEFAULTS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("shared_buffers", "128MB"),
    ("huge_pages", "try"),
    ("autovacuum", "off"),
    ("max_parallel_workers_per_gather", "2"),
    // JIT needs an LLVM library the testing host may lack; formatting locales from production's
    // postgresql.conf may not exist here and would stop the server from starting.
    ("jit", "off"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    // Extensions preloaded on production may not be installed here; a missing one would stop
    // the server from starting at all. Users who need one add it back through `settings`.
    ("shared_preload_libraries", ""),
    ("session_preload_libraries", ""),
    ("local_preload_libraries", ""),
];

/// Settings the user may not override: each one is what keeps the copy away from production.
pub(crate) fn safety_settings(i: &SafeSettingsInput<'_>) -> Vec<(String, String)> {
    let p = |x: &Path| x.display().to_string();
    let mut s: Vec<(&str, String)> = vec![
        // Never take the production configuration's paths.
        ("data_directory", p(i.data_dir)),
        ("hba_file", p(i.hba_file)),
        ("ident_file", p(i.ident_file)),
        // Inside our work dir: production's (Debian: /var/run/postgresql/<ver>-<name>.pid) is never
        // touched, and an empty value would make the server log a write error.
        ("external_pid_file", p(&i.hba_file.with_file_name("postgres.external.pid"))),
        // Reachable only by us.
        ("listen_addresses", i.listen_addresses.to_string()),
        ("port", i.port.to_string()),
        ("unix_socket_directories", p(i.socket_dir)),
        ("unix_socket_group", String::new()),
        ("unix_socket_permissions", "0700".into()),
        ("ssl", "off".into()),
        // Never push WAL anywhere, never follow or feed a primary, never wait for standbys.
        ("archive_mode", "off".into()),
        ("archive_command", String::new()),
        ("archive_cleanup_command", String::new()),
        ("recovery_end_command", String::new()),
        ("primary_conninfo", String::new()),
        ("primary_slot_name", String::new()),
        ("synchronous_standby_names", String::new()),
        ("max_wal_senders", "0".into()),
        // Logical replication subscriptions would connect to production publishers.
        ("max_logical_replication_workers", "0".into()),
        // Recovery: we decide how far to go (to the end of the available WAL) and to promote.
        ("restore_command", i.restore_command.unwrap_or("").to_string()),
        ("recovery_target", String::new()),
        ("recovery_target_lsn", String::new()),
        ("recovery_target_name", String::new()),
        ("recovery_target_time", String::new()),
        ("recovery_target_xid", String::new()),
        ("recovery_target_inclusive", "on".into()),
        ("recovery_target_timeline", i.recovery_target_timeline.setting()),
        ("recovery_target_action", "promote".into()),
        ("recovery_min_apply_delay", "0".into()),
        // Logs in a parseable, English form on stderr (the target captures it).
        ("logging_collector", "off".into()),
        ("log_destination", "stderr".into()),
        ("lc_messages", "C".into()),
        ("log_min_messages", "warning".into()),
        ("log_line_prefix", "%m [%p] ".into()),
        ("log_timezone", "UTC".into()),
        // The verdict depends on these: a damaged page must be an error, never a zeroed or
        // silently accepted page (amcheck and `read_all` count on the server verifying the
        // checksum of every page it reads), and replay must not skip references to missing pages.
        ("ignore_checksum_failure", "off".into()),
        ("zero_damaged_pages", "off".into()),
    ];
    {
        // PostgreSQL rejects a second recovery_target_* assignment after one was set, even to
        // '' ("multiple recovery targets specified"): the chosen one must come last.
        use crate::source::RecoveryTarget as T;
        let chosen: Option<(&'static str, String)> = match i.recovery_target {
            T::Latest => None,
            T::Immediate => Some(("recovery_target", "immediate".into())),
            T::Time(t) => Some(("recovery_target_time", t.clone())),
            T::Lsn(l) => Some(("recovery_target_lsn", l.to_string())),
            T::Name(n) => Some(("recovery_target_name", n.clone())),
        };
        if let Some((k, v)) = chosen {
            s.retain(|(n, _)| *n != k);
            s.push((k, v));
        }
    }
    if i.major >= 15 {
        s.push(("archive_library", String::new()));
    }
    if i.major >= 13 {
        s.push(("ignore_invalid_pages", "off".into()));
    }
    if i.major <= 14 {
        // The stats collector would otherwise write into production's stats_temp_directory
        // (Debian points it at /var/run/postgresql/<ver>-<cluster>.pg_stat_tmp).
        s.push(("stats_temp_directory", "pg_stat_tmp".into()));
    }
    let mut out: Vec<(String, String)> = s.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (k, v) in i.hot_standby_minimums {
        if *k == "max_wal_senders" {
            // Hot standby requires at least the primary's value; it stays unused (no replication hba).
            out.retain(|(n, _)| n != "max_wal_senders");
        }
        out.push((k.to_string(), v.to_string()));
    }
    out
}

/// True when `name` is one of the settings [`safety_settings`] controls (users may not change it).
pub(crate) fn is_protected(name: &str) -> bool {
    const PROTECTED: &[&str] = &[
        "data_directory",
        "hba_file",
        "ident_file",
        "external_pid_file",
        "listen_addresses",
        "port",
        "unix_socket_directories",
        "unix_socket_group",
        "unix_socket_permissions",
        "archive_mode",
        "archive_command",
        "archive_library",
        "archive_cleanup_command",
        "recovery_end_command",
        "primary_conninfo",
        "primary_slot_name",
        "synchronous_standby_names",
        "max_wal_senders",
        "max_logical_replication_workers",
        "restore_command",
        "recovery_target",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_xid",
        "recovery_target_timeline",
        "recovery_target_action",
        "logging_collector",
        "log_destination",
        "lc_messages",
        "log_min_messages",
        "log_line_prefix",
        "log_timezone",
        "ignore_checksum_failure",
        "zero_damaged_pages",
        "ignore_invalid_pages",
        "stats_temp_directory",
        "config_file",
    ];
    PROTECTED.contains(&name)
}

/// Name of the user name map in our `pg_ident.conf` (see [`ident_conf`]).
pub(crate) const IDENT_MAP: &str = "restorecheck";

/// The `pg_hba.conf` of a restored copy while it recovers (stage 1): local socket connections
/// only, authenticated by `peer` through [`IDENT_MAP`], which maps only the OS user
/// restorecheck runs as (no other OS user, not even the server's own, can connect); no
/// replication. During recovery the copy is read-only, so no password can be set yet.
pub(crate) const HBA_CONF: &str = "# written by restorecheck: only local socket connections, no replication\n\
local   replication   all   reject\n\
local   all           all   peer map=restorecheck\n";

/// `pg_ident.conf` for [`HBA_CONF`]: OS user `os_user` (the one restorecheck runs as) may
/// connect as each of `roles`, nobody else as anyone. One line per role, because PostgreSQL
/// before 16 has no "any role" in the database-user column.
pub(crate) fn ident_conf(os_user: &str, roles: &[String]) -> String {
    let mut s = String::from("# written by restorecheck: only restorecheck's own OS user, only these roles\n");
    for r in roles {
        s.push_str(&format!("{IDENT_MAP}   {}   {}\n", hba_word(os_user), hba_word(r)));
    }
    s
}

/// The `pg_hba.conf` after promotion (stage 2): only `role`, only with the run's password
/// (scram-sha-256), only over the private socket; everything else rejected.
pub(crate) fn hba_conf_password(role: &str) -> String {
    format!(
        "# written by restorecheck after promotion: only its own role, with the run's password\n\
         local   replication   all   reject\n\
         local   all           {}   scram-sha-256\n\
         local   all           all   reject\n",
        hba_word(role)
    )
}

/// A name as one word of `pg_hba.conf` / `pg_ident.conf`: double-quoted (so keywords such as
/// `all` or names with spaces are taken literally), embedded quotes doubled.
pub(crate) fn hba_word(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Builds the `postgres` argument list: `-D dir` then `-c k=v` for every setting, with user
/// `settings` applied between the fast defaults and the safety settings (which always win).
pub(crate) fn command_line(data_dir: &Path, safety: &[(String, String)], user: &[(String, String)]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = FAST_DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (k, v) in user.iter().chain(safety.iter()) {
        merged.retain(|(n, _)| n != k);
        merged.push((k.clone(), v.clone()));
    }
    let mut args = vec!["-D".to_string(), data_dir.display().to_string()];
    for (k, v) in merged {
        args.push("-c".into());
        args.push(format!("{k}={v}"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(major: u32) -> Vec<(String, String)> {
        safety_settings(&SafeSettingsInput {
            major,
            data_dir: Path::new("/w/data"),
            socket_dir: Path::new("/tmp/rc-x"),
            port: 5433,
            hba_file: Path::new("/w/hba"),
            ident_file: Path::new("/w/ident"),
            listen_addresses: "",
            restore_command: Some("cp /a/%f %p"),
            hot_standby_minimums: &[("max_connections", 300), ("max_wal_senders", 10)],
            recovery_target: &crate::source::RecoveryTarget::Name("rp1".into()),
            recovery_target_timeline: crate::source::RecoveryTargetTimeline::Id(2),
        })
    }

    #[test]
    fn production_touching_settings_are_overridden() {
        let s = input(15);
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("archive_mode"), Some("off"));
        assert_eq!(get("archive_library"), Some(""));
        assert_eq!(get("primary_conninfo"), Some(""));
        assert_eq!(get("synchronous_standby_names"), Some(""));
        assert_eq!(get("listen_addresses"), Some(""));
        assert_eq!(get("max_logical_replication_workers"), Some("0"));
        assert_eq!(get("max_connections"), Some("300"));
        assert_eq!(get("max_wal_senders"), Some("10"));
        assert_eq!(get("recovery_target_name"), Some("rp1"));
        assert_eq!(get("recovery_target_action"), Some("promote"));
        assert_eq!(get("recovery_target_timeline"), Some("2"));
        assert_eq!(get("stats_temp_directory"), None);
        assert_eq!(get("ignore_checksum_failure"), Some("off"));
        assert_eq!(get("zero_damaged_pages"), Some("off"));
        assert_eq!(get("ignore_invalid_pages"), Some("off"));
        let s13 = input(13);
        assert!(s13.iter().any(|(k, _)| k == "stats_temp_directory"));
        assert!(!s13.iter().any(|(k, _)| k == "archive_library"));
    }

    #[test]
    fn safety_beats_user_settings() {
        let safety = input(15);
        let user = vec![
            ("archive_mode".to_string(), "on".to_string()),
            ("work_mem".to_string(), "64MB".to_string()),
            ("fsync".to_string(), "on".to_string()),
        ];
        let args = command_line(Path::new("/w/data"), &safety, &user);
        assert!(args.contains(&"archive_mode=off".to_string()));
        assert!(!args.contains(&"archive_mode=on".to_string()));
        assert!(args.contains(&"work_mem=64MB".to_string()));
        assert!(args.contains(&"fsync=on".to_string()));
        assert!(!args.contains(&"fsync=off".to_string()));
        assert!(is_protected("archive_command"));
        assert!(!is_protected("work_mem"));
    }

    #[test]
    fn no_trust_anywhere() {
        assert!(!HBA_CONF.contains("trust"));
        assert!(HBA_CONF.contains("peer map=restorecheck"));
        let h = hba_conf_password("post\"gres");
        assert!(!h.contains("trust") && !h.contains("peer"));
        assert!(h.contains("local   all           \"post\"\"gres\"   scram-sha-256"), "{h}");
        assert!(h.trim_end().ends_with("local   all           all   reject"), "{h}");
        let i = ident_conf("root", &["postgres".into(), "all".into()]);
        assert!(i.contains("restorecheck   \"root\"   \"postgres\"\n"), "{i}");
        assert!(i.contains("restorecheck   \"root\"   \"all\"\n"), "{i}");
    }
}
