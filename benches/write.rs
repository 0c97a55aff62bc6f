//! Criterion benches of the write path: conversion, validation and append on the local
//! catalog (`cargo bench --bench write`). `examples/bench_write.rs` is the fuller harness
//! (baselines, Python, commit latency, RSS).

use std::hint::black_box;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, Error, SaleRecord, SalesHistory, TableOptions};

const DIMENSION: usize = 1024;
const SIZES: [usize; 2] = [1_000, 10_000];

fn records(rows: usize, embeddings: bool) -> Vec<SaleRecord> {
    let dim = if embeddings { DIMENSION } else { 0 };
    SampleGenerator::new(SampleConfig::default().embedding_dimension(dim)).take_records(rows)
}

fn label(embeddings: bool) -> &'static str {
    if embeddings {
        "embeddings"
    } else {
        "no-embeddings"
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn fresh_table(dir: &std::path::Path) -> SalesHistory {
    SalesHistory::ensure_with(&CatalogConfig::local(dir), "bench", TableOptions::default())
        .await
        .expect("local table")
}

fn conversion(c: &mut Criterion) {
    let mut g = c.benchmark_group("conversion");
    g.sample_size(10);
    for embeddings in [true, false] {
        for rows in SIZES {
            let recs = records(rows, embeddings);
            g.throughput(Throughput::Elements(rows as u64));
            g.bench_with_input(
                BenchmarkId::new(label(embeddings), rows),
                &recs,
                |b, recs| b.iter(|| SaleRecord::to_record_batch(black_box(recs)).expect("convert")),
            );
        }
    }
    g.finish();
}

/// Validation alone: an append whose last value is invalid runs every check and writes nothing.
fn validation(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let table = rt.block_on(fresh_table(dir.path()));
    let mut g = c.benchmark_group("validation");
    g.sample_size(10);
    for embeddings in [true, false] {
        for rows in SIZES {
            let mut recs = records(rows, embeddings);
            let batch = SaleRecord::to_record_batch(&recs[..rows - 1]).expect("convert");
            let mut last = recs.pop().expect("rows");
            last.embedding = Some(vec![f64::NAN; DIMENSION]);
            let bad = SaleRecord::to_record_batch(&[last]).expect("convert");
            g.throughput(Throughput::Elements(rows as u64));
            g.bench_function(BenchmarkId::new(label(embeddings), rows), |b| {
                b.to_async(&rt).iter(|| async {
                    let input: Vec<RecordBatch> = vec![batch.clone(), bad.clone()];
                    match table.append_batches(input).await {
                        Err(Error::InvalidValue { .. }) => {}
                        other => panic!("expected a validation failure, got {other:?}"),
                    }
                })
            });
        }
    }
    g.finish();
}

/// Append end to end (a fresh table each time, untimed), commit included.
fn append(c: &mut Criterion) {
    let rt = runtime();
    let root = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let mut n = 0usize;
    for embeddings in [true, false] {
        for rows in SIZES {
            let batch = SaleRecord::to_record_batch(&records(rows, embeddings)).expect("convert");
            g.throughput(Throughput::Bytes(batch.get_array_memory_size() as u64));
            g.bench_function(BenchmarkId::new(label(embeddings), rows), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let batch = batch.clone();
                    let root = root.path().to_path_buf();
                    n += 1;
                    let run = n;
                    async move {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            let dir = root.join(format!("{run}-{i}"));
                            let table = fresh_table(&dir).await;
                            let start = Instant::now();
                            table
                                .append_batches(vec![batch.clone()])
                                .await
                                .expect("append");
                            total += start.elapsed();
                            let _ = std::fs::remove_dir_all(&dir);
                        }
                        total
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, conversion, validation, append);
criterion_main!(benches);
