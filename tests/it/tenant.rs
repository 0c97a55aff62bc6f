//! Tenant scopes cannot leak (every entry point, including SQL that names other tenants, the
//! base table or files), and files are written in the table's sort order.

use sales_history::{Error, SaleRecord, SalesHistory, ScanFilter};

use crate::support::{DIM, local_table, sample};

fn of_tenant(records: Vec<SaleRecord>, tenant: &str) -> Vec<SaleRecord> {
    records
        .into_iter()
        .map(|mut r| {
            r.tenant_id = tenant.to_string();
            r
        })
        .collect()
}

async fn two_tenants() -> (crate::support::LocalTable, usize, usize) {
    let t = local_table(DIM).await;
    t.table
        .append(of_tenant(sample(40, DIM, 1), "tenant-a"))
        .await
        .unwrap();
    t.table
        .append(of_tenant(sample(30, DIM, 2), "tenant-b"))
        .await
        .unwrap();
    (t, 40, 30)
}

fn tenants(records: &[SaleRecord]) -> Vec<&str> {
    let mut t: Vec<&str> = records.iter().map(|r| r.tenant_id.as_str()).collect();
    t.sort();
    t.dedup();
    t
}

#[tokio::test]
async fn a_scope_reads_only_its_tenant_and_cannot_be_widened() {
    let (t, a, _b) = two_tenants().await;
    let scope = t.table.for_tenant("tenant-a").unwrap();
    assert_eq!(scope.tenant_id(), "tenant-a");
    let rows = scope.scan().to_records().await.unwrap();
    assert_eq!(rows.len(), a);
    assert_eq!(tenants(&rows), ["tenant-a"]);
    assert_eq!(scope.count().await.unwrap(), a as u64);

    // Adding another tenant narrows to nothing; a filter naming both keeps only ours.
    assert_eq!(scope.scan().tenant("tenant-b").count().await.unwrap(), 0);
    let both = ScanFilter::new().tenants(["tenant-a", "tenant-b"]);
    let rows = scope.scan().filter(both).to_records().await.unwrap();
    assert_eq!(tenants(&rows), ["tenant-a"]);
    assert_eq!(rows.len(), a);
    // Time travel and projections stay inside the scope too.
    let first = t.table.snapshots().await.unwrap()[0].snapshot_id;
    assert_eq!(
        scope.scan().snapshot_id(first).count().await.unwrap(),
        a as u64
    );
    let b_scope = t.table.for_tenant("tenant-b").unwrap();
    assert_eq!(b_scope.scan().snapshot_id(first).count().await.unwrap(), 0);

    // Similarity: only the scope's rows, whatever filter is set on the builder.
    let query = rows[0].embedding.clone().expect("embedding");
    let near = scope
        .similar_to(query.clone(), 100)
        .filter(ScanFilter::new().tenant("tenant-b"))
        .await
        .unwrap();
    assert!(near.is_empty(), "a filter on the builder widened the scope");
    let near = scope.similar_to(query, 100).await.unwrap();
    assert!(!near.is_empty());
    assert!(near.iter().all(|s| s.record.tenant_id == "tenant-a"));

    assert!(matches!(
        t.table.for_tenant("  "),
        Err(Error::Config { ref key, .. }) if key == "tenant_id"
    ));
}

