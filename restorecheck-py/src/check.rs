//! Checks, callable assertions, and running: one shared runtime, the GIL released, Ctrl-C
//! turned into the run's cancellation (teardown still runs) and then re-raised.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pyo3::exceptions::{PyAssertionError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};
use restorecheck_core::{
    runner, Assertion, AssertionContext, CheckSpec, Error, Outcome, Report, RunContext, RunOptions,
};
use tokio_util::sync::CancellationToken;

use crate::db::{is_data_problem, Db};
use crate::kinds::{PyAssertionKind, PySource, PyTarget};
use crate::values::{kwargs_table, type_name};
use crate::{runtime, to_py_err, QueryError};

/// A Python callable run as an assertion: it gets a [`Db`] on the restored database.
///
/// Returns `None`/`True` → pass; `False` or `AssertionError` → fail (message kept); a
/// [`QueryError`] for missing or damaged data → fail (as for `sql` assertions); anything else
/// raised → error, with the traceback in the message.
pub struct PyAssertion {
    name: String,
    func: Arc<Py<PyAny>>,
}

impl std::fmt::Debug for PyAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyAssertion").field("name", &self.name).finish()
    }
}

#[async_trait]
impl Assertion for PyAssertion {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn check(&self, ctx: &AssertionContext) -> restorecheck_core::Result<Outcome> {
        let handle = tokio::runtime::Handle::current();
        let func = self.func.clone();
        let name = self.name.clone();
        let ctx = ctx.clone();
        let task = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                // The Python exception's text, taken while attached (its Display needs the GIL).
                let db = Bound::new(py, Db::new(handle, &ctx)).map_err(|e| Error::Assertion {
                    name: name.clone(),
                    message: "could not create the db object".into(),
                    source: Some(e.to_string().into()),
                })?;
                let result = func.bind(py).call1((db.clone(),));
                db.get().close();
                classify(py, &name, result)
            })
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Assertion {
                name: self.name.clone(),
                message: "the assertion thread failed".into(),
                source: Some(e.into()),
            }),
        }
    }
}

/// Outcome of a callable assertion from what it returned or raised.
fn classify(py: Python<'_>, name: &str, result: PyResult<Bound<'_, PyAny>>) -> restorecheck_core::Result<Outcome> {
    let error = |message: String| Error::Assertion { name: name.to_string(), message, source: None };
    let fail = |message: String| Outcome::Fail { observed: None, expected: None, message };
    match result {
        Ok(v) if v.is_none() => Ok(Outcome::Pass { observed: None }),
        Ok(v) => match v.cast::<PyBool>() {
            Ok(b) if b.is_true() => Ok(Outcome::Pass { observed: None }),
            Ok(_) => Ok(fail("returned False".into())),
            Err(_) => Err(error(format!(
                "returned {} ({}); return None or True to pass, False to fail",
                v.repr().map(|r| r.to_string()).unwrap_or_default(),
                type_name(&v)
            ))),
        },
        Err(e) if e.is_instance_of::<PyAssertionError>(py) => {
            let text = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
            Ok(fail(if text.is_empty() { failed_line(py, &e) } else { text }))
        }
        Err(e) if e.is_instance_of::<QueryError>(py) && query_error_is_data_problem(py, &e) => {
            Ok(fail(e.value(py).str().map(|s| s.to_string()).unwrap_or_default()))
        }
        Err(e) => Err(error(format_traceback(py, &e))),
    }
}

fn query_error_is_data_problem(py: Python<'_>, e: &PyErr) -> bool {
    e.value(py)
        .getattr("sqlstate")
        .ok()
        .and_then(|s| s.extract::<Option<String>>().ok().flatten())
        .is_some_and(|code| is_data_problem(&code))
}

/// `assert n > 100 (signups.py:12)` for a bare `assert` without message.
fn failed_line(py: Python<'_>, e: &PyErr) -> String {
    let found = (|| -> PyResult<String> {
        let Some(mut tb) = e.traceback(py).map(|t| t.into_any()) else {
            return Ok("assertion failed".into());
        };
        loop {
            let next = tb.getattr("tb_next")?;
            if next.is_none() {
                break;
            }
            tb = next;
        }
        let line: u32 = tb.getattr("tb_lineno")?.extract()?;
        let file: String = tb.getattr("tb_frame")?.getattr("f_code")?.getattr("co_filename")?.extract()?;
        let source: String = py.import("linecache")?.call_method1("getline", (&file, line))?.extract()?;
        let source = source.trim();
        Ok(if source.is_empty() {
            format!("assertion failed ({file}:{line})")
        } else {
            format!("{source} ({file}:{line})")
        })
    })();
    found.unwrap_or_else(|_| "assertion failed".into())
}

