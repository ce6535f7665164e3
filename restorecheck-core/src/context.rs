//! [`RunContext`]: what every source, target and assertion gets besides its own options.

use std::fmt::Debug;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::report::Phase;

/// Progress events for long steps. The core never prints; front ends render these.
pub trait Progress: Send + Sync + Debug {
    /// A phase of a check starts.
    fn phase(&self, _check: &str, _phase: Phase) {}
    /// A step with a known amount of work starts (e.g. extracting 2.1 GB).
    fn begin(&self, _what: &str, _total_bytes: Option<u64>) {}
    /// Work advanced by `bytes`.
    fn advance(&self, _bytes: u64) {}
    /// A status line for a step without a known size (e.g. "replayed to 0/5000000").
    fn status(&self, _message: &str) {}
    /// The current step ended.
    fn end(&self) {}
}

/// Progress sink that drops everything.
#[derive(Debug, Default)]
pub(crate) struct NoProgress;
impl Progress for NoProgress {}

/// Shared facts of one run, handed to every backend call.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Short random id of this run; work dirs and labels carry it.
    pub run_id: String,
    /// Cancelled on SIGINT/SIGTERM/KeyboardInterrupt: backends stop promptly when it fires.
    pub cancel: CancellationToken,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
    /// The run's key ([`crate::fleet`]: the UTC date unless the front end sets one): what
    /// `[check.integrity] sample` rotates by.
    pub run_key: String,
    /// Where the check's external tools run (set by the runner from the check's target;
    /// default this host).
    pub tools: Arc<dyn crate::toolbox::ToolBox>,
}

impl RunContext {
    /// A context with a fresh run id, its own cancellation token and no progress output.
    pub fn new() -> Self {
        Self {
            run_id: new_run_id(),
            cancel: CancellationToken::new(),
            progress: Arc::new(NoProgress),
            tools: crate::toolbox::host(),
            run_key: crate::fleet::default_run_key(),
        }
    }

    /// Replaces the progress sink.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Sets the run key.
    pub fn with_run_key(mut self, key: impl Into<String>) -> Self {
        self.run_key = key.into();
        self
    }

    /// Runs the tools in `tools`.
    pub fn with_tools(mut self, tools: Arc<dyn crate::toolbox::ToolBox>) -> Self {
        self.tools = tools;
        self
    }

    /// Uses an existing cancellation token (e.g. one a signal handler cancels).
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
}

impl Default for RunContext {
    fn default() -> Self {
        Self::new()
    }
}

/// An 8-hex-digit id from the clock and the process id (unique enough for work dir names).
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}
