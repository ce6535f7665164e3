//! The configuration examples users copy must parse: examples/restorecheck.toml and the
//! ```toml blocks of README.md (and docs/*.md, when there are any).
//!
//! A block with `[[check]]` is a whole configuration and is parsed as it is. A block without
//! one (`[check.source]` examples, `[[check.assert]]`, `[check.integrity]`, `[[notify]]`) is a
//! piece of one: it is parsed inside a minimal check, one `[check.source]` section at a time. A
//! block preceded by `<!-- not-a-config -->` is skipped (e.g. alternatives of one key).
//!
//! Only parsing: nothing is run, and backup paths such as /backups/base need not exist (the
//! first test checks that they do not, on purpose). [`Config::parse`] does read a few things the
//! configuration names, to fail early: `decrypt` loads its age `identity_file` (and its
//! `passphrase_env` variable, and looks for `gpg`), and an object-storage `profile` must be in
//! the AWS shared files. So every `identity_file = "…"` of an example is pointed at a real key
//! this test writes, and every `profile = "…"` is put in a credentials file this test writes
//! (named by `AWS_SHARED_CREDENTIALS_FILE`); the rest of the text is parsed as written.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use restorecheck_core::{Config, Registry};

const SKIP_MARKER: &str = "<!-- not-a-config -->";

/// The workspace root (this crate's parent folder).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A ```toml block of a Markdown file.
struct Block {
    /// `README.md:93`: the file and the line of the opening fence.
    at: String,
    /// Its text, with the fence's indentation removed.
    text: String,
    /// Preceded by [`SKIP_MARKER`].
    skipped: bool,
}

fn toml_blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file.strip_prefix(root()).unwrap_or(file).display().to_string();
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, bool, Vec<&str>)> = None; // (line, indent, skipped, lines)
    let mut previous = "";
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.as_mut() {
            None if trimmed.starts_with("```toml") => {
                open = Some((i + 1, indent, previous.trim() == SKIP_MARKER, vec![]))
            }
            None => {}
            Some(_) if trimmed.trim_end() == "```" => {
                let (at, _, skipped, lines) = open.take().unwrap();
                out.push(Block { at: format!("{name}:{at}"), text: lines.join("\n") + "\n", skipped });
            }
            Some((_, ind, _, lines)) => lines.push(line.get(*ind..).unwrap_or(trimmed)),
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    assert!(open.is_none(), "{name}: a ```toml block is not closed");
    out
}

/// README.md and docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    if let Ok(rd) = std::fs::read_dir(root().join("docs")) {
        let mut docs: Vec<PathBuf> =
            rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
        docs.sort();
        files.extend(docs);
    }
    files
}

/// `text` with every `identity_file = "…"` value replaced by `key`.
fn with_key(text: &str, key: &Path) -> String {
    const KEY: &str = "identity_file = \"";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        let value = &rest[i + KEY.len()..];
        let end = value.find('"').expect("identity_file value closed on its line");
        out.push_str(&rest[..i + KEY.len()]);
        out.push_str(&key.display().to_string());
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// A file in the temporary folder, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> Self {
        // Unique per file, not per process: the tests of this binary run in parallel and each
        // removes its own files when done.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("restorecheck-config-examples-{}-{n}-{name}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An age key file, as `age-keygen` writes it.
fn key_file() -> TempFile {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    TempFile::new("agekey", &format!("# test key\n{}\n", identity.to_string().expose_secret()))
}

/// The values of `key = "…"` in `text`.
fn values_of<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let pat = format!("{key} = \"");
    text.match_indices(&pat).filter_map(|(i, _)| text[i + pat.len()..].split('"').next()).collect()
}

