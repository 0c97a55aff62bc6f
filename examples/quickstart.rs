//! Quickstart on the embedded local catalog: create the table, append deterministic sample
//! sales over 24 months and several tenants in one append, scan one tenant and one month back.
//!
//! ```text
//! cargo run --release --example quickstart -- [--rows N] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

use std::time::Instant;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{AppendOutcome, SalesHistory};

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

/// The crate in one minute: creates the sales_history table if needed (by default in the
/// local catalog ./warehouse), appends --rows deterministic sample sales over 24 months and
/// 5 tenants in one atomic append, then scans the rows of tenant-001 sold in 2025-03 back and
/// prints the first five, with timings.
#[derive(Debug, Parser)]
#[command(name = "quickstart", verbatim_doc_comment)]
struct Args {
    /// Sample rows to append.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = number::parse::<usize>)]
    rows: usize,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let rows = args.rows;
    let table = SalesHistory::ensure(&args.catalog.config(), &args.catalog.stage).await?;
    println!("table     {} at {}", table.name(), table.location());

    let gen_start = Instant::now();
    let records = SampleGenerator::new(
        SampleConfig::default().embedding_dimension(table.embedding_dimension()),
    )
    .take_records(rows);
    let gen_time = gen_start.elapsed();

    let start = Instant::now();
    let outcome = table.append(records).await?;
    let elapsed = start.elapsed();
    match &outcome {
        AppendOutcome::Committed(s) => println!(
            "appended  {} rows in {} files ({:.1} MB) as snapshot {} in {:.2?} ({:.0} rows/s; generating took {:.2?})",
            s.rows,
            s.data_files,
            s.bytes as f64 / 1e6,
            s.snapshot_id,
            elapsed,
            s.rows as f64 / elapsed.as_secs_f64(),
            gen_time
        ),
        AppendOutcome::NothingToCommit => println!("appended  nothing (--rows 0)"),
        other => println!("appended  nothing: {other:?}"),
    }

    let total = table.scan().count().await?;
    let start = Instant::now();
    let march = table
        .scan()
        .tenant("tenant-001")
        .sold_between(
            Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0)
                .single()
                .context("2025-03-01 as a UTC date")?,
            Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0)
                .single()
                .context("2025-04-01 as a UTC date")?,
        )
        .to_records()
        .await?;
    println!(
        "scanned   {} rows of tenant-001 sold in 2025-03 in {:.2?} (table holds {total} rows, {} snapshots)",
        march.len(),
        start.elapsed(),
        table.snapshots().await?.len()
    );
    for r in march.iter().take(5) {
        println!(
            "  {} {:<12} {:<14} {:>10} {} {}",
            r.sold_date.format("%Y-%m-%d %H:%M"),
            r.category.as_deref().unwrap_or("-"),
            r.brand.as_deref().unwrap_or("-"),
            r.sold_price,
            r.season.map_or("-", |s| s.as_str()),
            r.product_id
        );
    }
    Ok(())
}
