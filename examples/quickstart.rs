//! Quickstart on the embedded local catalog: create the table, append deterministic sample
//! sales over 24 months and several tenants in one append, scan one tenant and one month back.
//!
//! ```text
//! cargo run --release --example quickstart -- [--rows N] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

use std::time::Instant;

use chrono::{TimeZone, Utc};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{AppendOutcome, CatalogConfig, SalesHistory};

#[path = "common/cli.rs"]
mod cli;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cli = cli::Cli::parse(
        "usage: quickstart [--rows N] [--warehouse DIR | --catalog URI] [--stage STAGE]",
    );
    let rows: usize = cli.value("--rows").unwrap_or(10_000);
    let config: CatalogConfig = cli.catalog.clone();
    let stage = cli.stage.clone();
    cli.finish();
    let table = SalesHistory::ensure(&config, &stage).await?;
    println!("table     {} at {}", table.name(), table.location());

    let gen_start = Instant::now();
    let records = SampleGenerator::new(
        SampleConfig::default().with_embedding_dimension(table.embedding_dimension()),
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
                .ok_or("date")?,
            Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0)
                .single()
                .ok_or("date")?,
        )
        .to_records()
        .await?;
    println!(
        "scanned   {} rows of tenant-001 sold in 2025-03 in {:.2?} (table holds {total} rows, {} snapshots)",
        march.len(),
        start.elapsed(),
        table.snapshots().len()
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
