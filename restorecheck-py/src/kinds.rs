//! Sources, targets and TOML assertion kinds, built table-driven through the core's
//! [`Registry`](restorecheck_core::Registry): `Source("basebackup", path="/b")` is the table
//! `{kind = "basebackup", path = "/b"}` of a configuration file, checked by the same code.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use restorecheck_core::{Assertion, BackupSource, RestoreTarget, RunContext};

use crate::values::{kwargs_table, table_to_py};
use crate::{registry, runtime, to_py_err};

/// `ClassName(kind='x', a=1)` for reprs; subclasses (`BaseBackup`) show their own name.
fn repr(slf: &Bound<'_, PyAny>, kind: &str, options: &toml::Table) -> PyResult<String> {
    let py = slf.py();
    let cls = slf.get_type().qualname()?.to_string();
    let mut parts = vec![format!("kind={}", kind.into_pyobject(py)?.repr()?)];
    for (k, v) in options {
        parts.push(format!("{k}={}", crate::values::to_py(py, v)?.repr()?));
    }
    Ok(format!("{cls}({})", parts.join(", ")))
}

fn with_kind(kind: &str, options: &toml::Table) -> toml::Table {
    let mut t = options.clone();
    t.insert("kind".into(), toml::Value::String(kind.to_string()));
    t
}

/// Where backups come from: `Source(kind, **options)`, options as in `[check.source]`.
#[pyclass(module = "restorecheck._native", name = "Source", subclass, frozen)]
pub struct PySource {
    kind: String,
    options: toml::Table,
    pub(crate) inner: Arc<dyn BackupSource>,
}

#[pymethods]
impl PySource {
    #[new]
    #[pyo3(signature = (kind, /, **options))]
    fn new(kind: String, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = kwargs_table(&format!("source {kind}"), options)?;
        let inner = registry().source(with_kind(&kind, &options)).map_err(|e| to_py_err(&e))?;
        Ok(Self { kind, options, inner })
    }

    /// The kind name (`basebackup`, …).
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }

    /// The options given, as a dict (without `kind`).
    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        table_to_py(py, &self.options)
    }

    /// The backups this source sees, newest first, as dicts (`id`, `taken_at`, `kind`, …).
    fn backups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let rt = runtime()?;
        let source = self.inner.clone();
        let listed = py.detach(|| rt.block_on(async move { source.list(&RunContext::new()).await }));
        let listed = listed.map_err(|e| to_py_err(&e))?;
        let text = serde_json::to_string(&listed)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("encoding the list: {e}")))?;
        let v = py.import("json")?.call_method1("loads", (text,))?;
        Ok(v.cast_into::<PyList>()?)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let me = slf.get();
        repr(slf.as_any(), &me.kind, &me.options)
    }
}

/// Where a backup is restored: `Target(kind, **options)`, options as in `[check.target]`.
#[pyclass(module = "restorecheck._native", name = "Target", subclass, frozen)]
pub struct PyTarget {
    kind: String,
    options: toml::Table,
    pub(crate) inner: Arc<dyn RestoreTarget>,
}

#[pymethods]
impl PyTarget {
    #[new]
    #[pyo3(signature = (kind, /, **options))]
    fn new(kind: String, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = kwargs_table(&format!("target {kind}"), options)?;
        let inner = registry().target(with_kind(&kind, &options)).map_err(|e| to_py_err(&e))?;
        Ok(Self { kind, options, inner })
    }

    /// The kind name (`local`, `docker`, …).
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }

    /// The options given, as a dict (without `kind`).
    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        table_to_py(py, &self.options)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let me = slf.get();
        repr(slf.as_any(), &me.kind, &me.options)
    }
}

/// A TOML assertion kind: `Assertion(kind, **options)`, options as in `[[check.assert]]`.
#[pyclass(module = "restorecheck._native", name = "Assertion", subclass, frozen)]
pub struct PyAssertionKind {
    kind: String,
    options: toml::Table,
    pub(crate) inner: Arc<dyn Assertion>,
}

#[pymethods]
impl PyAssertionKind {
    #[new]
    #[pyo3(signature = (kind, /, **options))]
    fn new(kind: String, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = kwargs_table(&format!("assertion {kind}"), options)?;
        let inner = registry().assertion(with_kind(&kind, &options)).map_err(|e| to_py_err(&e))?;
        Ok(Self { kind, options, inner })
    }

    /// The kind name (`sql`, …).
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }

    /// The options given, as a dict (without `kind`).
    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        table_to_py(py, &self.options)
    }

    /// The name shown in reports.
    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let me = slf.get();
        repr(slf.as_any(), &me.kind, &me.options)
    }
}
