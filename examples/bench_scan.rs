//! Scan speed beside pyiceberg, in one run: the same four scans on the same table, our runs and
//! pyiceberg's interleaved, medians reported.
//!
//! ```text
//! cargo run --release --example bench_scan -- [--rows N] [--dim D] [--runs R]
//!     [--dir DIR] [--python PATH] [--json]
//! cargo run --release --example bench_scan -- --help
//! ```
//!
//! Scans (all results collected in memory, as pyiceberg's `to_arrow()` does):
//! - `full`: every column;
//! - `no_embedding`: every column but `embedding`;
//! - `month_tenant`: `sold_date` in 2025-03 and `tenant_id = 'tenant-001'`, every column;
//! - `tenant`: `tenant_id = 'tenant-001'` over all months, every column;
//! - `load_plan`: reload the table from the catalog and plan a full scan.
//!
//! The table (default 50,000 rows with 1024-dim embeddings, 24 months, 5 tenants) is created
//! in the local warehouse `--dir` (default `$TMPDIR/sales-history-bench-{rows}x{dim}`) and reused when it
//! already holds exactly that many rows. pyiceberg runs `python/bench_scan_pyiceberg.py` from
//! the test venv (`scripts/venv.sh`; or `--python`, or `$SALES_HISTORY_PYTHON`).

#[path = "common/number.rs"]
mod number;
#[path = "common/python.rs"]
mod python;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;

use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    CatalogConfig, Column, EmbeddingDecoder, EmbeddingEncoding, SalesHistory, ScanFilter,
    TableOptions,
};

use stats::median;

/// Scan speed beside pyiceberg in one run: four scans (full, no_embedding, month_tenant,
/// load_plan) of the same local table, ours and pyiceberg's interleaved, medians of --runs
/// printed as a table (or JSON). The table is created in --dir (default
/// $TMPDIR/sales-history-bench-ROWSxDIM) and reused while it holds exactly --rows rows;
/// pyiceberg runs python/bench_scan_pyiceberg.py from the test venv.
#[derive(Debug, Parser)]
#[command(name = "bench_scan", verbatim_doc_comment)]
struct Args {
    /// Rows in the table.
    #[arg(long, value_name = "N", default_value_t = 50_000, value_parser = number::parse::<usize>)]
    rows: usize,

    /// Embedding length.
    #[arg(long, value_name = "D", default_value_t = 1024, value_parser = number::parse::<usize>)]
    dim: usize,

    /// Timed runs per scan and side (after one warm-up).
    #[arg(long, value_name = "R", default_value = "5", value_parser = number::parse::<NonZeroUsize>)]
    runs: NonZeroUsize,

    /// Local warehouse for the table; must be empty or hold exactly this table.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Python of the test venv (default: $SALES_HISTORY_PYTHON, else what scripts/venv.sh
    /// prints).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,

    /// Encoding of the embedding elements in the table (a table property set at creation;
    /// the default directory is per encoding).
    #[arg(long, value_name = "ENC", default_value = "byte-stream-split")]
    embedding_encoding: EmbeddingEncoding,

    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,

    /// Only run our side of this scan --runs times and print each time (no pyiceberg): a
    /// loop to profile, e.g. `perf record -g -- bench_scan --profile full`.
    #[arg(long, value_name = "SCAN")]
    profile: Option<String>,
}

const SCANS: [&str; 6] = [
    "full",
    // The full scan with parquet-rs's embedding decoder (`EmbeddingDecoder::Parquet`): the
    // baseline of this crate's decoder, in the same run. pyiceberg runs its full scan again.
    "full_parquet_rs",
    "no_embedding",
    "month_tenant",
    "tenant",
    "load_plan",
];
const STAGE: &str = "bench";
const TENANT: &str = "tenant-001";
const MONTH: (i32, u32) = (2025, 3);

