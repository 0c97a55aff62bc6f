//! Where the table lives: [`CatalogConfig`] and how it becomes an Iceberg catalog.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};

use crate::error::{Error, IcebergResultExt, Result};

#[cfg(any(feature = "glue", feature = "s3tables"))]
mod aws;
#[cfg(feature = "glue")]
mod glue;
mod guard;
#[cfg(feature = "s3tables")]
mod s3tables;
pub(crate) mod swap;

#[cfg(any(feature = "glue", feature = "s3tables"))]
pub use aws::{AwsCredentials, Secret};
#[cfg(feature = "glue")]
pub use glue::GlueConfig;
pub use guard::CommitStats;
pub(crate) use guard::GuardedCatalog;
#[cfg(feature = "s3tables")]
pub use s3tables::S3TablesConfig;

/// Environment variable read by [`CatalogConfig::from_env`].
pub const CATALOG_ENV: &str = "SALES_HISTORY_CATALOG";

/// Catalog name under which the local SQLite catalog records its tables (the JDBC-catalog
/// column `catalog_name`). pyiceberg's `SqlCatalog` must be opened with this name to see them.
pub const LOCAL_CATALOG_NAME: &str = "sales_history";
/// File name of the SQLite catalog inside the local warehouse directory.
pub const LOCAL_CATALOG_FILE: &str = "catalog.db";

/// Which catalog holds `pricing_intelligence_{stage}.sales_history`, and where its files go.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CatalogConfig {
    /// The embedded default: a SQLite catalog file `catalog.db` inside `warehouse`, table data
    /// and metadata under `warehouse/pricing_intelligence_{stage}.db/sales_history/`.
    ///
    /// The SQLite file uses the JDBC-catalog tables that pyiceberg's `SqlCatalog` and Java's
    /// `JdbcCatalog` read (catalog name [`LOCAL_CATALOG_NAME`]).
    Local {
        /// The warehouse directory; created when missing.
        warehouse: PathBuf,
    },
    /// AWS Glue catalog with the warehouse in S3 (feature `glue`).
    #[cfg(feature = "glue")]
    Glue(GlueConfig),
    /// AWS S3 Tables, the managed Iceberg store (feature `s3tables`).
    #[cfg(feature = "s3tables")]
    S3Tables(S3TablesConfig),
    /// Any iceberg [`Catalog`] (a REST catalog, or a real catalog wrapped to add behaviour,
    /// e.g. fault injection in tests). `warehouse` is the URI table locations hang off.
    /// Maintenance that lists storage (`remove_orphan_files`) is not available here.
    Custom {
        /// The catalog.
        catalog: Arc<dyn Catalog>,
        /// Warehouse root URI (`file:///…`, `s3://…`), without a trailing slash.
        warehouse: String,
    },
}

impl PartialEq for CatalogConfig {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (CatalogConfig::Local { warehouse: a }, CatalogConfig::Local { warehouse: b }) => {
                a == b
            }
            #[cfg(feature = "glue")]
            (CatalogConfig::Glue(a), CatalogConfig::Glue(b)) => a == b,
            #[cfg(feature = "s3tables")]
            (CatalogConfig::S3Tables(a), CatalogConfig::S3Tables(b)) => a == b,
            (
                CatalogConfig::Custom {
                    catalog: a,
                    warehouse: x,
                },
                CatalogConfig::Custom {
                    catalog: b,
                    warehouse: y,
                },
            ) => Arc::ptr_eq(a, b) && x == y,
            _ => false,
        }
    }
}

impl Eq for CatalogConfig {}

#[cfg(feature = "s3tables")]
impl From<S3TablesConfig> for CatalogConfig {
    fn from(config: S3TablesConfig) -> Self {
        CatalogConfig::S3Tables(config)
    }
}

#[cfg(feature = "glue")]
impl From<GlueConfig> for CatalogConfig {
    fn from(config: GlueConfig) -> Self {
        CatalogConfig::Glue(config)
    }
}

