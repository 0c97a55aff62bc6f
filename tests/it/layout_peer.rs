//! Partition evolution with pyiceberg as the peer, on SQLite and on Glue (moto): pyiceberg
//! plans and reads the mixed-spec table (counts and filtered reads equal ours) and appends to
//! it under the new spec; Glue's `TableInput` keeps no Hive partition keys.

use sales_history::{CatalogConfig, Layout, ScanFilter};

use crate::support::{DIM, pyiceberg, sample};

/// Appends under `month`, evolves to `layout`, appends again; then pyiceberg (`args` name the
/// catalog) must see both specs and agree with our counts, whole and filtered, and append.
async fn mixed_spec_with_pyiceberg(
    config: &CatalogConfig,
    stage: &str,
    layout: Layout,
    args: impl Fn(&str) -> Vec<String>,
) {
    let table = crate::support::ensure_test_table(config, stage).await;
    table.append(sample(120, DIM, 1)).await.expect("append");
    table.evolve_layout(layout).await.expect("evolve");
    let second = sample(80, DIM, 2);
    table
        .append(second.clone())
        .await
        .expect("append after evolve");
    let tenant = second[0].tenant_id.clone();
    let (y, m) = {
        use chrono::Datelike;
        (second[0].sold_date.year(), second[0].sold_date.month())
    };
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let month_filter =
        format!("sold_date >= '{y}-{m:02}-01T00:00:00' and sold_date < '{ny}-{nm:02}-01T00:00:00'");

    let read = |extra: &[&str]| {
        let mut a = args("read");
        a.push("--no-rows".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        pyiceberg(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let got = read(&[]);
    assert_eq!(got["row_count"], 200, "{got}");
    assert_eq!(got["spec_ids"], serde_json::json!([0, 1]));
    assert_eq!(got["default_spec_id"], 1);
    let mut file_specs: Vec<i64> = got["data_file_spec_ids"]
        .as_array()
        .expect("spec ids")
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    file_specs.sort();
    file_specs.dedup();
    assert_eq!(file_specs, [0, 1]);

    // Filtered reads: a tenant, a month, both.
    let ours_tenant = table.scan().tenant(tenant.clone()).count().await.unwrap();
    let got = read(&["--filter", &format!("tenant_id == '{tenant}'")]);
    assert_eq!(got["row_count"], ours_tenant, "tenant {tenant}");
    let june = ScanFilter::new().year_month(y, m);
    let ours_month = table.scan().filter(june.clone()).count().await.unwrap();
    let got = read(&["--filter", &month_filter]);
    assert_eq!(got["row_count"], ours_month);
    let both = table
        .scan()
        .filter(june.tenant(tenant.clone()))
        .count()
        .await
        .unwrap();
    let got = read(&[
        "--filter",
        &format!("tenant_id == '{tenant}' and {month_filter}"),
    ]);
    assert_eq!(got["row_count"], both);
    assert!(ours_tenant > 0 && ours_month > 0);

    // pyiceberg appends under the new spec; we read all of it.
    let mut a = args("append");
    a.extend(["--rows", "24", "--tenant", "py-a,py-b"].map(String::from));
    pyiceberg(&a.iter().map(String::as_str).collect::<Vec<_>>());
    table.refresh().await.unwrap();
    assert_eq!(table.scan().count().await.unwrap(), 224);
    assert_eq!(table.scan().tenant("py-a").count().await.unwrap(), 12);
    let plan = table.scan().tenant("py-b").plan().await.unwrap();
    assert!(plan.files.iter().all(|f| f.partition_spec_id == Some(1)));

    // And the migration of the rest: pyiceberg reads the same rows after it.
    table.compact().migrate().await.expect("migrate");
    let got = read(&[]);
    assert_eq!(got["row_count"], 224);
    let got = read(&["--filter", &format!("tenant_id == '{tenant}'")]);
    assert_eq!(got["row_count"], ours_tenant);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_and_appends_to_an_evolved_table_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let wh = dir.path().to_str().unwrap().to_string();
    mixed_spec_with_pyiceberg(&config, "test", Layout::TenantMonth, |cmd| {
        [
            cmd,
            "--warehouse",
            &wh,
            "--namespace",
            "pricing_intelligence_test",
        ]
        .map(String::from)
        .to_vec()
    })
    .await;
}

#[cfg(feature = "glue")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_and_appends_to_an_evolved_table_on_glue() {
    use crate::moto::{moto, pyiceberg_glue_args};
    let config = moto().fresh("glue-layout");
    mixed_spec_with_pyiceberg(
        &config,
        "layout",
        Layout::tenant_buckets(4).unwrap(),
        |cmd| {
            pyiceberg_glue_args(
                cmd,
                "s3://glue-layout/warehouse",
                "pricing_intelligence_layout",
            )
        },
    )
    .await;

    // What Athena reads: no Hive partition keys for an Iceberg table, whatever its spec.
    let client = moto().glue_client().await;
    let got = client
        .get_table()
        .database_name("pricing_intelligence_layout")
        .name("sales_history")
        .send()
        .await
        .expect("GetTable");
    let t = got.table().expect("table");
    assert!(t.partition_keys().is_empty(), "{:?}", t.partition_keys());
    assert_eq!(
        t.parameters()
            .and_then(|p| p.get("table_type"))
            .map(String::as_str),
        Some("ICEBERG")
    );
}

/// The whole evolve → append → migrate → filter → erase life on Glue.
#[cfg(feature = "glue")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolve_append_migrate_and_filter_on_glue() {
    let config = crate::moto::moto().fresh("glue-evolve");
    crate::layout::evolve_append_migrate_and_filter(&config, "evolve", Layout::TenantMonth, 12)
        .await;
}

#[cfg(feature = "glue")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_evolves_and_appends_on_glue() {
    let config = crate::moto::moto().fresh("glue-evolve-race");
    crate::layout::concurrent_evolves(&config, "race").await;
}
