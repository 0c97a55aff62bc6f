//! The handle's kept live files, pruned per filter, plan the same files as iceberg's planner:
//! on a table under each layout, and on one whose layout evolved (files of two specs).

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};

use crate::record::{Price, SaleRecord};
use crate::{CatalogConfig, Layout, SalesHistory, ScanFilter, TableOptions};

const DIM: usize = 4;

/// 12 tenants × 6 months × 3 categories, prices spread by tenant.
fn rows(seed: usize) -> Vec<SaleRecord> {
    (0..432)
        .map(|i| {
            let tenant = format!("tenant-{:03}", i % 12);
            let month = 1 + (i / 12) % 6;
            let date = Utc
                .with_ymd_and_hms(2025, month as u32, 1 + (i % 27) as u32, 12, 0, 0)
                .single()
                .unwrap_or_default();
            let price = Price::from_cents(1_000 * (1 + (i % 12) as i64) + (i % 7) as i64)
                .unwrap_or(Price::ZERO);
            SaleRecord::builder(format!("p{seed}-{i}"), tenant, price, date)
                .category(["shoes", "bags", "coats"][i % 3])
                .brand(format!("brand-{}", i % 5))
                .embedding(vec![i as f64; DIM])
                .build()
                .unwrap_or_else(|e| panic!("row {i}: {e}"))
        })
        .collect()
}

fn filters() -> Vec<(&'static str, ScanFilter)> {
    let jan = Utc.with_ymd_and_hms(2025, 1, 15, 0, 0, 0).unwrap();
    let mar = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
    let price = |c: i64| Price::from_cents(c).unwrap();
    vec![
        ("everything", ScanFilter::new()),
        ("one tenant", ScanFilter::new().tenant("tenant-003")),
        (
            "two tenants",
            ScanFilter::new().tenants(["tenant-001", "tenant-010"]),
        ),
        ("unknown tenant", ScanFilter::new().tenant("tenant-999")),
        ("one month", ScanFilter::new().year_month(2025, 4)),
        (
            "tenant in a month",
            ScanFilter::new().tenant("tenant-007").year_month(2025, 2),
        ),
        ("half-open range", ScanFilter::new().sold_between(jan, mar)),
        (
            "price range",
            ScanFilter::new().price_range(price(3_000)..price(5_000)),
        ),
        ("category", ScanFilter::new().category("bags")),
        ("outside every month", ScanFilter::new().year(2019)),
    ]
}

/// A table named `name` under `layout`, in a temporary directory (kept as long as the guard),
/// holding [`rows`]`(0)`, and its catalog.
async fn loaded(name: &str, layout: Layout) -> (tempfile::TempDir, CatalogConfig, SalesHistory) {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let table = SalesHistory::ensure_with(
        &config,
        name,
        TableOptions::default()
            .embedding_dimension(DIM)
            .layout(layout),
    )
    .await
    .unwrap();
    table.append(rows(0)).await.unwrap();
    (dir, config, table)
}

/// The footers `table` keeps of the files `scan` plans, with their paths (each must be kept).
async fn kept_footers(
    table: &SalesHistory,
    scan: crate::Scan,
) -> Vec<(
    String,
    std::sync::Arc<parquet::file::metadata::ParquetMetaData>,
)> {
    let plan = scan.plan().await.unwrap();
    plan.files
        .into_iter()
        .map(|f| {
            let kept = table.shared.footers.get(f.path.as_str());
            let kept = kept.unwrap_or_else(|| panic!("no footer kept for {}", f.path));
            (f.path, kept.metadata)
        })
        .collect()
}

async fn planned(table: &SalesHistory, filter: &ScanFilter, iceberg: bool) -> BTreeSet<String> {
    let plan = table
        .scan()
        .filter(filter.clone())
        .iceberg_planner(iceberg)
        .plan()
        .await
        .unwrap_or_else(|e| panic!("plan: {e}"));
    plan.files.into_iter().map(|f| f.path).collect()
}

