//! Adopting tables made by other engines: the table as Athena DDL makes it (every column
//! optional, optional list element, `month(sold_date)` as `sold_date_month`), built by pyiceberg
//! with a snappy, zstd or unset codec, on the local catalog and on Glue; and one test per kind
//! of real drift with the message it gets.

#[cfg(feature = "python-tests")]
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    ListType, NestedField, PrimitiveType, Schema as IcebergSchema, Transform, Type,
    UnboundPartitionSpec,
};
#[cfg(feature = "python-tests")]
use sales_history::ScanFilter;
use sales_history::{CatalogConfig, Column, EnsurePlan, Error, SalesHistory, schema};

#[cfg(feature = "python-tests")]
use crate::support::pyiceberg;
use crate::support::{create_raw_table as create_raw, sample, tree};

/// Rows pyiceberg puts into each fixture (tenant `athena`).
#[cfg(feature = "python-tests")]
const FIXTURE_ROWS: usize = 40;
/// Rows we append to each fixture.
#[cfg(feature = "python-tests")]
const OUR_ROWS: usize = 30;
/// Fixture tables have no embedding-dimension property: the default applies.
const DIM: usize = schema::DEFAULT_EMBEDDING_DIMENSION;

/// pyiceberg arguments for a command (command first), without the command's own options.
#[cfg(feature = "python-tests")]
type PyArgs = Box<dyn Fn(&str) -> Vec<String>>;

/// One drift case: stage, schema, spec, properties, the words the message must contain.
type DriftCase = (
    &'static str,
    IcebergSchema,
    UnboundPartitionSpec,
    HashMap<String, String>,
    &'static str,
);

/// Where a fixture lives and how pyiceberg reaches it.
#[cfg(feature = "python-tests")]
struct Fixture {
    config: CatalogConfig,
    stage: String,
    /// pyiceberg arguments (command first), without the command's own options.
    py: PyArgs,
}

