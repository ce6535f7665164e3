//! Assertion `sql`: a query returning one value, compared with `equals`, `min`, `max` or
//! `max_age`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::assertion::{Assertion, AssertionContext, Outcome};
use crate::error::{Error, Result};

/// Options of one `[[check.assert]]` table with `sql = "…"`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, derive_setters::Setters)]
#[serde(deny_unknown_fields)]
#[setters(into, strip_option)]
#[non_exhaustive]
pub struct SqlAssertionConfig {
    /// Name in reports (default: the query).
    pub name: Option<String>,
    /// The query; the first column of its first row is the observed value.
    pub sql: String,
    /// Database to run in (default: the check's `database`).
    pub database: Option<String>,
    /// The value must equal this (string, integer, float or boolean).
    pub equals: Option<toml::Value>,
    /// The value must be a number ≥ this.
    #[setters(into = false)]
    pub min: Option<f64>,
    /// The value must be a number ≤ this.
    #[setters(into = false)]
    pub max: Option<f64>,
    /// The value is a timestamp that must be younger than this (`"24h"`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub max_age: Option<Duration>,
}

impl SqlAssertionConfig {
    /// An assertion on query `sql` (add `equals`, `min`, `max` or `max_age`).
    pub fn new(sql: impl Into<String>) -> Self {
        Self { sql: sql.into(), ..Self::default() }
    }
}

/// Assertion `sql`.
///
/// The query is the user's own code and runs as written: in the database's normal
/// `search_path`, **as the target's superuser** unless the check sets `role = "…"`, in which
/// case the session runs `SET ROLE` to that role first (a role missing from the restored
/// cluster is a verdict *error*). Objects planted in the database that the query touches
/// (functions, operators, views) run with those privileges. `SET ROLE` limits privileges but
/// is no sandbox: code that runs `RESET ROLE` gets the superuser back. Only the value's age
/// (`max_age`) is computed by restorecheck, with fully qualified `pg_catalog` names.
#[derive(Debug, Clone)]
pub struct SqlAssertion {
    cfg: SqlAssertionConfig,
}

impl SqlAssertion {
    /// An assertion over `cfg`.
    pub fn new(cfg: SqlAssertionConfig) -> Result<Self> {
        if cfg.sql.trim().is_empty() {
            return Err(Error::config("assertion sql is empty"));
        }
        if let Some(v) = &cfg.equals {
            if matches!(v, toml::Value::Array(_) | toml::Value::Table(_) | toml::Value::Datetime(_)) {
                return Err(Error::config(format!(
                    "assertion {:?}: equals must be a string, number or boolean",
                    cfg.name.as_deref().unwrap_or(&cfg.sql)
                )));
            }
        }
        Ok(Self { cfg })
    }

    /// A query that must return `min` or more (e.g. a row count).
    pub fn min(sql: &str, min: f64) -> Self {
        Self {
            cfg: SqlAssertionConfig {
                name: None,
                sql: sql.into(),
                database: None,
                equals: None,
                min: Some(min),
                max: None,
                max_age: None,
            },
        }
    }

    /// A query returning a timestamp that must be younger than `age`.
    pub fn max_age(sql: &str, age: Duration) -> Self {
        Self {
            cfg: SqlAssertionConfig {
                name: None,
                sql: sql.into(),
                database: None,
                equals: None,
                min: None,
                max: None,
                max_age: Some(age),
            },
        }
    }

    fn describe_expected(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(v) = &self.cfg.equals {
            parts.push(format!("= {}", display_toml(v)));
        }
        if let Some(v) = self.cfg.min {
            parts.push(format!(">= {v}"));
        }
        if let Some(v) = self.cfg.max {
            parts.push(format!("<= {v}"));
        }
        if let Some(v) = self.cfg.max_age {
            parts.push(format!("younger than {}", humantime::format_duration(v)));
        }
        if parts.is_empty() {
            Some("at least one row".into())
        } else {
            Some(parts.join(" and "))
        }
    }

    fn fail(&self, observed: Option<serde_json::Value>, message: String) -> Outcome {
        Outcome::Fail { observed, expected: self.describe_expected(), message }
    }
}

