//! How a tool ends when it fails: the error as a readable chain on stderr, exit status 1.
//!
//! ```text
//! error: table `pricing_intelligence_dev.sales_history` does not exist
//!   caused by: …
//! ```
//!
//! (Usage errors are clap's: a message, the usage line and exit status 2.)

use std::error::Error;

/// Exit status of a tool that failed at run time (clap uses 2 for usage errors).
const RUNTIME_FAILURE: i32 = 1;

/// The value of `result`; on an error prints [`report`] to stderr and exits with status 1.
pub fn exit_on_error<T, E: Into<anyhow::Error>>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => {
            let e: anyhow::Error = e.into();
            eprintln!("{}", report(e.as_ref()));
            std::process::exit(RUNTIME_FAILURE)
        }
    }
}

/// `error: <Display>` followed by one `  caused by: <Display>` line per `source()`.
///
/// A cause whose text the line above already quotes in full (errors that print their source
/// inline, transparent wrappers) is not repeated; its own causes still are.
pub fn report(err: &dyn Error) -> String {
    let mut out = format!("error: {err}");
    let mut above = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !above.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
            above = text;
        }
        next = cause.source();
    }
    out
}
