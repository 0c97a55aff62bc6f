//! End to end on the embedded local catalog (SQLite + warehouse directory).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{Datelike, TimeZone, Utc};
use iceberg::spec::{NestedField, PrimitiveType, Schema as IcebergSchema, Type};
use parquet::file::reader::{FileReader, SerializedFileReader};
use sales_history::schema::{self, Column};
use sales_history::{AppendOutcome, CatalogConfig, Error, SalesHistory};

use crate::support::{DIM, local_table, sample, tree};

fn sort(mut v: Vec<sales_history::SaleRecord>) -> Vec<sales_history::SaleRecord> {
    v.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    v
}

#[tokio::test]
async fn round_trip_is_exact_with_full_embeddings() {
    let t = local_table(1024).await;
    let rows = sample(300, 1024, 1);
    let outcome = t.table.append(rows.clone()).await.expect("append");
    let summary = outcome.committed().expect("committed").clone();
    assert_eq!(summary.rows, 300);
    assert!(summary.data_files >= 20, "one file per month: {summary:?}");
    let back = sort(t.table.scan().to_records().await.expect("scan"));
    let rows = sort(rows);
    assert_eq!(back.len(), rows.len());
    for (a, b) in rows.iter().zip(&back) {
        assert_eq!(a, b);
        let bits = |r: &sales_history::SaleRecord| {
            r.embedding
                .as_ref()
                .map(|e| e.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(bits(a), bits(b), "embedding of {} differs", a.product_id);
        assert_eq!(a.sold_price.cents(), b.sold_price.cents());
        assert_eq!(
            a.sold_date.timestamp_micros(),
            b.sold_date.timestamp_micros()
        );
    }
}

#[tokio::test]
async fn every_append_is_one_snapshot_and_counts_are_exact() {
    let t = local_table(DIM).await;
    let mut ids = Vec::new();
    for (i, n) in [10usize, 25, 40].into_iter().enumerate() {
        let out = t
            .table
            .append(sample(n, DIM, 100 + i as u64))
            .await
            .expect("append");
        let s = out.committed().expect("committed");
        assert_eq!(s.rows, n as u64);
        ids.push(s.commit_id.clone());
    }
    let empty = t.table.append(Vec::new()).await.expect("empty append");
    assert_eq!(empty, AppendOutcome::NothingToCommit);
    let snaps = t.table.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 3);
    assert_eq!(
        snaps.iter().map(|s| s.added_rows).collect::<Vec<_>>(),
        vec![Some(10), Some(25), Some(40)]
    );
    assert_eq!(
        snaps
            .iter()
            .map(|s| s.commit_id.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(snaps[1].parent_id, Some(snaps[0].snapshot_id));
    assert_eq!(t.table.scan().count().await.expect("count"), 75);

    // Time travel: the first snapshot still has 10 rows.
    let first = t
        .table
        .scan()
        .snapshot_id(snaps[0].snapshot_id)
        .count()
        .await
        .expect("old");
    assert_eq!(first, 10);
    match t.table.scan().snapshot_id(42).count().await {
        Err(Error::SnapshotNotFound {
            snapshot_id: 42, ..
        }) => {}
        other => panic!("expected SnapshotNotFound, got {other:?}"),
    }

    // A fresh handle (as another process would) sees the same.
    let reopened = SalesHistory::open(&t.config, "test").await.expect("open");
    assert_eq!(reopened.snapshots().await.unwrap().len(), 3);
    assert_eq!(reopened.embedding_dimension(), DIM);
}

#[tokio::test]
async fn caller_commit_id_makes_a_retry_a_no_op() {
    let t = local_table(DIM).await;
    let rows = sample(30, DIM, 5);
    let first = t
        .table
        .append(rows.clone())
        .commit_id("load-2025-06-01")
        .await
        .expect("first");
    let snapshot = first.committed().expect("committed").snapshot_id;
    let again = t
        .table
        .append(rows)
        .commit_id("load-2025-06-01")
        .await
        .expect("second");
    assert_eq!(
        again,
        AppendOutcome::AlreadyCommitted {
            snapshot_id: snapshot,
            commit_id: "load-2025-06-01".into()
        }
    );
    assert_eq!(t.table.scan().count().await.expect("count"), 30);
    assert!(matches!(
        t.table
            .append(sample(1, DIM, 1))
            .commit_id("has space")
            .await,
        Err(Error::Config { .. })
    ));
}

#[tokio::test]
async fn ensure_twice_is_a_no_op_and_open_needs_a_table() {
    let t = local_table(DIM).await;
    t.table.append(sample(20, DIM, 3)).await.expect("append");
    let before = tree(t.dir.path());
    let location = t
        .table
        .iceberg_table()
        .metadata_location()
        .map(str::to_string);
    let again = SalesHistory::ensure(&t.config, "test")
        .await
        .expect("ensure again");
    assert_eq!(
        again
            .iceberg_table()
            .metadata_location()
            .map(str::to_string),
        location
    );
    assert_eq!(
        again.embedding_dimension(),
        DIM,
        "the stored dimension wins"
    );
    assert_eq!(tree(t.dir.path()), before);

    match SalesHistory::open(&t.config, "other").await {
        Err(Error::TableNotFound { table }) => {
            assert_eq!(table, "pricing_intelligence_other.sales_history")
        }
        other => panic!("expected TableNotFound, got {other:?}"),
    }
    for bad in ["", "Dev", "dev-1", "dev.x"] {
        assert!(
            matches!(
                SalesHistory::ensure(&t.config, bad).await,
                Err(Error::Config { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn data_files_are_snappy_and_in_month_directories() {
    let t = local_table(DIM).await;
    t.table.append(sample(200, DIM, 9)).await.expect("append");
    let files: Vec<String> = tree(t.dir.path())
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    assert!(files.len() >= 20);
    for f in &files {
        assert!(
            f.starts_with("pricing_intelligence_test.db/sales_history/data/sold_date_month=20"),
            "{f}"
        );
        let reader =
            SerializedFileReader::new(std::fs::File::open(t.dir.path().join(f)).unwrap()).unwrap();
        let meta = reader.metadata();
        assert!(meta.num_row_groups() > 0);
        for rg in meta.row_groups() {
            for col in rg.columns() {
                assert_eq!(
                    col.compression(),
                    parquet::basic::Compression::SNAPPY,
                    "{f} {}",
                    col.column_path()
                );
            }
        }
    }
}

/// A file of fewer than `DICTIONARY_MIN_ROWS` rows (a small partition's) has no dictionary
/// pages; a larger one keeps them on its columns of repeated values and writes its
/// near-unique columns plain. Both read back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_written_without_dictionaries() {
    let t = local_table(DIM).await;
    // ~8 rows a month: every file far below the threshold.
    let small = sample(200, DIM, 9);
    // One month with the threshold's rows: one file at it.
    let mut big = sample(sales_history::DICTIONARY_MIN_ROWS, DIM, 10);
    let month = Utc.with_ymd_and_hms(2023, 6, 15, 12, 0, 0).unwrap();
    for r in &mut big {
        r.sold_date = month;
        r.season = Some(sales_history::Season::of(month));
    }
    t.table.append(small.clone()).await.expect("append");
    t.table.append(big.clone()).await.expect("append");
    let (mut small_files, mut big_files) = (0, 0);
    for (f, _) in tree(t.dir.path()) {
        if !f.ends_with(".parquet") {
            continue;
        }
        let reader =
            SerializedFileReader::new(std::fs::File::open(t.dir.path().join(&f)).unwrap()).unwrap();
        let meta = reader.metadata();
        let rows = meta.file_metadata().num_rows() as usize;
        let with_dictionary: Vec<String> = meta
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .filter(|c| c.dictionary_page_offset().is_some())
            .map(|c| c.column_path().string())
            .collect();
        if rows < sales_history::DICTIONARY_MIN_ROWS {
            small_files += 1;
            assert!(
                with_dictionary.is_empty(),
                "{f} ({rows} rows): {with_dictionary:?}"
            );
        } else {
            big_files += 1;
            // Repeated values keep their dictionary (every `sold_date` of this file is the
            // same instant); near-unique ones (`product_id`, `image_s3_key`) are plain.
            for (column, dictionary) in [
                ("category", true),
                ("tenant_id", true),
                ("sold_date", true),
                ("product_id", false),
                ("image_s3_key", false),
            ] {
                assert_eq!(
                    with_dictionary.iter().any(|c| c == column),
                    dictionary,
                    "{f} ({rows} rows), {column}: {with_dictionary:?}"
                );
            }
        }
    }
    assert!(small_files >= 20, "{small_files}");
    assert_eq!(big_files, 1);
    let mut want = small;
    want.extend(big);
    assert_eq!(sort(t.table.scan().to_records().await.unwrap()), sort(want));
}

#[tokio::test]
async fn scan_filters_equal_an_in_memory_filter() {
    let t = local_table(DIM).await;
    let rows = sample(400, DIM, 11);
    t.table.append(rows.clone()).await.expect("append");
    let start = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap();
    let got = sort(
        t.table
            .scan()
            .tenant("tenant-002")
            .tenant("tenant-003")
            .sold_between(start, end)
            .to_records()
            .await
            .expect("scan"),
    );
    let want = sort(
        rows.into_iter()
            .filter(|r| ["tenant-002", "tenant-003"].contains(&r.tenant_id.as_str()))
            .filter(|r| r.sold_date >= start && r.sold_date < end)
            .collect(),
    );
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert!(
        got.iter()
            .all(|r| r.sold_date.month() == 3 || r.sold_date.month() == 4)
    );

    let projected = t
        .table
        .scan()
        .select([Column::TenantId, Column::SoldPrice])
        .to_batches()
        .await
        .expect("projection");
    let names: Vec<String> = projected[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["tenant_id", "sold_price"]);
    assert!(matches!(
        t.table.scan().sold_between(end, start).to_batches().await,
        Err(Error::Config { .. })
    ));
}

/// `sold_date` of [`caller_batch`]'s 3 rows: 2024-08-15 12:00, labelled `UTC` or not.
fn sold_dates(utc_label: bool) -> ArrayRef {
    let micros = Utc
        .with_ymd_and_hms(2024, 8, 15, 12, 0, 0)
        .unwrap()
        .timestamp_micros();
    let dates = arrow_array::TimestampMicrosecondArray::from(vec![micros; 3]);
    match utc_label {
        true => Arc::new(dates.with_timezone("UTC")),
        false => Arc::new(dates),
    }
}

/// A caller-built batch of 3 rows (`a`, `b`, `c`; fixed texts) with these columns, its
/// schema as a caller would make it (every field nullable, no field ids).
fn caller_batch(price: ArrayRef, date: ArrayRef, season: ArrayRef, emb: ArrayRef) -> RecordBatch {
    let n = 3;
    let text = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    let ids = Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef;
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("product_id", ids),
        ("tenant_id", text("t1")),
        ("category", text("shoes")),
        ("brand", text("Acme")),
        ("condition", text("new")),
        ("sold_price", price),
        ("sold_date", date),
        ("season", season),
        ("image_s3_key", text("k")),
        ("embedding", emb),
        ("description", text("d")),
        ("source", text("s")),
    ];
    let schema = Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|(_, a)| a).collect()).unwrap()
}

/// Caller-built batches: list field named `item` without field ids, a `FixedSizeList`
/// embedding, a `UTC` zone label and a missing season are all accepted without copying data.
#[tokio::test]
async fn caller_built_batches_are_conformed() {
    let t = local_table(4).await;
    let n = 3;
    let price = Arc::new(
        arrow_array::Decimal128Array::from(vec![1999i128, 0, 9_999_999_999])
            .with_precision_and_scale(10, 2)
            .unwrap(),
    ) as ArrayRef;
    let date = sold_dates(true);
    let values = Float64Array::from((0..n * 4).map(|i| i as f64 * 0.25).collect::<Vec<_>>());
    let emb = Arc::new(FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        4,
        Arc::new(values),
        None,
    )) as ArrayRef;
    let season = Arc::new(StringArray::from(vec![None::<&str>; n])) as ArrayRef;
    let batch = caller_batch(price, date, season, emb);
    t.table.append_batches([batch]).await.expect("append batch");
    let back = sort(t.table.scan().to_records().await.expect("scan"));
    assert_eq!(back.len(), 3);
    assert_eq!(back[2].sold_price.to_string(), "99999999.99");
    assert_eq!(back[0].season, Some(sales_history::Season::Q3));
    assert_eq!(
        back[1].embedding.as_deref(),
        Some(&[1.0, 1.25, 1.5, 1.75][..])
    );
    let batches = t.table.scan().to_batches().await.expect("batches");
    let emb = batches[0]
        .column_by_name("embedding")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(emb.value(0).len(), 4);
    assert_eq!(emb.null_count(), 0);
}

/// Creates `pricing_intelligence_{stage}.sales_history` with a hand-made schema and props.
async fn create_raw(
    dir: &std::path::Path,
    stage: &str,
    schema: IcebergSchema,
    props: HashMap<String, String>,
) {
    let config = CatalogConfig::local(dir);
    crate::support::create_raw_table(&config, stage, schema, schema::partition_spec(), props).await;
}

fn schema_with(change: impl Fn(Column) -> NestedField) -> IcebergSchema {
    IcebergSchema::builder()
        .with_fields(Column::ALL.map(|c| Arc::new(change(c))))
        .build()
        .unwrap()
}

fn snappy() -> HashMap<String, String> {
    HashMap::from([(
        "write.parquet.compression-codec".to_string(),
        "snappy".to_string(),
    )])
}

#[tokio::test]
async fn drift_is_caught_and_optional_columns_are_compatible() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());

    // All columns optional: compatible (we only ever write non-null values there).
    create_raw(
        dir.path(),
        "loose",
        schema_with(|c| NestedField::optional(c.field_id(), c.name(), c.iceberg_type())),
        snappy(),
    )
    .await;
    let loose = SalesHistory::ensure(&config, "loose")
        .await
        .expect("optional columns are compatible");
    loose
        .append(sample(5, 1024, 1))
        .await
        .expect("append to loose table");

    // A wider price (drift) and a missing codec (compatible: we write snappy).
    create_raw(
        dir.path(),
        "drifted",
        schema_with(|c| {
            let ty = if c == Column::SoldPrice {
                Type::Primitive(PrimitiveType::Decimal {
                    precision: 12,
                    scale: 2,
                })
            } else {
                c.iceberg_type()
            };
            NestedField::new(c.field_id(), c.name(), ty, c.is_required())
        }),
        HashMap::new(),
    )
    .await;
    let before = tree(dir.path());
    for result in [
        SalesHistory::ensure(&config, "drifted").await,
        SalesHistory::open(&config, "drifted").await,
    ] {
        match result {
            Err(Error::SchemaDrift { table, differences }) => {
                assert_eq!(table, "pricing_intelligence_drifted.sales_history");
                assert_eq!(differences.len(), 1, "{differences:?}");
                assert!(differences[0].contains("sold_price"), "{differences:?}");
            }
            other => panic!("expected SchemaDrift, got {other:?}"),
        }
    }
    assert_eq!(tree(dir.path()), before, "a drift check changes nothing");
}

/// Embeddings as models emit them (float32 stored as DOUBLE) take fewer bytes with the
/// element written BYTE_STREAM_SPLIT (the default) than PLAIN: the same rows, both encodings,
/// bytes compared (a size, not a timing). pyiceberg reading BSS files is covered by interop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_stream_split_embeddings_take_fewer_bytes_than_plain() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let rows = sample(2000, 1024, 5);
    assert!(
        rows.iter()
            .flat_map(|r| r.embedding.as_ref().unwrap())
            .all(|x| f64::from(*x as f32) == *x),
        "sample embeddings are float32 values"
    );
    let mut bytes = Vec::new();
    for (stage, encoding) in [("bss", None), ("plain", Some("plain"))] {
        let props: HashMap<String, String> = encoding
            .map(|e| {
                HashMap::from([(
                    sales_history::EMBEDDING_ENCODING_PROPERTY.to_string(),
                    e.to_string(),
                )])
            })
            .unwrap_or_default();
        create_raw(dir.path(), stage, schema::iceberg_schema(), props).await;
        let table = SalesHistory::ensure(&config, stage).await.unwrap();
        let out = table.append(rows.clone()).await.unwrap();
        bytes.push(out.committed().unwrap().bytes);
        assert_eq!(table.scan().to_records().await.unwrap().len(), 2000);
    }
    println!(
        "2,000 rows x 1024 float32-valued doubles, Snappy: BYTE_STREAM_SPLIT {} bytes, PLAIN {} bytes ({:.1}%)",
        bytes[0],
        bytes[1],
        100.0 * bytes[0] as f64 / bytes[1] as f64
    );
    assert!(bytes[0] < bytes[1] * 9 / 10, "{bytes:?}");
}

/// Each data file of stage `stage`'s table under a local warehouse, with its footer (at
/// least one file).
fn stage_footers(
    warehouse: &std::path::Path,
    stage: &str,
) -> Vec<(String, parquet::file::metadata::ParquetMetaData)> {
    let prefix = format!("pricing_intelligence_{stage}.db/");
    let files: Vec<(String, parquet::file::metadata::ParquetMetaData)> = tree(warehouse)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(&prefix) && p.ends_with(".parquet"))
        .map(|f| {
            let reader =
                SerializedFileReader::new(std::fs::File::open(warehouse.join(&f)).unwrap())
                    .unwrap();
            (f, reader.metadata().clone())
        })
        .collect();
    assert!(!files.is_empty(), "{stage}: no data files");
    files
}