/// The one string form of a catalog configuration, parsed once into [`CatalogConfig`]:
///
/// - `file:///path/to/warehouse` or a plain path: [`CatalogConfig::Local`];
/// - `glue://?region=eu-west-1&warehouse=s3://bucket/prefix` with optional `catalog_id`,
///   `glue_endpoint`, `s3_endpoint`, `s3_path_style` (`true`/`false`) and `profile`:
///   [`CatalogConfig::Glue`]. Credentials never go in the string: they come from the standard
///   AWS chain (or [`GlueConfig::credentials`]).
///
/// ```
/// use sales_history::CatalogConfig;
/// let local: CatalogConfig = "file:///var/lib/sales".parse()?;
/// assert_eq!(local, CatalogConfig::local("/var/lib/sales"));
/// # #[cfg(feature = "glue")] {
/// let glue: CatalogConfig = "glue://?region=eu-west-1&warehouse=s3://bucket/iceberg".parse()?;
/// assert_eq!(glue.to_string(), "glue://?region=eu-west-1&warehouse=s3://bucket/iceberg");
/// assert!("glue://?warehouse=s3://bucket".parse::<CatalogConfig>().is_err()); // no region
/// # }
/// # Ok::<(), sales_history::Error>(())
/// ```
impl FromStr for CatalogConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::config("catalog", "empty catalog string"));
        }
        if let Some(path) = s.strip_prefix("file://") {
            if path.is_empty() {
                return Err(Error::config("catalog", "`file://` needs a path"));
            }
            return Ok(CatalogConfig::local(path));
        }
        if s.starts_with("glue:") {
            return parse_glue(s);
        }
        if s.starts_with("s3tables:") {
            return parse_s3tables(s);
        }
        if s.contains("://") {
            return Err(Error::config(
                "catalog",
                format!(
                    "`{s}`: unknown scheme (use file:///path, glue://?region=…&warehouse=s3://… or s3tables://?arn=…)"
                ),
            ));
        }
        Ok(CatalogConfig::local(s))
    }
}

