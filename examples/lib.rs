//! Examples of plugging custom sources, targets and assertions into restorecheck without
//! touching the core. Run them with `cargo run -p restorecheck-examples --example NAME -- ARGS`.
//!
//! - `custom_assertion`: an application's own sanity check in Rust, registered as a TOML kind.
//! - `custom_source`: a backup source with its own naming rules, wrapping the built-in one.
