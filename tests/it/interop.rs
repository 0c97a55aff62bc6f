//! Interop with a real peer: pyiceberg (SqlCatalog on the same SQLite file) reads exactly what
//! we write, and we read what it appends.

use std::collections::BTreeMap;

use sales_history::{CatalogConfig, SalesHistory};
use serde_json::Value;

use crate::support::{DIM, local_table, pyiceberg, pyiceberg_add_files, pyiceberg_append, sample};

#[tokio::test]
async fn pyiceberg_reads_exactly_our_rows() {
    let t = local_table(DIM).await;
    let mut rows = sample(120, DIM, 21);
    rows[7].embedding = None;
    rows[8].description = None;
    t.table.append(rows[..50].to_vec()).await.expect("append 1");
    t.table.append(rows[50..].to_vec()).await.expect("append 2");
    let wh = t.dir.path().to_str().unwrap();
    let got = pyiceberg(&[
        "read",
        "--warehouse",
        wh,
        "--namespace",
        "pricing_intelligence_test",
    ]);

    assert_eq!(got["row_count"], 120);
    assert_eq!(got["format_version"], 2);
    assert_eq!(got["codecs"], serde_json::json!(["SNAPPY"]));
    let spec = got["partition_spec"].as_array().expect("spec");
    assert_eq!(spec.len(), 1);
    assert_eq!(spec[0]["source_id"], 7);
    assert_eq!(spec[0]["field_id"], 1000);
    assert_eq!(spec[0]["name"], "sold_date_month");
    assert_eq!(spec[0]["transform"], "month");
    let schema = got["schema"].as_array().expect("schema");
    let names: Vec<&str> = schema.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, sales_history::Column::ALL.map(|c| c.name()).to_vec());
    let required: Vec<bool> = schema
        .iter()
        .map(|f| f["required"].as_bool().unwrap())
        .collect();
    assert_eq!(
        required,
        sales_history::Column::ALL.map(|c| c.is_required()).to_vec()
    );
    assert_eq!(schema[5]["type"], "decimal(10, 2)");
    assert_eq!(schema[6]["type"], "timestamp");
    assert_eq!(got["snapshots"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        got["properties"]["write.parquet.compression-codec"],
        "snappy"
    );

    // Row by row, keyed by product id.
    let theirs: BTreeMap<String, &Value> = got["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["product_id"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(theirs.len(), 120);
    for r in &rows {
        let p = theirs[&r.product_id];
        assert_eq!(p["tenant_id"], r.tenant_id.as_str());
        assert_eq!(
            p["sold_price"],
            r.sold_price.to_string().as_str(),
            "{}",
            r.product_id
        );
        assert_eq!(
            p["sold_date"],
            r.sold_date
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.6f")
                .to_string()
                .as_str()
        );
        assert_eq!(
            p["season"],
            r.season.map(|s| s.as_str()).unwrap_or_default()
        );
        assert_eq!(p["category"].as_str(), r.category.as_deref());
        assert_eq!(p["description"].as_str(), r.description.as_deref());
        match &r.embedding {
            None => assert!(p["embedding_len"].is_null()),
            Some(e) => {
                assert_eq!(p["embedding_len"], e.len());
                let sum: f64 = e.iter().sum();
                let theirs = p["embedding_sum"].as_f64().unwrap();
                assert!((sum - theirs).abs() < 1e-9, "{sum} vs {theirs}");
            }
        }
    }
}

#[tokio::test]
async fn we_read_what_pyiceberg_appends_and_append_after_it() {
    let t = local_table(DIM).await;
    t.table
        .append(sample(30, DIM, 2))
        .await
        .expect("our append");
    let wh = t.dir.path().to_str().unwrap().to_string();
    let out = pyiceberg_append(&wh, 25, "py-tenant", 0);
    assert_eq!(out["appended"], 25);

    // A fresh handle sees pyiceberg's snapshot and rows.
    let table = SalesHistory::open(&CatalogConfig::local(&wh), "test")
        .await
        .expect("open");
    assert_eq!(table.snapshots().await.unwrap().len(), 2);
    let theirs = table
        .scan()
        .tenant("py-tenant")
        .to_records()
        .await
        .expect("scan");
    assert_eq!(theirs.len(), 25);
    assert!(
        theirs
            .iter()
            .all(|r| r.embedding.as_ref().is_none_or(|e| e.len() == DIM))
    );

    // We append after it, and pyiceberg reads the union.
    table
        .append(sample(5, DIM, 3))
        .await
        .expect("append after pyiceberg");
    assert_eq!(table.scan().count().await.expect("count"), 60);
    let got = pyiceberg(&[
        "read",
        "--warehouse",
        &wh,
        "--namespace",
        "pricing_intelligence_test",
        "--no-rows",
    ]);
    assert_eq!(got["row_count"], 60);
    assert_eq!(got["snapshots"].as_array().map(Vec::len), Some(3));
}

/// Files pyiceberg writes are unsorted (its rows take 5 or 7 tenants round-robin, so every
/// month file mixes them) and carry no page
/// index: tenant / time / attribute filters over them — next to our sorted, page-indexed files
/// in the same table — still return exactly what an in-memory filter of the whole table does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_filters_on_files_pyiceberg_wrote() {
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};

    use crate::scan::check_random_filters;

    let t = local_table(DIM).await;
    let wh = t.dir.path().to_str().unwrap().to_string();
    for (rows, tenants, seed) in [(240, "pa,pb,pc,pd,pe", 1), (120, "pc,pd,pf,pg,ph,pi,pj", 2)] {
        let out = pyiceberg_append(&wh, rows, tenants, seed);
        assert_eq!(out["appended"], rows);
    }
    // Their files: no column index (so no page selection), tenants interleaved.
    let files: Vec<String> = crate::support::tree(t.dir.path())
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    assert!(files.len() >= 12, "{files:?}");
    for f in &files {
        let file = std::fs::File::open(t.dir.path().join(f)).unwrap();
        let options = ReadOptionsBuilder::new().with_page_index().build();
        let reader = SerializedFileReader::new_with_options(file, options).unwrap();
        let no_index = |rg: &Vec<ColumnIndexMetaData>| {
            rg.iter().all(|c| matches!(c, ColumnIndexMetaData::NONE))
        };
        assert!(
            reader
                .metadata()
                .column_index()
                .is_none_or(|ci| ci.iter().all(no_index)),
            "{f}: pyiceberg wrote a column index"
        );
    }
    let table = SalesHistory::open(&CatalogConfig::local(&wh), "test")
        .await
        .expect("open");
    // And ours beside them: sorted, 64-row pages, page index.
    table.append(sample(400, DIM, 5)).await.expect("our append");
    let rows = table.scan().to_records().await.expect("full scan");
    assert_eq!(rows.len(), 760);
    let theirs: Vec<_> = rows
        .iter()
        .filter(|r| r.product_id.starts_with("py-"))
        .collect();
    assert_eq!(theirs.len(), 360);
    let tenant_runs = theirs
        .windows(2)
        .filter(|w| w[0].tenant_id != w[1].tenant_id)
        .count();
    assert!(
        tenant_runs > 100,
        "pyiceberg's rows should interleave tenants: {tenant_runs}"
    );

    let non_empty = check_random_filters(&table, &rows, 11, 50, |scan| scan).await;
    assert!(non_empty > 15, "too few non-empty rounds: {non_empty}");
}

