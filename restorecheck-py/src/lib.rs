//! Python binding of restorecheck: the native module `restorecheck._native`.
//!
//! Deliberately thin. Sources, targets and TOML assertion kinds are built table-driven through
//! [`restorecheck_core::Registry`] (Python keyword arguments become the same `toml::Table` a
//! configuration file holds), checks run through [`restorecheck_core::run`] on one shared tokio
//! runtime, and the only things implemented here are what Python needs on top: callable
//! assertions with a `db` object, value conversion, Ctrl-C and the exception classes.
//! The GIL is released whenever Rust works or waits.

mod check;
mod db;
mod kinds;
mod values;

use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use restorecheck_core::{Error, ErrorKind, Registry};

create_exception!(
    restorecheck,
    RestoreCheckError,
    PyException,
    "Base class: the check could not be run (bad configuration, missing tooling, …). A check that \
     ran and failed is a Report, never an exception."
);
create_exception!(
    restorecheck,
    ConfigError,
    RestoreCheckError,
    "Invalid configuration: unknown option, bad value, unknown kind. The message is the one the CLI prints."
);
create_exception!(restorecheck, SourceError, RestoreCheckError, "A backup source could not list or read backups.");
create_exception!(
    restorecheck,
    TargetError,
    RestoreCheckError,
    "A restore target could not start or stop PostgreSQL for a reason unrelated to the backup."
);
create_exception!(restorecheck, TimeoutError, RestoreCheckError, "A deadline passed.");
create_exception!(
    restorecheck,
    ToolingError,
    RestoreCheckError,
    "The tester's own tooling is missing or unusable (PostgreSQL binaries, OS user)."
);
create_exception!(
    restorecheck,
    QueryError,
    RestoreCheckError,
    "A query on the restored database failed; `sqlstate` holds the SQLSTATE code when the server sent one."
);

/// The one place that maps a core [`Error`] to a Python exception (class by [`ErrorKind`]).
///
/// The message is the error's own message with its causes appended once
/// ([`Error::chain`], the text the CLI prints as `error:` and `Caused by:` lines), and
/// `__cause__` is the chain of underlying errors: an `OSError` subclass for an OS error,
/// a `RestoreCheckError` for anything else, so `err.__cause__` is the underlying cause.
pub(crate) fn to_py_err(e: &Error) -> PyErr {
    let msg = e.chain();
    let err = match e.kind() {
        ErrorKind::Config => ConfigError::new_err(msg),
        ErrorKind::Source | ErrorKind::Storage | ErrorKind::Decryption => SourceError::new_err(msg),
        ErrorKind::Target => TargetError::new_err(msg),
        ErrorKind::Timeout => TimeoutError::new_err(msg),
        ErrorKind::Tooling => ToolingError::new_err(msg),
        ErrorKind::Postgres => {
            let err = QueryError::new_err(msg);
            let code = match e {
                Error::Postgres { source, .. } => source.as_db_error().map(|d| d.code().code().to_string()),
                _ => None,
            };
            Python::attach(|py| {
                // Setting an attribute on a fresh exception object cannot fail in practice;
                // if it did, the exception is still the right class with the right message.
                let _ = err.value(py).setattr("sqlstate", code);
            });
            err
        }
        _ => RestoreCheckError::new_err(msg),
    };
    // Innermost first: each exception is the __cause__ of the one above it.
    let mut cause: Option<PyErr> = None;
    Python::attach(|py| {
        for c in e.causes().into_iter().rev() {
            let exc = match c.error.downcast_ref::<std::io::Error>() {
                Some(io) => PyErr::from(std::io::Error::new(io.kind(), c.text)),
                None => RestoreCheckError::new_err(c.text),
            };
            exc.set_cause(py, cause.take());
            cause = Some(exc);
        }
        if cause.is_some() {
            err.set_cause(py, cause);
        }
    });
    err
}

/// The registry every table-driven constructor goes through (the CLI's `Registry::default()`).
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// The one shared multi-thread tokio runtime all runs, assertions and queries use.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("restorecheck")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))?;
    // Two threads racing here: one runtime wins, the other is dropped unused.
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Names of the registered source, target and assertion kinds.
#[pyfunction]
#[pyo3(name = "kinds")]
fn registered_kinds() -> (Vec<String>, Vec<String>, Vec<String>) {
    registry().kinds()
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RestoreCheckError", py.get_type::<RestoreCheckError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("SourceError", py.get_type::<SourceError>())?;
    m.add("TargetError", py.get_type::<TargetError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("ToolingError", py.get_type::<ToolingError>())?;
    m.add("QueryError", py.get_type::<QueryError>())?;
    m.add_function(wrap_pyfunction!(registered_kinds, m)?)?;
    m.add_class::<kinds::PySource>()?;
    m.add_class::<kinds::PyTarget>()?;
    m.add_class::<kinds::PyAssertionKind>()?;
    m.add_class::<check::PyCheck>()?;
    m.add_class::<check::RunHandle>()?;
    m.add_class::<check::NativeReport>()?;
    m.add_class::<db::Db>()?;
    m.add_function(wrap_pyfunction!(check::run, m)?)?;
    m.add_function(wrap_pyfunction!(check::start, m)?)?;
    m.add_function(wrap_pyfunction!(check::load_config, m)?)?;
    Ok(())
}
