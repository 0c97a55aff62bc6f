//! Staging one attempt: manifests, manifest list, snapshot summary, metadata file — **what
//! iceberg 0.10.1 lacks** for anything but a fast append.
//!
//! iceberg-rust 0.10.1's `TableCommit` builder is crate-private, it has no replace / overwrite
//! / delete action (upstream PRs apache/iceberg-rust#3046 RewriteFiles and #2185 Overwrite are
//! open), and its snapshot summary helper rejects `replace`. So the loop stages a snapshot from
//! iceberg's public pieces and swaps the metadata location itself:
//!
//! 1. **manifests** — every data manifest of the base snapshot that lists a removed file is
//!    rewritten (into ONE new manifest) with [`ManifestWriterBuilder::build_v2_data`]: removed
//!    files as `deleted` entries, the others as `existing`, both keeping their data and file
//!    sequence numbers; untouched manifests are reused; added files go to one new manifest;
//! 2. **manifest list** — [`ManifestListWriter::v2`] with the next sequence number;
//! 3. **snapshot** — [`Snapshot::builder`], the summary computed here (added/deleted metrics
//!    from iceberg's public [`SnapshotSummaryCollector`], `total-*` carried from the parent; our
//!    commit id, writer and source positions carried forward);
//! 4. **metadata** — [`TableMetadata::into_builder`] + `add_snapshot` + `set_ref("main")` (or
//!    `remove_snapshots` for expiry), written as `{version+1}-{uuid}.metadata.json`.
//!
//! A [`Stager`] lives for one commit, across its attempts: the snapshot id and the manifests
//! that do not depend on the base (the added files' manifest; a rewritten manifest whose inputs
//! did not change) are written once and reused by a retry, so a conflicted rewrite re-applies
//! cheaply. When upstream gains `RewriteFiles`/`Overwrite` and a public `TableCommit`, stages
//! 1–4 can go.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use iceberg::MetadataLocation;
use iceberg::spec::{
    FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Snapshot, SnapshotReference, SnapshotRetention,
    SnapshotSummaryCollector, Summary, TableMetadata,
};
use iceberg::table::Table;

use super::merge::{ManifestMerger, MergePolicy};
use super::{Change, ChangeKind, Owned};
use crate::catalog::swap::MetadataSwap;
use crate::error::{Error, IcebergResultExt, Result};
use crate::position::Positions;
use crate::table::{COMMIT_ID_PROPERTY, SalesHistory, WRITER_PROPERTY};

/// Manifests read at once while staging a commit.
const MANIFEST_CONCURRENCY: usize = 8;

/// `write.metadata.delete-after-commit.enabled`: delete metadata files that fall out of the
/// metadata log (`write.metadata.previous-versions-max`) once the commit that drops them landed.
pub const METADATA_DELETE_AFTER_COMMIT_PROPERTY: &str =
    "write.metadata.delete-after-commit.enabled";

/// What one commit stages across its attempts (see the [module docs](self)).
#[derive(Default)]
pub(crate) struct Stager {
    /// The new snapshot's id, fixed for the commit (re-drawn only if a base already has it).
    snapshot_id: Option<i64>,
    /// The added files' manifest, written once.
    added: Option<ManifestFile>,
    /// Rewritten manifests (one per partition spec) by their sorted input manifest paths.
    rewritten: HashMap<Vec<String>, Vec<ManifestFile>>,
    /// Every reusable manifest written, and which the last attempt used.
    reusable: Option<Owned>,
    used: HashSet<String>,
    /// Manifest merging on every commit (Java's `MergeAppend`; [`super::merge`]).
    merger: Option<ManifestMerger>,
    /// The manifest list of the last attempt (what a landing attempt references).
    last_manifests: Vec<ManifestFile>,
    /// Manifests read by earlier attempts, by path (manifest files never change): a retry
    /// reads only the manifests committed since.
    loaded: HashMap<String, Arc<iceberg::spec::Manifest>>,
}

