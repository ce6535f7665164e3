//! Built-in restore targets, one per file.

pub mod local;

pub use local::{LocalTarget, LocalTargetConfig};
