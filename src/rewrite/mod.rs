//! Our own snapshot commit path: **what iceberg 0.10.1 lacks**.
//!
//! iceberg-rust 0.10.1 commits only `fast_append` (and snapshot expiry): its `TableCommit`
//! builder is crate-private, it has no replace / overwrite / delete action (upstream PRs
//! apache/iceberg-rust#3046 RewriteFiles and #2185 Overwrite are open), and its snapshot
//! summary helper rejects `replace`. Compaction and delete-by-filter need a snapshot that
//! *removes* files, so this module builds one from iceberg's public pieces:
//!
//! 1. **manifests** — every data manifest of the base snapshot that lists a removed file is
//!    rewritten with [`ManifestWriterBuilder::build_v2_data`]: removed files as `deleted`
//!    entries, the others as `existing` entries, both keeping their data and file sequence
//!    numbers; untouched manifests are reused as they are; added files go to one new manifest;
//! 2. **manifest list** — [`ManifestListWriter::v2`] with the next sequence number;
//! 3. **snapshot** — [`Snapshot::builder`], the summary computed here (the added/deleted
//!    metrics from iceberg's public [`SnapshotSummaryCollector`], the `total-*` figures carried
//!    from the parent; our commit id, writer and source positions carried forward);
//! 4. **metadata** — [`TableMetadata::into_builder`] + `add_snapshot` + `set_ref("main")`,
//!    written with [`TableMetadata::write_to`] as `{version+1}-{uuid}.metadata.json`;
//! 5. **compare-and-swap** in the catalog ([`swap`]): SQLite updates the row only where the
//!    metadata location is the one the attempt read; Glue calls `UpdateTable` with the
//!    `VersionId` read, with a `TableInput` copied from the table as it is (everything Athena
//!    reads stays as our appends leave it) and only the two metadata locations changed.
//!
//! A refused swap deletes the manifests, manifest list and metadata file the attempt wrote
//! (nothing references them), refreshes, checks that every file the operation removes is
//! still live, and re-applies the same change on the new version (a concurrent append
//! survives a compaction); a removed file gone in the meantime is a [`Error::CommitConflict`].
//! An answer lost on the way back is settled by re-reading the table and looking for the
//! commit id. Data files are never deleted here: the operation that wrote them owns them.
//!
//! When upstream gains `RewriteFiles`/`Overwrite` actions and a public `TableCommit`, the
//! stages 1–4 can go and the swap becomes `Catalog::update_table`.

pub(crate) mod compact;
pub(crate) mod delete;
pub(crate) mod files;
mod swap;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use iceberg::MetadataLocation;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention,
    SnapshotSummaryCollector, Summary, TableMetadata,
};
use iceberg::table::Table;

use crate::commit::RetryPolicy;
use crate::error::{Error, IcebergResultExt, Result};
use crate::position::Positions;
use crate::table::{COMMIT_ID_PROPERTY, SalesHistory, WRITER_PROPERTY};

pub(crate) use swap::{SwapError, SwapState};

/// Manifests read at once while staging a commit.
const MANIFEST_CONCURRENCY: usize = 8;

/// One snapshot's worth of change to commit on our path.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// `replace` (compaction), `overwrite` (rows removed and rewritten) or `delete`.
    pub(crate) operation: Operation,
    /// Data files the snapshot adds.
    pub(crate) added: Vec<DataFile>,
    /// Paths of live data files the snapshot removes (all must still be live).
    pub(crate) removed: HashSet<String>,
    /// Stored in the summary under [`COMMIT_ID_PROPERTY`].
    pub(crate) commit_id: String,
    /// Extra summary properties (e.g. what a compaction did).
    pub(crate) properties: HashMap<String, String>,
    /// Source positions of the added rows (merged with the parent's; empty for rewrites).
    pub(crate) positions: Positions,
}

/// What a committed [`Change`] became.
#[derive(Debug, Clone)]
pub(crate) struct Landed {
    pub(crate) snapshot_id: i64,
    pub(crate) attempts: u32,
}

