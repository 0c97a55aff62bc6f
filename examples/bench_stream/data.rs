//! The rows the producers push, one core's limits for a flush-sized batch, and what a fresh
//! handle finds in a table after a run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use parquet::arrow::ArrowWriter;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, EmbeddingEncoding, SaleRecord, SalesHistory, SnapshotInfo};

use crate::host::tree_stats;
use crate::raw_parquet;
use crate::stats::median;
use crate::{DIMENSION, Res, STAGE};

/// `n` distinct sample rows with 1024-dim embeddings in `months` months.
pub fn pool(seed: u64, months: u32, n: usize) -> Vec<SaleRecord> {
    let config = SampleConfig::default()
        .seed(seed)
        .months(months)
        .embedding_dimension(DIMENSION);
    SampleGenerator::new(config).take_records(n)
}

/// Arrow bytes per row of the pool (buffers as used).
pub fn arrow_bytes_per_row(pool: &[SaleRecord]) -> Res<f64> {
    let batch = SaleRecord::to_record_batch(pool)?;
    let bytes = raw_parquet::arrow_bytes(std::slice::from_ref(&batch));
    Ok(bytes as f64 / pool.len().max(1) as f64)
}

/// One core's limits for a flush of `copies` × the pool: `SaleRecord` → Arrow conversion alone
/// and the raw Parquet encoder (`ArrowWriter` with the table's settings, one file, fsynced),
/// in rows/s (medians of `reps`).
pub fn single_core_limits(
    pool: &[SaleRecord],
    dir: &Path,
    copies: usize,
    reps: usize,
) -> Res<(f64, f64)> {
    // The table's writer settings for a table with defaults.
    let props = raw_parquet::table_props(EmbeddingEncoding::ByteStreamSplit)
        .set_max_row_group_bytes(Some(128 << 20))
        .build();
    std::fs::create_dir_all(dir)?;
    let rows = pool.len() * copies;
    let (mut convert, mut write) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        let batches: Vec<_> = (0..copies)
            .map(|_| SaleRecord::to_record_batch(pool))
            .collect::<Result<_, _>>()?;
        convert.push(rows as f64 / start.elapsed().as_secs_f64());
        let path = dir.join("raw.parquet");
        let start = Instant::now();
        let file = std::fs::File::create(&path)?;
        let mut w =
            ArrowWriter::try_new(file.try_clone()?, batches[0].schema(), Some(props.clone()))?;
        for b in &batches {
            raw_parquet::write_sliced(&mut w, b)?;
        }
        w.close()?;
        file.sync_all()?;
        write.push(rows as f64 / start.elapsed().as_secs_f64());
        std::fs::remove_file(&path)?;
    }
    Ok((median(&convert), median(&write)))
}

/// What a fresh handle finds in a local table after a run.
pub struct Inspect {
    pub table_rows: u64,
    /// A fresh handle's `scan().count()` (reload + manifest-only planning), median of 3.
    pub count_s: f64,
    pub snapshots: Vec<SnapshotInfo>,
    /// Bytes of the table's Parquet files.
    pub written: u64,
    /// Files of the table that are not Parquet (metadata).
    pub metadata_files: u64,
    /// Size of the newest (largest) `*.metadata.json`: rewritten by every commit.
    pub metadata_json_bytes: u64,
}

pub async fn inspect(config: &CatalogConfig) -> Res<Inspect> {
    let fresh = SalesHistory::open(config, STAGE).await?;
    let mut table_rows = 0;
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        table_rows = fresh.scan().count().await?;
        times.push(start.elapsed().as_secs_f64());
    }
    let snapshots = fresh.snapshots().await?;
    let files = table_dir(&fresh)
        .map(|d| tree_stats(&d))
        .unwrap_or_default();
    let (written, metadata_files) = (files.parquet_bytes, files.other_files);
    let metadata_json_bytes = table_dir(&fresh)
        .and_then(|d| std::fs::read_dir(d.join("metadata")).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".metadata.json"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    Ok(Inspect {
        table_rows,
        count_s: median(&times),
        snapshots,
        written,
        metadata_files,
        metadata_json_bytes,
    })
}

fn table_dir(table: &SalesHistory) -> Option<PathBuf> {
    table.location().strip_prefix("file://").map(PathBuf::from)
}
