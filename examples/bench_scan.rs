//! Scan speed beside pyiceberg, in one run: the same four scans on the same table, our runs and
//! pyiceberg's interleaved, medians reported.
//!
//! ```text
//! cargo run --release --example bench_scan -- [--rows N] [--dim D] [--runs R]
//!     [--dir DIR] [--python PATH] [--json]
//! ```
//!
//! Scans (all results collected in memory, as pyiceberg's `to_arrow()` does):
//! - `full`: every column;
//! - `no_embedding`: every column but `embedding`;
//! - `month_tenant`: `sold_date` in 2025-03 and `tenant_id = 'tenant-001'`, every column;
//! - `load_plan`: reload the table from the catalog and plan a full scan.
//!
//! The table (default 50,000 rows with 1024-dim embeddings, 24 months, 5 tenants) is created
//! in the local warehouse `--dir` (default `$TMPDIR/sales-history-bench-{rows}x{dim}`) and reused when it
//! already holds exactly that many rows. pyiceberg runs `python/bench_scan_pyiceberg.py` from
//! the test venv (`scripts/venv.sh`; or `--python`, or `$SALES_HISTORY_PYTHON`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, Column, SalesHistory, ScanFilter, TableOptions};

#[path = "common/cli.rs"]
mod cli;

const USAGE: &str =
    "usage: bench_scan [--rows N] [--dim D] [--runs R] [--dir DIR] [--python PATH] [--json]";
const SCANS: [&str; 4] = ["full", "no_embedding", "month_tenant", "load_plan"];
const STAGE: &str = "bench";
const TENANT: &str = "tenant-001";
const MONTH: (i32, u32) = (2025, 3);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn venv_python() -> Res<PathBuf> {
    if let Ok(p) = std::env::var("SALES_HISTORY_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/venv.sh");
    let out = Command::new("bash").arg(script).output()?;
    if !out.status.success() {
        return Err(format!("{script} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    let last = stdout.lines().last().ok_or("venv.sh printed nothing")?;
    Ok(PathBuf::from(last.trim()))
}

/// Our side of one scan: (milliseconds, rows).
async fn ours(table: &SalesHistory, scan: &str) -> Res<(f64, u64)> {
    let start = Instant::now();
    let rows = match scan {
        "full" => rows_of(table.scan().to_batches().await?),
        "no_embedding" => {
            let cols = Column::ALL.into_iter().filter(|c| *c != Column::Embedding);
            rows_of(table.scan().select(cols).to_batches().await?)
        }
        "month_tenant" => {
            let filter = ScanFilter::new()
                .year_month(MONTH.0, MONTH.1)
                .tenant(TENANT);
            rows_of(table.scan().filter(filter).to_batches().await?)
        }
        _ => {
            table.refresh().await?;
            table.scan().plan().await?.files.len() as u64
        }
    };
    Ok((start.elapsed().as_secs_f64() * 1e3, rows))
}

fn rows_of(batches: Vec<arrow_array::RecordBatch>) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

struct Peer {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(python: &PathBuf, warehouse: &str, namespace: &str) -> Res<Peer> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/bench_scan_pyiceberg.py"
        );
        let month = format!("{}-{:02}", MONTH.0, MONTH.1);
        let mut child = Command::new(python)
            .arg(script)
            .args(["--warehouse", warehouse, "--namespace", namespace])
            .args(["--tenant", TENANT, "--month", &month])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut peer = Peer {
            child,
            input,
            output,
        };
        peer.read_line()?; // {"ready": true}
        Ok(peer)
    }

    fn read_line(&mut self) -> Res<serde_json::Value> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            return Err("the pyiceberg peer exited".into());
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn run(&mut self, scan: &str) -> Res<(f64, u64)> {
        writeln!(self.input, "{scan}")?;
        self.input.flush()?;
        let v = self.read_line()?;
        let ms = v["ms"].as_f64().ok_or("no ms")?;
        Ok((ms, v["rows"].as_u64().ok_or("no rows")?))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "quit");
        let _ = self.child.wait();
    }
}