/// Whether appends of `table` go through this commit path: on the catalogs whose
/// compare-and-swap it implements and where it may delete a lost race's files (Local, Glue).
/// S3 Tables and custom catalogs keep iceberg's `fast_append` through `Catalog::update_table`.
pub(crate) fn own_path_for_appends(table: &SalesHistory) -> bool {
    // S3 Tables: this crate deletes nothing there (its service removes unreferenced files),
    // so our path would gain nothing over iceberg's for appends.
    table.config().may_delete_files() && swap::supported(table.config()).is_ok()
}

/// Commits `change` on the table, retrying conflicts (re-validated) with the table's
/// `commit.retry.*` policy, and moves the handle to the new version.
#[tracing::instrument(name = "rewrite_commit", skip_all, fields(
    table = %table.name(),
    operation = change.operation.as_str(),
    commit_id = %change.commit_id,
    added = change.added.len(),
    removed = change.removed.len(),
))]
pub(crate) async fn commit(table: &SalesHistory, change: &Change) -> Result<Landed> {
    swap::supported(table.config())?;
    let retry = RetryPolicy::of(&table.current());
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let base = table.current();
        match attempt(table, &base, change).await {
            Ok(new_table) => {
                let snapshot_id = new_table
                    .metadata()
                    .current_snapshot_id()
                    .unwrap_or_default();
                tracing::info!(snapshot_id, attempts, "committed");
                table.advance_to(new_table);
                return Ok(Landed {
                    snapshot_id,
                    attempts,
                });
            }
            Err((Failure::Conflict(reason), staged)) => {
                let pause = retry.pause(attempts, started);
                tracing::info!(attempt = attempts, %reason, retry = pause.is_some(), "swap refused");
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
                // A retried request whose first answer was lost is refused although the first
                // one landed: then our commit id is in the table and the staged files are live.
                match table.find_commit_fresh(&change.commit_id).await {
                    Ok(Some(snapshot_id)) => {
                        return Ok(Landed {
                            snapshot_id,
                            attempts,
                        });
                    }
                    Ok(None) => {
                        staged
                            .delete(table.current().file_io(), table.config().may_delete_files())
                            .await
                    }
                    Err(e) => return Err(unknown(table, change, e)),
                }
                if pause.is_none() {
                    return Err(conflict(table, reason));
                }
                let gone = files::missing(&table.current(), &change.removed).await?;
                if !gone.is_empty() {
                    return Err(conflict(
                        table,
                        format!(
                            "another commit removed {} of the files this {} rewrites (e.g. {})",
                            gone.len(),
                            change.operation.as_str(),
                            gone[0]
                        ),
                    ));
                }
            }
            Err((Failure::Refused(e), staged)) => {
                staged
                    .delete(table.current().file_io(), table.config().may_delete_files())
                    .await;
                return Err(e);
            }
            Err((Failure::Rejected(e), staged)) => {
                return match table.find_commit_fresh(&change.commit_id).await {
                    Ok(Some(snapshot_id)) => Ok(Landed {
                        snapshot_id,
                        attempts,
                    }),
                    Ok(None) => {
                        staged
                            .delete(table.current().file_io(), table.config().may_delete_files())
                            .await;
                        Err(e)
                    }
                    Err(_) => Err(unknown(table, change, e)),
                };
            }
            Err((Failure::Unknown(e), _kept)) => {
                // The metadata file may be (or become) the table's current one: never delete
                // it here; an unreferenced one is an orphan for `remove_orphan_files`. The
                // request may still be in flight: look for the commit a few times (as Java's
                // commit-status check does); not seen by then is still not known to have
                // failed, so everything is kept and the caller gets `CommitStateUnknown`
                // (retrying with the same commit id is exactly-once).
                tracing::warn!(error = %e, "swap outcome unknown; re-reading the table");
                for pause_ms in [0u64, 250, 500, 1000] {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    if let Ok(Some(snapshot_id)) = table.find_commit_fresh(&change.commit_id).await
                    {
                        return Ok(Landed {
                            snapshot_id,
                            attempts,
                        });
                    }
                }
                return Err(unknown(table, change, e));
            }
        }
    }
}

fn unknown(table: &SalesHistory, change: &Change, e: Error) -> Error {
    Error::CommitStateUnknown {
        table: table.name(),
        commit_id: change.commit_id.clone(),
        source: Box::new(e),
    }
}

