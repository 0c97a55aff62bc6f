//! Compaction benchmark: many small appends (a service's flushes), then `compact()`; files
//! before/after, rows/s and MB/s rewritten, and full / one-month scan time before vs after, in
//! the same run on the same table.
//!
//! ```text
//! cargo run --release --example bench_compact -- [--appends 500] [--rows-per-append 20]
//!     [--months 3] [--dim 1024] [--reps 3] [--decoder-pairs N] [--writer-pairs N] [--dir DIR]
//!     [--json]
//! ```
//!
//! `--decoder-pairs N` adds the same-run baseline of the embedding decoder: N pairs of fresh
//! tables given the same appends, one compacted with parquet-rs's decoder and one with this
//! crate's (which goes first alternates), medians of each. `--writer-pairs N` does the same for
//! the data-file writer, each table in a child process of its own: iceberg 0.10.1's
//! `ParquetWriter` (`SALES_HISTORY_EMBEDDING_ENCODE=iceberg`, the writer before this crate
//! had its own), and this crate's writer (`=ours`).

#[path = "common/host.rs"]
mod host;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;

use std::time::{Duration, Instant};

use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, EmbeddingDecoder, SalesHistory, ScanFilter, TableOptions};

/// Many small appends, then one compaction: what it costs and what scans gain.
#[derive(Debug, Parser)]
#[command(name = "bench_compact")]
struct Args {
    /// Small appends before the compaction.
    #[arg(long, default_value_t = 500, value_parser = number::parse::<usize>)]
    appends: usize,
    /// Rows per append.
    #[arg(long, default_value_t = 20, value_parser = number::parse::<usize>)]
    rows_per_append: usize,
    /// Months the rows fall in (each append writes about one file per month).
    #[arg(long, default_value_t = 3, value_parser = number::parse::<u32>)]
    months: u32,
    /// Embedding length.
    #[arg(long, default_value_t = 1024, value_parser = number::parse::<usize>)]
    dim: usize,
    /// Timed repetitions of each scan (median reported).
    #[arg(long, default_value_t = 3, value_parser = number::parse::<usize>)]
    reps: usize,
    /// Directory for the warehouse (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Pairs of extra compactions of the same appends on fresh tables, one with parquet-rs's
    /// embedding decoder and one with this crate's: the decoder's same-run baseline.
    #[arg(long, default_value_t = 0, value_parser = number::parse::<usize>)]
    decoder_pairs: usize,
    /// Pairs of extra compactions of the same appends on fresh tables, each in a child
    /// process, one written by iceberg's `ParquetWriter` and one by this crate's writer: the
    /// writer's same-run baseline.
    #[arg(long, default_value_t = 0, value_parser = number::parse::<usize>)]
    writer_pairs: usize,
    /// (Internal) Run one fresh-table compaction and print its rows/s: a writer pair's child.
    #[arg(long, hide = true)]
    pair_child: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The benchmark's appends on a fresh table under `dir`, then a compaction with `decoder`:
/// its rows/s. The table is removed afterwards.
async fn compaction_rate(
    args: &Args,
    dir: &std::path::Path,
    decoder: EmbeddingDecoder,
) -> anyhow::Result<f64> {
    let config = CatalogConfig::local(dir);
    let table = SalesHistory::ensure_with(
        &config,
        "bench",
        TableOptions::default().embedding_dimension(args.dim),
    )
    .await?;
    let mut generator = generator(args);
    for _ in 0..args.appends {
        table
            .append(generator.take_records(args.rows_per_append))
            .await?;
    }
    let report = table.compact().embedding_decoder(decoder).await?;
    drop(table);
    let _ = std::fs::remove_dir_all(dir);
    Ok(report.rows_rewritten as f64 / report.elapsed.as_secs_f64())
}

/// `pairs` pairs of [`compaction_rate`], parquet-rs's decoder and ours, alternating which goes
/// first: the median rows/s of each.
async fn decoder_pairs(
    args: &Args,
    dir: &std::path::Path,
    pairs: usize,
) -> anyhow::Result<(f64, f64)> {
    let (mut parquet, mut ours) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let order = match pair % 2 {
            0 => [EmbeddingDecoder::Parquet, EmbeddingDecoder::Auto],
            _ => [EmbeddingDecoder::Auto, EmbeddingDecoder::Parquet],
        };
        for decoder in order {
            let at = dir.join(format!("bench-compact-{}-pair", std::process::id()));
            let rate = compaction_rate(args, &at, decoder).await?;
            match decoder {
                EmbeddingDecoder::Parquet => parquet.push(rate),
                _ => ours.push(rate),
            }
        }
    }
    Ok((stats::median(&parquet), stats::median(&ours)))
}