/// Our side of one scan: (milliseconds, rows, bytes read).
async fn ours(table: &SalesHistory, scan: &str) -> anyhow::Result<(f64, u64, u64)> {
    let start = Instant::now();
    let (rows, bytes) = match scan {
        "full" => read(table.scan()).await?,
        "full_parquet_rs" => {
            read(table.scan().embedding_decoder(EmbeddingDecoder::Parquet)).await?
        }
        "no_embedding" => {
            let cols = Column::ALL.into_iter().filter(|c| *c != Column::Embedding);
            read(table.scan().select(cols)).await?
        }
        "month_tenant" => {
            let filter = ScanFilter::new()
                .year_month(MONTH.0, MONTH.1)
                .tenant(TENANT);
            read(table.scan().filter(filter)).await?
        }
        "tenant" => read(table.scan().filter(ScanFilter::new().tenant(TENANT))).await?,
        _ => {
            table.refresh().await?;
            (table.scan().plan().await?.files.len() as u64, 0)
        }
    };
    Ok((start.elapsed().as_secs_f64() * 1e3, rows, bytes))
}

async fn read(scan: sales_history::Scan) -> anyhow::Result<(u64, u64)> {
    let (batches, metrics) = scan.to_batches_with_metrics().await?;
    Ok((rows_of(batches), metrics.bytes_read))
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
    fn start(python: &Path, warehouse: &str, namespace: &str) -> anyhow::Result<Peer> {
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
            .spawn()
            .with_context(|| format!("cannot start {}", python.display()))?;
        let input = child.stdin.take().context("no stdin")?;
        let output = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut peer = Peer {
            child,
            input,
            output,
        };
        peer.read_line()?; // {"ready": true}
        Ok(peer)
    }

    fn read_line(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("the pyiceberg peer exited");
        }
        serde_json::from_str(&line).with_context(|| format!("the pyiceberg peer said {line:?}"))
    }

    fn run(&mut self, scan: &str) -> anyhow::Result<(f64, u64)> {
        let scan = if scan == "full_parquet_rs" {
            "full"
        } else {
            scan
        };
        writeln!(self.input, "{scan}")?;
        self.input.flush()?;
        let v = self.read_line()?;
        let ms = v["ms"].as_f64().context("no ms in the peer's answer")?;
        let rows = v["rows"].as_u64().context("no rows in the peer's answer")?;
        Ok((ms, rows))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "quit");
        let _ = self.child.wait();
    }
}

