//! The Python of the test venv, for the benchmarks' pyarrow / pyiceberg baselines.
//!
//! ```ignore
//! #[path = "common/python.rs"]
//! mod python;
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// `$SALES_HISTORY_PYTHON` if set, else the last line `scripts/venv.sh` prints (it creates the
/// venv on first use; its progress goes to stderr).
pub fn venv_python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SALES_HISTORY_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/venv.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {script}"))?;
    if !out.status.success() {
        bail!("{script} failed ({})", out.status);
    }
    let stdout = String::from_utf8(out.stdout).context("venv.sh printed non-UTF-8")?;
    let last = stdout.lines().last().context("venv.sh printed nothing")?;
    Ok(PathBuf::from(last.trim()))
}