/// The `key=value` pairs of `scheme://?k=v&…`, each key one of `allowed`; a malformed pair, an
/// empty value or an unknown key is an [`Error::Config`] naming it.
#[cfg(any(feature = "glue", feature = "s3tables"))]
fn query_pairs<'s>(s: &'s str, scheme: &str, allowed: &[&str]) -> Result<Vec<(&'s str, &'s str)>> {
    let query = s
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .map(|rest| rest.trim_start_matches('/').trim_start_matches('?'))
        .ok_or_else(|| Error::config("catalog", format!("`{s}` must start with {scheme}://?")))?;
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::config("catalog", format!("`{pair}` is not key=value")))?;
        if v.is_empty() {
            return Err(Error::config(k, "empty value"));
        }
        if !allowed.contains(&k) {
            return Err(Error::config(
                k,
                format!("unknown {scheme} option ({})", allowed.join(", ")),
            ));
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

#[cfg(not(feature = "s3tables"))]
fn parse_s3tables(_: &str) -> Result<CatalogConfig> {
    Err(Error::config(
        "catalog",
        "this build has no S3 Tables support (enable the `s3tables` feature)",
    ))
}

/// `s3tables://?arn=arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME` with optional `region`,
/// `endpoint`, `s3_endpoint`, `profile`.
#[cfg(feature = "s3tables")]
fn parse_s3tables(s: &str) -> Result<CatalogConfig> {
    let mut arn = None;
    let mut extra = Vec::new();
    for (k, v) in query_pairs(
        s,
        "s3tables",
        &["arn", "region", "endpoint", "s3_endpoint", "profile"],
    )? {
        match k {
            "arn" => arn = Some(v.to_string()),
            _ => extra.push((k, v)),
        }
    }
    let arn = arn.ok_or_else(|| {
        Error::config(
            "arn",
            "missing: add arn=arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME",
        )
    })?;
    let mut config = S3TablesConfig::new(arn);
    for (k, v) in extra {
        config = match k {
            "region" => config.region(v),
            "endpoint" => config.endpoint(v),
            "s3_endpoint" => config.s3_endpoint(v),
            _ => config.profile(v),
        };
    }
    config.validate()?;
    Ok(CatalogConfig::S3Tables(config))
}

#[cfg(not(feature = "glue"))]
fn parse_glue(_: &str) -> Result<CatalogConfig> {
    Err(Error::config(
        "catalog",
        "this build has no Glue support (enable the `glue` feature)",
    ))
}

#[cfg(feature = "glue")]
fn parse_glue(s: &str) -> Result<CatalogConfig> {
    let mut region = None;
    let mut warehouse = None;
    let mut extra = Vec::new();
    for (k, v) in query_pairs(
        s,
        "glue",
        &[
            "region",
            "warehouse",
            "catalog_id",
            "glue_endpoint",
            "s3_endpoint",
            "s3_path_style",
            "profile",
        ],
    )? {
        match k {
            "region" => region = Some(v.to_string()),
            "warehouse" => warehouse = Some(v.to_string()),
            _ => extra.push((k, v)),
        }
    }
    let region = region
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .ok_or_else(|| Error::config("region", "missing: add region=… (or set AWS_REGION)"))?;
    let warehouse = warehouse
        .ok_or_else(|| Error::config("warehouse", "missing: add warehouse=s3://bucket/prefix"))?;
    let mut config = GlueConfig::new(region, warehouse);
    for (k, v) in extra {
        config = match k {
            "catalog_id" => config.catalog_id(v),
            "glue_endpoint" => config.glue_endpoint(v),
            "s3_endpoint" => config.s3_endpoint(v),
            "profile" => config.profile(v),
            _ => config.s3_path_style(match v {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(Error::config(
                        "s3_path_style",
                        format!("`{v}` is not true or false"),
                    ));
                }
            }),
        };
    }
    config.validate()?;
    Ok(CatalogConfig::Glue(config))
}

impl fmt::Display for CatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogConfig::Local { warehouse } => write!(f, "file://{}", warehouse.display()),
            CatalogConfig::Custom { warehouse, .. } => {
                write!(f, "custom catalog, warehouse {warehouse}")
            }
            #[cfg(feature = "s3tables")]
            CatalogConfig::S3Tables(t) => {
                write!(
                    f,
                    "s3tables://?arn={}&region={}",
                    t.table_bucket_arn, t.region
                )?;
                for (k, v) in [
                    ("endpoint", &t.endpoint),
                    ("s3_endpoint", &t.s3_endpoint),
                    ("profile", &t.profile),
                ] {
                    if let Some(v) = v {
                        write!(f, "&{k}={v}")?;
                    }
                }
                Ok(())
            }
            #[cfg(feature = "glue")]
            CatalogConfig::Glue(g) => {
                write!(f, "glue://?region={}&warehouse={}", g.region, g.warehouse)?;
                for (k, v) in [
                    ("catalog_id", &g.catalog_id),
                    ("glue_endpoint", &g.glue_endpoint),
                    ("s3_endpoint", &g.s3_endpoint),
                    ("profile", &g.profile),
                ] {
                    if let Some(v) = v {
                        write!(f, "&{k}={v}")?;
                    }
                }
                if let Some(p) = g.s3_path_style {
                    write!(f, "&s3_path_style={p}")?;
                }
                Ok(())
            }
        }
    }
}

impl CatalogConfig {
    /// The embedded local catalog in `warehouse`.
    pub fn local(warehouse: impl Into<PathBuf>) -> Self {
        CatalogConfig::Local {
            warehouse: warehouse.into(),
        }
    }

