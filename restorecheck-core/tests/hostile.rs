//! Hostile inputs: backups and restored databases shaped by an attacker who can write the backup
//! store or create objects in production. Each test asserts that nothing outside the work dir was
//! read, written or run, the verdict, and that the work dir is gone afterwards.

#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

#[path = "hostile/fs.rs"]
mod fs;
#[path = "hostile/process.rs"]
mod process;
#[path = "hostile/sql.rs"]
mod sql;