async fn prepare(
    warehouse: &PathBuf,
    rows: usize,
    dim: usize,
    default_dir: bool,
) -> Res<SalesHistory> {
    let config = CatalogConfig::local(warehouse);
    let options = TableOptions::default().with_embedding_dimension(dim);
    let table = SalesHistory::ensure_with(&config, STAGE, options).await?;
    let have = table.scan().count().await?;
    if have == rows as u64 && table.embedding_dimension() == dim {
        eprintln!("reusing {} ({have} rows)", warehouse.display());
        return Ok(table);
    }
    if have != 0 || table.embedding_dimension() != dim {
        if !default_dir {
            return Err(format!(
                "{} holds {have} rows (dim {}), not {rows} (dim {dim}): use an empty directory",
                warehouse.display(),
                table.embedding_dimension()
            )
            .into());
        }
        drop(table);
        std::fs::remove_dir_all(warehouse)?;
        return Box::pin(prepare(warehouse, rows, dim, default_dir)).await;
    }
    let records = SampleGenerator::new(SampleConfig::default().with_embedding_dimension(dim))
        .take_records(rows);
    let start = Instant::now();
    table.append(records).await?;
    eprintln!(
        "wrote {rows} rows into {} in {:.1?}",
        warehouse.display(),
        start.elapsed()
    );
    Ok(table)
}

#[tokio::main]
async fn main() -> Res<()> {
    let mut cli = cli::Cli::parse(USAGE);
    let rows: usize = cli.value("--rows").unwrap_or(50_000);
    let dim: usize = cli.value("--dim").unwrap_or(1024);
    let runs: usize = cli.value::<usize>("--runs").unwrap_or(5).max(1);
    let warehouse_arg: Option<PathBuf> = cli.value("--dir");
    let python: Option<PathBuf> = cli.value("--python");
    let json = cli.flag("--json");
    cli.finish();

    let default_dir = warehouse_arg.is_none();
    let warehouse = warehouse_arg
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sales-history-bench-{rows}x{dim}")));
    let table = prepare(&warehouse, rows, dim, default_dir).await?;
    let python = match python {
        Some(p) => p,
        None => venv_python()?,
    };
    let mut peer = Peer::start(
        &python,
        &warehouse.display().to_string(),
        &table.namespace(),
    )?;

    // Warm-up (page cache, lazy imports), then interleaved timed runs.
    for scan in SCANS {
        let (_, a) = ours(&table, scan).await?;
        let (_, b) = peer.run(scan)?;
        if a != b {
            return Err(format!("{scan}: we read {a} rows, pyiceberg {b}").into());
        }
    }
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); SCANS.len()];
    for _ in 0..runs {
        for (i, scan) in SCANS.iter().enumerate() {
            times[i].0.push(ours(&table, scan).await?.0);
            times[i].1.push(peer.run(scan)?.0);
        }
    }
    let filter = ScanFilter::new()
        .year_month(MONTH.0, MONTH.1)
        .tenant(TENANT);
    let plan = table.scan().filter(filter).plan().await?;

    let mut results = Vec::new();
    for (scan, (mut us, mut them)) in SCANS.iter().zip(times) {
        let (us, them) = (median(&mut us), median(&mut them));
        results.push((*scan, us, them, them / us));
    }
    if json {
        let scans: Vec<serde_json::Value> = results
            .iter()
            .map(|(s, us, them, ratio)| {
                serde_json::json!({"scan": s, "us_ms": us, "pyiceberg_ms": them, "ratio": ratio})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "rows": rows, "dim": dim, "runs": runs, "scans": scans,
                "month_tenant_files_planned": plan.files.len(),
                "data_files_in_snapshot": plan.data_files_in_snapshot,
            })
        );
        return Ok(());
    }
    println!(
        "{rows} rows, {dim}-dim embeddings, medians of {runs} interleaved runs (warm page cache)"
    );
    println!("| scan | us (ms) | pyiceberg (ms) | ratio (pyiceberg / us) |");
    println!("|---|---|---|---|");
    for (scan, us, them, ratio) in &results {
        println!("| {scan} | {us:.1} | {them:.1} | {ratio:.2}× |");
    }
    println!(
        "one month + one tenant: {} of {} data files planned",
        plan.files.len(),
        plan.data_files_in_snapshot
    );
    Ok(())
}
