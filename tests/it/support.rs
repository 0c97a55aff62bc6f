//! Shared test support: temporary warehouses, sample rows, the Python interop peer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, SaleRecord, SalesHistory, TableOptions};
use tempfile::TempDir;

/// Embedding length used by most tests (small and fast); one test uses the real 1024.
pub const DIM: usize = 16;

pub struct LocalTable {
    pub dir: TempDir,
    pub config: CatalogConfig,
    pub table: SalesHistory,
}

pub async fn local_table(dim: usize) -> LocalTable {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CatalogConfig::local(dir.path());
    let table = SalesHistory::ensure_with(
        &config,
        "test",
        TableOptions::default().with_embedding_dimension(dim),
    )
    .await
    .expect("ensure");
    LocalTable { dir, config, table }
}

pub fn sample(n: usize, dim: usize, seed: u64) -> Vec<SaleRecord> {
    SampleGenerator::new(
        SampleConfig::default()
            .with_seed(seed)
            .with_embedding_dimension(dim),
    )
    .take_records(n)
}

/// Every file under `dir` (relative paths, sorted) with its size.
pub fn tree(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                // The SQLite file's size can change on reads (WAL, page cache); its content is
                // checked through the catalog instead.
                if !rel.starts_with("catalog.db") {
                    out.push((rel, len));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The Python interpreter of the test venv (built by `scripts/venv.sh` on first use).
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("SALES_HISTORY_PYTHON") {
            return PathBuf::from(p);
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg(format!("{root}/scripts/venv.sh"))
            .output()
            .expect("run scripts/venv.sh");
        assert!(
            out.status.success(),
            "scripts/venv.sh failed (the interop tests need the Python venv):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("venv.sh printed a path")
                .trim(),
        )
    })
}

/// Runs `python/pyiceberg_check.py` with `args`, returns its JSON output.
pub fn pyiceberg(args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/pyiceberg_check.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run pyiceberg_check.py");
    assert!(
        out.status.success(),
        "pyiceberg_check.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyiceberg_check.py prints JSON")
}