/// Same files from both planners for every filter; returns how many filters pruned a file.
async fn same_plans(table: &SalesHistory, what: &str) -> usize {
    let all = planned(table, &ScanFilter::new(), true).await.len();
    let mut pruning = 0;
    for (name, filter) in filters() {
        let ours = planned(table, &filter, false).await;
        let theirs = planned(table, &filter, true).await;
        assert_eq!(ours, theirs, "{what}: {name}");
        // The rows agree too (read through the kept plan).
        let n = table.scan().filter(filter.clone()).count().await.unwrap();
        let m = table
            .scan()
            .filter(filter)
            .iceberg_planner(true)
            .count()
            .await
            .unwrap();
        assert_eq!(n, m, "{what}: {name}: rows");
        if ours.len() < all {
            pruning += 1;
        }
    }
    pruning
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_live_files_plan_what_icebergs_planner_plans() {
    for layout in [
        Layout::Month,
        Layout::TenantMonth,
        Layout::tenant_buckets(4).unwrap(),
    ] {
        let (_dir, _, table) = loaded("plans", layout).await;
        table.append(rows(1)).await.unwrap();
        let pruning = same_plans(&table, &layout.to_string()).await;
        // Bucket files mix tenants, so only the bucket partition value tells them apart.
        assert!(pruning >= 5, "{layout}: {pruning} filters pruned a file");
        if let Layout::TenantBucketMonth { .. } = layout {
            let plan = table.scan().tenant("tenant-003").plan().await.unwrap();
            let all = table.scan().plan().await.unwrap();
            assert!(
                plan.files.len() * 2 < all.files.len(),
                "{} of {} files",
                plan.files.len(),
                all.files.len()
            );
        }
    }
    // A table whose layout evolved: files of two specs, each pruned under its own.
    let (_dir, _, table) = loaded("evolved", Layout::Month).await;
    table
        .evolve_layout(Layout::tenant_buckets(4).unwrap())
        .await
        .unwrap();
    table.append(rows(1)).await.unwrap();
    let plan = table.scan().plan().await.unwrap();
    let specs: BTreeSet<Option<i32>> = plan.files.iter().map(|f| f.partition_spec_id).collect();
    assert_eq!(specs, BTreeSet::from([Some(0), Some(1)]));
    let pruning = same_plans(&table, "evolved").await;
    assert!(pruning >= 5, "evolved: {pruning} filters pruned a file");
}

/// Manifests (not manifest lists) in a table's metadata directory.
fn manifests(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".avro") && !name.starts_with("snap-") {
                found.push(p);
            }
        }
    }
    found
}

/// The plan after a commit reads only the manifest the commit wrote: the earlier ones are
/// kept (moved away on disk, the handle still plans; a fresh handle cannot), once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_after_a_commit_reads_only_the_new_manifest() {
    let (dir, config, table) = loaded("kept", Layout::Month).await;
    let first = table.scan().plan().await.unwrap().files.len();
    let cache = &table.shared.live_files;
    let kept = cache.bytes();
    assert!(kept > 0);
    let old = manifests(dir.path());
    assert!(!old.is_empty());
    table.append(rows(1)).await.unwrap();
    for m in &old {
        std::fs::rename(m, m.with_extension("away")).unwrap();
    }
    let second = table.scan().plan().await;
    let fresh = SalesHistory::open(&config, "kept").await.unwrap();
    let fresh_plan = fresh.scan().plan().await;
    for m in &old {
        std::fs::rename(m.with_extension("away"), m).unwrap();
    }
    assert_eq!(second.unwrap().files.len(), first * 2);
    assert!(fresh_plan.is_err(), "the moved manifests were needed");
    // The first manifest's entries are held once, not once per snapshot.
    let grown = cache.bytes() - kept;
    assert!(
        grown <= kept + kept / 2,
        "kept {kept} bytes, then {grown} more"
    );
}