impl Stager {
    /// Stages `change` on `base`: the new metadata, its location, and the metadata files that
    /// fell out of the metadata log. Every file written for this attempt alone goes to `staged`.
    pub(crate) async fn stage(
        &mut self,
        table: &SalesHistory,
        swap: &dyn MetadataSwap,
        base: &Table,
        change: &Change,
        staged: &mut Owned,
    ) -> Result<(TableMetadata, String, Vec<String>)> {
        let metadata = base.metadata();
        if metadata.format_version() != FormatVersion::V2 {
            return Err(Error::Unsupported {
                operation: change.kind.as_str().to_string(),
                reason: format!(
                    "commits are implemented for Iceberg format v2 tables; this one is {}",
                    metadata.format_version()
                ),
            });
        }
        self.used.clear();
        let io = base.file_io();
        let location = metadata.location().trim_end_matches('/').to_string();
        let current_location = base.metadata_location().map(str::to_string);
        let builder = metadata.clone().into_builder(current_location.clone());
        let builder = match &change.kind {
            ChangeKind::Expire { ids, .. } => {
                let current = metadata.current_snapshot_id();
                let ids: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != current && metadata.snapshot_by_id(*id).is_some())
                    .collect();
                ids.iter().fold(builder.remove_snapshots(&ids), |b, id| {
                    b.remove_statistics(*id).remove_partition_statistics(*id)
                })
            }
            ChangeKind::Evolve {
                layout,
                expect_spec_id,
                expect_last_partition_id,
            } => {
                // As Java's `UpdatePartitionSpec` requirements: the default spec and the last
                // assigned partition id must be what the evolve read. A concurrent evolve
                // changed them: this one stops (nothing sent) instead of stacking on it.
                let (spec_id, last_id) = (
                    metadata.default_partition_spec_id(),
                    metadata.last_partition_id(),
                );
                if spec_id != *expect_spec_id || last_id != *expect_last_partition_id {
                    return Err(Error::CommitConflict {
                        table: table.name(),
                        source: format!(
                            "the partition spec changed while the evolve to {layout} was committing: default spec {expect_spec_id} → {spec_id}, last partition id {expect_last_partition_id} → {last_id}"
                        )
                        .into(),
                    });
                }
                builder
                    .add_partition_spec(layout.partition_spec()?)
                    .or_ours()?
                    .set_default_partition_spec(-1)
                    .or_ours()?
            }
            ChangeKind::Index { statistics, expect } => {
                // The index registers on the current snapshot; another build that landed
                // since the build read the table wins (this one stops, nothing sent).
                let Some(current) = metadata.current_snapshot_id() else {
                    return Err(Error::CommitConflict {
                        table: table.name(),
                        source: "the table has no snapshot to register the index on".into(),
                    });
                };
                let now =
                    crate::ann::index_for(metadata, current).map(|s| s.statistics_path.clone());
                if now != *expect {
                    return Err(Error::CommitConflict {
                        table: table.name(),
                        source: format!(
                            "another vector index was registered while this one was built ({} → {})",
                            expect.as_deref().unwrap_or("none"),
                            now.as_deref().unwrap_or("none")
                        )
                        .into(),
                    });
                }
                builder.set_statistics(iceberg::spec::StatisticsFile {
                    snapshot_id: current,
                    ..(**statistics).clone()
                })
            }
            _ => {
                let snapshot_id = match self.snapshot_id {
                    Some(id) if metadata.snapshot_by_id(id).is_none() => id,
                    _ => {
                        // A new id: manifests naming the old one cannot be reused.
                        self.added = None;
                        self.rewritten.clear();
                        *self.snapshot_id.insert(unique_snapshot_id(metadata))
                    }
                };
                let operation = change
                    .kind
                    .operation()
                    .unwrap_or(iceberg::spec::Operation::Append);
                let mut collector = SnapshotSummaryCollector::default();
                let manifests = self
                    .manifests(
                        table,
                        swap,
                        base,
                        change,
                        snapshot_id,
                        &mut collector,
                        staged,
                    )
                    .await?;
                let merger = match &mut self.merger {
                    Some(m) => m,
                    None => self
                        .merger
                        .insert(ManifestMerger::new(MergePolicy::from_properties(
                            metadata.properties(),
                        )?)),
                };
                if merger.policy().enabled {
                    swap.check_staged_write("manifest")?;
                }
                let manifests = merger
                    .merge(io, metadata, snapshot_id, manifests, || {
                        format!("{location}/metadata/{}-m0.avro", uuid::Uuid::new_v4())
                    })
                    .await?;
                self.last_manifests = manifests.clone();
                let uuid = uuid::Uuid::new_v4();
                let parent = metadata.current_snapshot_id();
                let sequence_number = metadata.next_sequence_number();
                let list_path = format!("{location}/metadata/snap-{snapshot_id}-0-{uuid}.avro");
                swap.check_staged_write("manifest list")?;
                staged.paths_mut().push(list_path.clone());
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
                let snapshot = Snapshot::builder()
                    .with_manifest_list(list_path)
                    .with_snapshot_id(snapshot_id)
                    .with_parent_snapshot_id(parent)
                    .with_sequence_number(sequence_number)
                    .with_summary(summary(base, change, operation, &collector))
                    .with_schema_id(metadata.current_schema_id())
                    .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
                    .build();
                // The vector index follows the snapshots this crate commits: the parent's
                // entry is carried to the new snapshot (the files it covers are named in it;
                // files added here are searched exactly until the next build).
                let carried = parent
                    .and_then(|p| metadata.statistics_for_snapshot(p))
                    .filter(|s| crate::ann::is_index(s))
                    .map(|s| iceberg::spec::StatisticsFile {
                        snapshot_id,
                        ..s.clone()
                    });
                let builder = match carried {
                    Some(stats) => builder.set_statistics(stats),
                    None => builder,
                };
                builder
                    .add_snapshot(snapshot)
                    .or_ours()?
                    .set_ref(
                        MAIN_BRANCH,
                        // As iceberg's fast_append: TableMetadata 0.10.1 exposes no ref's
                        // retention to carry over (retention on `main` is not used here).
                        SnapshotReference::new(
                            snapshot_id,
                            SnapshotRetention::branch(None, None, None),
                        ),
                    )
                    .or_ours()?
            }
        };
        let built = builder.build().or_ours()?;
        let new_metadata = built.metadata;
        let expired: Vec<String> = built
            .expired_metadata_logs
            .into_iter()
            .map(|l| l.metadata_file)
            .collect();
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
        swap.check_staged_write("metadata file")?;
        staged.paths_mut().push(next_str.clone());
        new_metadata.write_to(io, &next).await.or_ours()?;
        Ok((new_metadata, next_str, expired))
    }

    /// The new snapshot's manifests: the base's, with those listing a removed file rewritten
    /// into one, plus the added files' manifest.
    #[allow(clippy::too_many_arguments)]
    async fn manifests(
        &mut self,
        table: &SalesHistory,
        swap: &dyn MetadataSwap,
        base: &Table,
        change: &Change,
        snapshot_id: i64,
        collector: &mut SnapshotSummaryCollector,
        staged: &mut Owned,
    ) -> Result<Vec<ManifestFile>> {
        let metadata = base.metadata();
        let io = base.file_io();
        let location = metadata.location().trim_end_matches('/').to_string();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let new_manifest = |owned: &mut Owned,
                            spec: &iceberg::spec::PartitionSpec|
         -> Result<ManifestWriterBuilder> {
            let path = format!("{location}/metadata/{}-m0.avro", uuid::Uuid::new_v4());
            owned.paths_mut().push(path.clone());
            Ok(ManifestWriterBuilder::new(
                io.new_output(&path).or_ours()?,
                Some(snapshot_id),
                schema.clone(),
                spec.clone(),
            ))
        };
        let reusable = self.reusable.get_or_insert_with(|| staged.empty_like());

        let mut manifests: Vec<ManifestFile> = Vec::new();
        let mut found: HashSet<String> = HashSet::new();
        if let Some(current) = metadata.current_snapshot() {
            let list = base.manifest_list_reader(current).load().await.or_ours()?;
            let entries: Vec<ManifestFile> = list.consume_entries().into_iter().collect();
            // Re-checked on every attempt: row-level deletes committed by another engine
            // since the operation started would apply to removed paths or miss rewritten rows.
            if !change.removed.is_empty() && super::live::lists_delete_files(&entries) {
                return Err(super::live::delete_files_refused(change.kind.as_str()));
            }
            // Manifests that may list a removed file are read (concurrently); the others are
            // reused untouched.
            let cache = &self.loaded;
            let loaded: Vec<(ManifestFile, Option<Arc<iceberg::spec::Manifest>>)> =
                futures::stream::iter(entries)
                    .map(|manifest| async move {
                        let check = !change.removed.is_empty()
                            && manifest.content == ManifestContentType::Data
                            && (manifest.has_added_files() || manifest.has_existing_files());
                        let loaded = match cache.get(&manifest.manifest_path) {
                            _ if !check => None,
                            Some(m) => Some(m.clone()),
                            None => Some(Arc::new(manifest.load_manifest(io).await.or_ours()?)),
                        };
                        Ok::<_, Error>((manifest, loaded))
                    })
                    .buffered(MANIFEST_CONCURRENCY)
                    .try_collect()
                    .await?;
            for (m, l) in &loaded {
                if let Some(l) = l {
                    self.loaded
                        .entry(m.manifest_path.clone())
                        .or_insert_with(|| l.clone());
                }
            }
            // Every manifest that lists a removed file goes into ONE new manifest: removed
            // files as `deleted`, the rest as `existing`, sequence numbers kept.
            let mut to_rewrite = Vec::new();
            for (manifest, loaded) in loaded {
                match loaded.filter(|l| {
                    l.entries()
                        .iter()
                        .any(|e| e.is_alive() && change.removed.contains(e.file_path()))
                }) {
                    Some(l) => to_rewrite.push((manifest, l)),
                    None => manifests.push(manifest),
                }
            }
            let mut key: Vec<String> = to_rewrite
                .iter()
                .map(|(m, _)| m.manifest_path.clone())
                .collect();
            key.sort();
            for (_, loaded) in &to_rewrite {
                let file_spec = Arc::new(loaded.metadata().partition_spec().clone());
                for entry in loaded.entries() {
                    if entry.is_alive() && change.removed.contains(entry.file_path()) {
                        found.insert(entry.file_path().to_string());
                        collector.remove_file(entry.data_file(), schema.clone(), file_spec.clone());
                    }
                }
            }
            if let Some(done) = self.rewritten.get(&key) {
                for m in done {
                    self.used.insert(m.manifest_path.clone());
                    manifests.push(m.clone());
                }
            } else if !to_rewrite.is_empty() {
                // One new manifest per partition spec (a table whose layout evolved has files
                // of several specs; a manifest holds one spec's files).
                let mut by_spec: std::collections::BTreeMap<i32, Vec<_>> = Default::default();
                for (manifest, loaded) in &to_rewrite {
                    by_spec
                        .entry(loaded.metadata().partition_spec().spec_id())
                        .or_default()
                        .push((manifest, loaded));
                }
                let mut written_all = Vec::new();
                for group in by_spec.into_values() {
                    swap.check_staged_write("manifest")?;
                    let group_spec = group[0].1.metadata().partition_spec().clone();
                    let mut writer = new_manifest(reusable, &group_spec)?.build_v2_data();
                    for (manifest, loaded) in group {
                        for entry in loaded.entries() {
                            if !entry.is_alive() {
                                continue;
                            }
                            // Older writers may leave an existing entry's file sequence number
                            // unset: the data sequence number is the closest truth.
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
                                writer
                                    .add_delete_file(entry.data_file().clone(), seq, file_seq)
                                    .or_ours()?;
                            } else {
                                let added_by =
                                    entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                                writer
                                    .add_existing_file(
                                        entry.data_file().clone(),
                                        added_by,
                                        seq,
                                        file_seq,
                                    )
                                    .or_ours()?;
                            }
                        }
                    }
                    let written = writer.write_manifest_file().await.or_ours()?;
                    self.used.insert(written.manifest_path.clone());
                    written_all.push(written);
                }
                manifests.extend(written_all.iter().cloned());
                self.rewritten.insert(key, written_all);
            }
        }
        if found.len() != change.removed.len() {
            let mut gone: Vec<&String> = change
                .removed
                .iter()
                .filter(|p| !found.contains(*p))
                .collect();
            gone.sort();
            return Err(Error::CommitConflict {
                table: table.name(),
                source: format!(
                    "{} of the files this {} removes are no longer live (e.g. {})",
                    gone.len(),
                    change.kind.as_str(),
                    gone.first().map(|s| s.as_str()).unwrap_or_default()
                )
                .into(),
            });
        }
        if !change.added.is_empty() {
            let added_spec = match change.written_spec_id {
                Some(id) if id != spec.spec_id() => {
                    metadata.partition_spec_by_id(id).cloned().ok_or_else(|| {
                        Error::internal(format!(
                            "the added files' partition spec {id} is not in the table metadata"
                        ))
                    })?
                }
                _ => spec.clone(),
            };
            for file in &change.added {
                collector.add_file(file, schema.clone(), added_spec.clone());
            }
            let added = match &self.added {
                Some(m) => m.clone(),
                None => {
                    swap.check_staged_write("manifest")?;
                    let mut writer = new_manifest(reusable, added_spec.as_ref())?.build_v2_data();
                    for file in &change.added {
                        writer.add_file(file.clone(), -1).or_ours()?;
                    }
                    let m = writer.write_manifest_file().await.or_ours()?;
                    self.added = Some(m.clone());
                    m
                }
            };
            self.used.insert(added.manifest_path.clone());
            // Newest first, as Java orders a snapshot's manifests.
            manifests.insert(0, added);
        }
        // Manifests without live entries (every file removed) are left out.
        manifests.retain(|m| {
            m.content != ManifestContentType::Data
                || m.has_added_files()
                || m.has_existing_files()
                || m.added_snapshot_id == snapshot_id && m.has_deleted_files()
        });
        Ok(manifests)
    }

    /// The commit ended (`landed`: with the last attempt; else given up): the reusable and
    /// merged manifests the table does not reference are deleted (the rule of [`Owned`]).
    pub(crate) async fn discard_unused(&mut self, landed: bool) {
        let Some(mut reusable) = self.reusable.take() else {
            return;
        };
        if !landed {
            self.used.clear();
            self.last_manifests.clear();
        }
        if let Some(merger) = &mut self.merger {
            reusable
                .paths_mut()
                .extend(merger.take_unused(&self.last_manifests));
        }
        // A manifest the landing attempt staged but merged away is not referenced either.
        let listed: HashSet<&str> = self
            .last_manifests
            .iter()
            .map(|m| m.manifest_path.as_str())
            .collect();
        self.used.retain(|p| listed.contains(p.as_str()));
        let (unused, used) = reusable.partition(|p| !self.used.contains(p));
        used.hand_over();
        unused
            .discard("staged for an attempt that did not land")
            .await;
    }

    /// The outcome is unknown: every reusable manifest stays.
    pub(crate) fn keep_unused(&mut self) {
        if let Some(reusable) = self.reusable.take() {
            reusable.keep("the commit's outcome is unknown");
        }
    }
}

