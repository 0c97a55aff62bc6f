//! Generates deterministic, realistic sample sales and appends them in batches, with a
//! progress bar and a summary. Memory stays bounded by the batch size whatever the count.
//! `--commit-id ID` makes a rerun after a crash skip the batches that already landed.
//!
//! ```text
//! cargo run --release --example load_sample_sales_data -- --num-records 100000 \
//!     [--batch-size 10000] [--tenants 5] [--months 24] [--seed 42] [--commit-id ID] \
//!     [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{AppendOutcome, SalesHistory};

const USAGE: &str = "usage: load_sample_sales_data [--num-records N] [--batch-size N] [--tenants N] [--months N] [--seed N] [--commit-id ID] [--quiet]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cli = cli::Cli::parse(USAGE);
    let total: usize = cli.value("--num-records").unwrap_or(5_000);
    let batch_size: usize = cli.value::<usize>("--batch-size").unwrap_or(10_000).max(1);
    let tenants: usize = cli.value("--tenants").unwrap_or(5);
    let months: u32 = cli.value("--months").unwrap_or(24);
    let seed: u64 = cli.value("--seed").unwrap_or(42);
    let commit_id: Option<String> = cli.value("--commit-id");
    let quiet = cli.flag("--quiet");
    let (catalog, stage) = (cli.catalog.clone(), cli.stage.clone());
    cli.finish();

    let table = SalesHistory::ensure(&catalog, &stage).await?;
    let mut generator = SampleGenerator::new(
        SampleConfig::default()
            .with_seed(seed)
            .with_tenants(tenants)
            .with_months(months)
            .with_embedding_dimension(table.embedding_dimension()),
    );
    let bar = if quiet {
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
        let (mut generator, records) = pending.await?;
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
        if let Some(id) = &commit_id {
            append = append.with_commit_id(format!("{id}-{batch_no:06}"));
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
