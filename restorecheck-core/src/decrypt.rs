//! On-the-fly decryption of backup files (`decrypt = { kind = "age", … }` on a source).
//! Placeholder: filled in by the encryption work.

use std::io::Read;

use crate::error::Result;

/// Temporary stand-in (replaced by the encryption work).
#[derive(Debug, Clone)]
pub struct Decryptor;

impl Decryptor {
    /// Stand-in.
    pub fn strip<'a>(&self, _name: &'a str) -> Option<&'a str> {
        None
    }
    /// Stand-in.
    pub fn wrap(&self, reader: Box<dyn Read + Send>, _file: &str) -> Result<Box<dyn Read + Send>> {
        Ok(reader)
    }
}

/// Stand-in.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecryptConfig {
    /// Stand-in.
    Age {
        /// Stand-in.
        identity_file: Option<std::path::PathBuf>,
        /// Stand-in.
        passphrase_env: Option<String>,
    },
}

impl DecryptConfig {
    /// Stand-in.
    pub fn prepare(&self) -> Result<Decryptor> {
        Ok(Decryptor)
    }
}