/// The new version as a [`Table`] once the swap to `location` succeeded.
pub(crate) fn table_at(base: &Table, metadata: TableMetadata, location: String) -> Result<Table> {
    Table::builder()
        .file_io(base.file_io().clone())
        .metadata(metadata)
        .metadata_location(location)
        .identifier(base.identifier().clone())
        .runtime(iceberg::Runtime::try_current().map_err(Error::from_iceberg)?)
        .build()
        .map_err(Error::from_iceberg)
}

/// Deletes the metadata files that fell out of the metadata log with a landed commit, when the
/// table asks for it and this crate may delete there. Failures are logged: the commit landed.
pub(crate) async fn delete_expired_metadata(
    table: &SalesHistory,
    swap: &dyn MetadataSwap,
    expired: Vec<String>,
) {
    if expired.is_empty() || !swap.may_delete_files() {
        return;
    }
    let current = table.current();
    let enabled = current
        .metadata()
        .properties()
        .get(METADATA_DELETE_AFTER_COMMIT_PROPERTY)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !enabled {
        return;
    }
    // Never a file the current log (or the current version) still names.
    let named: HashSet<&str> = current
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .chain(current.metadata_location())
        .collect();
    let mut deleted = 0usize;
    for path in expired.iter().filter(|p| !named.contains(p.as_str())) {
        match current.file_io().delete(path).await {
            Ok(()) => deleted += 1,
            Err(e) => tracing::warn!(path, error = %e, "deleting an old metadata file failed"),
        }
    }
    tracing::debug!(deleted, "old metadata files deleted");
}

/// The summary properties an append carries through a custom catalog's `fast_append`
/// (iceberg computes the metrics there): the source positions, commit id and writer.
pub(crate) fn summary_properties(base: &Table, change: &Change) -> HashMap<String, String> {
    let mut positions = Positions::of_ancestry(base);
    positions.merge(&change.positions);
    let mut props: HashMap<String, String> = positions.properties().collect();
    props.extend(change.properties.clone());
    props.insert(COMMIT_ID_PROPERTY.to_string(), change.commit_id.clone());
    props.insert(
        WRITER_PROPERTY.to_string(),
        concat!("sales-history/", env!("CARGO_PKG_VERSION")).to_string(),
    );
    props
}

/// The snapshot summary: iceberg's added/deleted metrics, totals carried from the parent,
/// our commit id, writer and the source positions of the parent.
fn summary(
    base: &Table,
    change: &Change,
    operation: iceberg::spec::Operation,
    collector: &SnapshotSummaryCollector,
) -> Summary {
    let mut props = summary_properties(base, change);
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
    Summary {
        operation,
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
