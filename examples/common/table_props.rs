//! Table properties the crate's API does not set (benchmark sweeps): committed through
//! iceberg-rust's own SQL catalog on the local catalog's SQLite file, then the handle
//! refreshed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use iceberg::CatalogBuilder;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use sales_history::SalesHistory;

/// Sets `props` on the table of `handle`, kept in the local catalog at `warehouse`, and
/// refreshes the handle.
pub async fn set_properties(
    handle: &SalesHistory,
    warehouse: &Path,
    props: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let root = std::fs::canonicalize(warehouse)?;
    let root = root
        .to_str()
        .with_context(|| format!("{} is not UTF-8", root.display()))?;
    let catalog = iceberg_catalog_sql::SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(
            iceberg_storage_opendal::OpenDalResolvingStorageFactory::new(),
        ))
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
        .await?;
    let tx = Transaction::new(&handle.iceberg_table());
    let mut update = tx.update_table_properties();
    for (k, v) in props {
        update = update.set(k, v);
    }
    let tx = update.apply(tx)?;
    tx.commit(&catalog).await?;
    handle.refresh().await?;
    Ok(())
}