/// The full Python traceback of `e`, as `traceback.format_exception` writes it.
fn format_traceback(py: Python<'_>, e: &PyErr) -> String {
    let text = (|| -> PyResult<String> {
        let lines =
            py.import("traceback")?.call_method1("format_exception", (e.get_type(py), e.value(py), e.traceback(py)))?;
        Ok(lines.extract::<Vec<String>>()?.concat())
    })();
    text.map(|t| t.trim_end().to_string()).unwrap_or_else(|_| e.to_string())
}

/// One check: `Check(name, source, target=None, *, assertions, backup, **options)` where
/// `options` are the keys of a `[[check]]` table (`database`, `max_backup_age`, `timeout`,
/// `rto`, `integrity`, …). They fill the core's [`CheckSpec`] — the struct the TOML parser
/// fills — and [`CheckSpec::build`] composes the check with the given source, target and
/// assertions (TOML kinds and Python callables, in order), so defaults, check-level assertions,
/// the RTO verdict and error messages are the CLI's.
#[pyclass(module = "restorecheck._native", name = "Check", frozen)]
pub struct PyCheck {
    pub(crate) inner: runner::Check,
}

#[pymethods]
impl PyCheck {
    #[new]
    #[pyo3(signature = (name, source, target=None, *, assertions=None, backup=None, **options))]
    fn new(
        name: String,
        source: &Bound<'_, PySource>,
        target: Option<&Bound<'_, PyTarget>>,
        assertions: Option<&Bound<'_, PyAny>>,
        backup: Option<String>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut table = kwargs_table(&format!("check {name:?}"), options)?;
        for key in ["name", "source", "target", "assert"] {
            if table.contains_key(key) {
                return Err(PyTypeError::new_err(format!("{key} cannot be given as an option of a check")));
            }
        }
        table.insert("name".into(), toml::Value::String(name));
        if let Some(b) = backup {
            table.insert("backup".into(), toml::Value::String(b));
        }
        // The same settings struct the TOML parser fills, built the same way: same defaults,
        // same check-level assertions, same RTO verdict.
        let spec = CheckSpec::from_table(table).map_err(|e| to_py_err(&e))?;
        let target = match target {
            Some(t) => t.get().inner.clone(),
            None => crate::registry().target(toml::Table::new()).map_err(|e| to_py_err(&e))?,
        };
        let mut own = Vec::new();
        if let Some(list) = assertions.filter(|a| !a.is_none()) {
            if list.cast::<PyString>().is_ok() {
                return Err(PyTypeError::new_err("assertions must be a list, not a str"));
            }
            for item in list.try_iter()? {
                own.push(assertion(&item?)?);
            }
        }
        let check = spec.build(source.get().inner.clone(), target, own).map_err(|e| to_py_err(&e))?;
        Ok(Self { inner: check })
    }

    /// The check's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// The default database of its assertions.
    #[getter]
    fn database(&self) -> &str {
        &self.inner.database
    }

    /// The deadline, in seconds.
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.timeout.as_secs_f64()
    }

    /// The backup id to test instead of the newest, if set.
    #[getter]
    fn backup(&self) -> Option<&str> {
        self.inner.backup.as_deref()
    }

    /// The database role the check's own assertions run as (`SET ROLE`), if set.
    #[getter]
    fn role(&self) -> Option<&str> {
        self.inner.role.as_deref()
    }

    /// Names of the assertions, in order (`max_backup_age` first when set).
    #[getter]
    fn assertion_names(&self) -> Vec<String> {
        self.inner.assertions.iter().map(|a| a.name()).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Check(name={:?}, database={:?}, {} assertions)",
            self.inner.name,
            self.inner.database,
            self.inner.assertions.len()
        )
    }
}