/// `pairs` pairs of [`compaction_rate`] in child processes, iceberg's writer and ours,
/// alternating which goes first: the median rows/s of each.
fn writer_pairs(args: &Args, dir: &std::path::Path, pairs: usize) -> anyhow::Result<(f64, f64)> {
    let exe = std::env::current_exe()?;
    let (mut iceberg, mut ours) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let order = match pair % 2 {
            0 => ["iceberg", "ours"],
            _ => ["ours", "iceberg"],
        };
        for writer in order {
            let output = std::process::Command::new(&exe)
                .args([
                    "--pair-child",
                    "--appends",
                    &args.appends.to_string(),
                    "--rows-per-append",
                    &args.rows_per_append.to_string(),
                    "--months",
                    &args.months.to_string(),
                    "--dim",
                    &args.dim.to_string(),
                    "--dir",
                ])
                .arg(dir)
                .env(sales_history::EMBEDDING_ENCODE_ENV, writer)
                .output()?;
            anyhow::ensure!(
                output.status.success(),
                "a writer-pair child failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let rate: f64 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
            match writer {
                "iceberg" => iceberg.push(rate),
                _ => ours.push(rate),
            }
        }
    }
    Ok((stats::median(&iceberg), stats::median(&ours)))
}

/// The sample rows of every table of the run (the same for each).
fn generator(args: &Args) -> SampleGenerator {
    SampleGenerator::new(
        SampleConfig::default()
            .seed(7)
            .months(args.months)
            .embedding_dimension(args.dim),
    )
}

#[tokio::main]
async fn main() {
    report::exit_on_error(run(Args::parse()).await);
}