#[tokio::test]
async fn a_scope_refuses_rows_of_another_tenant_and_writes_nothing() {
    let (t, a, b) = two_tenants().await;
    let scope = t.table.for_tenant("tenant-a").unwrap();
    let before = t.table.current_snapshot_id();
    let mut rows = of_tenant(sample(6, DIM, 3), "tenant-a");
    rows[3].tenant_id = "tenant-b".into();
    let err = scope.append(rows.clone()).await.expect_err("foreign row");
    assert!(
        matches!(
            err,
            Error::InvalidValue {
                column: sales_history::Column::TenantId,
                row: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("tenant-b"), "{err}");

    let batch = SaleRecord::to_record_batch(&rows).unwrap();
    let err = scope
        .append_batches(vec![batch.clone()])
        .await
        .expect_err("foreign row in a batch");
    assert!(
        matches!(err, Error::InvalidValue { row: Some(3), .. }),
        "{err:?}"
    );

    let appender = scope.appender().start().unwrap();
    let err = appender.push(rows[3].clone()).await.expect_err("push");
    assert!(
        matches!(
            err,
            Error::InvalidValue {
                column: sales_history::Column::TenantId,
                ..
            }
        ),
        "{err:?}"
    );
    let err = appender.push_batch(batch).await.expect_err("push_batch");
    assert!(
        matches!(err, Error::InvalidValue { row: Some(3), .. }),
        "{err:?}"
    );
    appender.push(rows[0].clone()).await.unwrap();
    appender.close().await.unwrap();

    // Only the one valid row landed; tenant-b is untouched.
    t.table.refresh().await.unwrap();
    assert_ne!(t.table.current_snapshot_id(), before);
    assert_eq!(scope.count().await.unwrap(), a as u64 + 1);
    let b_scope = t.table.for_tenant("tenant-b").unwrap();
    assert_eq!(b_scope.count().await.unwrap(), b as u64);
    scope
        .append(of_tenant(sample(2, DIM, 4), "tenant-a"))
        .await
        .expect("a scope appends its own rows");
}

#[cfg(feature = "sql")]
#[tokio::test]
async fn scoped_sql_is_a_view_of_the_tenant_and_nothing_else() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let (t, a, _b) = two_tenants().await;
    let scope = t.table.for_tenant("tenant-a").unwrap();
    let count = |batches: Vec<arrow_array::RecordBatch>| -> i64 {
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    };
    assert_eq!(
        count(
            scope
                .sql("SELECT COUNT(*) FROM sales_history")
                .await
                .unwrap()
        ),
        a as i64
    );
    assert_eq!(
        count(
            scope
                .sql("SELECT COUNT(*) FROM sales_history WHERE tenant_id = 'tenant-b' OR 1 = 1")
                .await
                .unwrap()
        ),
        a as i64
    );
    let distinct = scope
        .sql("SELECT DISTINCT tenant_id FROM sales_history")
        .await
        .unwrap();
    let names: Vec<String> = distinct
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, ["tenant-a"]);
    // The whole table under its full name, raw files, DDL, DML: all refused.
    let file = crate::support::tree(t.dir.path())
        .into_iter()
        .find(|(p, _)| p.ends_with(".parquet"))
        .map(|(p, _)| t.dir.path().join(p))
        .unwrap();
    for text in [
        "SELECT COUNT(*) FROM pricing_intelligence_test.sales_history".to_string(),
        format!("SELECT COUNT(*) FROM '{}'", file.display()),
        format!(
            "CREATE EXTERNAL TABLE raw STORED AS PARQUET LOCATION '{}'",
            t.dir.path().display()
        ),
        "INSERT INTO sales_history SELECT * FROM sales_history".to_string(),
        "SET datafusion.catalog.information_schema = true".to_string(),
    ] {
        let err = scope.sql(&text).await.expect_err(&text);
        assert!(matches!(err, Error::Query { .. }), "{text}: {err:?}");
    }
    // The unscoped handle still sees both tenants.
    assert_eq!(
        count(
            t.table
                .sql("SELECT COUNT(*) FROM sales_history")
                .await
                .unwrap()
        ),
        70
    );
}

