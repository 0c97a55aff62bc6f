//! Manifest merging on commit: Java Iceberg's `MergeAppend` (`ManifestMergeManager`), over
//! iceberg 0.10.1's public manifest reader and writer.
//!
//! Every commit adds at least one manifest; without merging, a table appended to often ends
//! up with thousands of tiny manifests, and every scan plan reads them all. Java (and
//! pyiceberg's `merge_append`) merge them as part of the commit, steered by three table
//! properties ([`MANIFEST_MERGE_ENABLED_PROPERTY`], [`MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY`],
//! [`MANIFEST_TARGET_SIZE_BYTES_PROPERTY`]). The rules here are Java's:
//!
//! - the input is the new snapshot's manifest list, **newest first**: the manifest(s) this
//!   commit writes, then the parent's manifests in the parent's order;
//! - only data manifests are merged; delete manifests come back unchanged, after the data ones
//!   (Java bin-packs them with a second merge manager; this table has none);
//! - data manifests are grouped by partition spec id, highest id first, and each group is
//!   bin-packed by manifest length with Java's `ListPacker(target, lookback 1,
//!   largestBinFirst false).packEnd`: bins fill from the **oldest** end, so the one left
//!   under-filled holds the newest manifests and is merged on a later commit, and the order
//!   of manifests (hence of files) is kept;
//! - a bin of one manifest is kept as it is; the bin holding the first data manifest of the
//!   input (what this commit adds) is kept as it is while it has fewer than
//!   `min-count-to-merge` manifests; any other bin becomes one new manifest;
//! - in a merged manifest, files this snapshot adds stay `added` (their sequence numbers
//!   still inherited from the manifest list), files this snapshot deletes stay `deleted`,
//!   files deleted by earlier snapshots are dropped, and every other file becomes `existing`
//!   with its snapshot id and data and file sequence numbers kept.
//!
//! A [`ManifestMerger`] lives as long as one commit, across its attempts: a bin merged by an
//! attempt is reused as it is by the next one (no new file), and the merger knows every file
//! it wrote, so that the commit can delete those the landing attempt does not reference
//! ([`ManifestMerger::take_unused`]).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use futures::StreamExt;
use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, ManifestContentType, ManifestEntry, ManifestFile, ManifestStatus,
    ManifestWriterBuilder, TableMetadata, UNASSIGNED_SEQUENCE_NUMBER,
};

use crate::error::{Error, IcebergResultExt, Result};

/// Table property: whether commits merge manifests (`true` or `false`, default `true`), as
/// Java Iceberg's `commit.manifest-merge.enabled`.
pub const MANIFEST_MERGE_ENABLED_PROPERTY: &str = "commit.manifest-merge.enabled";

/// Table property: the number of manifests the newest bin (the one holding what the commit
/// adds) must reach before it is merged (default 100), as Java Iceberg's
/// `commit.manifest.min-count-to-merge`. Bins of older manifests merge from two on.
pub const MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY: &str = "commit.manifest.min-count-to-merge";

/// Table property: the target size in bytes of a merged manifest (default 8 MiB), as Java
/// Iceberg's `commit.manifest.target-size-bytes`. Manifests are packed into bins of at most
/// this many bytes (a larger manifest stays alone).
pub const MANIFEST_TARGET_SIZE_BYTES_PROPERTY: &str = "commit.manifest.target-size-bytes";

/// Default of [`MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY`] (Java's).
const DEFAULT_MIN_COUNT_TO_MERGE: i32 = 100;

/// Default of [`MANIFEST_TARGET_SIZE_BYTES_PROPERTY`]: 8 MiB (Java's).
const DEFAULT_TARGET_SIZE_BYTES: i64 = 8 * 1024 * 1024;

/// Merged manifests written at once (each reads its bin's manifests one after the other).
const MERGE_CONCURRENCY: usize = 4;

/// How a table's commits merge manifests: the three table properties, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergePolicy {
    /// [`MANIFEST_MERGE_ENABLED_PROPERTY`]: `false` leaves the manifests as they are.
    pub(crate) enabled: bool,
    /// [`MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY`] (an `int`, as in Java: 1 or less means the
    /// newest bin merges from two manifests on, like the others).
    pub(crate) min_count_to_merge: i32,
    /// [`MANIFEST_TARGET_SIZE_BYTES_PROPERTY`] (a `long`, as in Java: 0 or less puts every
    /// manifest in a bin of its own, so nothing merges).
    pub(crate) target_size_bytes: i64,
}