/// A filtered scan keeps the footers (and page indexes) it parsed: the same scan again reads
/// only column data, and returns the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_scan_again_reads_no_footer() {
    let (_dir, config, table) = loaded("footers", Layout::Month).await;
    let scan = || table.scan().filter(ScanFilter::new().tenant("tenant-003"));
    let (first, m1) = scan().to_batches_with_metrics().await.unwrap();
    let (again, m2) = scan().to_batches_with_metrics().await.unwrap();
    let ids = |batches: &[arrow_array::RecordBatch]| {
        use arrow_array::cast::AsArray;
        let mut ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(ids(&first).len(), 36);
    assert_eq!(m1.files_read, m2.files_read);
    // The first scan read each footer, and with it the page index (in the same tail of
    // these small files, parsed for this filter); the second reads neither.
    assert!(
        m2.requests + m1.files_read == m1.requests && m2.bytes_read < m1.bytes_read,
        "first: {} requests, {} bytes; again: {} requests, {} bytes",
        m1.requests,
        m1.bytes_read,
        m2.requests,
        m2.bytes_read
    );
    // A fresh handle reads them again.
    let fresh = SalesHistory::open(&config, "footers").await.unwrap();
    let (_, m3) = fresh
        .scan()
        .filter(ScanFilter::new().tenant("tenant-003"))
        .to_batches_with_metrics()
        .await
        .unwrap();
    assert_eq!(m3.requests, m1.requests);
}

/// A small file's page indexes lie in the tail read for its footer: they are parsed from it
/// (no read of their own) and kept with the footer, so an unfiltered scan finds each column's
/// pages from the offset index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_files_page_index_comes_with_its_footer() {
    let (_dir, _, table) = loaded("tails", Layout::TenantMonth).await;
    let (first, m1) = table.scan().to_batches_with_metrics().await.unwrap();
    let (again, m2) = table.scan().to_batches_with_metrics().await.unwrap();
    let ids = |batches: &[arrow_array::RecordBatch]| {
        let mut ids: Vec<String> = batches
            .iter()
            .flat_map(|b| crate::batch::batch_to_records(b).unwrap())
            .map(|r| r.product_id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&first).len(), 432);
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(m1.files_read, 72);
    // One read more per file the first time: the tail with the footer and the indexes.
    assert_eq!(m1.requests, m2.requests + m1.files_read, "{m1:?} {m2:?}");
    let kept = kept_footers(&table, table.scan()).await;
    assert_eq!(kept.len(), 72);
    for (path, kept) in kept {
        // The offset index alone: no filter needed the column index.
        assert!(kept.offset_index().is_some(), "{path}");
        assert!(kept.column_index().is_none(), "{path}");
    }
    // Without the embedding, this crate's small-file decoder reads them, page by page from
    // the offset index.
    let narrow: Vec<crate::Column> = crate::Column::ALL
        .into_iter()
        .filter(|c| *c != crate::Column::Embedding)
        .collect();
    let (batches, m3) = table
        .scan()
        .select(narrow.clone())
        .to_batches_with_metrics()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 432);
    assert_eq!(m3.small_file_fast_reads, 72, "{m3:?}");
    assert_eq!(m3.tenant_from_partition, 72, "{m3:?}");
    // Files of 6 rows gathered into batches of at most 10 (two files, then the next batch),
    // never past the batch size.
    let small = table
        .scan()
        .select(narrow.clone())
        .batch_size(10)
        .to_batches()
        .await
        .unwrap();
    assert_eq!(small.iter().map(|b| b.num_rows()).sum::<usize>(), 432);
    assert!(small.iter().all(|b| b.num_rows() <= 10), "{:?}", {
        small.iter().map(|b| b.num_rows()).collect::<Vec<_>>()
    });
    // A tenant filter on these files is answered by their statistics (every row matches):
    // no page index read, and the kept footers stay without the column index.
    let tenant = || table.scan().filter(ScanFilter::new().tenant("tenant-003"));
    let (_, t1) = tenant().to_batches_with_metrics().await.unwrap();
    assert_eq!((t1.files_read, t1.rows_returned), (6, 36));
    assert_eq!(t1.requests, m2.requests / 12, "{t1:?} {m2:?}");
    for (path, kept) in kept_footers(&table, tenant()).await {
        assert!(kept.column_index().is_none(), "{path}");
    }
}

