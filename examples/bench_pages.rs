//! Page-size sweep: the same 50k rows (1024-dim) written with 32, 64, 128, 256 and 1024 rows
//! per page (`write.parquet.page-row-limit`) and each `--embedding-page-bytes`
//! (`sales-history.embedding-page-size-bytes`), then the append time, the table's bytes and
//! the month + tenant, tenant and full scans (medians of 5, bytes read) — how
//! `DEFAULT_PAGE_ROW_LIMIT` and `DEFAULT_EMBEDDING_PAGE_BYTES` were chosen.
//!
//! ```text
//! cargo run --release --example bench_pages -- [--rows N] [--rows-per-page 32,64,...]
//!     [--embedding-page-bytes 8192,65536,...] [--runs R] [--dir DIR]
//! ```
//!
//! Each page size gets a fresh table in a temporary directory under `--dir` (default `/tmp`),
//! removed afterwards. The properties are set through iceberg's own transaction on a raw SQL
//! catalog (the crate's API does not expose arbitrary table properties).

#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;
#[path = "common/table_props.rs"]
mod table_props;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    CatalogConfig, EMBEDDING_PAGE_SIZE_PROPERTY, Freshness, SalesHistory, ScanFilter,
};

/// Page-size sweep: the same --rows rows (1024-dim) written with each --rows-per-page
/// (write.parquet.page-row-limit), then the append time, the table's bytes and the month +
/// tenant, tenant and full scans (medians of --runs, bytes read), printed as a table.
#[derive(Debug, Parser)]
#[command(name = "bench_pages", verbatim_doc_comment)]
struct Args {
    /// Rows appended to each table.
    #[arg(long, value_name = "N", default_value = "50000", value_parser = number::parse::<NonZeroUsize>)]
    rows: NonZeroUsize,

    /// Page row limits to compare, comma-separated.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "32,64,128,256,1024",
        value_parser = number::parse::<NonZeroUsize>
    )]
    rows_per_page: Vec<NonZeroUsize>,

    /// Embedding page sizes to compare (bytes before compression), comma-separated: each is
    /// run with each --rows-per-page.
    #[arg(
        long,
        value_name = "B,B,...",
        value_delimiter = ',',
        default_value = "65536",
        value_parser = number::parse::<NonZeroUsize>
    )]
    embedding_page_bytes: Vec<NonZeroUsize>,

    /// Timed runs of each scan (the median is printed).
    #[arg(long, value_name = "R", default_value = "5", value_parser = number::parse::<NonZeroUsize>)]
    runs: NonZeroUsize,

    /// Directory the temporary tables are made in.
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() {
    report::exit_on_error(run(Args::parse()).await);
}

/// `50k` for 50,000; other counts as they are.
fn rows_label(rows: usize) -> String {
    if rows.is_multiple_of(1000) {
        format!("{}k", rows / 1000)
    } else {
        rows.to_string()
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (rows, runs) = (args.rows.get(), args.runs.get());
    println!(
        "| rows/page | embedding page | append {} | table | month+tenant | tenant | full |",
        rows_label(rows)
    );
    println!("|---|---|---|---|---|---|---|");
    let sweep = args.rows_per_page.iter().flat_map(|r| {
        args.embedding_page_bytes
            .iter()
            .map(move |b| (r.get(), b.get()))
    });
    for (rows_per_page, emb_page) in sweep {
        let dir = tempfile::tempdir_in(&args.dir)
            .with_context(|| format!("cannot create a directory in {}", args.dir.display()))?;
        let config = CatalogConfig::local(dir.path());
        let t = SalesHistory::ensure(&config, "sweep").await?;
        table_props::set_properties(
            &t,
            dir.path(),
            vec![
                (
                    "write.parquet.page-row-limit".into(),
                    rows_per_page.to_string(),
                ),
                (EMBEDDING_PAGE_SIZE_PROPERTY.into(), emb_page.to_string()),
            ],
        )
        .await?;
        let records = SampleGenerator::new(SampleConfig::default()).take_records(rows);
        let s = Instant::now();
        t.append(records).await?;
        let append = s.elapsed();
        let t = t.freshness(Freshness::Cached);
        let mut res = Vec::new();
        for f in [
            ScanFilter::new().year_month(2025, 3).tenant("tenant-001"),
            ScanFilter::new().tenant("tenant-001"),
            ScanFilter::new(),
        ] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..runs {
                let s = Instant::now();
                let (_, m) = t.scan().filter(f.clone()).to_batches_with_metrics().await?;
                times.push(s.elapsed().as_secs_f64() * 1e3);
                bytes = m.bytes_read;
            }
            res.push(format!(
                "{:.1} ms / {:.1} MB",
                stats::upper_median(&times),
                bytes as f64 / 1e6
            ));
        }
        let size: u64 = t
            .scan()
            .plan()
            .await?
            .files
            .iter()
            .map(|f| f.size_bytes)
            .sum();
        println!(
            "| {rows_per_page} | {} KiB | {:.0} ms | {:.1} MB | {} | {} | {} |",
            emb_page / 1024,
            append.as_secs_f64() * 1e3,
            size as f64 / 1e6,
            res[0],
            res[1],
            res[2]
        );
    }
    Ok(())
}