/// pyarrow (pyiceberg's writer) writes no offset index, so a row group larger than the read
/// budget cannot be cut in row ranges: it is read lazily, page by page, instead of fetched
/// whole. Same rows, and filters stay exact. pyiceberg's own files (dictionary pages) stream
/// through parquet-rs's reader; files pyarrow wrote without dictionaries (added with
/// `add_files`) stream through this crate's embedding decoder, an array at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_groups_without_an_offset_index_over_the_budget_are_read_page_by_page() {
    use crate::scan::check_random_filters;

    let t = local_table(1024).await;
    let wh = t.dir.path().to_str().unwrap().to_string();
    for (rows, tenants, seed) in [(300, "pa,pb,pc", 3), (200, "pc,pd", 4)] {
        assert_eq!(pyiceberg_append(&wh, rows, tenants, seed)["appended"], rows);
    }
    let added = pyiceberg_add_files(&wh, 120, "pe,pa", 5);
    assert_eq!(added["appended"], 120);
    let added_files = added["files_added"].as_u64().expect("files added");
    assert_eq!(added_files, 12, "one file per month: {added}");
    let table = SalesHistory::open(&CatalogConfig::local(&wh), "test")
        .await
        .expect("open");
    let budget = 16 << 10;
    let (_, whole_m) = table.scan().to_batches_with_metrics().await.expect("scan");
    let (_, lazy_m) = table
        .scan()
        .read_buffer_bytes(budget)
        .to_batches_with_metrics()
        .await
        .expect("lazy scan");
    let sorted = |mut r: Vec<sales_history::SaleRecord>| {
        r.sort_by(|a, b| {
            (a.product_id.as_str(), a.sold_date).cmp(&(b.product_id.as_str(), b.sold_date))
        });
        r
    };
    let rows = sorted(table.scan().to_records().await.expect("rows"));
    assert_eq!(rows.len(), 620);
    let lazy = table.scan().read_buffer_bytes(budget).to_records().await;
    assert_eq!(sorted(lazy.expect("lazy rows")), rows);
    // Within the budget a file is fetched in one or two reads; over it, every file's group
    // streams in many small reads: pyiceberg's through parquet-rs's reader (its dictionary
    // pages are not ours to decode: a fallback each), pyarrow's plain ones through ours.
    assert_eq!(lazy_m.files_read, 36);
    assert_eq!(lazy_m.embedding_fallbacks, 24, "{lazy_m:?}");
    assert_eq!(lazy_m.embedding_fast_reads, added_files, "{lazy_m:?}");
    assert_eq!(
        (whole_m.embedding_fallbacks, whole_m.embedding_fast_reads),
        (24, added_files),
        "{whole_m:?}"
    );
    assert_eq!(lazy_m.row_groups_read, whole_m.row_groups_read);
    // Every file here is another engine's, without an offset index: each group read lazily.
    assert_eq!(lazy_m.lazy_reads, lazy_m.row_groups_read, "{lazy_m:?}");
    assert_eq!(whole_m.lazy_reads, 0, "{whole_m:?}");
    // Footers are kept from the first scan: every request of the lazy one is a piece of a
    // row group, several per file (a window of 64 KiB, a file of ~170 KB).
    assert!(
        lazy_m.requests >= 3 * lazy_m.files_read,
        "{} requests for {} files",
        lazy_m.requests,
        lazy_m.files_read
    );
    assert!(
        lazy_m.bytes_read <= 3 * whole_m.bytes_read,
        "{} vs {} bytes",
        lazy_m.bytes_read,
        whole_m.bytes_read
    );
    let non_empty =
        check_random_filters(&table, &rows, 17, 20, |scan| scan.read_buffer_bytes(budget)).await;
    assert!(non_empty > 5, "too few non-empty rounds: {non_empty}");
}