/// A footer kept with the offset index alone (an unfiltered scan) gains the column index on
/// the first scan whose filter uses it, read once: the next such scan reads no index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_footer_gains_the_column_index_once() {
    let (_dir, _, table) = loaded("upgrade", Layout::Month).await;
    let (_, all) = table.scan().to_batches_with_metrics().await.unwrap();
    assert_eq!(all.files_read, 6);
    let tenant = || table.scan().filter(ScanFilter::new().tenant("tenant-003"));
    for (path, kept) in kept_footers(&table, tenant()).await {
        assert!(kept.offset_index().is_some(), "{path}");
        assert!(kept.column_index().is_none(), "{path}");
    }
    let (first, t1) = tenant().to_batches_with_metrics().await.unwrap();
    let (again, t2) = tenant().to_batches_with_metrics().await.unwrap();
    assert_eq!(first.iter().map(|b| b.num_rows()).sum::<usize>(), 36);
    assert_eq!(again.iter().map(|b| b.num_rows()).sum::<usize>(), 36);
    assert_eq!(t1.files_read, 6);
    // One index read per file the first time, none after.
    assert_eq!(t1.requests, t2.requests + t1.files_read, "{t1:?} {t2:?}");
    for (path, kept) in kept_footers(&table, tenant()).await {
        assert!(kept.column_index().is_some(), "{path}");
    }
}

