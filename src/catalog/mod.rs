//! Where the table lives: [`CatalogConfig`] and how it becomes an Iceberg catalog.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};

use crate::error::{Error, Result};

#[cfg(feature = "glue")]
mod glue;
mod guard;

#[cfg(feature = "glue")]
pub use glue::{AwsCredentials, GlueConfig, Secret};
pub use guard::CommitStats;
pub(crate) use guard::GuardedCatalog;

/// Environment variable read by [`CatalogConfig::from_env`].
pub const CATALOG_ENV: &str = "SALES_HISTORY_CATALOG";

/// Catalog name under which the local SQLite catalog records its tables (the JDBC-catalog
/// column `catalog_name`). pyiceberg's `SqlCatalog` must be opened with this name to see them.
pub const LOCAL_CATALOG_NAME: &str = "sales_history";
/// File name of the SQLite catalog inside the local warehouse directory.
pub const LOCAL_CATALOG_FILE: &str = "catalog.db";

/// Which catalog holds `pricing_intelligence_{stage}.sales_history`, and where its files go.
#[derive(Clone, Debug, PartialEq, Eq)]
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
///   AWS chain (or [`GlueConfig::with_credentials`]).
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
        if s.contains("://") {
            return Err(Error::config(
                "catalog",
                format!(
                    "`{s}`: unknown scheme (use file:///path or glue://?region=…&warehouse=s3://…)"
                ),
            ));
        }
        Ok(CatalogConfig::local(s))
    }
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
    let query = s
        .strip_prefix("glue://")
        .map(|rest| rest.trim_start_matches('/').trim_start_matches('?'))
        .ok_or_else(|| Error::config("catalog", format!("`{s}` must start with glue://?")))?;
    let mut region = None;
    let mut warehouse = None;
    let mut extra = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::config("catalog", format!("`{pair}` is not key=value")))?;
        if v.is_empty() {
            return Err(Error::config(k, "empty value"));
        }
        match k {
            "region" => region = Some(v.to_string()),
            "warehouse" => warehouse = Some(v.to_string()),
            "catalog_id" | "glue_endpoint" | "s3_endpoint" | "s3_path_style" | "profile" => {
                extra.push((k, v))
            }
            other => {
                return Err(Error::config(
                    other,
                    "unknown Glue option (region, warehouse, catalog_id, glue_endpoint, s3_endpoint, s3_path_style, profile)",
                ));
            }
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
            "catalog_id" => config.with_catalog_id(v),
            "glue_endpoint" => config.with_glue_endpoint(v),
            "s3_endpoint" => config.with_s3_endpoint(v),
            "profile" => config.with_profile(v),
            _ => config.with_s3_path_style(match v {
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

    /// Turns a catalog or storage error into the typed error that says what to fix.
    pub(crate) fn classify(&self, e: iceberg::Error) -> Error {
        let text = format!("{e:?}");
        if text.contains("NoSuchBucket") {
            let bucket = match self {
                #[cfg(feature = "glue")]
                CatalogConfig::Glue(g) => g.bucket().unwrap_or_default().to_string(),
                CatalogConfig::Local { .. } => String::new(),
            };
            return Error::config(
                "warehouse",
                format!(
                    "bucket `{bucket}` does not exist or is not accessible with these credentials"
                ),
            );
        }
        const UNREACHABLE: &[&str] = &[
            "dispatch failure",
            "Connection refused",
            "error trying to connect",
            "ConnectError",
            "connection error",
            "TimedOut",
            "timed out",
        ];
        if UNREACHABLE.iter().any(|m| text.contains(m)) {
            let service = match self {
                #[cfg(feature = "glue")]
                CatalogConfig::Glue(g) => format!(
                    "the Glue catalog at {} (region {})",
                    g.glue_endpoint
                        .as_deref()
                        .unwrap_or("its regional endpoint"),
                    g.region
                ),
                CatalogConfig::Local { warehouse } => {
                    format!("the local catalog in {}", warehouse.display())
                }
            };
            return Error::Unavailable {
                service,
                reason: format!("{e}"),
            };
        }
        e.into()
    }

    /// Connects to the catalog, creating the local warehouse directory when needed.
    pub(crate) async fn connect(&self) -> Result<Connected> {
        let (catalog, warehouse_uri) = match self {
            CatalogConfig::Local { warehouse } => connect_local(warehouse).await?,
            #[cfg(feature = "glue")]
            CatalogConfig::Glue(glue) => glue.connect().await?,
        };
        Ok(Connected {
            catalog: Arc::new(GuardedCatalog::new(catalog)),
            warehouse_uri,
        })
    }
}

/// A live catalog plus the warehouse root that table locations hang off.
pub(crate) struct Connected {
    pub(crate) catalog: Arc<GuardedCatalog>,
    /// URI of the warehouse root, without a trailing slash (`file:///…`, `s3://…`).
    pub(crate) warehouse_uri: String,
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
        .await?;
    Ok((Arc::new(catalog), warehouse_uri))
}