#[cfg(feature = "python-tests")]
fn local_fixture(dir: &std::path::Path, stage: &str) -> Fixture {
    let wh = dir.to_str().unwrap().to_string();
    let ns = format!("pricing_intelligence_{stage}");
    Fixture {
        config: CatalogConfig::local(dir),
        stage: stage.to_string(),
        py: Box::new(move |cmd| {
            [cmd, "--warehouse", &wh, "--namespace", &ns]
                .map(String::from)
                .to_vec()
        }),
    }
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
fn glue_fixture(bucket: &str, stage: &str) -> Fixture {
    let config = crate::moto::moto().fresh(bucket);
    let wh = format!("s3://{bucket}/warehouse");
    let ns = format!("pricing_intelligence_{stage}");
    Fixture {
        config,
        stage: stage.to_string(),
        py: Box::new(move |cmd| crate::moto::pyiceberg_glue_args(cmd, &wh, &ns)),
    }
}

#[cfg(feature = "python-tests")]
fn run_py(f: &Fixture, cmd: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = (f.py)(cmd);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pyiceberg(&refs)
}

/// The whole adoption story for one fixture; returns what `verify` printed (for the log).
#[cfg(feature = "python-tests")]
async fn adopt(f: Fixture, codec: &str, sort_order: bool) -> String {
    let mut create_args = vec!["--codec", codec, "--rows", "40", "--tenant", "athena"];
    if sort_order {
        create_args.push("--sort-order");
    }
    assert_eq!(FIXTURE_ROWS, 40);
    let created = run_py(&f, "create", &create_args);
    let fixture_files: BTreeSet<String> = created["data_files"]
        .as_array()
        .expect("data_files")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!fixture_files.is_empty());
    let before = run_py(&f, "read", &["--no-rows"]);

    // What ensure would do: adopt, change nothing, say what differs.
    let plan = SalesHistory::plan_ensure(&f.config, &f.stage)
        .await
        .expect("plan");
    let EnsurePlan::Compatible(notes) = plan else {
        panic!("expected a compatible table, got {plan:?}");
    };
    let text = notes.join("\n");
    assert!(
        text.contains("`product_id`, `tenant_id`, `sold_price`, `sold_date` are optional"),
        "{text}"
    );
    assert!(
        text.contains("list element of `embedding` is optional"),
        "{text}"
    );
    match codec {
        "snappy" => assert!(!text.contains("compression-codec"), "{text}"),
        "zstd" => assert!(text.contains("is `zstd`"), "{text}"),
        _ => assert!(text.contains("is unset"), "{text}"),
    }

    let table = SalesHistory::ensure(&f.config, &f.stage)
        .await
        .expect("ensure adopts the table");
    assert_eq!(
        table.iceberg_table().metadata_location(),
        before["metadata_location"].as_str(),
        "ensure changed nothing"
    );
    assert_eq!(table.embedding_dimension(), DIM);
    SalesHistory::open(&f.config, &f.stage)
        .await
        .expect("open adopts the table");

    // Append ours, scan with filters, search, query.
    let ours = sample(OUR_ROWS, DIM, 77);
    let out = table.append(ours.clone()).await.expect("append");
    assert_eq!(out.committed().map(|c| c.rows), Some(OUR_ROWS as u64));
    assert_eq!(
        table.scan().count().await.expect("count"),
        (FIXTURE_ROWS + OUR_ROWS) as u64
    );
    let theirs = table
        .scan()
        .tenant("athena")
        .to_records()
        .await
        .expect("scan their rows");
    assert_eq!(theirs.len(), FIXTURE_ROWS);
    let tenant = ours[0].tenant_id.clone();
    let want = ours.iter().filter(|r| r.tenant_id == tenant).count();
    let got = table
        .scan()
        .filter(
            ScanFilter::new()
                .tenant(tenant.as_str())
                .year(2024)
                .and(ScanFilter::new().tenant(tenant.as_str())),
        )
        .count()
        .await
        .expect("filtered count");
    let want_2024 = ours
        .iter()
        .filter(|r| r.tenant_id == tenant && r.sold_date.format("%Y").to_string() == "2024")
        .count();
    assert_eq!(got as usize, want_2024);
    assert!(want >= want_2024);
    let query = ours[3]
        .embedding
        .clone()
        .expect("sample rows have embeddings");
    let similar = table.similar_to(query, 3).await.expect("similar_to");
    assert_eq!(similar[0].record.product_id, ours[3].product_id);
    #[cfg(feature = "sql")]
    {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        let batches = table
            .sql("SELECT COUNT(*) AS n FROM sales_history WHERE tenant_id = 'athena'")
            .await
            .expect("sql");
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(n as usize, FIXTURE_ROWS);
    }

    // verify: every check passes; the differences from the seed's layout are notes.
    let report = SalesHistory::verify(&f.config, &f.stage)
        .await
        .expect("verify");
    assert!(report.passed(), "{report}");
    assert_eq!(report.rows, (FIXTURE_ROWS + OUR_ROWS) as u64);
    let notes: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.info)
        .map(|c| c.detail.as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("optional in the table")),
        "{report}"
    );
    assert_eq!(
        notes.iter().any(|n| n.contains("not in SNAPPY")),
        codec != "snappy",
        "{report}"
    );

    // pyiceberg reads both writers' rows; our files use the table's codec.
    let after = run_py(&f, "read", &["--no-rows"]);
    assert_eq!(after["row_count"], (FIXTURE_ROWS + OUR_ROWS) as u64);
    let want_codec = if codec == "zstd" { "ZSTD" } else { "SNAPPY" };
    let mut ours_seen = 0;
    for (file, codecs) in after["file_codecs"].as_object().expect("file_codecs") {
        if !fixture_files.contains(file) {
            ours_seen += 1;
            assert_eq!(codecs, &serde_json::json!([want_codec]), "{file}");
        }
    }
    assert!(ours_seen > 0);
    assert_eq!(after["properties"], before["properties"], "properties kept");
    report.to_string()
}