impl Default for MergePolicy {
    /// Java's defaults: enabled, 100 manifests, 8 MiB.
    fn default() -> Self {
        MergePolicy {
            enabled: true,
            min_count_to_merge: DEFAULT_MIN_COUNT_TO_MERGE,
            target_size_bytes: DEFAULT_TARGET_SIZE_BYTES,
        }
    }
}

impl MergePolicy {
    /// The policy a table's properties set (missing ones take Java's defaults). A value that
    /// does not parse is an [`Error::Config`] naming the property.
    pub(crate) fn from_properties(properties: &HashMap<String, String>) -> Result<Self> {
        let defaults = MergePolicy::default();
        let enabled = match properties.get(MANIFEST_MERGE_ENABLED_PROPERTY) {
            None => defaults.enabled,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(Error::config(
                    MANIFEST_MERGE_ENABLED_PROPERTY,
                    format!("`{v}` is not a boolean; use `true` or `false`"),
                ));
            }
        };
        Ok(MergePolicy {
            enabled,
            min_count_to_merge: parse(
                properties,
                MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY,
                defaults.min_count_to_merge,
                "a number of manifests",
            )?,
            target_size_bytes: parse(
                properties,
                MANIFEST_TARGET_SIZE_BYTES_PROPERTY,
                defaults.target_size_bytes,
                "a size in bytes",
            )?,
        })
    }
}

fn parse<T: std::str::FromStr>(
    properties: &HashMap<String, String>,
    key: &str,
    default: T,
    what: &str,
) -> Result<T> {
    match properties.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Error::config(key, format!("`{v}` is not {what} (an integer)"))),
    }
}

/// Identifies a merged manifest: the snapshot it was written for and its bin's manifests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BinKey {
    snapshot_id: i64,
    paths: Vec<String>,
}

/// Merges one commit's manifests, across the commit's attempts (Java's
/// `ManifestMergeManager`): keeps the manifests it merged, by bin, to reuse them on a retry,
/// and every path it wrote, to clean up after the commit.
#[derive(Debug)]
pub(crate) struct ManifestMerger {
    policy: MergePolicy,
    /// Merged manifests by bin, reused by later attempts.
    merged: HashMap<BinKey, ManifestFile>,
    /// Every manifest path this merger wrote (or started to write), not yet handed back by
    /// [`take_unused`](Self::take_unused).
    written: Vec<String>,
}

/// A merged manifest to write.
struct Job {
    key: BinKey,
    spec_id: i32,
    bin: Vec<ManifestFile>,
    path: String,
}

/// One place in the output: a manifest as it is (or reused), or the result of a [`Job`].
enum Slot {
    Ready(ManifestFile),
    Job(usize),
}

impl ManifestMerger {
    /// A merger for one commit, with the policy of the table it commits to.
    pub(crate) fn new(policy: MergePolicy) -> Self {
        ManifestMerger {
            policy,
            merged: HashMap::new(),
            written: Vec::new(),
        }
    }

    /// The policy this merger applies.
    pub(crate) fn policy(&self) -> MergePolicy {
        self.policy
    }

