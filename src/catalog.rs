//! Where the table lives: [`CatalogConfig`] and how it becomes an Iceberg catalog.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};

use crate::error::{Error, Result};

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
}

impl CatalogConfig {
    /// The embedded local catalog in `warehouse`.
    pub fn local(warehouse: impl Into<PathBuf>) -> Self {
        CatalogConfig::Local {
            warehouse: warehouse.into(),
        }
    }

    /// Connects to the catalog, creating the local warehouse directory when needed.
    pub(crate) async fn connect(&self) -> Result<Connected> {
        match self {
            CatalogConfig::Local { warehouse } => connect_local(warehouse).await,
        }
    }
}

/// A live catalog plus the warehouse root that table locations hang off.
pub(crate) struct Connected {
    pub(crate) catalog: Arc<dyn Catalog>,
    /// URI of the warehouse root, without a trailing slash (`file:///…`, `s3://…`).
    pub(crate) warehouse_uri: String,
}

async fn connect_local(warehouse: &Path) -> Result<Connected> {
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
    Ok(Connected {
        catalog: Arc::new(catalog),
        warehouse_uri,
    })
}
