//! Built-in backup sources, one per file.

pub mod barman;
pub mod basebackup;
pub mod command;
pub(crate) mod environment;
pub mod pg_dump;
pub mod pgbackrest;
mod tool;
pub mod wale;
pub mod walg;

pub use barman::{BarmanConfig, BarmanSource};
pub use basebackup::{BaseBackupConfig, BaseBackupSource};
pub use command::{CommandConfig, CommandSource};
pub use pg_dump::{PgDumpConfig, PgDumpSource};
pub use pgbackrest::{PgBackRestConfig, PgBackRestSource};
pub use wale::{WaleConfig, WaleSource};
pub use walg::{WalgConfig, WalgSource};