#[cfg(feature = "python-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_tables_on_the_local_catalog_are_adopted() {
    for (codec, sort) in [("snappy", false), ("zstd", true), ("unset", false)] {
        let dir = tempfile::tempdir().unwrap();
        let printed = adopt(
            local_fixture(dir.path(), &format!("athena_{codec}")),
            codec,
            sort,
        )
        .await;
        println!("local, codec {codec}:\n{printed}\n");
    }
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_tables_on_glue_are_adopted() {
    for codec in ["zstd", "unset"] {
        let fixture = glue_fixture(&format!("adopt-{codec}"), &format!("athena_{codec}"));
        let printed = adopt(fixture, codec, false).await;
        println!("glue, codec {codec}:\n{printed}\n");
    }
}

// ------------------------------------------------------------------------- real drift

fn field(c: Column) -> NestedField {
    NestedField::new(c.field_id(), c.name(), c.iceberg_type(), c.is_required())
}

fn schema_of(fields: Vec<NestedField>) -> IcebergSchema {
    IcebergSchema::builder()
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
        .unwrap()
}

fn schema_with(change: impl Fn(Column) -> NestedField) -> IcebergSchema {
    schema_of(Column::ALL.map(change).to_vec())
}

fn embedding_list(element_id: i32, element: PrimitiveType, required: bool) -> Type {
    Type::List(ListType::new(Arc::new(NestedField::list_element(
        element_id,
        Type::Primitive(element),
        required,
    ))))
}