async fn median_scan(
    table: &SalesHistory,
    filter: Option<ScanFilter>,
    reps: usize,
) -> anyhow::Result<(Duration, usize)> {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..reps.max(1) {
        let mut scan = table.scan();
        if let Some(f) = &filter {
            scan = scan.filter(f.clone());
        }
        let started = Instant::now();
        let batches = scan.to_batches().await?;
        times.push(started.elapsed());
        rows = batches.iter().map(|b| b.num_rows()).sum();
    }
    Ok((stats::upper_median_duration(&times), rows))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    if args.pair_child {
        let at = dir.join(format!("bench-compact-{}-writer", std::process::id()));
        println!(
            "{}",
            compaction_rate(&args, &at, EmbeddingDecoder::Auto).await?
        );
        return Ok(());
    }
    let config = CatalogConfig::local(dir.join(format!("bench-compact-{}", std::process::id())));
    let table = SalesHistory::ensure_with(
        &config,
        "bench",
        TableOptions::default().embedding_dimension(args.dim),
    )
    .await?;
    let mut generator = generator(&args);
    let started = Instant::now();
    for _ in 0..args.appends {
        table
            .append(generator.take_records(args.rows_per_append))
            .await?;
    }
    let append_time = started.elapsed();
    let plan = table.scan().plan().await?;
    let files_before = plan.files.len();
    let bytes_before: u64 = plan.files.iter().map(|f| f.size_bytes).sum();
    let month = table.scan().to_records().await?[0].sold_date;
    let one_month = ScanFilter::new().sold_between(
        month - chrono::Duration::days(3),
        month + chrono::Duration::days(3),
    );
    let (full_before, rows_before) = median_scan(&table, None, args.reps).await?;
    let (month_before, month_rows) =
        median_scan(&table, Some(one_month.clone()), args.reps).await?;

    // Peak RSS of the compaction above the RSS before it (what a service must leave room
    // for); None when the kernel refuses the reset.
    let peak_reset = host::reset_peak();
    let rss_before = host::proc_status_kb("VmRSS:");
    let report = table.compact().await?;
    let compact_peak_mb = match (peak_reset, rss_before, host::proc_status_kb("VmHWM:")) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before) as f64 / 1024.0),
        _ => None,
    };

    let plan = table.scan().plan().await?;
    let files_after = plan.files.len();
    let bytes_after: u64 = plan.files.iter().map(|f| f.size_bytes).sum();
    let (full_after, rows_after) = median_scan(&table, None, args.reps).await?;
    let (month_after, month_rows_after) = median_scan(&table, Some(one_month), args.reps).await?;
    anyhow::ensure!(
        rows_before == rows_after,
        "rows changed: {rows_before} → {rows_after}"
    );
    anyhow::ensure!(month_rows == month_rows_after, "filtered rows changed");

    let secs = report.elapsed.as_secs_f64();
    let rows_per_s = report.rows_rewritten as f64 / secs;
    let mb_per_s = report.bytes_removed as f64 / 1e6 / secs;
    let pairs = match args.decoder_pairs {
        0 => None,
        n => Some(decoder_pairs(&args, &dir, n).await?),
    };
    let writers = match args.writer_pairs {
        0 => None,
        n => Some(writer_pairs(&args, &dir, n)?),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "appends": args.appends, "rows": rows_before, "dim": args.dim,
                "append_seconds": append_time.as_secs_f64(),
                "files_before": files_before, "files_after": files_after,
                "bytes_before": bytes_before, "bytes_after": bytes_after,
                "compact_seconds": secs, "rows_rewritten": report.rows_rewritten,
                "rows_per_s": rows_per_s, "mb_per_s": mb_per_s,
                "compact_peak_rss_above_start_mb": compact_peak_mb,
                "full_scan_before_s": full_before.as_secs_f64(), "full_scan_after_s": full_after.as_secs_f64(),
                "window_scan_before_s": month_before.as_secs_f64(), "window_scan_after_s": month_after.as_secs_f64(),
                "decoder_pairs": args.decoder_pairs,
                "rows_per_s_parquet_decoder": pairs.map(|p| p.0),
                "rows_per_s_our_decoder": pairs.map(|p| p.1),
                "writer_pairs": args.writer_pairs,
                "rows_per_s_iceberg_writer": writers.map(|p| p.0),
                "rows_per_s_our_writer": writers.map(|p| p.1),
            })
        );
        return Ok(());
    }
    println!(
        "{} appends of {} rows ({} rows, dim {}) in {:.1}s",
        args.appends,
        args.rows_per_append,
        rows_before,
        args.dim,
        append_time.as_secs_f64()
    );
    println!("| | before | after | |");
    println!("|---|---|---|---|");
    println!(
        "| data files | {files_before} | {files_after} | {:.0}× fewer |",
        files_before as f64 / files_after.max(1) as f64
    );
    println!(
        "| bytes | {bytes_before} | {bytes_after} | {:.2}× |",
        bytes_after as f64 / bytes_before.max(1) as f64
    );
    println!(
        "| full scan ({rows_before} rows, median of {}) | {:.3}s | {:.3}s | {:.1}× faster |",
        args.reps,
        full_before.as_secs_f64(),
        full_after.as_secs_f64(),
        full_before.as_secs_f64() / full_after.as_secs_f64()
    );
    println!(
        "| 6-day window scan ({month_rows} rows) | {:.3}s | {:.3}s | {:.1}× faster |",
        month_before.as_secs_f64(),
        month_after.as_secs_f64(),
        month_before.as_secs_f64() / month_after.as_secs_f64()
    );
    println!(
        "compaction: {} files in {} months → {} files, {} rows in {:.2}s = {:.0} rows/s, {:.1} MB/s read+rewritten",
        report.files_removed,
        report.months,
        report.files_added,
        report.rows_rewritten,
        secs,
        rows_per_s,
        mb_per_s
    );
    if let Some(mb) = compact_peak_mb {
        println!("compaction peak RSS above the RSS before it: {mb:.0} MB");
    }
    if let Some((parquet, ours)) = pairs {
        println!(
            "compaction of the same appends on fresh tables, medians of {} each: parquet-rs's embedding decoder {parquet:.0} rows/s, ours {ours:.0} rows/s ({:.2}×)",
            args.decoder_pairs,
            ours / parquet
        );
    }
    if let Some((iceberg, ours)) = writers {
        println!(
            "compaction of the same appends on fresh tables, each in a child process, medians of {} each: iceberg's ParquetWriter {iceberg:.0} rows/s, this crate's writer {ours:.0} rows/s ({:.2}×)",
            args.writer_pairs,
            ours / iceberg
        );
    }
    Ok(())
}