fn parse(at: &str, text: &str, key: &Path) -> Config {
    let text = &with_key(text, key);
    Config::parse(text, &Registry::default()).unwrap_or_else(|e| panic!("{at} does not parse: {e}\n---\n{text}---"))
}

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// Whole configurations to parse for a block: the block itself when it has `[[check]]`, else
/// the piece inside a minimal check (one per `[check.source]` section).
fn configs_of(b: &Block) -> Vec<String> {
    if b.text.lines().any(|l| l.trim_start().starts_with("[[check]]")) {
        return vec![b.text.clone()];
    }
    const CHECK: &str = "[[check]]\nname = \"readme\"\n";
    const SOURCE: &str = "[check.source]\nkind = \"basebackup\"\npath = \"/backups/base\"\n";
    let lines: Vec<&str> = b.text.lines().collect();
    let sources: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[check.source]"))
        .map(|(i, _)| i)
        .collect();
    if !sources.is_empty() {
        assert!(
            lines[..sources[0]].iter().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')),
            "{}: text before the first [check.source]",
            b.at
        );
        let mut ends: Vec<usize> = sources[1..].to_vec();
        ends.push(lines.len());
        return sources.iter().zip(ends).map(|(&s, e)| format!("{CHECK}{}\n", lines[s..e].join("\n"))).collect();
    }
    // Top-level keys and [[notify]] come before the check; check tables after its source.
    let first = lines.iter().position(|l| is_header(l)).unwrap_or(lines.len());
    if lines[first..].iter().any(|l| l.trim_start().starts_with("[check.") || l.trim_start().starts_with("[[check.")) {
        assert!(lines[..first].iter().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')), "{}", b.at);
        vec![format!("{CHECK}{SOURCE}{}", b.text)]
    } else {
        vec![format!("{}{CHECK}{SOURCE}", b.text)]
    }
}

#[test]
fn the_example_configuration_parses() {
    let path = root().join("examples/restorecheck.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let key = key_file();
    let c = parse("examples/restorecheck.toml", &text, &key.0);
    assert_eq!(c.checks.len(), 1);
    assert_eq!(c.checks[0].source.kind(), "basebackup");
    assert_eq!(c.checks[0].source.describe(), "basebackup:/backups/base");
    // Parsing reads no file the configuration names: none of these exist on this machine.
    for p in ["/backups/base", "/backups/wal"] {
        assert!(!Path::new(p).exists(), "{p} exists here, so this test would not show that parse reads nothing");
    }
}

#[test]
fn every_toml_block_of_the_documentation_parses() {
    let blocks: Vec<Block> = markdown_files().iter().flat_map(|f| toml_blocks(f)).filter(|b| !b.skipped).collect();
    let key = key_file();
    // The only test here that reads AWS_* variables (only s3:// locations do).
    let mut profiles: Vec<&str> = blocks.iter().flat_map(|b| values_of(&b.text, "profile")).collect();
    profiles.sort();
    profiles.dedup();
    let credentials = TempFile::new(
        "aws-credentials",
        &profiles
            .iter()
            .map(|p| format!("[{p}]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = not-a-secret\n"))
            .collect::<String>(),
    );
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials.0);
    std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
    let mut whole = 0;
    let mut pieces = 0;
    for b in &blocks {
        let configs = configs_of(b);
        if configs.len() == 1 && configs[0] == b.text {
            whole += 1;
        } else {
            pieces += configs.len();
        }
        for (i, text) in configs.iter().enumerate() {
            parse(&format!("{} (part {})", b.at, i + 1), text, &key.0);
        }
    }
    // The README's configuration reference and its per-source examples are there to be found.
    assert!(whole >= 1, "no ```toml block with [[check]] in the documentation");
    assert!(pieces >= 10, "only {pieces} configuration pieces found in the documentation");
}

#[test]
fn a_broken_block_is_caught() {
    // The harness itself: a block with an unknown key must fail, or the test above proves nothing.
    let b = Block {
        at: "test".into(),
        text: "[check.source]\nkind = \"basebackup\"\npth = \"/backups/base\"\n".into(),
        skipped: false,
    };
    let configs = configs_of(&b);
    assert_eq!(configs.len(), 1);
    let e = Config::parse(&configs[0], &Registry::default()).unwrap_err().to_string();
    assert!(e.contains("pth"), "{e}");
}