/// Files are written in the table's sort order (`tenant_id, sold_date`) and say so.
#[tokio::test]
async fn files_are_sorted_by_tenant_then_date_and_carry_the_sort_order_id() {
    let t = local_table(DIM).await;
    // Several batches in one append: the month's rows are interleaved across them.
    let batches: Vec<_> = (0..3)
        .map(|i| SaleRecord::to_record_batch(&sample(200, DIM, 50 + i)).unwrap())
        .collect();
    t.table.append_batches(batches).await.unwrap();
    t.table.append(sample(300, DIM, 60)).await.unwrap();
    let table = t.table.iceberg_table();
    let metadata = table.metadata();
    assert_eq!(metadata.default_sort_order().order_id, 1);
    let snapshot = metadata.current_snapshot().unwrap();
    let list = table.manifest_list_reader(snapshot).load().await.unwrap();
    let mut files = 0;
    for m in list.entries() {
        let manifest = m.load_manifest(table.file_io()).await.unwrap();
        for e in manifest.entries() {
            files += 1;
            assert_eq!(e.data_file().sort_order_id(), Some(1), "{}", e.file_path());
        }
    }
    assert!(files > 10);
    // Each file's rows are in (tenant_id, sold_date) order.
    for (rel, _) in crate::support::tree(t.dir.path()) {
        if !rel.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(t.dir.path().join(&rel)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut keys = Vec::new();
        for batch in reader {
            let records = SaleRecord::from_record_batch(&batch.unwrap()).unwrap();
            keys.extend(records.into_iter().map(|r| (r.tenant_id, r.sold_date)));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{rel} is not sorted");
    }
}

/// Scope × filter combinations equal the same filter applied in memory.
#[tokio::test]
async fn scoped_scans_equal_an_in_memory_filter() {
    type Keep = Box<dyn Fn(&SaleRecord) -> bool>;
    let t = local_table(DIM).await;
    t.table.append(sample(400, DIM, 70)).await.unwrap();
    let all = t.table.scan().to_records().await.unwrap();
    let mut names: Vec<String> = all.iter().map(|r| r.tenant_id.clone()).collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 3, "{names:?}");
    for (i, tenant) in names.iter().enumerate() {
        let scope = t.table.for_tenant(tenant.clone()).unwrap();
        let other = names[(i + 1) % names.len()].clone();
        let around = all[i * 7].sold_date;
        let (start, end) = (
            around - chrono::Duration::days(40),
            around + chrono::Duration::days(40),
        );
        let category = all[i].category.clone().unwrap_or_default();
        let cases: Vec<(ScanFilter, Keep)> = vec![
            (ScanFilter::new(), Box::new(|_| true)),
            (
                ScanFilter::new().sold_between(start, end),
                Box::new(move |r| r.sold_date >= start && r.sold_date < end),
            ),
            (
                ScanFilter::new().tenants([tenant.clone(), other.clone()]),
                Box::new(|_| true),
            ),
            (ScanFilter::new().tenant(other.clone()), Box::new(|_| false)),
            (
                ScanFilter::new().category(category.clone()),
                Box::new(move |r| r.category.as_deref() == Some(category.as_str())),
            ),
        ];
        for (filter, keep) in cases {
            let mut got = scope
                .scan()
                .filter(filter.clone())
                .to_records()
                .await
                .unwrap();
            let mut want: Vec<SaleRecord> = all
                .iter()
                .filter(|r| &r.tenant_id == tenant && keep(r))
                .cloned()
                .collect();
            let key = |r: &SaleRecord| (r.product_id.clone(), r.sold_date);
            got.sort_by_key(key);
            want.sort_by_key(key);
            assert_eq!(got, want, "tenant {tenant}, filter {filter:?}");
        }
    }
    let _ = SalesHistory::open(&t.config, "test").await.unwrap();
}

/// One month of many tenants: a tenant (and time) filter reads only the pages that hold its
/// rows — fewer bytes, pages skipped — and returns exactly the in-memory filter's rows.
#[tokio::test]
async fn page_index_skips_other_tenants_pages_and_returns_exact_rows() {
    use sales_history::sample::{SampleConfig, SampleGenerator};
    // Embeddings large enough that data pages, not footers and indexes, dominate the file.
    let dim = 256;
    let t = local_table(dim).await;
    let rows = SampleGenerator::new(
        SampleConfig::default()
            .seed(90)
            .months(1)
            .tenants(8)
            .embedding_dimension(dim),
    )
    .take_records(3000);
    t.table.append(rows.clone()).await.unwrap();
    let (_, full) = t.table.scan().to_batches_with_metrics().await.unwrap();
    let mut names: Vec<String> = rows.iter().map(|r| r.tenant_id.clone()).collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 4);
    let mut dates: Vec<_> = rows.iter().map(|r| r.sold_date).collect();
    dates.sort();
    let (start, end) = (dates[dates.len() / 4], dates[dates.len() / 2]);
    for tenant in &names {
        for window in [None, Some((start, end))] {
            let mut filter = ScanFilter::new().tenant(tenant.clone());
            if let Some((s, e)) = window {
                filter = filter.sold_between(s, e);
            }
            let (batches, metrics) = t
                .table
                .scan()
                .filter(filter.clone())
                .to_batches_with_metrics()
                .await
                .unwrap();
            let mut got: Vec<SaleRecord> = batches
                .iter()
                .flat_map(|b| SaleRecord::from_record_batch(b).unwrap())
                .collect();
            let mut want: Vec<SaleRecord> = rows
                .iter()
                .filter(|r| &r.tenant_id == tenant)
                .filter(|r| window.is_none_or(|(s, e)| r.sold_date >= s && r.sold_date < e))
                .cloned()
                .collect();
            let key = |r: &SaleRecord| (r.product_id.clone(), r.sold_date);
            got.sort_by_key(key);
            want.sort_by_key(key);
            assert_eq!(got.len(), want.len(), "{tenant} {window:?}");
            assert_eq!(got, want, "{tenant} {window:?}");
            assert!(metrics.pages_skipped > 0, "{tenant}: {metrics:?}");
            assert!(
                metrics.bytes_read * 2 < full.bytes_read,
                "{tenant}: read {} of {} bytes",
                metrics.bytes_read,
                full.bytes_read
            );
        }
    }
}

