//! Built-in backup sources, one per file.

pub(crate) mod barman;
pub(crate) mod basebackup;
pub(crate) mod command;
pub(crate) mod environment;
pub mod pg_dump;
pub(crate) mod pgbackrest;
pub(crate) mod tool;
pub(crate) mod wale;
pub(crate) mod walg;

pub use barman::{BarmanConfig, BarmanSource};
pub use basebackup::{BaseBackupConfig, BaseBackupSource};
pub use command::{CommandConfig, CommandSource};
pub use pg_dump::{PgDumpConfig, PgDumpSource};
pub use pgbackrest::{PgBackRestConfig, PgBackRestSource};
pub use wale::{WaleConfig, WaleSource};
pub use walg::{WalgConfig, WalgSource};
