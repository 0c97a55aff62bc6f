//! The live data files of a snapshot, read from its manifests.

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, ManifestContentType};
use iceberg::table::Table;

use crate::error::{IcebergResultExt, Result};

/// Manifests read at once.
const MANIFEST_CONCURRENCY: usize = 8;

/// A live data file and the partition spec it was written with.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) spec_id: i32,
    pub(crate) file: DataFile,
}

/// Every live data file of the table's current snapshot (none without a snapshot).
pub(crate) async fn live(table: &Table) -> Result<Vec<Live>> {
    match table.metadata().current_snapshot() {
        Some(current) => live_in(table, current).await,
        None => Ok(Vec::new()),
    }
}

/// Every live data file of `snapshot` of `table`.
pub(crate) async fn live_in(
    table: &Table,
    current: &iceberg::spec::SnapshotRef,
) -> Result<Vec<Live>> {
    Ok(live_and_deletes_in(table, current).await?.0)
}

/// Every live data file of `snapshot` of `table`, and whether it has live row-level delete
/// files ([`lists_delete_files`]), from one read of its manifest list.
pub(crate) async fn live_and_deletes_in(
    table: &Table,
    current: &iceberg::spec::SnapshotRef,
) -> Result<(Vec<Live>, bool)> {
    let list = table.manifest_list_reader(current).load().await.or_ours()?;
    let has_deletes = lists_delete_files(list.entries());
    let io = table.file_io().clone();
    let manifests: Vec<_> = list
        .consume_entries()
        .into_iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .collect();
    let per_manifest: Vec<Vec<Live>> = futures::stream::iter(manifests)
        .map(|m| {
            let io = io.clone();
            async move {
                let manifest = m.load_manifest(&io).await.or_ours()?;
                let spec_id = manifest.metadata().partition_spec().spec_id();
                Ok::<_, crate::Error>(
                    manifest
                        .entries()
                        .iter()
                        .filter(|e| e.is_alive())
                        .map(|e| Live {
                            spec_id,
                            file: e.data_file().clone(),
                        })
                        .collect(),
                )
            }
        })
        .buffered(MANIFEST_CONCURRENCY)
        .try_collect()
        .await?;
    Ok((per_manifest.into_iter().flatten().collect(), has_deletes))
}

/// Whether a manifest list has live row-level delete files (merge-on-read deletes written by
/// another engine). Rewrites read data files as they are, so they refuse such tables rather
/// than resurrect deleted rows.
pub(crate) fn lists_delete_files(manifests: &[iceberg::spec::ManifestFile]) -> bool {
    manifests.iter().any(|m| {
        m.content == ManifestContentType::Deletes && (m.has_added_files() || m.has_existing_files())
    })
}

/// The refusal of a rewrite of a table with delete files.
pub(crate) fn delete_files_refused(operation: &str) -> crate::Error {
    crate::Error::Unsupported {
        operation: operation.to_string(),
        reason: "the table has row-level delete files (merge-on-read deletes by another \
                 engine); rewrite it with that engine first"
            .into(),
    }
}

/// [`delete_files_refused`] when the table's current snapshot has delete files: checked before
/// an operation does its work (the commit checks again on every attempt).
pub(crate) async fn refuse_delete_files(table: &Table, operation: &str) -> Result<()> {
    let Some(current) = table.metadata().current_snapshot() else {
        return Ok(());
    };
    let list = table.manifest_list_reader(current).load().await.or_ours()?;
    if lists_delete_files(list.entries()) {
        return Err(delete_files_refused(operation));
    }
    Ok(())
}
