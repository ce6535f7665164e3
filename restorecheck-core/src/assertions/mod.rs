//! Built-in assertions, one per file.

pub(crate) mod amcheck;
pub(crate) mod backup_age;
pub(crate) mod previous;
pub mod sample;
pub mod sql;

pub use amcheck::{AmcheckAssertion, ReadAllAssertion};
pub use backup_age::BackupAgeAssertion;
pub use previous::{CompareConfig, CompareToPrevious};
pub use sample::Sample;
pub use sql::{CanaryAssertion, SqlAssertion, SqlAssertionConfig};