/// An item of `assertions=[…]`: a TOML kind or a callable taking the db.
fn assertion(item: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Assertion>> {
    if let Ok(a) = item.cast::<PyAssertionKind>() {
        return Ok(a.get().inner.clone());
    }
    if item.is_callable() {
        let name = match item.getattr("__name__") {
            Ok(n) => n.str()?.to_string(),
            Err(_) => item.repr()?.to_string(),
        };
        return Ok(Arc::new(PyAssertion { name, func: Arc::new(item.clone().unbind()) }));
    }
    Err(PyTypeError::new_err(format!(
        "an assertion must be rc.sql(…), rc.assertion(kind, …) or a callable taking the db, not {}",
        type_name(item)
    )))
}

/// A finished run's report (the core's [`Report`]).
#[pyclass(module = "restorecheck._native", name = "NativeReport", frozen)]
pub struct NativeReport {
    inner: Report,
}

#[pymethods]
impl NativeReport {
    /// The JSON contract (version 1), pretty-printed.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// The text report a person reads (one line per check, then what went wrong).
    fn to_text(&self) -> String {
        self.inner.to_text()
    }

    /// The CLI's exit code for this report: 0 passed, 1 failed, 2 error.
    #[getter]
    fn exit_code(&self) -> i32 {
        self.inner.exit_status().code()
    }
}

type Outcome2 = Option<Result<Report, String>>;

/// A run going on in the shared runtime.
#[pyclass(module = "restorecheck._native", name = "RunHandle", frozen)]
pub struct RunHandle {
    cancel: CancellationToken,
    done: Arc<(Mutex<Outcome2>, Condvar)>,
}

impl RunHandle {
    /// Waits (without the GIL) until the run finished or `timeout` passed; true when finished.
    fn wait_for(&self, timeout: Option<Duration>) -> bool {
        let (lock, cv) = &*self.done;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
        while slot.is_none() {
            match deadline {
                None => slot = cv.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    slot = cv.wait_timeout(slot, d - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
        true
    }
}

#[pymethods]
impl RunHandle {
    /// Waits until the run finished (`timeout` in seconds, None = no limit); True when finished.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout
            .map(Duration::try_from_secs_f64)
            .transpose()
            .map_err(|e| PyTypeError::new_err(format!("timeout: {e}")))?;
        Ok(py.detach(|| self.wait_for(timeout)))
    }

    /// Cancels the run: the current phase stops, teardown still runs.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// True once the run finished (teardown included).
    fn done(&self) -> bool {
        self.done.0.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// The report; raises RuntimeError while the run is still going on.
    fn report(&self) -> PyResult<NativeReport> {
        let slot = self.done.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            None => Err(PyRuntimeError::new_err("the run has not finished yet")),
            Some(Ok(r)) => Ok(NativeReport { inner: r.clone() }),
            Some(Err(msg)) => Err(crate::RestoreCheckError::new_err(msg.clone())),
        }
    }
}

fn checks_of(checks: &Bound<'_, PyList>) -> PyResult<Vec<runner::Check>> {
    checks
        .iter()
        .map(|c| {
            c.cast::<PyCheck>()
                .map(|c| c.get().inner.clone())
                .map_err(|_| PyTypeError::new_err(format!("expected a Check, not {}", type_name(&c))))
        })
        .collect()
}

/// Starts running `checks` in the shared runtime and returns at once.
#[pyfunction]
#[pyo3(signature = (checks, work_dir=None))]
pub fn start(checks: &Bound<'_, PyList>, work_dir: Option<PathBuf>) -> PyResult<RunHandle> {
    let checks = checks_of(checks)?;
    let rt = runtime()?;
    let ctx = RunContext::new();
    let cancel = ctx.cancel.clone();
    let done: Arc<(Mutex<Outcome2>, Condvar)> = Arc::new((Mutex::new(None), Condvar::new()));
    let slot = done.clone();
    let opts = RunOptions { work_root: work_dir };
    rt.spawn(async move {
        let inner = tokio::spawn(async move { runner::run(&checks, &opts, &ctx).await });
        let outcome = inner.await.map_err(|e| format!("the run failed unexpectedly: {e}"));
        let (lock, cv) = &*slot;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        cv.notify_all();
    });
    Ok(RunHandle { cancel, done })
}

/// Runs `checks` and returns the report. The GIL is released; every ~100 ms the calling
/// thread checks for signals: on KeyboardInterrupt the run is cancelled, its teardown awaited
/// (server stopped, work dir removed) and the exception re-raised.
#[pyfunction]
#[pyo3(signature = (checks, work_dir=None))]
pub fn run(py: Python<'_>, checks: &Bound<'_, PyList>, work_dir: Option<PathBuf>) -> PyResult<NativeReport> {
    let handle = start(checks, work_dir)?;
    loop {
        if py.detach(|| handle.wait_for(Some(Duration::from_millis(100)))) {
            return handle.report();
        }
        if let Err(interrupt) = py.check_signals() {
            handle.cancel();
            py.detach(|| handle.wait_for(None));
            return Err(interrupt);
        }
    }
}

/// Loads a restorecheck.toml: its `work_dir` and its checks.
#[pyfunction]
pub fn load_config(path: PathBuf) -> PyResult<(Option<PathBuf>, Vec<PyCheck>)> {
    let config = restorecheck_core::Config::load(&path).map_err(|e| to_py_err(&e))?;
    Ok((config.work_dir, config.checks.into_iter().map(|c| PyCheck { inner: c }).collect()))
}
