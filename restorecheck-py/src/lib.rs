//! Python binding of restorecheck (module `restorecheck._native`). Minimal for now: run a TOML
//! configuration and get the JSON report back. The GIL is released while Rust works.

use pyo3::prelude::*;

/// Runs every check of a restorecheck.toml and returns the JSON report as a string.
#[pyfunction]
fn run_config_json(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    let config =
        restorecheck_core::Config::load(&path).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    py.detach(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        let opts = restorecheck_core::RunOptions { work_root: config.work_dir.clone() };
        let report = rt.block_on(restorecheck_core::run(&config.checks, &opts, &restorecheck_core::RunContext::new()));
        Ok(report.to_json())
    })
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(run_config_json, m)?)?;
    Ok(())
}