/// A file of the month layout (sorted by tenant, row groups of 16,384 rows) whose last row
/// group holds only a tenant with a 70-byte id: parquet-rs cuts that group's statistics to
/// 64 bytes, and the file's bounds must still cover it. Before, the group was left out of
/// the bounds (lower = upper = the first tenant): a scan of the long id pruned the file, and
/// erasing the first tenant dropped the whole file from metadata, the other tenant with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tenant_id_in_its_own_row_group_keeps_the_file_bounds_whole() {
    let t = local_table(DIM).await;
    let long = format!("tenant-{}", "z".repeat(63));
    assert_eq!(long.len(), 70);
    let mut rows = of_tenant(sample(16_384, DIM, 5), "acme");
    rows.extend(of_tenant(sample(100, DIM, 6), &long));
    // One month, so one file of two row groups.
    let month = rows[0].sold_date;
    for r in rows.iter_mut() {
        r.sold_date = month;
        r.season = Some(sales_history::Season::of(month));
    }
    // One task: one file (a month's rows split among tasks make files of one row group).
    t.table.append(rows).parallelism(1).await.expect("append");
    let files = t.table.scan().plan().await.expect("plan").files;
    assert_eq!(files.len(), 1, "{files:?}");
    let long_rows = t
        .table
        .scan()
        .filter(ScanFilter::new().tenant(long.clone()));
    assert_eq!(long_rows.count().await.expect("count"), 100);
    let gone = t
        .table
        .delete_where(ScanFilter::new().tenant("acme"))
        .await
        .expect("erase");
    assert_eq!(gone.rows_deleted, 16_384, "{gone:?}");
    assert_eq!(t.table.scan().count().await.expect("count"), 100);
    let left = t.table.scan().to_records().await.expect("rows");
    assert!(left.iter().all(|r| r.tenant_id == long));
}
