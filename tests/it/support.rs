//! Shared test support: temporary warehouses, sample rows, the Python interop peer.

use std::path::Path;
#[cfg(feature = "python-tests")]
use std::path::PathBuf;
#[cfg(feature = "python-tests")]
use std::process::Command;
#[cfg(feature = "python-tests")]
use std::sync::OnceLock;

use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, SaleRecord, SalesHistory, TableOptions};
use tempfile::TempDir;

/// Pushes `rows` to `appender`, alternating between sources `a` and `b`, at positions
/// `first`, `first + 1`, … (source `a` gets the even offsets).
pub async fn push_alternating(
    appender: &sales_history::Appender,
    rows: Vec<SaleRecord>,
    (a, b): (&str, &str),
    first: u64,
) {
    for (i, r) in rows.into_iter().enumerate() {
        let source = if i % 2 == 0 { a } else { b };
        let at = sales_history::SourcePosition::at(source, first + i as u64).unwrap();
        appender.push_at(r, at).await.unwrap();
    }
}

/// `table`'s committed position of `source`, as a number.
pub async fn position_of(table: &SalesHistory, source: &str) -> Option<u64> {
    table
        .last_committed_position(source)
        .await
        .unwrap()
        .and_then(|p| p.as_u64())
}

/// Embedding length used by most tests (small and fast); one test uses the real 1024.
pub const DIM: usize = 16;

pub struct LocalTable {
    pub dir: TempDir,
    pub config: CatalogConfig,
    pub table: SalesHistory,
}

pub async fn local_table(dim: usize) -> LocalTable {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CatalogConfig::local(dir.path());
    let table = SalesHistory::ensure_with(
        &config,
        "test",
        TableOptions::default().embedding_dimension(dim),
    )
    .await
    .expect("ensure");
    LocalTable { dir, config, table }
}

