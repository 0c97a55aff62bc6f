//! A variant's table: created by the crate (our properties), then the variant's table
//! properties set through iceberg-rust's SQL catalog on the same SQLite file, and the sample
//! rows every variant appends.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use iceberg::CatalogBuilder;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    CatalogConfig, MANIFEST_MERGE_ENABLED_PROPERTY, MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY,
    MAX_SNAPSHOT_AGE_PROPERTY, MIN_SNAPSHOTS_TO_KEEP_PROPERTY, SaleRecord, SalesHistory,
    TableOptions,
};

use crate::{Res, STAGE, Settings, Variant};

/// Creates the table of `variant` in `warehouse` and sets its properties.
pub async fn create(settings: &Settings, variant: Variant, warehouse: &Path) -> Res<SalesHistory> {
    let config = CatalogConfig::local(warehouse);
    let table = SalesHistory::ensure_with(
        &config,
        STAGE,
        TableOptions::default().embedding_dimension(settings.dim),
    )
    .await?;
    let props = properties(settings, variant);
    if !props.is_empty() {
        set_properties(&table, warehouse, props).await?;
    }
    Ok(table)
}

/// The table properties a variant sets on top of ours.
pub fn properties(settings: &Settings, variant: Variant) -> Vec<(String, String)> {
    let mut props = Vec::new();
    if !variant.merges() {
        props.push((MANIFEST_MERGE_ENABLED_PROPERTY.into(), "false".into()));
    }
    if let Some(n) = settings.min_count_to_merge {
        props.push((MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY.into(), n.to_string()));
    }
    if variant == Variant::Task {
        props.push((
            MAX_SNAPSHOT_AGE_PROPERTY.into(),
            settings.max_snapshot_age.as_millis().to_string(),
        ));
        props.push((
            MIN_SNAPSHOTS_TO_KEEP_PROPERTY.into(),
            settings.min_snapshots_to_keep.to_string(),
        ));
    }
    props
}

/// Sets table properties through iceberg-rust's SQL catalog on the local catalog's SQLite
/// file, then refreshes `table`.
pub async fn set_properties(
    table: &SalesHistory,
    warehouse: &Path,
    props: Vec<(String, String)>,
) -> Res<()> {
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
    let tx = Transaction::new(&table.iceberg_table());
    let mut update = tx.update_table_properties();
    for (k, v) in props {
        update = update.set(k, v);
    }
    let tx = update.apply(tx)?;
    tx.commit(&catalog).await?;
    table.refresh().await?;
    Ok(())
}

/// The rows every variant appends: one month, `settings.tenants` tenants, the same stream in
/// every variant.
pub fn generator(settings: &Settings) -> SampleGenerator {
    SampleGenerator::new(
        SampleConfig::default()
            .seed(20_251)
            .months(1)
            .end_month(settings.month)
            .tenants(settings.tenants)
            .embedding_dimension(settings.dim),
    )
}

/// Writes `n` rows of the stream to a Parquet file (our Arrow layout), for the pyiceberg
/// variants.
pub fn write_pool(settings: &Settings, n: usize, path: &Path) -> Res<()> {
    let records: Vec<SaleRecord> = generator(settings).take_records(n);
    let batch = SaleRecord::to_record_batch(&records)?;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