fn display_toml(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A text value from PostgreSQL as JSON: a number when it is one.
fn as_json(text: &str) -> serde_json::Value {
    if let Ok(i) = text.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() {
            return serde_json::Number::from_f64(f).map(Into::into).unwrap_or_else(|| text.into());
        }
    }
    text.into()
}

/// Does `observed` (PostgreSQL text output) equal the expected TOML value?
fn equals(observed: &str, expected: &toml::Value) -> bool {
    match expected {
        toml::Value::String(s) => observed == s,
        toml::Value::Integer(i) => {
            observed.parse::<i128>().map(|o| o == *i as i128).unwrap_or(false)
                || observed.parse::<f64>().map(|o| o == *i as f64).unwrap_or(false)
        }
        toml::Value::Float(f) => observed.parse::<f64>().map(|o| o == *f).unwrap_or(false),
        toml::Value::Boolean(b) => matches!((observed, b), ("t" | "true", true) | ("f" | "false", false)),
        _ => false,
    }
}

/// SQL errors that mean the restored data is missing or damaged, not that the check is wrong.
pub fn is_data_problem(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("XX") // internal errors: data_corrupted XX001, index_corrupted XX002
        || c.starts_with("58") // system errors: a relation file is missing (58P01)
        || *code == SqlState::UNDEFINED_TABLE
        || *code == SqlState::UNDEFINED_COLUMN
        || *code == SqlState::UNDEFINED_DATABASE
        || *code == SqlState::INVALID_SCHEMA_NAME
}

#[async_trait]
impl Assertion for SqlAssertion {
    fn name(&self) -> String {
        self.cfg.name.clone().unwrap_or_else(|| {
            let s: String = self.cfg.sql.split_whitespace().collect::<Vec<_>>().join(" ");
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        })
    }