/// A scan of one tenant in one month on a tenant layout reads one small file with its
/// embeddings: the embedding column through its own decoder, the other columns through the
/// small-file decoder (no dictionaries under 256 rows), the same batches as parquet-rs's
/// reader gives — whole, and for a projection with `embedding` among other columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_files_other_columns_come_with_its_embeddings() {
    let (_dir, _, table) = loaded("with_embeddings", Layout::TenantMonth).await;
    let filter = ScanFilter::new().tenant("tenant-007").year_month(2025, 2);
    // `embedding` last of the columns (output is in table order), in the middle (all), and
    // first; batches of 1,024 rows and of 4.
    let last = [
        crate::Column::SoldPrice,
        crate::Column::Embedding,
        crate::Column::ProductId,
    ];
    let first = [crate::Column::Embedding, crate::Column::Description];
    let cases = [
        (None, 1024),
        (Some(&last[..]), 1024),
        (Some(&first[..]), 1024),
        (None, 4),
    ];
    for (columns, batch_size) in cases {
        let scan = |decoder| {
            let scan = table
                .scan()
                .filter(filter.clone())
                .batch_size(batch_size)
                .embedding_decoder(decoder);
            match columns {
                Some(c) => scan.select(c.iter().copied()),
                None => scan,
            }
        };
        let (ours, m) = scan(crate::EmbeddingDecoder::Auto)
            .to_batches_with_metrics()
            .await
            .unwrap();
        let (theirs, t) = scan(crate::EmbeddingDecoder::Parquet)
            .to_batches_with_metrics()
            .await
            .unwrap();
        assert_eq!(ours, theirs, "{columns:?}, batches of {batch_size}");
        assert_eq!(ours.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
        assert_eq!(ours.len(), 6usize.div_ceil(batch_size));
        assert_eq!(
            ours[0].num_columns(),
            columns.map_or(crate::Column::ALL.len(), |c| c.len())
        );
        assert_eq!(
            (
                m.files_read,
                m.embedding_fast_reads,
                m.small_file_fast_reads
            ),
            (1, 1, 1),
            "{m:?}"
        );
        assert_eq!((t.embedding_fast_reads, t.small_file_fast_reads), (0, 0));
        // `tenant_id` from the file's partition when it is among the columns.
        let with_tenant = columns.is_none_or(|c| c.contains(&crate::Column::TenantId));
        assert_eq!(m.tenant_from_partition, u64::from(with_tenant), "{m:?}");
    }
    // Only `embedding`: nothing for the small-file decoder.
    let (only, m) = table
        .scan()
        .filter(filter.clone())
        .select([crate::Column::Embedding])
        .to_batches_with_metrics()
        .await
        .unwrap();
    assert_eq!(only.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
    assert_eq!((m.embedding_fast_reads, m.small_file_fast_reads), (1, 0));
}

/// Each planned file of an `identity(tenant_id)` spec carries its partition's tenant (the
/// small-file decoder fills `tenant_id` with it); files of the month spec and of a bucket
/// spec carry none — in one scan of a table evolved from the month layout. iceberg's
/// planner gives no file its spec: none carries one there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_files_carry_their_partitions_tenant() {
    let tenants = |planned: &super::Planned| -> Vec<(String, Option<String>)> {
        planned
            .tasks
            .iter()
            .map(|t| (t.path.clone(), t.tenant.as_deref().map(str::to_string)))
            .collect()
    };
    let (_dir, _, table) = loaded("constants", Layout::Month).await;
    table.evolve_layout(Layout::TenantMonth).await.unwrap();
    table.append(rows(1)).await.unwrap();
    let plan = |iceberg| table.scan().iceberg_planner(iceberg);
    let all = || crate::Column::ALL.to_vec();
    let files = tenants(&plan(false).plan_tasks(all()).await.unwrap());
    let (with, without): (Vec<_>, Vec<_>) = files.iter().partition(|(_, t)| t.is_some());
    assert_eq!((with.len(), without.len()), (72, 6), "{files:?}");
    for (path, tenant) in with {
        let tenant = tenant.as_deref().unwrap();
        assert!(path.contains(&format!("/tenant_id={tenant}/")), "{path}");
    }
    for (path, _) in without {
        assert!(!path.contains("/tenant_id="), "{path}");
    }
    let theirs = tenants(&plan(true).plan_tasks(all()).await.unwrap());
    assert_eq!(theirs.len(), 78);
    assert!(theirs.iter().all(|(_, t)| t.is_none()));
    // The tenant column read through the constant is the file's: a whole scan of the narrow
    // columns equals parquet-rs's reading of them (which reads `tenant_id` from the files).
    let narrow: Vec<crate::Column> = crate::Column::ALL
        .into_iter()
        .filter(|c| *c != crate::Column::Embedding)
        .collect();
    let scan = |decoder| {
        table
            .scan()
            .select(narrow.clone())
            .embedding_decoder(decoder)
            .to_batches_with_metrics()
    };
    let (ours, m) = scan(crate::EmbeddingDecoder::Auto).await.unwrap();
    let (theirs, t) = scan(crate::EmbeddingDecoder::Parquet).await.unwrap();
    // Every file through the small-file decoder; the 72 of the tenant spec with the tenant
    // from their partition.
    assert_eq!(
        (m.small_file_fast_reads, m.tenant_from_partition),
        (78, 72),
        "{m:?}"
    );
    assert_eq!(
        (t.small_file_fast_reads, t.tenant_from_partition),
        (0, 0),
        "{t:?}"
    );
    let sorted = |batches: &[arrow_array::RecordBatch]| {
        let batch = arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap();
        let mut rows: Vec<String> = (0..batch.num_rows())
            .map(|i| format!("{:?}", batch.slice(i, 1)))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(sorted(&ours), sorted(&theirs));

    let (_dir, _, buckets) = loaded("no_constants", Layout::tenant_buckets(4).unwrap()).await;
    let planned = buckets
        .scan()
        .plan_tasks(crate::Column::ALL.to_vec())
        .await
        .unwrap();
    assert!(!planned.tasks.is_empty());
    assert!(planned.tasks.iter().all(|t| t.tenant.is_none()));
}