/// `TableOptions::codec` is stored as the table's codec (and level) properties and is the
/// codec of every column chunk it writes; the rows read back are the same under either codec;
/// a level out of range is refused before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_options_choose_the_codec() {
    use parquet::basic::Compression;
    use sales_history::{Codec, TableOptions};

    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let rows = sample(300, 16, 11);
    let mut read_back = Vec::new();
    for (stage, codec) in [("snappy", Codec::Snappy), ("zstd", Codec::zstd(5).unwrap())] {
        let options = TableOptions::default().embedding_dimension(16).codec(codec);
        let table = SalesHistory::ensure_with(&config, stage, options)
            .await
            .unwrap();
        let props = table.iceberg_table().metadata().properties().clone();
        assert_eq!(
            props
                .get(schema::COMPRESSION_CODEC_PROPERTY)
                .map(String::as_str),
            Some(codec.as_property()),
            "{stage}"
        );
        assert_eq!(
            props.get(sales_history::COMPRESSION_LEVEL_PROPERTY),
            codec.level().map(|l| l.to_string()).as_ref(),
            "{stage}"
        );
        table.append(rows.clone()).await.unwrap();
        for (f, footer) in stage_footers(dir.path(), stage) {
            for rg in footer.row_groups() {
                for c in rg.columns() {
                    // A footer names the codec, not its level.
                    let ok = match codec {
                        Codec::Zstd { .. } => matches!(c.compression(), Compression::ZSTD(_)),
                        _ => c.compression() == Compression::SNAPPY,
                    };
                    assert!(ok, "{f}: {} is {:?}", c.column_path(), c.compression());
                }
            }
        }
        read_back.push(sort(table.scan().to_records().await.unwrap()));
    }
    assert_eq!(read_back[0], sort(rows));
    assert_eq!(read_back[0], read_back[1]);

    // A level out of range: a typed error naming the level property, nothing created.
    let before = tree(dir.path());
    let bad = TableOptions::default()
        .embedding_dimension(16)
        .codec(Codec::Zstd { level: 23 });
    match SalesHistory::ensure_with(&config, "bad", bad).await {
        Err(Error::Config { key, reason }) => {
            assert_eq!(key, sales_history::COMPRESSION_LEVEL_PROPERTY);
            assert!(reason.contains("23"), "{reason}");
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    assert_eq!(tree(dir.path()), before, "nothing written");
}

/// `TableOptions::embedding_encoding` is stored as the table property and decides the encoding
/// of the `embedding` elements in every data file; both encodings read back the same rows; a
/// table whose property names no encoding we write is refused as drift, naming it, and
/// nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_options_choose_the_embedding_encoding() {
    use parquet::basic::Encoding;
    use sales_history::{EmbeddingEncoding, TableOptions};

    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let rows = sample(300, 16, 7);
    let mut read_back = Vec::new();
    for (stage, encoding, want, not) in [
        (
            "bss",
            EmbeddingEncoding::ByteStreamSplit,
            Encoding::BYTE_STREAM_SPLIT,
            Encoding::PLAIN,
        ),
        (
            "plain",
            EmbeddingEncoding::Plain,
            Encoding::PLAIN,
            Encoding::BYTE_STREAM_SPLIT,
        ),
    ] {
        let options = TableOptions::default()
            .embedding_dimension(16)
            .embedding_encoding(encoding);
        let table = SalesHistory::ensure_with(&config, stage, options)
            .await
            .unwrap();
        assert_eq!(table.embedding_encoding().unwrap(), encoding);
        assert_eq!(
            table
                .iceberg_table()
                .metadata()
                .properties()
                .get(sales_history::EMBEDDING_ENCODING_PROPERTY)
                .map(String::as_str),
            Some(encoding.as_property())
        );
        table.append(rows.clone()).await.unwrap();
        for (f, footer) in stage_footers(dir.path(), stage) {
            for rg in footer.row_groups() {
                let col = rg
                    .columns()
                    .iter()
                    .find(|c| c.column_path().string() == "embedding.list.element")
                    .expect("embedding element chunk");
                let encodings: Vec<Encoding> = col.encodings().collect();
                assert!(encodings.contains(&want), "{f}: {encodings:?}");
                assert!(!encodings.contains(&not), "{f}: {encodings:?}");
            }
        }
        read_back.push(sort(table.scan().to_records().await.unwrap()));
    }
    assert_eq!(read_back[0], sort(rows.clone()));
    assert_eq!(read_back[0], read_back[1]);

    // A property naming no encoding this crate writes: a typed error, nothing written.
    create_raw(
        dir.path(),
        "bad",
        schema::iceberg_schema(),
        HashMap::from([(
            sales_history::EMBEDDING_ENCODING_PROPERTY.to_string(),
            "delta".to_string(),
        )]),
    )
    .await;
    let before = tree(dir.path());
    match SalesHistory::ensure(&config, "bad").await {
        Err(Error::SchemaDrift { differences, .. }) => assert!(
            differences
                .iter()
                .any(|d| d.contains(sales_history::EMBEDDING_ENCODING_PROPERTY)
                    && d.contains("delta")),
            "{differences:?}"
        ),
        other => panic!("expected SchemaDrift naming the property, got {other:?}"),
    }
    assert_eq!(tree(dir.path()), before, "nothing written");
}