/// pyiceberg's `add_files` takes files whose `sold_date` is in milliseconds (readers upcast
/// them). Their statistics and page index are in milliseconds too: row-group and page
/// pruning, and dropping a filter every row passes, must read them in that unit, or a time
/// filter loses the file's rows (or keeps rows it should not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_on_files_in_milliseconds() {
    use chrono::{TimeZone, Utc};
    use sales_history::ScanFilter;

    use crate::scan::check_random_filters;
    use crate::support::pyiceberg_add_files_with;

    let t = local_table(DIM).await;
    let wh = t.dir.path().to_str().unwrap().to_string();
    let added = pyiceberg_add_files_with(
        &wh,
        (240, "ma,mb,mc", 8),
        &["--time-unit", "ms", "--page-index"],
    );
    assert_eq!(added["appended"], 240, "{added}");
    // The files hold milliseconds, with a page index.
    let file = walk_parquet(t.dir.path())
        .into_iter()
        .next()
        .expect("an added file");
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(&file).expect("open"),
        )
        .expect("parquet"),
    )
    .clone();
    let descr = meta.file_metadata().schema_descr();
    let sold = (0..descr.num_columns())
        .map(|i| descr.column(i))
        .find(|c| c.name() == "sold_date")
        .expect("sold_date");
    assert!(
        matches!(
            sold.logical_type_ref(),
            Some(parquet::basic::LogicalType::Timestamp {
                unit: parquet::basic::TimeUnit::MILLIS,
                ..
            })
        ),
        "{:?}",
        sold.logical_type_ref()
    );
    let table = SalesHistory::open(&CatalogConfig::local(&wh), "test")
        .await
        .expect("open");
    let rows = table.scan().to_records().await.expect("rows");
    assert_eq!(rows.len(), 240);
    // Before a day in the middle of the rows: only the rows before it (the statistics of a
    // file whose rows all lie before it say every row matches; those of one across it, not).
    let mut dates: Vec<_> = rows.iter().map(|r| r.sold_date).collect();
    dates.sort();
    let cut = dates[130];
    let before = table
        .scan()
        .filter(ScanFilter::new().sold_before(cut))
        .to_records()
        .await
        .expect("before");
    assert_eq!(
        before.len(),
        rows.iter().filter(|r| r.sold_date < cut).count()
    );
    assert!(before.iter().all(|r| r.sold_date < cut));
    let year = dates[0].format("%Y").to_string().parse().expect("year");
    let in_year = rows
        .iter()
        .filter(|r| r.sold_date >= Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap())
        .filter(|r| r.sold_date < Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).unwrap())
        .count();
    assert!(in_year > 0);
    assert_eq!(
        table
            .scan()
            .filter(ScanFilter::new().year(year))
            .count()
            .await
            .expect("count"),
        in_year as u64
    );
    let non_empty = check_random_filters(&table, &rows, 29, 40, |scan| scan).await;
    assert!(non_empty > 10, "too few non-empty rounds: {non_empty}");
}

