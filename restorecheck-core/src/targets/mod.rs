//! Built-in restore targets, one per file.

pub mod docker;
pub(crate) mod local;

#[cfg(feature = "docker")]
pub use docker::DockerTarget;
pub use docker::DockerTargetConfig;
pub use local::{LocalTarget, LocalTargetConfig};