    /// Reads the configuration from the `SALES_HISTORY_CATALOG` environment variable, in the
    /// string form described at [`FromStr`](#impl-FromStr-for-CatalogConfig).
    pub fn from_env() -> Result<Self> {
        match std::env::var(CATALOG_ENV) {
            Ok(v) => v.parse(),
            Err(_) => Err(Error::config(
                CATALOG_ENV,
                "not set (e.g. file:///path/to/warehouse or glue://?region=eu-west-1&warehouse=s3://bucket/prefix)",
            )),
        }
    }

    /// [`crate::classify::from_iceberg`], with the names only the configuration knows (the
    /// bucket, the endpoint) filled into the message.
    pub(crate) fn classify(&self, e: iceberg::Error) -> Error {
        match Error::from_iceberg(e) {
            Error::Config { key, reason } if key == "warehouse" => {
                let bucket = match self {
                    #[cfg(feature = "glue")]
                    CatalogConfig::Glue(g) => g.bucket().unwrap_or_default().to_string(),
                    #[cfg(feature = "s3tables")]
                    CatalogConfig::S3Tables(t) => t.bucket_name().to_string(),
                    CatalogConfig::Local { .. } | CatalogConfig::Custom { .. } => String::new(),
                };
                Error::config(key, format!("bucket `{bucket}`: {reason}"))
            }
            Error::Unavailable { reason, .. } => {
                let service = match self {
                    #[cfg(feature = "glue")]
                    CatalogConfig::Glue(g) => format!(
                        "the Glue catalog at {} (region {})",
                        g.glue_endpoint
                            .as_deref()
                            .unwrap_or("its regional endpoint"),
                        g.region
                    ),
                    #[cfg(feature = "s3tables")]
                    CatalogConfig::S3Tables(t) => format!(
                        "S3 Tables at {} (region {})",
                        t.endpoint.as_deref().unwrap_or("its regional endpoint"),
                        t.region
                    ),
                    CatalogConfig::Custom { warehouse, .. } => {
                        format!("the catalog of {warehouse}")
                    }
                    CatalogConfig::Local { warehouse } => {
                        format!("the local catalog in {}", warehouse.display())
                    }
                };
                Error::Unavailable { service, reason }
            }
            other => other,
        }
    }

    /// Whether the catalog assigns table locations itself (S3 Tables refuses one set by us).
    pub(crate) fn assigns_locations(&self) -> bool {
        match self {
            #[cfg(feature = "s3tables")]
            CatalogConfig::S3Tables(_) => true,
            _ => false,
        }
    }

    /// Connects to a catalog that must already exist: for the local catalog, a directory
    /// without `catalog.db` is an [`Error::Config`] on `warehouse` and nothing is created
    /// (read-only callers pointed at a mistyped directory leave the disk as it was).
    pub(crate) async fn connect_existing(&self) -> Result<Connected> {
        if let CatalogConfig::Local { warehouse } = self
            && !warehouse.join(LOCAL_CATALOG_FILE).is_file()
        {
            return Err(Error::config(
                "warehouse",
                format!(
                    "there is no sales_history catalog in `{}` (no {LOCAL_CATALOG_FILE}): check the path, or create the table first (SalesHistory::ensure, create_schema)",
                    warehouse.display()
                ),
            ));
        }
        self.connect().await
    }

    /// Connects to the catalog, creating the local warehouse directory when needed.
    pub(crate) async fn connect(&self) -> Result<Connected> {
        let (catalog, warehouse_uri) = self.connect_raw().await?;
        Ok(Connected {
            catalog: Arc::new(GuardedCatalog::new(catalog)),
            warehouse_uri,
        })
    }

