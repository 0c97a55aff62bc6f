//! Where the table lives, the same in every tool: `--warehouse DIR` | `--catalog URI`, and
//! `--stage STAGE`. Flatten it into a tool's parser:
//!
//! ```ignore
//! #[path = "common/catalog_args.rs"]
//! mod catalog_args;
//!
//! #[derive(clap::Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     catalog: catalog_args::CatalogArgs,
//! }
//! ```

use std::path::PathBuf;

use clap::error::ErrorKind;
use sales_history::{CATALOG_ENV, CatalogConfig};

/// The warehouse used when neither `--warehouse`, `--catalog` nor `SALES_HISTORY_CATALOG` says
/// otherwise.
const DEFAULT_WAREHOUSE: &str = "./warehouse";

/// `--warehouse` / `--catalog` / `--stage`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Catalog")]
pub struct CatalogArgs {
    /// The embedded local catalog in DIR (SQLite catalog.db plus the table's files).
    #[arg(long, value_name = "DIR", conflicts_with = "catalog")]
    pub warehouse: Option<PathBuf>,

    /// Any catalog as a string: a path, file:///path, or
    /// glue://?region=eu-west-1&warehouse=s3://bucket/prefix. Without --warehouse and --catalog:
    /// $SALES_HISTORY_CATALOG if set, else ./warehouse.
    #[arg(long, value_name = "URI", value_parser = parse_catalog)]
    pub catalog: Option<CatalogConfig>,

    /// The table is pricing_intelligence_STAGE.sales_history (lowercase letters, digits, _).
    #[arg(long, value_name = "STAGE", default_value = "dev", value_parser = parse_stage)]
    pub stage: String,
}

impl CatalogArgs {
    /// The catalog configuration: `--warehouse`, else `--catalog`, else `SALES_HISTORY_CATALOG`,
    /// else the local `./warehouse`. A malformed `SALES_HISTORY_CATALOG` ends the program with
    /// a usage error (exit status 2), as a bad flag does.
    pub fn config(&self) -> CatalogConfig {
        if let Some(dir) = &self.warehouse {
            return CatalogConfig::local(dir);
        }
        if let Some(config) = &self.catalog {
            return config.clone();
        }
        match std::env::var(CATALOG_ENV) {
            Ok(uri) => uri.parse().unwrap_or_else(|e| {
                clap::Error::raw(
                    ErrorKind::InvalidValue,
                    format!("invalid value '{uri}' in ${CATALOG_ENV}: {e}\n"),
                )
                .exit()
            }),
            Err(_) => CatalogConfig::local(DEFAULT_WAREHOUSE),
        }
    }
}

fn parse_catalog(uri: &str) -> Result<CatalogConfig, String> {
    uri.parse().map_err(|e: sales_history::Error| e.to_string())
}

fn parse_stage(stage: &str) -> Result<String, String> {
    sales_history::namespace_for_stage(stage)
        .map(|_| stage.to_string())
        .map_err(|e| e.to_string())
}
