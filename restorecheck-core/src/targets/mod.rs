//! Built-in restore targets, one per file.

pub mod docker;
pub mod local;

pub use docker::{DockerTarget, DockerTargetConfig};
pub use local::{LocalTarget, LocalTargetConfig};