/// `ensure_with` the test dimension on any catalog (the table of `stage`).
pub async fn ensure_test_table(config: &CatalogConfig, stage: &str) -> SalesHistory {
    SalesHistory::ensure_with(
        config,
        stage,
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure")
}

/// The vector index's Puffin files among the files a clean-up deleted.
pub fn puffins_deleted(report: &sales_history::MaintenanceReport) -> Vec<&String> {
    report
        .deleted_files
        .iter()
        .filter(|f| f.ends_with(".puffin"))
        .collect()
}

pub fn sample(n: usize, dim: usize, seed: u64) -> Vec<SaleRecord> {
    SampleGenerator::new(SampleConfig::default().seed(seed).embedding_dimension(dim))
        .take_records(n)
}

/// Every file under `dir` (relative paths, sorted) with its size.
pub fn tree(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                // The SQLite file's size can change on reads (WAL, page cache); its content is
                // checked through the catalog instead.
                if !rel.starts_with("catalog.db") {
                    out.push((rel, len));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The Python interpreter of the test venv (built by `scripts/venv.sh` on first use).
#[cfg(feature = "python-tests")]
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("SALES_HISTORY_PYTHON") {
            return PathBuf::from(p);
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg(format!("{root}/scripts/venv.sh"))
            .output()
            .expect("run scripts/venv.sh");
        assert!(
            out.status.success(),
            "scripts/venv.sh failed (the interop tests need the Python venv):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("venv.sh printed a path")
                .trim(),
        )
    })
}

/// Runs `python/pyiceberg_check.py` with `args`, returns its JSON output.
#[cfg(feature = "python-tests")]
pub fn pyiceberg(args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/pyiceberg_check.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run pyiceberg_check.py");
    assert!(
        out.status.success(),
        "pyiceberg_check.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyiceberg_check.py prints JSON")
}

/// pyiceberg appends `rows` rows of `tenants` (comma-separated, taken round-robin) to the local
/// test table (`pricing_intelligence_test`) in `warehouse`; returns its JSON answer.
#[cfg(feature = "python-tests")]
pub fn pyiceberg_append(
    warehouse: &str,
    rows: usize,
    tenants: &str,
    seed: u64,
) -> serde_json::Value {
    pyiceberg_rows(warehouse, rows, tenants, seed, &[])
}

/// Writes `rows` deterministic rows with pyarrow itself (one file per month, no dictionary
/// pages, no page index, the embedding BYTE_STREAM_SPLIT) and adds the files to the local
/// table with pyiceberg's `add_files`.
#[cfg(feature = "python-tests")]
pub fn pyiceberg_add_files(
    warehouse: &str,
    rows: usize,
    tenants: &str,
    seed: u64,
) -> serde_json::Value {
    pyiceberg_rows(warehouse, rows, tenants, seed, &["--add-files"])
}

/// [`pyiceberg_add_files`] with more of the script's options (`--time-unit ms`,
/// `--page-index`).
#[cfg(feature = "python-tests")]
pub fn pyiceberg_add_files_with(
    warehouse: &str,
    (rows, tenants, seed): (usize, &str, u64),
    options: &[&str],
) -> serde_json::Value {
    let mut extra = vec!["--add-files"];
    extra.extend_from_slice(options);
    pyiceberg_rows(warehouse, rows, tenants, seed, &extra)
}

#[cfg(feature = "python-tests")]
fn pyiceberg_rows(
    warehouse: &str,
    rows: usize,
    tenants: &str,
    seed: u64,
    extra: &[&str],
) -> serde_json::Value {
    let (rows, seed) = (rows.to_string(), seed.to_string());
    let mut args = vec![
        "append",
        "--warehouse",
        warehouse,
        "--namespace",
        "pricing_intelligence_test",
        "--rows",
        &rows,
        "--tenant",
        tenants,
        "--seed",
        &seed,
    ];
    args.extend_from_slice(extra);
    pyiceberg(&args)
}

/// Creates `pricing_intelligence_{stage}.sales_history` straight through iceberg, as another
/// engine would: whatever schema, spec and properties the test gives, no checks of ours.
pub async fn create_raw_table(
    config: &CatalogConfig,
    stage: &str,
    schema: iceberg::spec::Schema,
    spec: iceberg::spec::UnboundPartitionSpec,
    props: std::collections::HashMap<String, String>,
) -> iceberg::table::Table {
    let catalog = raw_catalog(config).await;
    let ns = iceberg::NamespaceIdent::new(format!("pricing_intelligence_{stage}"));
    catalog
        .create_namespace(&ns, std::collections::HashMap::new())
        .await
        .unwrap();
    let creation = iceberg::TableCreation::builder()
        .name("sales_history".to_string())
        .schema(schema)
        .partition_spec(spec)
        .properties(props)
        .build();
    catalog.create_table(&ns, creation).await.unwrap()
}

/// The real iceberg catalog behind `config`, built here the way the crate builds it: the
/// crate keeps iceberg out of its API, so tests that wrap or bypass the catalog (fault
/// injection, tables made "by another engine") build their own.
pub async fn raw_catalog(config: &CatalogConfig) -> std::sync::Arc<dyn iceberg::Catalog> {
    use iceberg::CatalogBuilder;
    use std::collections::HashMap;
    use std::sync::Arc;
    let storage = Arc::new(iceberg_storage_opendal::OpenDalResolvingStorageFactory::new());
    match config {
        CatalogConfig::Local { warehouse } => {
            std::fs::create_dir_all(warehouse).unwrap();
            let root = std::fs::canonicalize(warehouse).unwrap();
            let root = root.to_str().unwrap();
            let catalog = iceberg_catalog_sql::SqlCatalogBuilder::default()
                .with_storage_factory(storage)
                .load(
                    sales_history::LOCAL_CATALOG_NAME,
                    HashMap::from([
                        (
                            "uri".to_string(),
                            format!("sqlite://{root}/catalog.db?mode=rwc"),
                        ),
                        ("warehouse".to_string(), format!("file://{root}")),
                        ("sql_bind_style".to_string(), "QMark".to_string()),
                    ]),
                )
                .await
                .unwrap();
            Arc::new(catalog)
        }
        #[cfg(feature = "glue")]
        CatalogConfig::Glue(_) => {
            // The string form carries everything but the credentials (the emulator's).
            let url = url::Url::parse(&config.to_string()).unwrap();
            let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
            let mut p = HashMap::from([
                ("warehouse".to_string(), q["warehouse"].clone()),
                ("region_name".to_string(), q["region"].clone()),
                (iceberg::io::S3_REGION.to_string(), q["region"].clone()),
                ("aws_access_key_id".to_string(), "testing".to_string()),
                (
                    "aws_secret_access_key".to_string(),
                    "testing-secret-key".to_string(),
                ),
                (
                    iceberg::io::S3_PATH_STYLE_ACCESS.to_string(),
                    "true".to_string(),
                ),
                (
                    iceberg::io::S3_DISABLE_EC2_METADATA.to_string(),
                    "true".to_string(),
                ),
            ]);
            if let Some(u) = q.get("glue_endpoint") {
                p.insert("uri".to_string(), u.clone());
            }
            if let Some(u) = q.get("s3_endpoint") {
                p.insert(iceberg::io::S3_ENDPOINT.to_string(), u.clone());
            }
            let catalog = iceberg_catalog_glue::GlueCatalogBuilder::default()
                .with_storage_factory(storage)
                .load("glue", p)
                .await
                .unwrap();
            Arc::new(catalog)
        }
        other => panic!("no raw catalog for {other}"),
    }
}

/// Path of an example binary (`cargo test` builds the examples next to the test binary).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run through `cargo test` (or `cargo build --examples` first)",
        path.display()
    );
    path
}