fn conflict(table: &SalesHistory, reason: String) -> Error {
    Error::CommitConflict {
        table: table.name(),
        source: reason.into(),
    }
}

/// Why one attempt did not commit.
enum Failure {
    /// Another commit got there first (or a file to remove is not in the base): nothing
    /// changed; worth re-validating and retrying.
    Conflict(String),
    /// Refused for good before anything was sent to the catalog: nothing changed.
    Refused(Error),
    /// The catalog refused the swap: nothing changed, unless an earlier attempt of the same
    /// request (an SDK-internal retry) landed — checked by re-reading.
    Rejected(Error),
    /// The swap may or may not have been applied.
    Unknown(Error),
}

/// One attempt on `base`: stage the new metadata, swap it in. On failure, the files the
/// attempt staged go with the reason; only the caller can tell whether they are garbage.
async fn attempt(
    table: &SalesHistory,
    base: &Table,
    change: &Change,
) -> std::result::Result<Table, (Failure, Staged)> {
    let mut staged = Staged::default();
    let failure = match stage(base, change, &mut staged).await {
        Ok(Some((metadata, location))) => match base.metadata_location() {
            None => Failure::Refused(Error::internal("the loaded table has no metadata location")),
            Some(expected) => match swap::swap(table, expected, &location).await {
                Ok(()) => {
                    table.catalog().record_swap(Ok(())).await;
                    return Table::builder()
                        .file_io(base.file_io().clone())
                        .metadata(metadata)
                        .metadata_location(location)
                        .identifier(base.identifier().clone())
                        .runtime(iceberg::Runtime::try_current().map_err(|e| {
                            (Failure::Unknown(Error::from_iceberg(e)), Staged::default())
                        })?)
                        .build()
                        .map_err(|e| {
                            (Failure::Unknown(Error::from_iceberg(e)), Staged::default())
                        });
                }
                Err(SwapError::Conflict(reason)) => {
                    table.catalog().record_swap(Err(false)).await;
                    Failure::Conflict(reason)
                }
                Err(SwapError::Throttled(reason)) => {
                    table.catalog().record_swap(Err(true)).await;
                    Failure::Conflict(reason)
                }
                Err(SwapError::Refused(e)) => Failure::Rejected(e),
                Err(SwapError::Unknown(e)) => Failure::Unknown(e),
            },
        },
        Ok(None) => {
            // Not swapped: nothing can reference what was staged.
            staged
                .delete(base.file_io(), table.config().may_delete_files())
                .await;
            return Err((
                Failure::Conflict(
                    "a file to remove is no longer live in the table's current snapshot".into(),
                ),
                Staged::default(),
            ));
        }
        Err(e) => Failure::Refused(e),
    };
    Err((failure, staged))
}

/// Metadata-side files an attempt wrote (manifests, manifest list, metadata file).
#[derive(Debug, Default)]
struct Staged(Vec<String>);

impl Staged {
    async fn delete(self, io: &FileIO, may_delete: bool) {
        if !may_delete {
            // S3 Tables removes unreferenced files itself; this crate deletes nothing there.
            return;
        }
        for p in &self.0 {
            let _ = io.delete(p).await;
        }
    }
}

