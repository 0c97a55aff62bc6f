//! Page-size sweep: the same 50k rows (1024-dim) written with 32, 64, 128, 256 and 1024 rows
//! per page (`write.parquet.page-row-limit`), then the append time, the table's bytes and the
//! month + tenant, tenant and full scans (medians of 5, bytes read) — how
//! `DEFAULT_PAGE_ROW_LIMIT` was chosen.
//!
//! ```text
//! cargo run --release --example bench_pages
//! ```
//!
//! The property is set through iceberg's own transaction on a raw SQL catalog (the crate's API
//! does not expose arbitrary table properties).

use iceberg::CatalogBuilder;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, Freshness, SalesHistory, ScanFilter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("| rows/page | append 50k | table | month+tenant | tenant | full |");
    println!("|---|---|---|---|---|---|");
    for rows_per_page in [32usize, 64, 128, 256, 1024] {
        let dir = tempfile::tempdir_in("/tmp")?;
        let config = CatalogConfig::local(dir.path());
        let t = SalesHistory::ensure(&config, "sweep").await?;
        let root = std::fs::canonicalize(dir.path())?;
        let root = root.to_str().unwrap();
        let catalog = iceberg_catalog_sql::SqlCatalogBuilder::default()
            .with_storage_factory(Arc::new(
                iceberg_storage_opendal::OpenDalResolvingStorageFactory::new(),
            ))
            .load(
                sales_history::LOCAL_CATALOG_NAME,
                HashMap::from([
                    (
                        "uri".to_string(),
                        format!("sqlite://{root}/catalog.db?mode=rwc"),
                    ),
                    ("warehouse".to_string(), format!("file://{root}")),
                    ("sql_bind_style".to_string(), "QMark".to_string()),
                ]),
            )
            .await?;
        let tx = Transaction::new(&t.iceberg_table());
        let tx = tx
            .update_table_properties()
            .set(
                "write.parquet.page-row-limit".into(),
                rows_per_page.to_string(),
            )
            .apply(tx)?;
        tx.commit(&catalog).await?;
        t.refresh().await?;
        let records = SampleGenerator::new(SampleConfig::default()).take_records(50_000);
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
            for _ in 0..5 {
                let s = Instant::now();
                let (_, m) = t.scan().filter(f.clone()).to_batches_with_metrics().await?;
                times.push(s.elapsed().as_secs_f64() * 1e3);
                bytes = m.bytes_read;
            }
            times.sort_by(f64::total_cmp);
            res.push(format!("{:.1} ms / {:.1} MB", times[2], bytes as f64 / 1e6));
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
            "| {rows_per_page} | {:.0} ms | {:.1} MB | {} | {} | {} |",
            append.as_secs_f64() * 1e3,
            size as f64 / 1e6,
            res[0],
            res[1],
            res[2]
        );
    }
    Ok(())
}