    /// Lists every file under a table location with its last-modified time (for orphan removal).
    pub(crate) async fn list_files(
        &self,
        location: &str,
    ) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
        match self {
            CatalogConfig::Local { .. } => {
                let root = location
                    .strip_prefix("file://")
                    .unwrap_or(location)
                    .to_string();
                tokio::task::spawn_blocking(move || list_local(std::path::Path::new(&root)))
                    .await
                    .map_err(|e| Error::config("location", format!("listing task failed: {e}")))?
            }
            #[cfg(feature = "glue")]
            CatalogConfig::Glue(g) => g.list(location).await,
            #[cfg(feature = "s3tables")]
            CatalogConfig::S3Tables(_) => Err(Error::managed_by_s3_tables(
                "remove_orphan_files",
                "S3 Tables removes unreferenced files itself: set the table bucket's \
                 unreferenced-file removal (PutTableBucketMaintenanceConfiguration)",
            )),
            CatalogConfig::Custom { .. } => Err(Error::config(
                "catalog",
                "listing storage needs a Local or Glue catalog configuration",
            )),
        }
    }

    async fn connect_raw(&self) -> Result<(Arc<dyn Catalog>, String)> {
        Ok(match self {
            CatalogConfig::Custom { catalog, warehouse } => {
                (catalog.clone(), warehouse.trim_end_matches('/').to_string())
            }
            CatalogConfig::Local { warehouse } => connect_local(warehouse).await?,
            #[cfg(feature = "glue")]
            CatalogConfig::Glue(glue) => glue.connect().await?,
            #[cfg(feature = "s3tables")]
            CatalogConfig::S3Tables(t) => t.connect().await?,
        })
    }
}

/// A live catalog plus the warehouse root that table locations hang off.
pub(crate) struct Connected {
    pub(crate) catalog: Arc<GuardedCatalog>,
    /// URI of the warehouse root, without a trailing slash (`file:///…`, `s3://…`).
    pub(crate) warehouse_uri: String,
}

fn list_local(root: &Path) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted while listed (a writer's metadata clean-up, an expiry): gone is
                // not an orphan.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Io {
                        path: path.display().to_string(),
                        source,
                    });
                }
            };
            if meta.is_dir() {
                stack.push(path);
            } else {
                let when = meta
                    .modified()
                    .map(chrono::DateTime::<chrono::Utc>::from)
                    .unwrap_or_default();
                out.push((format!("file://{}", path.display()), when));
            }
        }
    }
    Ok(out)
}

async fn connect_local(warehouse: &Path) -> Result<(Arc<dyn Catalog>, String)> {
    let io_err = |source| Error::Io {
        path: warehouse.display().to_string(),
        source,
    };
    if warehouse.as_os_str().is_empty() {
        return Err(Error::config(
            "warehouse",
            "the local warehouse path is empty",
        ));
    }
    std::fs::create_dir_all(warehouse).map_err(io_err)?;
    let root = std::fs::canonicalize(warehouse).map_err(io_err)?;
    let root_str = root.to_str().ok_or_else(|| {
        Error::config(
            "warehouse",
            format!("`{}` is not valid UTF-8", root.display()),
        )
    })?;
    let root_str = root_str.trim_end_matches('/');
    let warehouse_uri = format!("file://{root_str}");
    let props = HashMap::from([
        (
            iceberg_catalog_sql::SQL_CATALOG_PROP_URI.to_string(),
            format!("sqlite://{root_str}/{LOCAL_CATALOG_FILE}?mode=rwc"),
        ),
        (
            iceberg_catalog_sql::SQL_CATALOG_PROP_WAREHOUSE.to_string(),
            warehouse_uri.clone(),
        ),
        (
            iceberg_catalog_sql::SQL_CATALOG_PROP_BIND_STYLE.to_string(),
            iceberg_catalog_sql::SqlBindStyle::QMark.to_string(),
        ),
    ]);
    let catalog = iceberg_catalog_sql::SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(
            iceberg_storage_opendal::OpenDalResolvingStorageFactory::new(),
        ))
        .load(LOCAL_CATALOG_NAME, props)
        .await
        .or_ours()?;
    Ok((Arc::new(catalog), warehouse_uri))
}
