//! Progress on stderr: bars when stderr is a terminal, log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use restorecheck_core::{Phase, Progress};

/// Renders core progress events.
#[derive(Debug, Default)]
pub struct StderrProgress {
    bar: Mutex<Option<ProgressBar>>,
    tty: bool,
}

impl StderrProgress {
    /// A renderer; bars only on a terminal and when not quiet.
    pub fn new(quiet: bool) -> Self {
        Self { bar: Mutex::new(None), tty: !quiet && std::io::stderr().is_terminal() }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if let Ok(mut b) = self.bar.lock() {
            f(&mut b);
        }
    }
}

impl Progress for StderrProgress {
    fn phase(&self, check: &str, phase: Phase) {
        tracing::info!("{check}: {phase}");
        self.with_bar(|b| {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
            if self.tty && matches!(phase, Phase::Recovery | Phase::Assert) {
                let bar = ProgressBar::new_spinner();
                bar.set_message(format!("{check}: {phase}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                *b = Some(bar);
            }
        });
    }

    fn begin(&self, what: &str, total: Option<u64>) {
        tracing::info!("{what}");
        if !self.tty {
            return;
        }
        self.with_bar(|b| {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
            let bar = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner(),
            };
            bar.set_message(what.to_string());
            *b = Some(bar);
        });
    }

    fn advance(&self, bytes: u64) {
        if self.tty {
            self.with_bar(|b| {
                if let Some(bar) = b {
                    bar.inc(bytes);
                }
            });
        }
    }

    fn status(&self, message: &str) {
        tracing::debug!("{message}");
        self.with_bar(|b| {
            if let Some(bar) = b {
                bar.set_message(message.to_string());
            }
        });
    }

    fn end(&self) {
        self.with_bar(|b| {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        });
    }
}
