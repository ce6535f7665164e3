//! Built-in assertions, one per file.

pub mod amcheck;
pub mod backup_age;
pub mod previous;
pub mod sql;

pub use amcheck::{AmcheckAssertion, ReadAllAssertion};
pub use backup_age::BackupAgeAssertion;
pub use previous::{CompareConfig, CompareToPrevious};
pub use sql::{CanaryAssertion, SqlAssertion, SqlAssertionConfig};