    fn expected(&self) -> Option<String> {
        self.describe_expected()
    }

    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome> {
        let db = self.cfg.database.as_deref().unwrap_or(&ctx.database);
        let sql_error = |what: &str, e: tokio_postgres::Error| -> Result<Outcome> {
            match e.as_db_error() {
                Some(d) if is_data_problem(d.code()) => Ok(self.fail(
                    None,
                    format!(
                        "{what} failed in the restored database {db:?}: {} (SQLSTATE {})",
                        d.message(),
                        d.code().code()
                    ),
                )),
                _ => Err(Error::Assertion {
                    name: self.name(),
                    message: format!(
                        "{what} failed: {}",
                        e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
                    ),
                    source: None,
                }),
            }
        };
        let client = match ctx.user_session(Some(db)).await {
            Ok(c) => c,
            Err(e) => return sql_error("connecting", e),
        };
        ctx.apply_role(&client).await?;
        let messages = match client.simple_query(&self.cfg.sql).await {
            Ok(m) => m,
            Err(e) => return sql_error("the query", e),
        };
        let first = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        });
        let Some(value) = first else {
            return Ok(self.fail(None, "the query returned no rows".into()));
        };
        let Some(text) = value else {
            return Ok(self.fail(Some(serde_json::Value::Null), "the query returned NULL".into()));
        };
        let observed = as_json(&text);
        if let Some(exp) = &self.cfg.equals {
            if !equals(&text, exp) {
                return Ok(self.fail(Some(observed), format!("observed {text}, expected {}", display_toml(exp))));
            }
        }
        if self.cfg.min.is_some() || self.cfg.max.is_some() {
            let Ok(n) = text.trim().parse::<f64>() else {
                return Err(Error::Assertion {
                    name: self.name(),
                    message: format!("min/max need a number, the query returned {text:?}"),
                    source: None,
                });
            };
            if let Some(min) = self.cfg.min {
                if n < min {
                    return Ok(self.fail(Some(observed), format!("observed {text}, expected at least {min}")));
                }
            }
            if let Some(max) = self.cfg.max {
                if n > max {
                    return Ok(self.fail(Some(observed), format!("observed {text}, expected at most {max}")));
                }
            }
        }
        if let Some(max_age) = self.cfg.max_age {
            // Age computed by the server in the same session, so the value's own time zone and
            // DateStyle are interpreted exactly as the database meant them. The session keeps the
            // database's search_path (the user's query may rely on it), so restorecheck's own
            // expression names every function, operator and type by its pg_catalog schema.
            let row = client
                .query_one(
                    "select extract(epoch from (pg_catalog.now() OPERATOR(pg_catalog.-) \
                     $1::pg_catalog.text::pg_catalog.timestamptz))::pg_catalog.float8",
                    &[&text],
                )
                .await;
            let age = match row {
                Ok(r) => r.get::<_, f64>(0),
                Err(e) => {
                    return Err(Error::Assertion {
                        name: self.name(),
                        message: format!("max_age needs a timestamp, the query returned {text:?}"),
                        source: Some(e.into()),
                    })
                }
            };
            if age > max_age.as_secs_f64() {
                return Ok(self.fail(
                    Some(serde_json::json!({"value": text, "age_seconds": age})),
                    format!(
                        "newest value {text} is {} old, expected younger than {}",
                        crate::report::human_secs(age),
                        humantime::format_duration(max_age)
                    ),
                ));
            }
            return Ok(Outcome::Pass { observed: Some(serde_json::json!({"value": text, "age_seconds": age})) });
        }
        Ok(Outcome::Pass { observed: Some(observed) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_across_types() {
        assert!(equals("42", &toml::Value::Integer(42)));
        assert!(equals("42.0", &toml::Value::Integer(42)));
        assert!(!equals("41", &toml::Value::Integer(42)));
        assert!(equals("t", &toml::Value::Boolean(true)));
        assert!(equals("abc", &toml::Value::String("abc".into())));
        assert!(!equals("abcd", &toml::Value::String("abc".into())));
        assert!(equals("1.5", &toml::Value::Float(1.5)));
    }

    #[test]
    fn observed_values_become_numbers_when_they_are() {
        assert_eq!(as_json("12"), serde_json::json!(12));
        assert_eq!(as_json("1.5"), serde_json::json!(1.5));
        assert_eq!(as_json("2026-11-26"), serde_json::json!("2026-11-26"));
    }

    #[test]
    fn data_problems_are_failures_not_errors() {
        assert!(is_data_problem(&SqlState::UNDEFINED_TABLE));
        assert!(is_data_problem(&SqlState::DATA_CORRUPTED));
        assert!(is_data_problem(&SqlState::from_code("58P01")));
        assert!(!is_data_problem(&SqlState::SYNTAX_ERROR));
    }
}

/// Assertion `canary`: the newest value of a heartbeat production writes on a schedule
/// (`select max(beat) from restorecheck_canary`). Its age is the achieved recovery point
/// objective (RPO), reported as `rpo_seconds`; beyond `max_age` the check fails. Its query runs
/// like an [`SqlAssertion`]'s: the user's code, as the superuser or the check's `role`.
#[derive(Debug, Clone)]
pub struct CanaryAssertion {
    inner: SqlAssertion,
}

impl CanaryAssertion {
    /// A canary over `cfg`, which must have `max_age`.
    pub fn new(mut cfg: SqlAssertionConfig) -> Result<Self> {
        if cfg.max_age.is_none() || cfg.equals.is_some() || cfg.min.is_some() || cfg.max.is_some() {
            return Err(Error::config("assertion canary needs max_age (the RPO limit) and no equals/min/max"));
        }
        cfg.name.get_or_insert_with(|| "canary (RPO)".into());
        Ok(Self { inner: SqlAssertion::new(cfg)? })
    }
}

#[async_trait]
impl Assertion for CanaryAssertion {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn expected(&self) -> Option<String> {
        self.inner.describe_expected().map(|e| format!("RPO {e}"))
    }

    async fn check(&self, ctx: &AssertionContext) -> Result<Outcome> {
        let rpo = |o: Option<serde_json::Value>| {
            o.map(|v| match v {
                serde_json::Value::Object(mut m) => {
                    if let Some(a) = m.remove("age_seconds") {
                        m.insert("rpo_seconds".into(), a);
                    }
                    serde_json::Value::Object(m)
                }
                other => other,
            })
        };
        Ok(match self.inner.check(ctx).await? {
            Outcome::Pass { observed } => Outcome::Pass { observed: rpo(observed) },
            Outcome::Fail { observed, expected, message } => {
                Outcome::Fail { observed: rpo(observed), expected, message: format!("canary: {message}") }
            }
        })
    }
}
