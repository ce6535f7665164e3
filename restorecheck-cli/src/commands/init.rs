//! `restorecheck init`: writes an annotated configuration to start from.

use std::io::Write;

use restorecheck_core::ExitStatus;

use crate::cli::InitArgs;

/// The annotated example; a test checks it parses.
pub const TEMPLATE: &str = include_str!("../../../examples/restorecheck.toml");

pub fn run(args: InitArgs) -> ExitStatus {
    let file = if args.force {
        std::fs::File::create(&args.output)
    } else {
        std::fs::OpenOptions::new().write(true).create_new(true).open(&args.output)
    };
    match file.and_then(|mut f| f.write_all(TEMPLATE.as_bytes())) {
        Ok(()) => {
            println!(
                "wrote {}; edit the paths and queries, then: restorecheck validate -c {}",
                args.output.display(),
                args.output.display()
            );
            ExitStatus::Success
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("error: {} exists; pass --force to overwrite it", args.output.display());
            ExitStatus::Error
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", args.output.display());
            ExitStatus::Error
        }
    }
}
