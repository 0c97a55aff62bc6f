//! A variant's table: created by the crate (our properties), then the variant's table
//! properties set through iceberg-rust's SQL catalog on the same SQLite file, and the sample
//! rows every variant appends.

use std::path::Path;

use anyhow::Context;
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
        crate::table_props::set_properties(&table, warehouse, props).await?;
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
