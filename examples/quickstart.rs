//! Quickstart on the embedded local catalog: create the table, append deterministic sample
//! sales over 24 months and several tenants in one append, scan one tenant and one month back.
//!
//! ```text
//! cargo run --release --example quickstart -- [--warehouse DIR] [--rows N] [--stage STAGE]
//! ```

use std::time::Instant;

use chrono::{TimeZone, Utc};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{AppendOutcome, CatalogConfig, SalesHistory};

struct Args {
    warehouse: String,
    rows: usize,
    stage: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        warehouse: "./warehouse".into(),
        rows: 10_000,
        stage: "dev".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--warehouse" => args.warehouse = value()?,
            "--rows" => args.rows = value()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--stage" => args.stage = value()?,
            "-h" | "--help" => {
                println!("usage: quickstart [--warehouse DIR] [--rows N] [--stage STAGE]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let config = CatalogConfig::local(&args.warehouse);
    let table = SalesHistory::ensure(&config, &args.stage).await?;
    println!("table     {} at {}", table.name(), table.location());

    let gen_start = Instant::now();
    let records = SampleGenerator::new(
        SampleConfig::default().with_embedding_dimension(table.embedding_dimension()),
    )
    .take_records(args.rows);
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