async fn prepare(
    warehouse: &Path,
    rows: usize,
    dim: usize,
    encoding: EmbeddingEncoding,
    default_dir: bool,
) -> anyhow::Result<SalesHistory> {
    let config = CatalogConfig::local(warehouse);
    let options = TableOptions::default()
        .embedding_dimension(dim)
        .embedding_encoding(encoding);
    let table = SalesHistory::ensure_with(&config, STAGE, options).await?;
    let have = table.scan().count().await?;
    let same = table.embedding_dimension() == dim && table.embedding_encoding()? == encoding;
    if have == rows as u64 && same {
        eprintln!("reusing {} ({have} rows)", warehouse.display());
        return Ok(table);
    }
    if have != 0 || !same {
        ensure!(
            default_dir,
            "{} holds {have} rows (dim {}, {}), not {rows} (dim {dim}, {encoding}): use an empty \
             directory",
            warehouse.display(),
            table.embedding_dimension(),
            table.embedding_encoding()?
        );
        drop(table);
        std::fs::remove_dir_all(warehouse)
            .with_context(|| format!("cannot remove {}", warehouse.display()))?;
        return Box::pin(prepare(warehouse, rows, dim, encoding, default_dir)).await;
    }
    let records =
        SampleGenerator::new(SampleConfig::default().embedding_dimension(dim)).take_records(rows);
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
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (rows, dim, runs, json) = (args.rows, args.dim, args.runs.get(), args.json);
    let (warehouse_arg, python) = (args.dir, args.python);
    let default_dir = warehouse_arg.is_none();
    let encoding = args.embedding_encoding;
    // The default table of the default encoding keeps its old name (reused across versions).
    let suffix = match encoding {
        EmbeddingEncoding::ByteStreamSplit => String::new(),
        other => format!("-{other}"),
    };
    let warehouse = warehouse_arg.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sales-history-bench-{rows}x{dim}{suffix}"))
    });
    // Like pyiceberg's loaded `Table` object, the scans read the version the handle holds
    // (`Freshness::Cached`); `load_plan` times the reload from the catalog separately.
    let table = prepare(&warehouse, rows, dim, encoding, default_dir)
        .await?
        .freshness(sales_history::Freshness::Cached);
    if let Some(scan) = args.profile.as_deref() {
        ensure!(SCANS.contains(&scan), "--profile takes one of {SCANS:?}");
        for _ in 0..runs {
            let (ms, rows, _) = ours(&table, scan).await?;
            println!("{scan}: {ms:.1} ms, {rows} rows");
        }
        return Ok(());
    }
    let python = match python {
        Some(p) => p,
        None => python::venv_python()?,
    };
    let mut peer = Peer::start(
        &python,
        &warehouse.display().to_string(),
        &table.namespace(),
    )?;

    // Warm-up (page cache, lazy imports), then interleaved timed runs.
    for scan in SCANS {
        let (_, a, _) = ours(&table, scan).await?;
        let (_, b) = peer.run(scan)?;
        ensure!(a == b, "{scan}: we read {a} rows, pyiceberg {b}");
    }
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); SCANS.len()];
    let mut bytes = vec![0u64; SCANS.len()];
    for _ in 0..runs {
        for (i, scan) in SCANS.iter().enumerate() {
            let (ms, _, read) = ours(&table, scan).await?;
            times[i].0.push(ms);
            bytes[i] = read;
            times[i].1.push(peer.run(scan)?.0);
        }
    }
    // The bytes of the month's files, for the month + tenant scan's share.
    let month_files = table
        .scan()
        .filter(ScanFilter::new().year_month(MONTH.0, MONTH.1))
        .plan()
        .await?;
    let month_bytes: u64 = month_files.files.iter().map(|f| f.size_bytes).sum();
    let filter = ScanFilter::new()
        .year_month(MONTH.0, MONTH.1)
        .tenant(TENANT);
    let plan = table.scan().filter(filter).plan().await?;

    // pyiceberg ran its full scan for both of our full rows: one baseline from all of them.
    let full_them: Vec<f64> = times[0].1.iter().chain(&times[1].1).copied().collect();
    times[0].1 = full_them.clone();
    times[1].1 = full_them;
    let mut results = Vec::new();
    for ((scan, (us, them)), read) in SCANS.iter().zip(times).zip(bytes) {
        let (us, them) = (median(&us), median(&them));
        results.push((*scan, us, them, them / us, read));
    }
    if json {
        let scans: Vec<serde_json::Value> = results
            .iter()
            .map(|(s, us, them, ratio, read)| {
                serde_json::json!({"scan": s, "us_ms": us, "pyiceberg_ms": them, "ratio": ratio, "bytes_read": read})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "rows": rows, "dim": dim, "runs": runs, "scans": scans,
                "embedding_encoding": encoding.to_string(),
                "month_tenant_files_planned": plan.files.len(),
                "data_files_in_snapshot": plan.data_files_in_snapshot,
                "month_file_bytes": month_bytes,
            })
        );
        return Ok(());
    }
    println!(
        "{rows} rows, {dim}-dim embeddings ({encoding}), medians of {runs} interleaved runs (warm \
         page cache)"
    );
    println!("| scan | us (ms) | pyiceberg (ms) | ratio (pyiceberg / us) | bytes read (us) |");
    println!("|---|---|---|---|---|");
    for (scan, us, them, ratio, read) in &results {
        println!("| {scan} | {us:.1} | {them:.1} | {ratio:.2}× | {read} |");
    }
    println!(
        "one month + one tenant: {} of {} data files planned; the month's files hold {} bytes",
        plan.files.len(),
        plan.data_files_in_snapshot,
        month_bytes
    );
    Ok(())
}