#[tokio::test]
async fn each_kind_of_real_drift_is_refused_with_a_message_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let month = schema::partition_spec;
    let replace = |target: Column, with: NestedField| {
        schema_with(move |c| if c == target { with.clone() } else { field(c) })
    };
    let cases: Vec<DriftCase> = vec![
        (
            "missing",
            schema_of(
                Column::ALL
                    .into_iter()
                    .filter(|c| *c != Column::Source)
                    .map(field)
                    .collect(),
            ),
            month(),
            HashMap::new(),
            "column `source` is missing from the table",
        ),
        (
            "extra",
            schema_of(
                Column::ALL
                    .into_iter()
                    .map(field)
                    .chain([NestedField::optional(
                        14,
                        "discount",
                        Type::Primitive(PrimitiveType::Double),
                    )])
                    .collect(),
            ),
            month(),
            HashMap::new(),
            "the table has a column `discount` that sales_history does not have",
        ),
        (
            "price_type",
            replace(
                Column::SoldPrice,
                NestedField::required(
                    6,
                    "sold_price",
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: 12,
                        scale: 2,
                    }),
                ),
            ),
            month(),
            HashMap::new(),
            "column `sold_price`: type is `decimal(10, 2)` here and `decimal(12, 2)` in the table",
        ),
        (
            "element_type",
            replace(
                Column::Embedding,
                NestedField::optional(
                    10,
                    "embedding",
                    embedding_list(13, PrimitiveType::Float, true),
                ),
            ),
            month(),
            HashMap::new(),
            "column `embedding`: element is `double` here and `float` in the table",
        ),
        (
            "not_a_list",
            replace(
                Column::Embedding,
                NestedField::optional(10, "embedding", Type::Primitive(PrimitiveType::Binary)),
            ),
            month(),
            HashMap::new(),
            "column `embedding`: type is `list<double>` here and `binary` in the table",
        ),
        (
            "field_id",
            // Catalogs assign fresh ids by position on creation: `condition` before `brand`
            // gives `brand` the id 5.
            schema_of({
                let mut order = Column::ALL.map(field).to_vec();
                order.swap(3, 4);
                order
            }),
            month(),
            HashMap::new(),
            "column `brand` has field id 5 in the table, expected 4",
        ),
        (
            "required",
            replace(
                Column::Category,
                NestedField::required(3, "category", Type::Primitive(PrimitiveType::String)),
            ),
            month(),
            HashMap::new(),
            "column `category` is required in the table but optional here",
        ),
        (
            "spec",
            schema::iceberg_schema(),
            UnboundPartitionSpec::builder()
                .with_spec_id(0)
                .add_partition_field(2, "tenant_id", Transform::Identity)
                .unwrap()
                .build(),
            HashMap::new(),
            "partition spec is [identity(tenant_id) as tenant_id] in the table, expected one of the sales_history layouts: [month(sold_date) as sold_date_month], or identity(tenant_id) / bucket(N, tenant_id) then month(sold_date)",
        ),
        (
            "codec",
            schema::iceberg_schema(),
            month(),
            HashMap::from([(
                "write.parquet.compression-codec".to_string(),
                "lzo".to_string(),
            )]),
            "a codec this crate cannot write",
        ),
    ];
    for (stage, schema, spec, props, want) in cases {
        create_raw(&config, stage, schema, spec, props).await;
        let before = tree(dir.path());
        for result in [
            SalesHistory::ensure(&config, stage).await,
            SalesHistory::open(&config, stage).await,
        ] {
            match result {
                Err(Error::SchemaDrift { table, differences }) => {
                    assert_eq!(table, format!("pricing_intelligence_{stage}.sales_history"));
                    assert!(
                        differences.iter().any(|d| d.contains(want)),
                        "{stage}: {differences:?} does not say {want:?}"
                    );
                    // No message prints the same type twice ("list, expected list").
                    for d in &differences {
                        let words: Vec<&str> = d.split('`').collect();
                        assert!(
                            !(d.contains(" here and ") && words.get(3) == words.get(5)),
                            "{stage}: {d}"
                        );
                    }
                }
                other => panic!("{stage}: expected SchemaDrift, got {:?}", other.map(|_| ())),
            }
        }
        match SalesHistory::plan_ensure(&config, stage).await {
            Ok(EnsurePlan::Drifted(d)) => assert!(d.iter().any(|d| d.contains(want)), "{d:?}"),
            other => panic!("{stage}: plan_ensure gave {other:?}"),
        }
        let report = SalesHistory::verify(&config, stage).await.expect("verify");
        assert!(
            !report.passed(),
            "{stage}: verify must fail on drift:\n{report}"
        );
        assert_eq!(
            tree(dir.path()),
            before,
            "{stage}: a drift check changes nothing"
        );
    }
}

#[tokio::test]
async fn the_codec_named_by_the_table_is_the_codec_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    for (stage, codec, want) in [
        (
            "gzip",
            Some("gzip"),
            parquet::basic::Compression::GZIP(Default::default()),
        ),
        ("unset", None, parquet::basic::Compression::SNAPPY),
    ] {
        let props = codec
            .map(|c| {
                HashMap::from([("write.parquet.compression-codec".to_string(), c.to_string())])
            })
            .unwrap_or_default();
        create_raw(
            &config,
            stage,
            schema::iceberg_schema(),
            schema::partition_spec(),
            props,
        )
        .await;
        let table = SalesHistory::ensure(&config, stage).await.expect("adopt");
        table.append(sample(10, DIM, 3)).await.expect("append");
        let files = table.scan().plan().await.expect("plan");
        assert!(!files.files.is_empty());
        for f in &files.files {
            let path = f.path.strip_prefix("file://").unwrap_or(&f.path);
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(
                std::fs::File::open(path).unwrap(),
            )
            .unwrap();
            use parquet::file::reader::FileReader;
            let md = reader.metadata();
            for rg in md.row_groups() {
                for c in rg.columns() {
                    assert_eq!(
                        std::mem::discriminant(&c.compression()),
                        std::mem::discriminant(&want),
                        "{stage}: {}",
                        c.column_path()
                    );
                }
            }
        }
    }
}
