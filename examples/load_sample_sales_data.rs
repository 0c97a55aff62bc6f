//! Generates deterministic, realistic sample sales and appends them in batches, with a
//! progress bar and a summary. Memory stays bounded by the batch size whatever the count.
//! `--commit-id ID` makes a rerun after a crash skip the batches that already landed.
//!
//! ```text
//! cargo run --release --example load_sample_sales_data -- --num-records 100000 --commit-id ID
//! cargo run --example load_sample_sales_data -- --help
//! ```

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{AppendOutcome, SalesHistory};

/// Generates deterministic sample sales (tenants, months, brands, prices, embeddings of the
/// table's dimension) and appends them to the sales_history table in batches of --batch-size
/// rows, one snapshot per batch, creating the table if needed; prints rows, snapshots, files,
/// bytes and throughput. With --commit-id a rerun skips the batches that already landed.
#[derive(Debug, Parser)]
#[command(name = "load_sample_sales_data", verbatim_doc_comment)]
struct Args {
    /// Rows to generate and append.
    #[arg(long, value_name = "N", default_value_t = 5_000, value_parser = number::parse::<usize>)]
    num_records: usize,

    /// Rows per append (one snapshot each); bounds the memory used.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = number::parse::<NonZeroUsize>)]
    batch_size: NonZeroUsize,

    /// Number of tenants the rows are spread over.
    #[arg(long, value_name = "N", default_value = "5", value_parser = number::parse::<NonZeroUsize>)]
    tenants: NonZeroUsize,

    /// Number of months the sale dates are spread over.
    #[arg(long, value_name = "N", default_value = "24", value_parser = number::parse::<NonZeroU32>)]
    months: NonZeroU32,

    /// Seed of the generator: the same seed gives the same rows.
    #[arg(long, value_name = "N", default_value_t = 42, value_parser = number::parse::<u64>)]
    seed: u64,

    /// Makes the load idempotent: batch K commits as ID-K (six digits), so a rerun with the
    /// same ID skips the batches that already landed.
    #[arg(long, value_name = "ID")]
    commit_id: Option<String>,

    /// No progress bar.
    #[arg(long)]
    quiet: bool,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let total = args.num_records;
    let batch_size = args.batch_size.get();
    let (catalog, stage) = (args.catalog.config(), &args.catalog.stage);
    let table = SalesHistory::ensure(&catalog, stage).await?;
    let mut generator = SampleGenerator::new(
        SampleConfig::default()
            .seed(args.seed)
            .tenants(args.tenants.get())
            .months(args.months.get())
            .embedding_dimension(table.embedding_dimension()),
    );
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let (mut rows, mut snapshots, mut skipped, mut files, mut bytes) =
        (0u64, 0u64, 0u64, 0usize, 0u64);
    let mut done = 0usize;
    let mut batch_no = 0usize;
    // Generate the next batch on a blocking thread while the current one is appended.
    let mut next = Some(tokio::task::spawn_blocking({
        let n = batch_size.min(total);
        move || {
            let records = generator.take_records(n);
            (generator, records)
        }
    }));
    while let Some(pending) = next.take() {
        let (mut generator, records) = pending.await.context("the sample generator panicked")?;
        let n = records.len();
        if n == 0 {
            break;
        }
        let following = batch_size.min(total - done - n);
        if following > 0 {
            next = Some(tokio::task::spawn_blocking(move || {
                let records = generator.take_records(following);
                (generator, records)
            }));
        }
        let mut append = table.append(records);
        if let Some(id) = &args.commit_id {
            append = append.commit_id(format!("{id}-{batch_no:06}"));
        }
        match append.await? {
            AppendOutcome::Committed(s) => {
                rows += s.rows;
                snapshots += 1;
                files += s.data_files;
                bytes += s.bytes;
            }
            AppendOutcome::AlreadyCommitted { .. } => skipped += n as u64,
            _ => {}
        }
        done += n;
        batch_no += 1;
        bar.set_position(done as u64);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "loaded {rows} rows into {} in {snapshots} snapshots, {files} files, {:.1} MB, {:.1} s, {:.0} rows/s{}",
        table.name(),
        bytes as f64 / 1e6,
        secs,
        rows as f64 / secs.max(1e-9),
        if skipped > 0 {
            format!(" ({skipped} rows already committed, skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}
