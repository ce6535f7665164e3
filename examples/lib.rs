//! Examples of plugging custom sources, targets and assertions into restorecheck without
//! touching the core. Run them with `cargo run -p restorecheck-examples --example NAME -- ARGS`.
//!
//! - `custom_assertion`: an application's own sanity check in Rust, registered as a TOML kind.
//! - `custom_source`: a backup source with its own naming rules, wrapping the built-in one.

#[cfg(test)]
mod tests {
    /// The README's "Library" section quotes `library.rs` verbatim (the part between its
    /// `README: begin`/`end` markers), so the README's example is code CI compiles.
    #[test]
    fn readme_quotes_the_library_example() {
        let example = include_str!("library.rs");
        let readme = include_str!("../README.md");
        let begin = example.find("// README: begin\n").map(|i| i + "// README: begin\n".len());
        let end = example.find("// README: end");
        let (Some(begin), Some(end)) = (begin, end) else { panic!("markers missing in library.rs") };
        let quoted = &example[begin..end];
        assert!(quoted.contains("CheckSpec::new"), "the quoted part is the builder example");
        assert!(readme.contains(quoted), "README.md's Library section differs from examples/library.rs");
    }
}