/// A refresh asks the catalog where the metadata is before it reads anything: with the
/// catalog still at the version a reader holds, the reader's reads reload nothing (shown by
/// the current metadata file being unreadable while they succeed, where opening the table
/// fails), and another writer's commit is still seen by the next read.
pub async fn refresh_reads_metadata_only_when_the_catalog_moved(
    config: &CatalogConfig,
    stage: &str,
) {
    let options = TableOptions::default().embedding_dimension(DIM);
    let writer = SalesHistory::ensure_with(config, stage, options)
        .await
        .expect("ensure");
    writer.append(sample(7, DIM, 1)).await.expect("append");
    let reader = SalesHistory::open(config, stage).await.expect("open");
    assert_eq!(reader.scan().count().await.expect("count"), 7);

    let held = reader.iceberg_table();
    let location = held.metadata_location().expect("a location").to_string();
    let io = held.file_io().clone();
    let bytes = io
        .new_input(&location)
        .expect("input")
        .read()
        .await
        .expect("read metadata");
    let output = io.new_output(&location).expect("output");
    output
        .write(bytes::Bytes::from_static(b"{ not metadata"))
        .await
        .expect("overwrite metadata");
    // Reads under `Freshness::Latest` refresh first; the catalog has not moved.
    let counted = reader.scan().count().await;
    let refreshed = reader.refresh().await;
    let opened = SalesHistory::open(config, stage).await;
    io.new_output(&location)
        .expect("output")
        .write(bytes)
        .await
        .expect("restore metadata");
    assert_eq!(counted.expect("a read with an unchanged catalog"), 7);
    refreshed.expect("a refresh with an unchanged catalog");
    assert!(
        opened.is_err(),
        "opening must read the (unreadable) metadata file, so the reads above did not"
    );

    // Another writer commits: the next read of the reader sees it.
    writer.append(sample(5, DIM, 2)).await.expect("append");
    assert_eq!(reader.scan().count().await.expect("count"), 12);
    assert_eq!(
        reader.iceberg_table().metadata_location(),
        writer.iceberg_table().metadata_location()
    );
    assert_eq!(reader.snapshots().await.expect("snapshots").len(), 2);
}
