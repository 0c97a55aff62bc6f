//! The live data files of a snapshot, read from its manifests.

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, ManifestContentType};
use iceberg::table::Table;

use crate::error::{IcebergResultExt, Result};
use crate::lru::ByteLru;

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

/// Every live data file of `snapshot` of `table` (read from storage, nothing kept).
async fn live_in(table: &Table, current: &iceberg::spec::SnapshotRef) -> Result<Vec<Live>> {
    let files = read_snapshot(table, current, None).await?;
    Ok(files
        .iter()
        .map(|(spec_id, file)| Live {
            spec_id,
            file: file.clone(),
        })
        .collect())
}

/// The live data files of `snapshot`, manifest by manifest, and whether it has live row-level
/// delete files ([`lists_delete_files`]), from one read of its manifest list. Manifests held
/// in `kept` are not read; those read are put there.
async fn read_snapshot(
    table: &Table,
    snapshot: &iceberg::spec::SnapshotRef,
    kept: Option<&ByteLru<String, Arc<ManifestFiles>>>,
) -> Result<SnapshotFiles> {
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .or_ours()?;
    let has_deletes = lists_delete_files(list.entries());
    let io = table.file_io().clone();
    let data: Vec<_> = list
        .consume_entries()
        .into_iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .collect();
    let manifests: Vec<Arc<ManifestFiles>> = futures::stream::iter(data)
        .map(|m| {
            let io = io.clone();
            async move {
                if let Some(held) = kept.and_then(|k| k.get(m.manifest_path.as_str())) {
                    return Ok::<_, crate::Error>(held);
                }
                let manifest = m.load_manifest(&io).await.or_ours()?;
                let spec_id = manifest.metadata().partition_spec().spec_id();
                let files: Vec<DataFile> = manifest
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| e.data_file().clone())
                    .collect();
                // Each file's month partition, when the spec has one: a scan's month test
                // reads these few bytes instead of every file's partition struct.
                let spec = manifest.metadata().partition_spec();
                let month_at = spec.fields().iter().position(|f| {
                    f.transform == iceberg::spec::Transform::Month
                        && f.source_id == crate::Column::SoldDate.field_id()
                });
                let months = files
                    .iter()
                    .map(
                        |f| match month_at.and_then(|at| f.partition().fields().get(at)) {
                            Some(Some(iceberg::spec::Literal::Primitive(
                                iceberg::spec::PrimitiveLiteral::Int(m),
                            ))) => Some(*m),
                            _ => None,
                        },
                    )
                    .collect();
                let read = Arc::new(ManifestFiles {
                    spec_id,
                    files,
                    months,
                });
                if let Some(kept) = kept {
                    let bytes = read.files.iter().map(entry_bytes).sum::<usize>()
                        + read.months.len() * std::mem::size_of::<Option<i32>>()
                        + 128;
                    kept.put(m.manifest_path.clone(), read.clone(), bytes);
                }
                Ok(read)
            }
        })
        .buffered(MANIFEST_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(SnapshotFiles {
        manifests,
        has_deletes,
    })
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

/// The live data files of one manifest (a manifest never changes: its live entries are the
/// same in every snapshot that lists it).
#[derive(Debug)]
pub(crate) struct ManifestFiles {
    pub(crate) spec_id: i32,
    pub(crate) files: Vec<DataFile>,
    /// Each file's `month(sold_date)` partition value (months since 1970-01), when its spec
    /// has that field.
    months: Vec<Option<i32>>,
}

/// A snapshot's live data files, manifest by manifest (shared with the other snapshots that
/// list the same manifests).
#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    manifests: Vec<Arc<ManifestFiles>>,
    /// Whether the snapshot has live row-level delete files (another engine's merge-on-read
    /// deletes): readers that do not apply them must not use these files alone.
    pub(crate) has_deletes: bool,
}

