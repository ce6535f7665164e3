//! Python values ↔ TOML values: keyword arguments become exactly the table a configuration file
//! would hold, so every kind is reachable from Python with the same names and checks.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use restorecheck_core::Error;

use crate::to_py_err;

fn config_err(message: String) -> PyErr {
    to_py_err(&Error::config(message))
}

/// `**options` → a TOML table. `None` values are left out ("not given").
pub fn kwargs_table(what: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<toml::Table> {
    let mut table = toml::Table::new();
    if let Some(options) = options {
        for (k, v) in options.iter() {
            let key: String = k.extract()?;
            if v.is_none() {
                continue;
            }
            let value = to_toml(&v, &format!("{what}: option {key}"))?;
            table.insert(key, value);
        }
    }
    Ok(table)
}

/// One Python value as TOML: str, bool, int, float, dict, list/tuple, `os.PathLike` (as a str),
/// `datetime.timedelta` (as a duration string such as `"90s"`) and `datetime.date`/`datetime`
/// (ISO 8601 text).
pub fn to_toml(v: &Bound<'_, PyAny>, what: &str) -> PyResult<toml::Value> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(toml::Value::String(s.extract()?));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(toml::Value::Boolean(b.is_true()));
    }
    if v.cast::<PyInt>().is_ok() {
        return v
            .extract::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| config_err(format!("{what}: {v} does not fit a 64-bit integer")));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(toml::Value::Float(f.value()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut t = toml::Table::new();
        for (k, item) in d.iter() {
            let key: String =
                k.extract().map_err(|_| config_err(format!("{what}: keys must be strings, not {}", type_name(&k))))?;
            if item.is_none() {
                continue;
            }
            let value = to_toml(&item, &format!("{what}.{key}"))?;
            t.insert(key, value);
        }
        return Ok(toml::Value::Table(t));
    }
    if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
        let mut items = Vec::new();
        for item in v.try_iter()? {
            items.push(to_toml(&item?, what)?);
        }
        return Ok(toml::Value::Array(items));
    }
    if let Some(d) = timedelta(v)? {
        return Ok(toml::Value::String(duration_string(d)));
    }
    if v.is_instance(&v.py().import("datetime")?.getattr("date")?)? {
        // As a TOML file would write it for options such as recovery_target = { time = "…" }.
        return Ok(toml::Value::String(v.call_method0("isoformat")?.extract()?));
    }
    if v.hasattr("__fspath__")? {
        let os = v.py().import("os")?;
        let s = os.call_method1("fspath", (v,))?;
        return Ok(toml::Value::String(s.extract()?));
    }
    Err(config_err(format!("{what}: cannot use a value of type {}", type_name(v))))
}

/// TOML → Python (for the `options` attribute of sources, targets and assertions).
pub fn to_py<'py>(py: Python<'py>, v: &toml::Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        toml::Value::String(s) => PyString::new(py, s).into_any(),
        toml::Value::Integer(i) => i.into_pyobject(py)?.into_any(),
        toml::Value::Float(f) => PyFloat::new(py, *f).into_any(),
        toml::Value::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        toml::Value::Datetime(d) => PyString::new(py, &d.to_string()).into_any(),
        toml::Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        toml::Value::Table(t) => table_to_py(py, t)?.into_any(),
    })
}

/// A TOML table as a Python dict.
pub fn table_to_py<'py>(py: Python<'py>, t: &toml::Table) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, item) in t {
        d.set_item(k, to_py(py, item)?)?;
    }
    Ok(d)
}

/// The Python type name of `v`, for messages.
pub fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// `v` as a duration when it is a `datetime.timedelta`.
fn timedelta(v: &Bound<'_, PyAny>) -> PyResult<Option<Duration>> {
    let cls = v.py().import("datetime")?.getattr("timedelta")?;
    if !v.is_instance(&cls)? {
        return Ok(None);
    }
    let d: chrono::TimeDelta = v.extract()?;
    d.to_std().map(Some).map_err(|_| config_err(format!("durations cannot be negative, got {v}")))
}

/// `Duration` → a string humantime parses back to the same value (`"90s"`, `"1s 500us"`).
fn duration_string(d: Duration) -> String {
    let micros = d.subsec_micros();
    if micros == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s {micros}us", d.as_secs())
    }
}