/// A null embedding row in a caller-built batch, its slots null-filled as
/// `FixedSizeListBuilder` and pyarrow make them (or a `List` whose null row spans null
/// slots): accepted, the row read back without an embedding. A null element in a present
/// row is still refused, naming the row.
#[tokio::test]
async fn null_embedding_rows_with_null_slots_are_accepted() {
    use arrow_array::builder::{FixedSizeListBuilder, Float64Builder};
    let t = local_table(2).await;
    let n = 3;
    let batch = |emb: ArrayRef| {
        let price = Arc::new(
            arrow_array::Decimal128Array::from(vec![100i128; n])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ) as ArrayRef;
        let date = sold_dates(false);
        let season = Arc::new(StringArray::from(vec!["Q3"; n])) as ArrayRef;
        caller_batch(price, date, season, emb)
    };
    // FixedSizeList: row 1 null, its two slots null.
    let mut b = FixedSizeListBuilder::new(Float64Builder::new(), 2);
    b.values().append_slice(&[1.0, 2.0]);
    b.append(true);
    b.values().append_null();
    b.values().append_null();
    b.append(false);
    b.values().append_slice(&[3.0, 4.0]);
    b.append(true);
    let fixed = Arc::new(b.finish()) as ArrayRef;
    t.table
        .append_batches([batch(fixed)])
        .await
        .expect("a null row's null slots are not elements");
    // List: row 1 null over two null slots.
    let values = Float64Array::from(vec![Some(5.0), Some(6.0), None, None, Some(7.0), Some(8.0)]);
    let list = Arc::new(arrow_array::ListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        arrow_buffer::OffsetBuffer::new(vec![0, 2, 4, 6].into()),
        Arc::new(values),
        Some(arrow_buffer::NullBuffer::from(vec![true, false, true])),
    )) as ArrayRef;
    t.table.append_batches([batch(list)]).await.expect("list");
    let back = t.table.scan().to_records().await.expect("scan");
    assert_eq!(back.len(), 6);
    let mut embeddings: Vec<Option<Vec<f64>>> = back.into_iter().map(|r| r.embedding).collect();
    embeddings.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        embeddings,
        [
            None,
            None,
            Some(vec![1.0, 2.0]),
            Some(vec![3.0, 4.0]),
            Some(vec![5.0, 6.0]),
            Some(vec![7.0, 8.0])
        ]
    );
    // A null element in a present row: refused, naming the row.
    let values = Float64Array::from(vec![
        Some(1.0),
        Some(2.0),
        Some(3.0),
        None,
        Some(5.0),
        Some(6.0),
    ]);
    let list = Arc::new(arrow_array::ListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        arrow_buffer::OffsetBuffer::new(vec![0, 2, 4, 6].into()),
        Arc::new(values),
        None,
    )) as ArrayRef;
    let err = t
        .table
        .append_batches([batch(list)])
        .await
        .expect_err("null element");
    let text = err.to_string();
    assert!(
        text.contains("embedding") && text.contains("row 1"),
        "{text}"
    );
    assert_eq!(t.table.scan().count().await.unwrap(), 6);
}

/// `verify` counts rows appended twice as duplicates of `(tenant_id, product_id, sold_date)`
/// and fails its data-quality check; distinct rows pass it.
#[tokio::test]
async fn verify_reports_duplicate_rows() {
    let t = local_table(DIM).await;
    let rows = sample(50, DIM, 61);
    t.table.append(rows.clone()).await.expect("append");
    let quality = |report: &sales_history::VerifyReport| {
        report
            .checks
            .iter()
            .find(|c| c.name == "data quality")
            .cloned()
            .expect("a data quality check")
    };
    let report = SalesHistory::verify(&t.config, "test")
        .await
        .expect("verify");
    assert!(quality(&report).passed, "{report}");
    t.table
        .append(rows[..7].to_vec())
        .await
        .expect("append again");
    let report = SalesHistory::verify(&t.config, "test")
        .await
        .expect("verify");
    let check = quality(&report);
    assert!(!check.passed, "{report}");
    assert!(
        check
            .detail
            .contains("7 duplicate (tenant_id, product_id, sold_date)"),
        "{}",
        check.detail
    );
}
