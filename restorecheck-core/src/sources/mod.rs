//! Built-in backup sources, one per file.

pub mod basebackup;
pub mod command;
pub mod pg_dump;

pub use basebackup::{BaseBackupConfig, BaseBackupSource};
pub use command::{CommandConfig, CommandSource};
pub use pg_dump::{PgDumpConfig, PgDumpSource};
