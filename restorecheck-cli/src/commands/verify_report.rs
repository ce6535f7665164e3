//! `restorecheck verify-report FILE --public-key PEM`: checks FILE.sig.

use restorecheck_core::ExitStatus;

use crate::cli::VerifyReportArgs;
use crate::evidence;

pub fn run(args: VerifyReportArgs) -> ExitStatus {
    let key = match evidence::load_public(&args.public_key) {
        Ok(k) => k,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitStatus::Error;
        }
    };
    let sig_path = args.signature.unwrap_or_else(|| evidence::sig_path(&args.file));
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| eprintln!("error: cannot read the {what} {}: {e}", p.display()))
    };
    let (Ok(bytes), Ok(sig)) = (read(&args.file, "report"), read(&sig_path, "signature")) else {
        return ExitStatus::Error;
    };
    let fp = evidence::fingerprint(&key);
    if !evidence::verify(&key, &bytes, &sig) {
        println!("INVALID: {} is not signed by {fp} (signature {})", args.file.display(), sig_path.display());
        return ExitStatus::Failure;
    }
    // A JSON report names its signer; a valid signature over a report naming another key is
    // not the evidence it claims to be.
    let claimed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("signed_by").and_then(|s| s.as_str()).map(str::to_string));
    if let Some(c) = claimed.filter(|c| c != &fp) {
        println!("INVALID: {} is signed by {fp} but says it was signed by {c}", args.file.display());
        return ExitStatus::Failure;
    }
    println!("VALID: {} signed by {fp}", args.file.display());
    ExitStatus::Success
}
