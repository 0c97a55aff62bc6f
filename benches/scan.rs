//! Criterion benches of scans (`cargo bench --bench scan`): a full scan and a one-tenant,
//! one-month filtered scan of a table holding 20,000 sample rows with 1024-dim embeddings
//! over 24 months (24 files).

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, SaleRecord, SalesHistory, TableOptions};

const ROWS: usize = 20_000;

fn scans(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let records = SampleGenerator::new(SampleConfig::default()).take_records(ROWS);
    let arrow_bytes = SaleRecord::to_record_batch(&records)
        .expect("convert")
        .get_array_memory_size();
    let table = rt.block_on(async {
        let config = CatalogConfig::local(dir.path());
        let table = SalesHistory::ensure_with(&config, "bench", TableOptions::default())
            .await
            .expect("local table");
        table.append(records).await.expect("append");
        table
    });
    let (start, end) = (
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap(),
    );
    let filtered_rows = rt.block_on(async {
        let t = &table;
        t.scan()
            .tenant("tenant-001")
            .sold_between(start, end)
            .count()
            .await
            .expect("count")
    });

    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(arrow_bytes as u64));
    g.bench_function("full", |b| {
        b.to_async(&rt).iter(|| async {
            let batches = table.scan().to_batches().await.expect("scan");
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), ROWS);
            black_box(batches)
        })
    });
    g.throughput(Throughput::Elements(filtered_rows));
    g.bench_function("tenant_and_month", |b| {
        b.to_async(&rt).iter(|| async {
            let batches = table
                .scan()
                .tenant("tenant-001")
                .sold_between(start, end)
                .to_batches()
                .await
                .expect("scan");
            black_box(batches)
        })
    });
    let tenant_rows = rt.block_on(async {
        let t = &table;
        t.scan().tenant("tenant-001").count().await.expect("count")
    });
    g.throughput(Throughput::Elements(tenant_rows));
    g.bench_function("tenant", |b| {
        b.to_async(&rt).iter(|| async {
            let batches = table
                .for_tenant("tenant-001")
                .expect("scope")
                .scan()
                .to_batches()
                .await
                .expect("scan");
            black_box(batches)
        })
    });
    g.finish();
}

criterion_group!(benches, scans);
criterion_main!(benches);
