//! Built-in backup sources, one per file.

pub mod basebackup;

pub use basebackup::{BaseBackupConfig, BaseBackupSource};
