//! The bad-input matrix: every kind of bad row or batch gets its typed error naming the
//! column (and row), and leaves the table and the warehouse directory exactly as they were.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Decimal128Array, Float64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use chrono::{TimeZone, Utc};
use sales_history::{Column, Error, SaleRecord, Season};

use crate::support::{DIM, local_table, sample, tree};

/// What a case must fail with.
#[derive(Debug)]
enum Expect {
    Value(Column, usize),
    Schema(&'static str),
}

fn base() -> RecordBatch {
    SaleRecord::to_record_batch(&sample(6, DIM, 77)).expect("base batch")
}

/// `base()` with one column replaced (or removed / added).
fn with_column(name: &str, array: Option<ArrayRef>) -> RecordBatch {
    let b = base();
    let mut fields: Vec<Field> = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if f.name() == name {
            if let Some(a) = &array {
                fields.push(Field::new(name, a.data_type().clone(), true));
                cols.push(a.clone());
            }
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    if !b.schema().fields().iter().any(|f| f.name() == name)
        && let Some(a) = array
    {
        fields.push(Field::new(name, a.data_type().clone(), true));
        cols.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("test batch")
}

fn strings(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn text_with(column: Column, row: usize, value: Option<&str>) -> RecordBatch {
    let b = base();
    let orig = b.column_by_name(column.name()).unwrap();
    let orig = orig.as_any().downcast_ref::<StringArray>().unwrap();
    let mut v: Vec<Option<String>> = orig.iter().map(|s| s.map(str::to_string)).collect();
    v[row] = value.map(str::to_string);
    with_column(column.name(), Some(strings(v)))
}

fn prices(row: usize, cents: i128) -> RecordBatch {
    let mut v = vec![1000i128; 6];
    v[row] = cents;
    let a = Decimal128Array::from(v)
        .with_precision_and_scale(10, 2)
        .unwrap();
    with_column("sold_price", Some(Arc::new(a)))
}

fn dates(row: usize, micros: i64) -> RecordBatch {
    let ok = Utc
        .with_ymd_and_hms(2024, 2, 10, 0, 0, 0)
        .unwrap()
        .timestamp_micros();
    let mut v = vec![ok; 6];
    v[row] = micros;
    // Keep the seasons consistent with the dates so that only the date is wrong.
    let b = with_column(
        "sold_date",
        Some(Arc::new(TimestampMicrosecondArray::from(v))),
    );
    let season: ArrayRef = strings(vec![None; 6]);
    replace(&b, "season", season)
}

fn replace(b: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let cols = b
        .schema()
        .fields()
        .iter()
        .zip(b.columns())
        .map(|(f, c)| {
            if f.name() == name {
                array.clone()
            } else {
                c.clone()
            }
        })
        .collect();
    let fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if f.name() == name {
                Field::new(name, array.data_type().clone(), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

fn embeddings(row: usize, bad: Vec<f64>, nullable_elements: bool) -> RecordBatch {
    let mut lengths = Vec::new();
    let mut values = Vec::new();
    for r in 0..6 {
        let v = if r == row {
            bad.clone()
        } else {
            vec![0.5; DIM]
        };
        lengths.push(v.len());
        values.extend(v);
    }
    let field = Arc::new(Field::new("item", DataType::Float64, nullable_elements));
    let list = ListArray::new(
        field,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Float64Array::from(values)),
        None,
    );
    with_column("embedding", Some(Arc::new(list)))
}

fn cases() -> Vec<(&'static str, RecordBatch, Expect)> {
    let ts = |y, m, d| {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .unwrap()
            .timestamp_micros()
    };
    let mut nan = vec![0.1; DIM];
    nan[7] = f64::NAN;
    let mut inf = vec![0.1; DIM];
    inf[0] = f64::INFINITY;
    let null_element = {
        let field = Arc::new(Field::new("item", DataType::Float64, true));
        let mut vals: Vec<Option<f64>> = vec![Some(0.5); 6 * DIM];
        vals[4 * DIM + 3] = None;
        let list = ListArray::new(
            field,
            OffsetBuffer::from_lengths(vec![DIM; 6]),
            Arc::new(Float64Array::from(vals)),
            None,
        );
        with_column("embedding", Some(Arc::new(list)))
    };
    vec![
        (
            "empty product_id",
            text_with(Column::ProductId, 2, Some("")),
            Expect::Value(Column::ProductId, 2),
        ),
        (
            "blank tenant_id",
            text_with(Column::TenantId, 4, Some("   ")),
            Expect::Value(Column::TenantId, 4),
        ),
        (
            "over-long product_id",
            text_with(Column::ProductId, 1, Some(&"p".repeat(257))),
            Expect::Value(Column::ProductId, 1),
        ),
        (
            "null tenant_id",
            text_with(Column::TenantId, 3, None),
            Expect::Value(Column::TenantId, 3),
        ),
        (
            "over-long description",
            text_with(Column::Description, 0, Some(&"d".repeat(70_000))),
            Expect::Value(Column::Description, 0),
        ),
        (
            "price above decimal(10,2)",
            prices(5, 10_000_000_000),
            Expect::Value(Column::SoldPrice, 5),
        ),
        (
            "negative price",
            prices(1, -1),
            Expect::Value(Column::SoldPrice, 1),
        ),
        (
            "date before 2000",
            dates(2, ts(1999, 12, 31)),
            Expect::Value(Column::SoldDate, 2),
        ),
        (
            "date in the far future",
            dates(0, ts(2199, 1, 1)),
            Expect::Value(Column::SoldDate, 0),
        ),
        (
            "season contradicts date",
            text_with(Column::Season, 1, Some("Q3")).pipe_dates(),
            Expect::Value(Column::Season, 1),
        ),
        (
            "season not a quarter",
            text_with(Column::Season, 2, Some("Q5")),
            Expect::Value(Column::Season, 2),
        ),
        (
            "embedding too short",
            embeddings(3, vec![0.1; DIM - 1], false),
            Expect::Value(Column::Embedding, 3),
        ),
        (
            "embedding too long",
            embeddings(0, vec![0.1; DIM + 1], false),
            Expect::Value(Column::Embedding, 0),
        ),
        (
            "embedding with NaN",
            embeddings(5, nan, false),
            Expect::Value(Column::Embedding, 5),
        ),
        (
            "embedding with inf",
            embeddings(2, inf, false),
            Expect::Value(Column::Embedding, 2),
        ),
        (
            "embedding with a null element",
            null_element,
            Expect::Value(Column::Embedding, 4),
        ),
        (
            "missing column",
            with_column("brand", None),
            Expect::Schema("column `brand` is missing"),
        ),
        (
            "extra column",
            with_column("discount", Some(strings(vec![None; 6]))),
            Expect::Schema("unexpected column `discount`"),
        ),
        (
            "mistyped price",
            with_column(
                "sold_price",
                Some(Arc::new(Float64Array::from(vec![1.0; 6]))),
            ),
            Expect::Schema("column `sold_price` has type Float64"),
        ),
        (
            "price with scale 3",
            with_column(
                "sold_price",
                Some(Arc::new(
                    Decimal128Array::from(vec![1i128; 6])
                        .with_precision_and_scale(10, 3)
                        .unwrap(),
                )),
            ),
            Expect::Schema("column `sold_price` has type Decimal128(10, 3)"),
        ),
        (
            "timestamp in another zone",
            with_column(
                "sold_date",
                Some(Arc::new(
                    TimestampMicrosecondArray::from(vec![ts(2024, 1, 1); 6])
                        .with_timezone("+02:00"),
                )),
            ),
            Expect::Schema("column `sold_date` has type Timestamp"),
        ),
    ]
}

trait PipeDates {
    fn pipe_dates(self) -> RecordBatch;
}

impl PipeDates for RecordBatch {
    /// Puts every row in February 2024 (Q1) so a `Q3` season contradicts its date.
    fn pipe_dates(self) -> RecordBatch {
        let feb = Utc
            .with_ymd_and_hms(2024, 2, 10, 0, 0, 0)
            .unwrap()
            .timestamp_micros();
        let b = replace(
            &self,
            "sold_date",
            Arc::new(TimestampMicrosecondArray::from(vec![feb; 6])),
        );
        let s = b
            .column_by_name("season")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let v: Vec<Option<String>> = s
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if i == 1 {
                    x.map(str::to_string)
                } else {
                    Some("Q1".into())
                }
            })
            .collect();
        replace(&b, "season", strings(v))
    }
}

#[tokio::test]
async fn every_bad_input_is_rejected_and_changes_nothing() {
    let t = local_table(DIM).await;
    t.table.append(sample(10, DIM, 1)).await.expect("seed rows");
    let before = tree(t.dir.path());
    let snapshots = t.table.snapshots().await.unwrap();
    let cases = cases();
    assert!(cases.len() >= 20);
    for (name, batch, expect) in cases {
        // The bad batch comes second, after a good one: row indices count across batches.
        let good = base();
        let result = t.table.append_batches([good, batch]).await;
        match (&expect, &result) {
            (
                Expect::Value(col, row),
                Err(Error::InvalidValue {
                    column,
                    row: Some(r),
                    ..
                }),
            ) => {
                assert_eq!((column, *r), (col, row + 6), "{name}: {result:?}");
            }
            (
                Expect::Schema(text),
                Err(Error::BatchSchemaMismatch {
                    batch: 1,
                    differences,
                }),
            ) => {
                assert!(
                    differences.iter().any(|d| d.starts_with(text)),
                    "{name}: {differences:?}"
                );
            }
            _ => panic!("{name}: expected {expect:?}, got {result:?}"),
        }
        let message = result.unwrap_err().to_string();
        assert!(!message.is_empty());
        assert_eq!(tree(t.dir.path()), before, "{name} left files behind");
        t.table.refresh().await.expect("refresh");
        assert_eq!(
            t.table.snapshots().await.unwrap(),
            snapshots,
            "{name} changed the history"
        );
    }
    assert_eq!(t.table.scan().count().await.expect("count"), 10);
}

#[tokio::test]
async fn typed_rows_are_checked_with_their_row_index() {
    let t = local_table(DIM).await;
    let mut rows = sample(5, DIM, 3);
    rows[3].embedding = Some(vec![1.0; 3]);
    match t.table.append(rows.clone()).await {
        Err(Error::InvalidValue {
            column: Column::Embedding,
            row: Some(3),
            reason,
        }) => {
            assert!(reason.contains("16"), "{reason}")
        }
        other => panic!("expected an embedding error at row 3, got {other:?}"),
    }
    rows[3].embedding = None;
    rows[1].season = Some(match rows[1].season {
        Some(Season::Q1) => Season::Q2,
        _ => Season::Q1,
    });
    assert!(matches!(
        t.table.append(rows).await,
        Err(Error::InvalidValue {
            column: Column::Season,
            row: Some(1),
            ..
        })
    ));
    assert!(t.table.snapshots().await.unwrap().is_empty());
}

/// The rest of the matrix: configuration, catalog and drift cases. Each gets its typed error
/// naming what to fix.
#[tokio::test]
async fn bad_config_catalog_and_drift_inputs_get_typed_errors() {
    use sales_history::{CatalogConfig, SalesHistory, TableOptions};
    let t = local_table(DIM).await;
    t.table.append(sample(3, DIM, 1)).await.expect("seed");
    let config = t.config.clone();
    let key_of = |r: Result<(), Error>| match r {
        Err(Error::Config { key, .. }) => format!("config:{key}"),
        Err(Error::SnapshotNotFound { .. }) => "snapshot-not-found".into(),
        Err(Error::TableNotFound { .. }) => "table-not-found".into(),
        Err(Error::SchemaDrift { .. }) => "schema-drift".into(),
        Err(Error::InvalidValue { column, .. }) => format!("invalid:{column}"),
        Err(other) => format!("other:{other:?}"),
        Ok(()) => "accepted".into(),
    };
    let parse = |s: &str| s.parse::<CatalogConfig>().map(|_| ());
    let ensure = |stage: &'static str| {
        let config = config.clone();
        async move { SalesHistory::ensure(&config, stage).await.map(|_| ()) }
    };
    // A drifted table: sold_price widened by another tool.
    let drifted = {
        let mut schema_fields = Vec::new();
        for c in Column::ALL {
            let ty = if c == Column::SoldPrice {
                iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::Decimal {
                    precision: 18,
                    scale: 2,
                })
            } else {
                c.iceberg_type()
            };
            schema_fields.push(Arc::new(iceberg::spec::NestedField::new(
                c.field_id(),
                c.name(),
                ty,
                c.is_required(),
            )));
        }
        let catalog = crate::support::raw_catalog(&config).await;
        let ns = iceberg::NamespaceIdent::new("pricing_intelligence_drift".into());
        catalog
            .create_namespace(&ns, Default::default())
            .await
            .unwrap();
        let creation = iceberg::TableCreation::builder()
            .name("sales_history".to_string())
            .schema(
                iceberg::spec::Schema::builder()
                    .with_fields(schema_fields)
                    .build()
                    .unwrap(),
            )
            .partition_spec(sales_history::schema::partition_spec())
            .properties([(
                "write.parquet.compression-codec".to_string(),
                "snappy".to_string(),
            )])
            .build();
        catalog.create_table(&ns, creation).await.unwrap();
        SalesHistory::open(&config, "drift").await.map(|_| ())
    };
    let jan = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let mut cases: Vec<(&str, Result<(), Error>, &str)> = vec![
        ("stage with capitals", ensure("Dev").await, "config:stage"),
        ("empty stage", ensure("").await, "config:stage"),
        ("stage with a dash", ensure("dev-eu").await, "config:stage"),
        (
            "zero embedding dimension",
            SalesHistory::ensure_with(
                &config,
                "zero",
                TableOptions::default().embedding_dimension(0),
            )
            .await
            .map(|_| ()),
            "config:embedding_dimension",
        ),
        (
            "unknown catalog scheme",
            parse("ftp://host/x"),
            "config:catalog",
        ),
        (
            "commit id with a space",
            t.table
                .append(sample(1, DIM, 2))
                .commit_id("a b")
                .await
                .map(|_| ()),
            "config:commit_id",
        ),
        (
            "empty sold_date range",
            t.table
                .scan()
                .sold_between(jan, jan)
                .count()
                .await
                .map(|_| ()),
            "config:sold_between",
        ),
        (
            "unknown snapshot",
            t.table.scan().snapshot_id(7).count().await.map(|_| ()),
            "snapshot-not-found",
        ),
        (
            "missing table",
            SalesHistory::open(&config, "nowhere").await.map(|_| ()),
            "table-not-found",
        ),
        ("drifted table", drifted, "schema-drift"),
        (
            "price with 3 decimals",
            "12.345".parse::<sales_history::Price>().map(|_| ()),
            "invalid:sold_price",
        ),
        (
            "price of 10^8",
            "100000000".parse::<sales_history::Price>().map(|_| ()),
            "invalid:sold_price",
        ),
        (
            "negative price",
            sales_history::Price::from_cents(-5).map(|_| ()),
            "invalid:sold_price",
        ),
    ];
    #[cfg(feature = "glue")]
    cases.extend(vec![
        (
            "glue without warehouse",
            parse("glue://?region=eu-west-1"),
            "config:warehouse",
        ),
        (
            "glue with a local warehouse",
            parse("glue://?region=eu-west-1&warehouse=/data"),
            "config:warehouse",
        ),
        (
            "glue with an unknown option",
            parse("glue://?region=eu-west-1&warehouse=s3://bkt/x&colour=red"),
            "config:colour",
        ),
        (
            "glue with a bad endpoint",
            parse("glue://?region=eu-west-1&warehouse=s3://bkt/x&glue_endpoint=nope"),
            "config:glue_endpoint",
        ),
    ]);
    #[cfg(not(feature = "glue"))]
    cases.push((
        "glue without the glue feature",
        parse("glue://?region=eu-west-1&warehouse=s3://bkt/x"),
        "config:catalog",
    ));
    let mut failures = Vec::new();
    for (name, result, want) in cases {
        let got = key_of(result);
        if got != want {
            failures.push(format!("{name}: expected {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        t.table.scan().count().await.unwrap(),
        3,
        "the table is unchanged"
    );
}