/// Every Parquet file under `dir`.
fn walk_parquet(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_parquet(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out
}

/// Positions of sources an appender did not write to in its last commit survive a commit of
/// another engine and the expiry of every older snapshot: a commit of ours carries forward
/// what the current snapshot's whole ancestry stores, not the current snapshot's alone (a
/// pyiceberg append's carries none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_survive_another_engines_commit_and_expiry() {
    use sales_history::SourcePosition;

    use crate::support::{position_of, push_alternating};
    let t = local_table(DIM).await;
    let wh = t.dir.path().to_str().unwrap().to_string();
    let pos = |s| position_of(&t.table, s);
    let appender = t.table.appender().start().unwrap();
    let rows = sample(6, DIM, 30);
    push_alternating(&appender, rows, ("kinesis:a", "kinesis:b"), 100).await;
    appender.close().await.unwrap();
    assert_eq!(
        (pos("kinesis:a").await, pos("kinesis:b").await),
        (Some(104), Some(105))
    );
    // Another engine commits (its snapshot carries no positions of ours).
    assert_eq!(pyiceberg_append(&wh, 5, "py-tenant", 31)["appended"], 5);
    let table = SalesHistory::open(&CatalogConfig::local(&wh), "test")
        .await
        .expect("open");
    // Then rows of source a only.
    let appender = table.appender().start().unwrap();
    let r = sample(1, DIM, 32).pop().unwrap();
    appender
        .push_at(r, SourcePosition::at("kinesis:a", 200).unwrap())
        .await
        .unwrap();
    appender.close().await.unwrap();
    let report = table
        .expire_snapshots()
        .retain_last(1)
        .any_age()
        .await
        .unwrap();
    assert!(!report.expired_snapshots.is_empty());
    assert_eq!(table.snapshots().await.unwrap().len(), 1);
    let pos = |s| position_of(&table, s);
    assert_eq!(pos("kinesis:a").await, Some(200));
    assert_eq!(
        pos("kinesis:b").await,
        Some(105),
        "source b's position survived"
    );
    assert_eq!(table.scan().count().await.unwrap(), 12);
}