/// Writes manifests, manifest list and the new metadata file for `change` on `base`.
/// `Ok(None)` when a file to remove is not live in `base`.
async fn stage(
    base: &Table,
    change: &Change,
    staged: &mut Staged,
) -> Result<Option<(TableMetadata, String)>> {
    let metadata = base.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(Error::Unsupported {
            operation: change.operation.as_str().to_string(),
            reason: format!(
                "rewrites are implemented for Iceberg format v2 tables; this one is {}",
                metadata.format_version()
            ),
        });
    }
    let io = base.file_io();
    let location = metadata.location().trim_end_matches('/').to_string();
    let uuid = uuid::Uuid::new_v4();
    let snapshot_id = unique_snapshot_id(metadata);
    let parent = metadata.current_snapshot_id();
    let sequence_number = metadata.next_sequence_number();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let mut collector = SnapshotSummaryCollector::default();
    let mut counter = 0u32;
    let mut new_manifest = |staged: &mut Staged| -> Result<ManifestWriterBuilder> {
        let path = format!("{location}/metadata/{uuid}-m{counter}.avro");
        counter += 1;
        staged.0.push(path.clone());
        Ok(ManifestWriterBuilder::new(
            io.new_output(&path).or_ours()?,
            Some(snapshot_id),
            schema.clone(),
            spec.as_ref().clone(),
        ))
    };

    let mut manifests: Vec<ManifestFile> = Vec::new();
    let mut found: HashSet<String> = HashSet::new();
    if let Some(current) = metadata.current_snapshot() {
        let list = base.manifest_list_reader(current).load().await.or_ours()?;
        let entries: Vec<ManifestFile> = list.consume_entries().into_iter().collect();
        // Re-checked on every attempt: row-level deletes committed by another engine since
        // the operation started would apply to removed paths or miss the rewritten rows.
        if !change.removed.is_empty() && files::lists_delete_files(&entries) {
            return Err(files::delete_files_refused(change.operation.as_str()));
        }
        // Manifests that may list a removed file are read (concurrently); the others are
        // reused untouched.
        let loaded: Vec<(ManifestFile, Option<iceberg::spec::Manifest>)> =
            futures::stream::iter(entries)
                .map(|manifest| async move {
                    let check = !change.removed.is_empty()
                        && manifest.content == ManifestContentType::Data
                        && (manifest.has_added_files() || manifest.has_existing_files());
                    let loaded = if check {
                        Some(manifest.load_manifest(io).await.or_ours()?)
                    } else {
                        None
                    };
                    Ok::<_, Error>((manifest, loaded))
                })
                .buffered(MANIFEST_CONCURRENCY)
                .try_collect()
                .await?;
        // Every manifest that lists a removed file goes into ONE new manifest: removed files
        // as `deleted`, the rest as `existing`, sequence numbers kept (fewer, larger manifests
        // than rewriting each one: what Java's manifest merging would end with).
        let mut rewritten = None;
        for (manifest, loaded) in loaded {
            let Some(loaded) = loaded.filter(|l| {
                l.entries()
                    .iter()
                    .any(|e| e.is_alive() && change.removed.contains(e.file_path()))
            }) else {
                manifests.push(manifest);
                continue;
            };
            if loaded.metadata().partition_spec().spec_id() != spec.spec_id() {
                return Err(Error::Unsupported {
                    operation: change.operation.as_str().to_string(),
                    reason: "a file to rewrite was written with an older partition spec".into(),
                });
            }
            let writer = match &mut rewritten {
                Some(w) => w,
                None => rewritten.insert(new_manifest(staged)?.build_v2_data()),
            };
            for entry in loaded.entries() {
                if !entry.is_alive() {
                    continue;
                }
                // Older writers may leave an existing entry's file sequence number unset: the
                // data sequence number is the closest truth (a file is never older than it).
                let (Some(seq), file_seq) = (
                    entry.sequence_number(),
                    entry.file_sequence_number.or(entry.sequence_number()),
                ) else {
                    return Err(Error::internal(format!(
                        "manifest entry for {} has no sequence number",
                        entry.file_path()
                    )));
                };
                if change.removed.contains(entry.file_path()) {
                    found.insert(entry.file_path().to_string());
                    collector.remove_file(entry.data_file(), schema.clone(), spec.clone());
                    writer
                        .add_delete_file(entry.data_file().clone(), seq, file_seq)
                        .or_ours()?;
                } else {
                    let added_by = entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                    writer
                        .add_existing_file(entry.data_file().clone(), added_by, seq, file_seq)
                        .or_ours()?;
                }
            }
        }
        if let Some(writer) = rewritten {
            manifests.push(writer.write_manifest_file().await.or_ours()?);
        }
    }
    if found.len() != change.removed.len() {
        return Ok(None);
    }
    if !change.added.is_empty() {
        let mut writer = new_manifest(staged)?.build_v2_data();
        for file in &change.added {
            collector.add_file(file, schema.clone(), spec.clone());
            writer.add_file(file.clone(), -1).or_ours()?;
        }
        manifests.push(writer.write_manifest_file().await.or_ours()?);
    }
    // Manifests without live entries (every file removed) are left out.
    manifests.retain(|m| {
        m.content != ManifestContentType::Data
            || m.has_added_files()
            || m.has_existing_files()
            || m.added_snapshot_id == snapshot_id && m.has_deleted_files()
    });

    let list_path = format!("{location}/metadata/snap-{snapshot_id}-0-{uuid}.avro");
    staged.0.push(list_path.clone());
    let mut list = ManifestListWriter::v2(
        io.new_output(&list_path)
            .or_ours()?
            .writer()
            .await
            .or_ours()?,
        snapshot_id,
        parent,
        sequence_number,
    );
    list.add_manifests(manifests.into_iter()).or_ours()?;
    list.close().await.or_ours()?;

    let summary = summary(base, change, &collector);
    let snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(sequence_number)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .build();
    let current_location = base.metadata_location().map(str::to_string);
    let new_metadata = metadata
        .clone()
        .into_builder(current_location.clone())
        .add_snapshot(snapshot)
        .or_ours()?
        .set_ref(
            MAIN_BRANCH,
            // As iceberg's fast_append: TableMetadata 0.10.1 exposes no ref's retention to
            // carry over (retention on `main` is not used by this table).
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        )
        .or_ours()?
        .build()
        .or_ours()?
        .metadata;
    let next = match current_location
        .as_deref()
        .map(MetadataLocation::from_str)
        .and_then(|r| r.ok())
    {
        Some(current) => current.with_next_version(),
        None => MetadataLocation::new_with_metadata(&location, &new_metadata),
    }
    .with_new_metadata(&new_metadata);
    let next_str = next.to_string();
    staged.0.push(next_str.clone());
    new_metadata.write_to(io, &next).await.or_ours()?;
    Ok(Some((new_metadata, next_str)))
}