impl SnapshotFiles {
    /// Every live data file with its partition spec id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i32, &DataFile)> {
        self.manifests
            .iter()
            .flat_map(|m| m.files.iter().map(move |f| (m.spec_id, f)))
    }

    /// The live data files `pruner` keeps, with their partition spec ids (each file tested with
    /// its month partition value kept side by side).
    pub(crate) fn matching<'a, 'p, 'f>(
        &'a self,
        pruner: &'p crate::scan::Pruner<'f>,
    ) -> impl Iterator<Item = (i32, &'a DataFile)> + use<'a, 'p, 'f> {
        self.manifests.iter().flat_map(move |m| {
            m.files
                .iter()
                .zip(&m.months)
                .filter(move |(f, month)| pruner.may_match(m.spec_id, **month, f))
                .map(move |(f, _)| (m.spec_id, f))
        })
    }

    /// How many live data files.
    pub(crate) fn len(&self) -> usize {
        self.manifests.iter().map(|m| m.files.len()).sum()
    }
}

/// What a handle keeps of its snapshots' live data files, so that a scan or a similarity
/// search prunes them per filter ([`Pruner`](crate::scan::filter::Pruner)) instead of
/// planning with iceberg's planner (~20 ms at 4,800 files, every query):
///
/// - each manifest's live entries, by path, least recently used beyond a byte cap
///   ([`DEFAULT_LIVE_CACHE_BYTES`]): the first query after a commit reads only the manifests
///   the commit wrote;
/// - the last [`SNAPSHOTS_KEPT`] snapshots' manifest lists (read once per snapshot).
pub(crate) struct LiveCache {
    manifests: ByteLru<String, Arc<ManifestFiles>>,
    snapshots: Mutex<Vec<(i64, Arc<SnapshotFiles>)>>,
}

/// Bytes of manifest entries a handle keeps by default (about 40,000 data files' entries with
/// their column bounds).
pub(crate) const DEFAULT_LIVE_CACHE_BYTES: u64 = 64 << 20;

/// Snapshots whose manifest lists a handle keeps (the current one and a few it travelled to).
pub(crate) const SNAPSHOTS_KEPT: usize = 4;

impl Default for LiveCache {
    fn default() -> Self {
        LiveCache {
            manifests: ByteLru::new(DEFAULT_LIVE_CACHE_BYTES),
            snapshots: Mutex::new(Vec::new()),
        }
    }
}

/// About how many bytes a kept data-file entry takes (path, partition, bounds, counts).
fn entry_bytes(f: &DataFile) -> usize {
    let bounds: usize = f
        .lower_bounds()
        .values()
        .chain(f.upper_bounds().values())
        .map(|d| 48 + d.to_bytes().map_or(0, |b| b.len()))
        .sum();
    let counts = 32
        * (f.value_counts().len()
            + f.null_value_counts().len()
            + f.column_sizes().len()
            + f.nan_value_counts().len());
    std::mem::size_of::<DataFile>() + f.file_path().len() + bounds + counts + 64
}

impl LiveCache {
    /// The live data files of `snapshot` of `table`: kept from an earlier query, else from its
    /// manifest list, with only the manifests not kept read from storage.
    pub(crate) async fn snapshot_files(
        &self,
        table: &Table,
        snapshot: &iceberg::spec::SnapshotRef,
    ) -> Result<Arc<SnapshotFiles>> {
        let id = snapshot.snapshot_id();
        if let Some(kept) = self.kept(id) {
            return Ok(kept);
        }
        let files = Arc::new(read_snapshot(table, snapshot, Some(&self.manifests)).await?);
        if let Ok(mut kept) = self.snapshots.lock()
            && kept.iter().all(|(s, _)| *s != id)
        {
            if kept.len() >= SNAPSHOTS_KEPT {
                drop(kept.remove(0));
            }
            kept.push((id, files.clone()));
        }
        Ok(files)
    }

    fn kept(&self, id: i64) -> Option<Arc<SnapshotFiles>> {
        let kept = self.snapshots.lock().ok()?;
        kept.iter().find(|(s, _)| *s == id).map(|(_, f)| f.clone())
    }

    /// Bytes of manifest entries kept now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.manifests.bytes()
    }
}
