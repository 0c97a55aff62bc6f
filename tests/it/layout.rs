//! Partition evolution in place: a table written under the seed's `month(sold_date)` moves to a
//! tenant-first layout in one commit, files of several specs are read together, compaction
//! migrates month by month, a tenant erasure drops whole partitions, and bad input changes
//! nothing. On SQLite here; on Glue (moto) with pyiceberg as the peer below.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::cast::AsArray;

use sales_history::{
    CatalogConfig, Column, Error, Layout, SaleRecord, SalesHistory, ScanFilter, TableOptions,
};

use crate::scan::{check_random_filters, random_filter_rows};
use crate::support::{DIM, local_table};

/// Live data files per partition spec id, from the scan plan.
async fn files_per_spec(table: &SalesHistory) -> BTreeMap<i32, usize> {
    let plan = table.scan().plan().await.expect("plan");
    let mut out = BTreeMap::new();
    for f in plan.files {
        *out.entry(f.partition_spec_id.expect("spec id"))
            .or_default() += 1;
    }
    out
}

/// The month directories of the live files (`tenant_id=…/sold_date_month=…`).
async fn partition_dirs(table: &SalesHistory) -> BTreeSet<String> {
    let plan = table.scan().plan().await.expect("plan");
    plan.files
        .iter()
        .map(|f| {
            let rel = f.path.split("/data/").nth(1).expect("under data/");
            rel.rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// The whole life of an evolved table, on one catalog: written under `month`, evolved to
/// `evolve_to`, appended to, one month migrated, then random filters (tenant, time, category,
/// brand, price, season) give the same rows as an in-memory filter; verify lists the specs;
/// the rest migrates; a tenant erasure drops that tenant's partitions from metadata alone.
pub(crate) async fn evolve_append_migrate_and_filter(
    config: &CatalogConfig,
    stage: &str,
    evolve_to: Layout,
    rounds: usize,
) -> SalesHistory {
    let table = crate::support::ensure_test_table(config, stage).await;
    assert_eq!(table.layout().unwrap(), Layout::Month);
    let rows = random_filter_rows();
    table.append(rows[..500].to_vec()).await.expect("append 1");
    table
        .append(rows[500..800].to_vec())
        .await
        .expect("append 2");

    let before = table
        .iceberg_table()
        .metadata_location()
        .map(str::to_string);
    let plan = table
        .evolve_layout(evolve_to)
        .dry_run(true)
        .await
        .expect("dry run");
    assert_eq!(
        (plan.from, plan.to, plan.dry_run),
        (Layout::Month, evolve_to, true)
    );
    assert_eq!(
        table
            .iceberg_table()
            .metadata_location()
            .map(str::to_string),
        before,
        "a dry run changed the table"
    );
    let snapshot_before = table.current_snapshot_id();
    let done = table.evolve_layout(evolve_to).await.expect("evolve");
    assert_eq!(table.layout().unwrap(), evolve_to);
    assert_eq!(done.from_spec_id, 0);
    assert_eq!(done.to_spec_id, Some(1));
    // No snapshot is added; the month field keeps id 1000, the tenant field gets 1001.
    assert_eq!(table.current_snapshot_id(), snapshot_before);
    let metadata = table.iceberg_table().metadata().clone();
    let spec = metadata.default_partition_spec();
    let ids: Vec<(String, i32)> = spec
        .fields()
        .iter()
        .map(|f| (f.name.clone(), f.field_id))
        .collect();
    assert_eq!(ids[1], ("sold_date_month".to_string(), 1000), "{ids:?}");
    assert_eq!(ids[0].1, 1001, "{ids:?}");
    assert!(
        metadata.partition_spec_by_id(0).is_some(),
        "old spec dropped"
    );

    // New rows go under the new spec, old files keep theirs.
    table.append(rows[800..].to_vec()).await.expect("append 3");
    let per_spec = files_per_spec(&table).await;
    assert_eq!(
        per_spec.keys().copied().collect::<Vec<_>>(),
        [0, 1],
        "{per_spec:?}"
    );
    let dirs = partition_dirs(&table).await;
    let tenant_dir = match evolve_to {
        Layout::TenantMonth => "tenant_id=",
        _ => "tenant_id_bucket=",
    };
    assert!(dirs.iter().any(|d| d.starts_with(tenant_dir)), "{dirs:?}");
    assert!(
        dirs.iter().any(|d| d.starts_with("sold_date_month=")),
        "{dirs:?}"
    );

    // One month migrated: its old-spec files move, the other months' stay.
    let months = old_spec_months(&table).await;
    assert!(months.len() >= 3, "{months:?}");
    let (y, m) = months[0];
    let one = table
        .compact()
        .migrate()
        .month(y, m)
        .await
        .expect("migrate one month");
    assert!(one.files_removed >= 1, "{one:?}");
    assert_eq!(old_spec_months(&table).await, months[1..].to_vec());

    // Similarity search over files of both specs: a row's own embedding finds it first,
    // with and without a tenant filter (pruned under each spec).
    for probe in [&rows[10], &rows[900]] {
        let query = probe.embedding.clone().expect("embedding");
        let near = table
            .similar_to(query.clone(), 3)
            .await
            .expect("similar_to");
        assert_eq!(near[0].record, *probe);
        let near = table
            .similar_to(query, 3)
            .filter(ScanFilter::new().tenant(probe.tenant_id.clone()))
            .await
            .expect("similar_to in a tenant");
        assert_eq!(near[0].record, *probe);
        assert!(near.iter().all(|n| n.record.tenant_id == probe.tenant_id));
    }

    let non_empty = check_random_filters(&table, &rows, 11, rounds, |scan| scan).await;
    assert!(
        non_empty > rounds / 4,
        "too few non-empty rounds: {non_empty}"
    );

    // verify: layout ok, and one line per spec with its files and rows.
    let report = SalesHistory::verify(config, stage).await.expect("verify");
    assert!(report.passed(), "{report}");
    let specs: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.name == "partition specs")
        .map(|c| c.detail.as_str())
        .collect();
    assert_eq!(specs.len(), 2, "{report}");
    assert!(specs[0].starts_with("spec 0 (month)"), "{specs:?}");
    assert!(specs[1].contains("default"), "{specs:?}");
    let rows_in = |line: &str| -> u64 {
        line.rsplit(", ")
            .next()
            .and_then(|r| r.strip_suffix(" rows"))
            .and_then(|n| n.parse().ok())
            .expect("rows")
    };
    assert_eq!(
        rows_in(specs[0]) + rows_in(specs[1]),
        rows.len() as u64,
        "{specs:?}"
    );

    // The rest migrates, month by month (resumable: a second run finds nothing).
    let rest = table.compact().migrate().await.expect("migrate the rest");
    assert_eq!(rest.months, months.len() - 1, "{rest:?}");
    assert!(old_spec_months(&table).await.is_empty());
    assert_eq!(
        files_per_spec(&table)
            .await
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [1]
    );
    let again = table.compact().migrate().await.expect("nothing left");
    assert_eq!((again.files_removed, again.snapshot_id), (0, None));
    assert_eq!(table.scan().count().await.unwrap(), rows.len() as u64);
    check_random_filters(&table, &rows, 12, rounds / 3, |scan| scan).await;
    table
}

/// `(year, month)` of the live files still under an older spec, in order.
async fn old_spec_months(table: &SalesHistory) -> Vec<(i32, u32)> {
    let default = table.iceberg_table().metadata().default_partition_spec_id();
    let plan = table.scan().plan().await.expect("plan");
    let mut months: Vec<(i32, u32)> = plan
        .files
        .iter()
        .filter(|f| f.partition_spec_id != Some(default))
        .filter_map(|f| {
            let dir = f.path.split("sold_date_month=").nth(1)?;
            let (y, m) = dir.get(..7)?.split_once('-')?;
            Some((y.parse().ok()?, m.parse().ok()?))
        })
        .collect();
    months.sort();
    months.dedup();
    months
}

fn tenants_of(rows: &[SaleRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r.tenant_id.clone()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolve_to_tenant_month_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let table = evolve_append_migrate_and_filter(&config, "evolve", Layout::TenantMonth, 40).await;

    // On the migrated table a tenant's erasure drops whole partitions: nothing rewritten.
    let rows = random_filter_rows();
    let counts = tenants_of(&rows);
    let (tenant, n) = counts.iter().next().expect("a tenant");
    let gone = table
        .delete_where(ScanFilter::new().tenant(tenant.clone()))
        .await
        .expect("erase");
    assert_eq!(gone.rows_deleted, *n as u64);
    assert_eq!(gone.operation.as_deref(), Some("delete"), "{gone:?}");
    assert_eq!((gone.files_rewritten, gone.files_read), (0, 0), "{gone:?}");
    assert_eq!(table.scan().count().await.unwrap(), (rows.len() - n) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolve_to_tenant_buckets_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let table = evolve_append_migrate_and_filter(
        &config,
        "buckets",
        Layout::tenant_buckets(4).unwrap(),
        40,
    )
    .await;
    // And back to the seed's layout: spec 0 is reused, not duplicated.
    let back = table
        .evolve_layout(Layout::Month)
        .await
        .expect("back to month");
    assert_eq!(back.to_spec_id, Some(0));
    assert_eq!(
        table
            .iceberg_table()
            .metadata()
            .partition_specs_iter()
            .len(),
        2
    );
}

/// A new table created with a tenant layout writes tenant directories from the first append;
/// scans prune to the tenant's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_with_a_tenant_layout() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let table = SalesHistory::ensure_with(
        &config,
        "tenants",
        TableOptions::default()
            .embedding_dimension(DIM)
            .layout(Layout::TenantMonth),
    )
    .await
    .expect("ensure");
    assert_eq!(table.layout().unwrap(), Layout::TenantMonth);
    let rows = random_filter_rows();
    table.append(rows.clone()).await.expect("append");
    let counts = tenants_of(&rows);
    let (tenant, n) = counts.iter().next().expect("a tenant");
    let plan = table.scan().tenant(tenant.clone()).plan().await.unwrap();
    assert!(
        plan.files
            .iter()
            .all(|f| f.path.contains(&format!("tenant_id={tenant}/"))),
        "{:?}",
        plan.files
    );
    assert_eq!(
        table.scan().tenant(tenant.clone()).count().await.unwrap(),
        *n as u64
    );
    // Reopening accepts the layout; ensure again changes nothing.
    SalesHistory::open(&config, "tenants").await.expect("open");
    check_random_filters(&table, &rows, 13, 20, |scan| scan).await;

    // Without embeddings, many small files: readers on the blocking pool gather several
    // files' rows into one batch. Every row comes back once, with its values.
    let columns: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|c| *c != Column::Embedding)
        .collect();
    let (batches, metrics) = table
        .scan()
        .select(columns)
        .to_batches_with_metrics()
        .await
        .unwrap();
    assert!(
        metrics.files_read > 10 && (batches.len() as u64) < metrics.files_read,
        "{} batches from {} files",
        batches.len(),
        metrics.files_read
    );
    let mut got: Vec<(String, String, i64)> = Vec::new();
    for b in &batches {
        let ids = b.column(0).as_string::<i32>();
        let tenants = b.column(1).as_string::<i32>();
        let dates = b
            .column(Column::SoldDate.index())
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            got.push((
                ids.value(i).to_string(),
                tenants.value(i).to_string(),
                dates.value(i),
            ));
        }
    }
    let mut want: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.product_id.clone(),
                r.tenant_id.clone(),
                r.sold_date.timestamp_micros(),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn bad_layouts_are_typed_errors_and_change_nothing() {
    assert!(matches!(
        "tenant-first".parse::<Layout>(),
        Err(Error::Config { ref key, .. }) if key == "partitioning"
    ));
    assert!(matches!(
        Layout::tenant_buckets(0),
        Err(Error::Config { ref key, .. }) if key == "partitioning"
    ));

    let t = local_table(DIM).await;
    t.table
        .append(crate::support::sample(20, DIM, 1))
        .await
        .unwrap();
    let before = crate::support::tree(t.dir.path());
    let location = t
        .table
        .iceberg_table()
        .metadata_location()
        .map(str::to_string);

    let err = t
        .table
        .evolve_layout(Layout::TenantBucketMonth { buckets: 0 })
        .await
        .expect_err("bucket 0");
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "partitioning"),
        "{err:?}"
    );
    let err = t
        .table
        .evolve_layout(Layout::Month)
        .await
        .expect_err("same layout");
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "partitioning"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already"), "{err}");
    let err = t
        .table
        .compact()
        .migrate()
        .month(2024, 13)
        .await
        .expect_err("month 13");
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "month"),
        "{err:?}"
    );
    t.table.refresh().await.unwrap();
    assert_eq!(
        t.table
            .iceberg_table()
            .metadata_location()
            .map(str::to_string),
        location
    );
    assert_eq!(crate::support::tree(t.dir.path()), before);

    // A bad layout for a new table creates nothing.
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let err = SalesHistory::ensure_with(
        &config,
        "bad",
        TableOptions::default().layout(Layout::TenantBucketMonth { buckets: 0 }),
    )
    .await
    .expect_err("bucket 0 at creation");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        crate::support::tree(dir.path()).is_empty(),
        "{:?}",
        crate::support::tree(dir.path())
    );

    // A spec that is none of the layouts (tenant after month) is refused by name.
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let spec = iceberg::spec::UnboundPartitionSpec::builder()
        .add_partition_field(7, "sold_date_month", iceberg::spec::Transform::Month)
        .unwrap()
        .add_partition_field(2, "tenant_id", iceberg::spec::Transform::Identity)
        .unwrap()
        .build();
    crate::support::create_raw_table(
        &config,
        "foreign",
        sales_history::schema::iceberg_schema(),
        spec,
        Default::default(),
    )
    .await;
    let err = SalesHistory::open(&config, "foreign")
        .await
        .expect_err("drift");
    assert!(matches!(err, Error::SchemaDrift { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("month(sold_date) as sold_date_month, identity(tenant_id) as tenant_id"),
        "{err}"
    );
}

/// Two handles (two processes' worth) evolve the same table at once to different layouts:
/// one lands and the other conflicts cleanly, or they land one after the other; an append
/// racing an evolve always lands. Rows are exact either way.
pub(crate) async fn concurrent_evolves(config: &CatalogConfig, stage: &str) {
    let a = crate::support::ensure_test_table(config, stage).await;
    let b = SalesHistory::open(config, stage).await.expect("open");
    a.append(crate::support::sample(30, DIM, 1)).await.unwrap();
    let mut appended = 30u64;
    let targets = [
        (Layout::TenantMonth, Layout::tenant_buckets(8).unwrap()),
        (Layout::tenant_buckets(4).unwrap(), Layout::Month),
        (Layout::Month, Layout::TenantMonth),
    ];
    let mut conflicts = 0;
    for (round, (x, y)) in targets.into_iter().enumerate() {
        a.refresh().await.unwrap();
        b.refresh().await.unwrap();
        let start = a.layout().unwrap();
        // An evolve to the current layout is refused: pick targets that differ from it.
        let (x, y) = if x == start { (y, x) } else { (x, y) };
        let (ra, rb, rc) = tokio::join!(
            a.evolve_layout(x).into_future(),
            b.evolve_layout(y).into_future(),
            b.append(crate::support::sample(10, DIM, 100 + round as u64))
                .into_future(),
        );
        rc.expect("an append racing an evolve lands");
        appended += 10;
        a.refresh().await.unwrap();
        let now = a.layout().unwrap();
        match (&ra, &rb) {
            (Ok(_), Ok(_)) => assert!(now == x || now == y),
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
                let expected = if ra.is_ok() { x } else { y };
                assert_eq!(now, expected, "round {round}");
                match e {
                    Error::CommitConflict { .. } => {
                        assert!(e.is_retryable());
                        conflicts += 1;
                    }
                    // A target equal to the layout it read: nothing to evolve.
                    Error::Config { .. } if e.to_string().contains("already") => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            (Err(e1), Err(e2)) => panic!("round {round}: both failed: {e1:?} / {e2:?}"),
        }
        assert_eq!(a.scan().count().await.unwrap(), appended, "round {round}");
    }
    // Spec ids are never reused for a different spec, whatever the interleaving.
    let metadata = a.iceberg_table().metadata().clone();
    let mut seen = Vec::new();
    for spec in metadata.partition_specs_iter() {
        let layout = Layout::of(spec).expect("one of ours");
        assert!(!seen.contains(&layout), "{layout} has two specs");
        seen.push(layout);
    }
    eprintln!("concurrent evolves: {conflicts} clean conflicts in 3 rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_evolves_and_appends_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    concurrent_evolves(&config, "race").await;
}

use std::future::IntoFuture;

/// On a table in mid-migration a tenant's erasure drops the tenant's files of the
/// tenant-partitioned spec from metadata alone (never reading them) and reads and rewrites
/// only old-spec files; what it writes lands under the default spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_on_a_mixed_table_reads_only_old_spec_files() {
    let t = local_table(DIM).await;
    let rows = random_filter_rows();
    t.table.append(rows[..800].to_vec()).await.unwrap();
    t.table.evolve_layout(Layout::TenantMonth).await.unwrap();
    t.table.append(rows[800..].to_vec()).await.unwrap();
    let tenant = rows[800].tenant_id.clone();
    let want = rows.iter().filter(|r| r.tenant_id == tenant).count();
    let plan = t.table.scan().tenant(tenant.clone()).plan().await.unwrap();
    let new_spec = plan
        .files
        .iter()
        .filter(|f| f.partition_spec_id == Some(1))
        .count();
    let old_spec = plan.files.len() - new_spec;
    assert!(new_spec > 0 && old_spec > 0, "{:?}", plan.files);
    let before = files_per_spec(&t.table).await;

    let gone = t
        .table
        .delete_where(ScanFilter::new().tenant(tenant.clone()))
        .await
        .unwrap();
    assert_eq!(gone.rows_deleted, want as u64);
    assert_eq!(gone.files_dropped_by_metadata, new_spec, "{gone:?}");
    assert!(gone.files_read <= old_spec, "{gone:?}");
    assert!(gone.files_rewritten > 0, "{gone:?}");
    assert_eq!(gone.operation.as_deref(), Some("overwrite"));
    let after = files_per_spec(&t.table).await;
    // Old-spec files holding the tenant are gone from spec 0; their other rows moved to spec 1.
    assert_eq!(
        after.get(&0).copied().unwrap_or(0),
        before[&0] - gone.files_rewritten - gone.files_dropped_after_reading
    );
    assert_eq!(
        after[&1],
        before[&1] - new_spec + gone.files_added,
        "{before:?} → {after:?}"
    );
    assert_eq!(t.table.scan().tenant(tenant).count().await.unwrap(), 0);
    assert_eq!(
        t.table.scan().count().await.unwrap(),
        (rows.len() - want) as u64
    );
}