/// The snapshot summary: iceberg's added/deleted metrics, totals carried from the parent,
/// our commit id, writer and the source positions of the parent.
fn summary(base: &Table, change: &Change, collector: &SnapshotSummaryCollector) -> Summary {
    let mut positions = Positions::of_current(base);
    positions.merge(&change.positions);
    let mut props: HashMap<String, String> = positions.properties().collect();
    props.extend(change.properties.clone());
    let metrics = collector.build();
    let get = |m: &HashMap<String, String>, k: &str| -> i64 {
        m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let previous = base
        .metadata()
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone());
    for (total, added, removed) in [
        ("total-data-files", "added-data-files", "deleted-data-files"),
        ("total-records", "added-records", "deleted-records"),
        ("total-files-size", "added-files-size", "removed-files-size"),
        (
            "total-delete-files",
            "added-delete-files",
            "removed-delete-files",
        ),
        (
            "total-position-deletes",
            "added-position-deletes",
            "removed-position-deletes",
        ),
        (
            "total-equality-deletes",
            "added-equality-deletes",
            "removed-equality-deletes",
        ),
    ] {
        let before = match &previous {
            None => Some(0),
            Some(p) => p.get(total).and_then(|v| v.parse::<i64>().ok()),
        };
        if let Some(before) = before {
            let after = before + get(&metrics, added) - get(&metrics, removed);
            props.insert(total.to_string(), after.max(0).to_string());
        }
    }
    props.extend(metrics);
    props.insert(COMMIT_ID_PROPERTY.to_string(), change.commit_id.clone());
    props.insert(
        WRITER_PROPERTY.to_string(),
        concat!("sales-history/", env!("CARGO_PKG_VERSION")).to_string(),
    );
    Summary {
        operation: change.operation.clone(),
        additional_properties: props,
    }
}

fn unique_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) >> 1) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

impl SalesHistory {
    /// Starts a compaction of small data files into target-size files (one `replace`
    /// snapshot); see [`Compact`](crate::Compact).
    pub fn compact(&self) -> compact::Compact {
        compact::Compact::new(self.clone())
    }

    /// Starts a copy-on-write delete of the rows `filter` matches (one `delete` or
    /// `overwrite` snapshot); see [`DeleteWhere`](crate::DeleteWhere).
    pub fn delete_where(&self, filter: crate::ScanFilter) -> delete::DeleteWhere {
        delete::DeleteWhere::new(self.clone(), filter)
    }
}
