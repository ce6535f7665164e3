//! On-the-fly decryption of backup files (`decrypt = { kind = "age", … }` on a source).
//! Placeholder: filled in by the encryption work.