    /// The manifest list of snapshot `snapshot_id` with its data manifests merged by the
    /// module's rules (see the [module docs](self)).
    ///
    /// `manifests` is the new snapshot's manifest list, newest first: the manifests this
    /// commit wrote (their sequence number still unassigned, as
    /// `ManifestWriter::write_manifest_file` returns them), then the parent's. The caller
    /// has already left out the parent's manifests without live files, as Java does. A
    /// merged manifest is written for `snapshot_id` with the table's current schema and its
    /// bin's partition spec, at a path `new_path` gives (called once per file to write, none
    /// for a bin merged by an earlier call for the same snapshot id); its sequence number is
    /// unassigned, for the manifest list writer.
    ///
    /// The manifests come back unchanged when merging is disabled, and for tables of a
    /// format other than v2 (not supported here: v3 needs row-lineage ids on merged
    /// manifests). A failed write leaves its path in [`written`](Self::written).
    pub(crate) async fn merge(
        &mut self,
        io: &FileIO,
        metadata: &TableMetadata,
        snapshot_id: i64,
        manifests: Vec<ManifestFile>,
        mut new_path: impl FnMut() -> String,
    ) -> Result<Vec<ManifestFile>> {
        if !self.policy.enabled || metadata.format_version() != FormatVersion::V2 {
            return Ok(manifests);
        }
        let (data, deletes): (Vec<ManifestFile>, Vec<ManifestFile>) = manifests
            .into_iter()
            .partition(|m| m.content == ManifestContentType::Data);
        if data.is_empty() {
            return Ok(deletes);
        }

        // Groups by spec id, highest first; within a group, input order. The first data
        // manifest (index 0) is the newest.
        let mut groups: BTreeMap<i32, Vec<(usize, ManifestFile)>> = BTreeMap::new();
        for (index, manifest) in data.into_iter().enumerate() {
            groups
                .entry(manifest.partition_spec_id)
                .or_default()
                .push((index, manifest));
        }

        let mut slots: Vec<Slot> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        for (spec_id, group) in groups.into_iter().rev() {
            let weights: Vec<i64> = group.iter().map(|(_, m)| m.manifest_length).collect();
            let mut group = group.into_iter();
            for range in pack_end(&weights, self.policy.target_size_bytes) {
                let bin: Vec<(usize, ManifestFile)> = group.by_ref().take(range.len()).collect();
                let holds_first = bin.iter().any(|(index, _)| *index == 0);
                let bin: Vec<ManifestFile> = bin.into_iter().map(|(_, m)| m).collect();
                let below_min_count = i64::try_from(bin.len()).unwrap_or(i64::MAX)
                    < i64::from(self.policy.min_count_to_merge);
                let keep = bin.len() == 1 || (holds_first && below_min_count);
                if keep {
                    slots.extend(bin.into_iter().map(Slot::Ready));
                    continue;
                }
                let key = BinKey {
                    snapshot_id,
                    paths: bin.iter().map(|m| m.manifest_path.clone()).collect(),
                };
                if let Some(merged) = self.merged.get(&key) {
                    slots.push(Slot::Ready(merged.clone()));
                    continue;
                }
                let path = new_path();
                self.written.push(path.clone());
                slots.push(Slot::Job(jobs.len()));
                jobs.push(Job {
                    key,
                    spec_id,
                    bin,
                    path,
                });
            }
        }

        // Writes the merged manifests; every success is cached, even when another fails (a
        // retry reuses it).
        let results: Vec<(BinKey, Result<ManifestFile>)> = futures::stream::iter(jobs)
            .map(|job| async move {
                tracing::debug!(
                    manifests = job.bin.len(),
                    spec_id = job.spec_id,
                    path = %job.path,
                    "merging manifests"
                );
                let result =
                    write_merged(io, metadata, snapshot_id, job.spec_id, &job.bin, &job.path).await;
                (job.key, result)
            })
            .buffered(MERGE_CONCURRENCY)
            .collect()
            .await;
        let mut done: Vec<Option<ManifestFile>> = Vec::with_capacity(results.len());
        let mut failure = None;
        for (key, result) in results {
            match result {
                Ok(manifest) => {
                    self.merged.insert(key, manifest.clone());
                    done.push(Some(manifest));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }

        let mut out = Vec::with_capacity(slots.len() + deletes.len());
        for slot in slots {
            match slot {
                Slot::Ready(manifest) => out.push(manifest),
                Slot::Job(index) => {
                    let manifest = done
                        .get_mut(index)
                        .and_then(Option::take)
                        .ok_or_else(|| Error::internal("a merged manifest went missing"))?;
                    out.push(manifest);
                }
            }
        }
        out.extend(deletes);
        Ok(out)
    }

    /// Every manifest path this merger wrote (or started to write and failed), not yet
    /// handed back by [`take_unused`](Self::take_unused), in the order written.
    #[cfg(test)]
    pub(crate) fn written(&self) -> Vec<String> {
        self.written.clone()
    }

    /// Whether `path` is a manifest this merger wrote.
    #[cfg(test)]
    pub(crate) fn wrote(&self, path: &str) -> bool {
        self.written.iter().any(|p| p == path)
    }

    /// The paths this merger wrote that `committed` (the manifest list of the attempt that
    /// landed; empty when the commit gave up) does not reference: Java's `cleanUncommitted`.
    /// They are forgotten here (also as cached merges); deleting them is the caller's (it
    /// knows whether this catalog lets clients delete files).
    pub(crate) fn take_unused(&mut self, committed: &[ManifestFile]) -> Vec<String> {
        let used: std::collections::HashSet<&str> =
            committed.iter().map(|m| m.manifest_path.as_str()).collect();
        let (kept, unused): (Vec<String>, Vec<String>) = std::mem::take(&mut self.written)
            .into_iter()
            .partition(|p| used.contains(p.as_str()));
        self.written = kept;
        self.merged
            .retain(|_, m| used.contains(m.manifest_path.as_str()));
        unused
    }
}

/// Java's `ListPacker(target, 1, false).packEnd` over `weights`: bins as index ranges, in
/// input order. With a lookback of one the bins are runs: walking from the last item to the
/// first, an item joins the current bin while the bin's weight stays within `target`, and
/// otherwise starts the next one (an item heavier than `target` gets a bin of its own).
fn pack_end(weights: &[i64], target: i64) -> Vec<Range<usize>> {
    let mut bins = Vec::new();
    let mut current: Option<(Range<usize>, i64)> = None;
    for (index, &weight) in weights.iter().enumerate().rev() {
        match &mut current {
            Some((range, total)) if total.checked_add(weight).is_some_and(|t| t <= target) => {
                range.start = index;
                *total += weight;
            }
            _ => {
                if let Some((range, _)) = current.take() {
                    bins.push(range);
                }
                current = Some((index..index + 1, weight));
            }
        }
    }
    if let Some((range, _)) = current {
        bins.push(range);
    }
    bins.reverse();
    bins
}

/// Writes the manifests of `bin` (one partition spec) as one data manifest of
/// `snapshot_id` at `path` (Java's `createManifest`).
async fn write_merged(
    io: &FileIO,
    metadata: &TableMetadata,
    snapshot_id: i64,
    spec_id: i32,
    bin: &[ManifestFile],
    path: &str,
) -> Result<ManifestFile> {
    let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
        Error::internal(format!(
            "manifest {} has partition spec {spec_id}, which the table metadata lacks",
            bin.first().map_or("", |m| m.manifest_path.as_str())
        ))
    })?;
    let mut writer = ManifestWriterBuilder::new(
        io.new_output(path).or_ours()?,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        spec.as_ref().clone(),
    )
    .build_v2_data();
    for manifest in bin {
        // Loading applies the manifest list's inheritance: an entry without snapshot id or
        // (for `added` ones) sequence numbers gets the manifest's; for a manifest this
        // snapshot wrote, that sequence number is still the unassigned -1.
        let (entries, _) = manifest.load_manifest(io).await.or_ours()?.into_parts();
        for entry in entries {
            let entry = Arc::unwrap_or_clone(entry);
            let ours = entry.snapshot_id == Some(snapshot_id);
            match entry.status {
                // Only files this snapshot deletes are still news; earlier deletes go.
                ManifestStatus::Deleted if ours => {
                    let (seq, file_seq) = sequence_numbers(&entry)?;
                    writer
                        .add_delete_file(entry.data_file, seq, Some(file_seq))
                        .or_ours()?;
                }
                ManifestStatus::Deleted => {}
                // `add_file` keeps a data sequence number >= 0 and leaves -1 (inherited,
                // unassigned) unset: the file keeps inheriting the new snapshot's, as Java's
                // `ManifestWriter.add(entry)`; the file sequence number is always inherited.
                ManifestStatus::Added if ours => {
                    writer
                        .add_file(
                            entry.data_file,
                            entry.sequence_number.unwrap_or(UNASSIGNED_SEQUENCE_NUMBER),
                        )
                        .or_ours()?;
                }
                ManifestStatus::Added | ManifestStatus::Existing => {
                    let (seq, file_seq) = sequence_numbers(&entry)?;
                    let added_by = entry.snapshot_id.unwrap_or(manifest.added_snapshot_id);
                    writer
                        .add_existing_file(entry.data_file, added_by, seq, Some(file_seq))
                        .or_ours()?;
                }
            }
        }
    }
    writer.write_manifest_file().await.or_ours()
}

/// The data and file sequence numbers of a committed entry. Older writers may leave the file
/// sequence number unset: the data sequence number is the closest truth (a file is never
/// older than it), as the rewrite path does.
fn sequence_numbers(entry: &ManifestEntry) -> Result<(i64, i64)> {
    match entry.sequence_number.filter(|s| *s >= 0) {
        Some(seq) => Ok((
            seq,
            entry
                .file_sequence_number
                .filter(|s| *s >= 0)
                .unwrap_or(seq),
        )),
        None => Err(Error::internal(format!(
            "manifest entry for {} has no sequence number",
            entry.file_path()
        ))),
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
