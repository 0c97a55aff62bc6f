//! Peak memory of a full scan over large data files: bounded reads (the default read buffer)
//! against fetching each file whole, interleaved, in one process.
//!
//! ```text
//! cargo run --release --example bench_scan_memory -- [--rows N] [--runs R] [--dir DIR]
//! ```
//!
//! The table (default 200,000 rows with 1024-dim embeddings in one month, appended in 50k-row
//! batches and compacted into files of up to 2 GiB — hundreds of MB each) is created in `--dir`
//! (default `$TMPDIR/sales-history-bench-memory-{rows}`) and reused while it holds exactly that
//! many rows. Each run streams the whole table, dropping every batch as it arrives, after
//! resetting the kernel's peak-RSS counter (`/proc/self/clear_refs`); it prints the time, the
//! peak RSS above the RSS at the start of the scan, and the storage reads
//! (`ScanMetrics::requests`) per read-buffer setting.

#[path = "common/host.rs"]
mod host;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Parser;
use futures::TryStreamExt;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, DEFAULT_READ_BUFFER_BYTES, SalesHistory};

use host::proc_status_kb;
use stats::upper_median;

/// Peak RSS of a full scan over large files: the default read buffer against whole-file
/// reads, interleaved, medians of --runs.
#[derive(Debug, Parser)]
#[command(name = "bench_scan_memory", verbatim_doc_comment)]
struct Args {
    /// Rows in the table (1024-dim embeddings, one month).
    #[arg(long, value_name = "N", default_value_t = 200_000, value_parser = number::parse::<usize>)]
    rows: usize,

    /// Timed runs per setting.
    #[arg(long, value_name = "R", default_value = "3", value_parser = number::parse::<NonZeroUsize>)]
    runs: NonZeroUsize,

    /// Local warehouse for the table; must be empty or hold exactly this table.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

async fn prepare(dir: &std::path::Path, rows: usize) -> anyhow::Result<SalesHistory> {
    let config = CatalogConfig::local(dir);
    let table = SalesHistory::ensure(&config, "bench").await?;
    let have = table.scan().count().await?;
    if have == rows as u64 {
        return Ok(table);
    }
    ensure!(
        have == 0,
        "{} holds {have} rows, not {rows}: use an empty directory",
        dir.display()
    );
    let mut generator = SampleGenerator::new(
        SampleConfig::default()
            .months(1)
            .embedding_dimension(table.embedding_dimension()),
    );
    let mut left = rows;
    while left > 0 {
        let n = left.min(50_000);
        table.append(generator.take_records(n)).await?;
        left -= n;
    }
    let report = table.compact().target_file_size(2 << 30).await?;
    eprintln!(
        "wrote {rows} rows, compacted {} files into {}",
        report.files_removed, report.files_added
    );
    Ok(table)
}

/// One full scan: (ms, peak RSS above the RSS before it in MB, storage reads).
async fn scan(table: &SalesHistory, read_buffer: u64) -> anyhow::Result<(f64, u64, u64)> {
    ensure!(
        host::trim_heap() && host::reset_peak(),
        "cannot trim the heap (glibc malloc_trim) or reset the peak RSS (/proc/self/clear_refs)"
    );
    let before = proc_status_kb("VmRSS:").context("no VmRSS in /proc/self/status")? / 1024;
    let start = Instant::now();
    let mut stream = table
        .scan()
        .read_buffer_bytes(read_buffer)
        .execute()
        .await?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows();
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let peak = proc_status_kb("VmHWM:").context("no VmHWM in /proc/self/status")? / 1024;
    ensure!(rows as u64 == stream.metrics().rows_returned);
    Ok((ms, peak.saturating_sub(before), stream.metrics().requests))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sales-history-bench-memory-{}", args.rows))
    });
    let table = prepare(&dir, args.rows).await?;
    let plan = table.scan().plan().await?;
    let sizes: Vec<String> = plan
        .files
        .iter()
        .map(|f| format!("{:.0} MB", f.size_bytes as f64 / 1e6))
        .collect();
    println!(
        "{} rows in {} files ({}), medians of {} interleaved runs",
        args.rows,
        plan.files.len(),
        sizes.join(", "),
        args.runs
    );
    let default = format!(
        "default read buffer ({} MiB)",
        DEFAULT_READ_BUFFER_BYTES >> 20
    );
    let settings = [
        (default.as_str(), DEFAULT_READ_BUFFER_BYTES),
        ("64 MiB read buffer", 64 << 20),
        ("whole files", u64::MAX),
    ];
    let mut results = vec![(Vec::new(), Vec::new(), 0); settings.len()];
    scan(&table, DEFAULT_READ_BUFFER_BYTES).await?; // warm-up
    for _ in 0..args.runs.get() {
        for (i, (_, buffer)) in settings.iter().enumerate() {
            let (ms, peak, requests) = scan(&table, *buffer).await?;
            results[i].0.push(ms);
            results[i].1.push(peak as f64);
            results[i].2 = requests;
        }
    }
    println!("| reads | ms | peak RSS above the start (MB) | storage reads |");
    println!("|---|--:|--:|--:|");
    for ((name, _), (ms, peak, requests)) in settings.iter().zip(results) {
        println!(
            "| {name} | {:.0} | {:.0} | {requests} |",
            upper_median(&ms),
            upper_median(&peak)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    report::exit_on_error(run(Args::parse()).await);
}
