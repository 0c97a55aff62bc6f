//! An approximate-nearest-neighbour index of the `embedding` column, kept inside the table.
//!
//! **Design: IVF-SQ8 segments in Puffin files, registered as the snapshot's statistics file.**
//!
//! - A *codebook* of `lists` centroids (k-means over a sample of the table's embeddings)
//!   splits the vectors into inverted lists (IVF). It is trained once and reused while the
//!   table grows less than 4× (then the next build retrains it and re-encodes everything).
//! - Every indexed row is one *entry*: its list, an 8-bit scalar-quantized copy of its vector
//!   (`v ≈ scale · code`, 1 byte per element: 1/8 of the doubles), its exact norm, where it
//!   lives (data file, row position) and its filter columns (every column but `embedding`), so
//!   a [`ScanFilter`](crate::ScanFilter) is applied to entries before they are scored.
//! - Entries are written in *segments*, each covering whole data files (one build writes one
//!   segment per ~64 Ki rows of files it indexes). Segments are blobs of a
//!   [Puffin](https://iceberg.apache.org/puffin-spec/) file under `metadata/`; the build's
//!   Puffin file also holds the *index manifest* blob (JSON: the codebook and every live
//!   segment, old ones by reference) and is registered with
//!   [`TableMetadataBuilder::set_statistics`](iceberg::spec::TableMetadataBuilder::set_statistics)
//!   as the snapshot's statistics file (blob type [`INDEX_BLOB_TYPE`]; other engines ignore
//!   blob types they do not know).
//! - **Tied to snapshots.** Every snapshot this crate commits carries its parent's index entry
//!   forward (the commit loop), and a search at snapshot S uses S's entry, else its nearest
//!   ancestor's (a snapshot another engine committed). Only data files live in S *and* covered
//!   by a segment are searched through the index; the others (appended since the build,
//!   another engine's, compacted since) are searched exactly, so results stay complete. Time
//!   travel uses that snapshot's index. Snapshot expiry drops the entries of expired
//!   snapshots; orphan removal treats every Puffin file named by a live entry, and every
//!   segment its manifest names, as referenced — the rest go like any unreferenced file.
//! - **Search**: the query is compared with the centroids, lists are probed nearest first
//!   (at least [`probes`](crate::SimilarTo::probes), more while too few entries pass the
//!   filter), entries are scored on their 8-bit codes, and the best `k × refine` candidates
//!   are re-ranked exactly with their full-precision embeddings, read by row position from
//!   the data files (page index: only their pages).
//! - **Memory**: manifests, codebooks and segments are read on demand and kept in a cache
//!   whose bytes are capped ([`SalesHistory::set_index_cache_bytes`](crate::SalesHistory::set_index_cache_bytes)).
//!
//! iceberg 0.10.1 has the pieces (Puffin reader/writer, statistics files in table metadata)
//! but no vector index; everything index-specific is here.

mod build;
pub(crate) mod codec;
mod search;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use iceberg::io::FileIO;
use iceberg::spec::{StatisticsFile, TableMetadata};

pub use build::{IndexEmbeddings, IndexReport};
pub use search::SimilarityMetrics;
pub(crate) use search::search;

use crate::error::{Error, IcebergResultExt, Result};
use crate::lru::ByteLru;
use codec::{Codebook, Segment};

/// Blob type of the index manifest: what the table metadata's statistics entry names.
pub const INDEX_BLOB_TYPE: &str = "sales-history-ivf-sq8-manifest-v1";
/// Blob type of a segment of entries.
pub const SEGMENT_BLOB_TYPE: &str = "sales-history-ivf-sq8-segment-v1";
/// Blob type of the codebook (the lists' centroids).
pub const CODEBOOK_BLOB_TYPE: &str = "sales-history-ivf-sq8-codebook-v1";

/// Default byte cap of a handle's index cache.
pub const DEFAULT_INDEX_CACHE_BYTES: u64 = 512 << 20;

/// Where a blob is: file, offset, length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct BlobRef {
    pub(crate) path: String,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// One segment of the index manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SegmentRef {
    pub(crate) blob: BlobRef,
    /// Where the code section starts in the blob (header and attributes before it).
    pub(crate) codes_at: u64,
    /// Entries in the segment.
    pub(crate) rows: u64,
    /// The data files it covers (full paths).
    pub(crate) files: Vec<String>,
}

/// The index manifest blob (JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexManifest {
    pub(crate) version: u32,
    pub(crate) dim: usize,
    pub(crate) lists: usize,
    /// Live rows of the table when the codebook was trained.
    pub(crate) trained_on_rows: u64,
    pub(crate) codebook: BlobRef,
    pub(crate) segments: Vec<SegmentRef>,
}

impl IndexManifest {
    /// Every file the manifest names (its codebook's and segments' Puffin files).
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.codebook.path.as_str())
            .chain(self.segments.iter().map(|s| s.blob.path.as_str()))
    }
}

/// Whether a path is one of the Puffin files an index build writes.
pub(crate) fn is_index_file_name(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("ann-") && name.ends_with(".puffin"))
}

/// Whether a statistics file is this crate's vector index: one of its Puffin files.
///
/// The table metadata's entry lists no blobs (`blob-metadata: []`): pyiceberg (0.12)
/// validates blob types in table metadata against the spec's list and refuses to load a table
/// naming any other type, so the index's own blob types stay inside the Puffin file.
pub(crate) fn is_index(stats: &StatisticsFile) -> bool {
    is_index_file_name(&stats.statistics_path)
}

/// The index a search at `snapshot_id` uses: the snapshot's own entry, else its nearest
/// ancestor's.
pub(crate) fn index_for(metadata: &TableMetadata, snapshot_id: i64) -> Option<&StatisticsFile> {
    let mut at = Some(snapshot_id);
    let mut steps = 0usize;
    while let Some(id) = at {
        if let Some(stats) = metadata.statistics_for_snapshot(id).filter(|s| is_index(s)) {
            return Some(stats);
        }
        steps += 1;
        if steps > metadata.snapshots().len() {
            return None;
        }
        at = metadata.snapshot_by_id(id)?.parent_snapshot_id();
    }
    None
}

/// What the cache holds.
#[derive(Clone)]
enum Cached {
    Manifest(Arc<IndexManifest>),
    Codebook(Arc<Codebook>),
    Segment(Arc<Segment>),
    Codes(Bytes),
}

/// Index parts read by a handle: manifests, codebooks, segments, least recently used evicted
/// beyond the byte cap.
pub(crate) struct IndexCache {
    parts: ByteLru<BlobRef, Cached>,
    /// Bytes read from storage for index parts (for metrics).
    pub(crate) bytes_read: AtomicU64,
}

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache {
            parts: ByteLru::new(DEFAULT_INDEX_CACHE_BYTES),
            bytes_read: AtomicU64::new(0),
        }
    }
}

impl IndexCache {
    pub(crate) fn set_cap(&self, bytes: u64) {
        self.parts.set_cap(bytes);
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.parts.bytes()
    }

    fn get(&self, key: &BlobRef) -> Option<Cached> {
        self.parts.get(key)
    }

    fn put(&self, key: BlobRef, value: Cached, bytes: usize) {
        self.parts.put(key, value, bytes);
    }

    async fn read(&self, io: &FileIO, blob: &BlobRef) -> Result<Bytes> {
        let reader = io
            .new_input(&blob.path)
            .or_ours()?
            .reader()
            .await
            .or_ours()?;
        let bytes = reader
            .read(blob.offset..blob.offset + blob.length)
            .await
            .or_ours()?;
        self.bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != blob.length {
            return Err(Error::corrupt_index(format!(
                "{}: blob at {} is shorter than {} bytes",
                blob.path, blob.offset, blob.length
            )));
        }
        Ok(bytes)
    }

    /// The index manifest of a statistics file (its Puffin footer names the blob).
    pub(crate) async fn manifest(
        &self,
        io: &FileIO,
        stats: &StatisticsFile,
    ) -> Result<Arc<IndexManifest>> {
        let key = BlobRef {
            path: stats.statistics_path.clone(),
            offset: u64::MAX,
            length: 0,
        };
        if let Some(Cached::Manifest(m)) = self.get(&key) {
            return Ok(m);
        }
        let bad = |why: String| Error::corrupt_index(format!("{}: {why}", stats.statistics_path));
        let input = io.new_input(&stats.statistics_path).or_ours()?;
        let reader = iceberg::puffin::PuffinReader::new(input);
        let meta = reader
            .file_metadata()
            .await
            .map_err(|e| bad(format!("not a readable Puffin file ({e})")))?;
        let blob = meta
            .blobs()
            .iter()
            .find(|b| b.blob_type() == INDEX_BLOB_TYPE)
            .ok_or_else(|| bad("no index manifest blob".into()))?
            .clone();
        let data = reader
            .blob(&blob)
            .await
            .map_err(|e| bad(format!("manifest blob unreadable ({e})")))?;
        self.bytes_read
            .fetch_add(data.data().len() as u64, Ordering::Relaxed);
        let manifest: IndexManifest = serde_json::from_slice(data.data())
            .map_err(|e| bad(format!("manifest is not valid JSON ({e})")))?;
        if manifest.version != 1 {
            return Err(bad(format!("manifest version {}", manifest.version)));
        }
        let manifest = Arc::new(manifest);
        let bytes = data.data().len();
        self.put(key, Cached::Manifest(manifest.clone()), bytes);
        Ok(manifest)
    }

    pub(crate) async fn codebook(
        &self,
        io: &FileIO,
        blob: &BlobRef,
        dim: usize,
    ) -> Result<Arc<Codebook>> {
        if let Some(Cached::Codebook(c)) = self.get(blob) {
            return Ok(c);
        }
        let bytes = self.read(io, blob).await?;
        let book = Arc::new(Codebook::from_bytes(&bytes, dim).map_err(|e| at(blob, e))?);
        self.put(blob.clone(), Cached::Codebook(book.clone()), bytes.len());
        Ok(book)
    }

    /// A segment's header and attributes (its codes are read per list: [`codes`](Self::codes)).
    pub(crate) async fn segment(
        &self,
        io: &FileIO,
        seg: &SegmentRef,
        dim: usize,
    ) -> Result<(Arc<Segment>, bool)> {
        let blob = &seg.blob;
        if let Some(Cached::Segment(s)) = self.get(blob) {
            return Ok((s, true));
        }
        if seg.codes_at > blob.length {
            return Err(at(
                blob,
                Error::corrupt_index("code section beyond the blob"),
            ));
        }
        let head = BlobRef {
            path: blob.path.clone(),
            offset: blob.offset,
            length: seg.codes_at,
        };
        let bytes = self.read(io, &head).await?;
        let length = blob.length;
        let segment = tokio::task::spawn_blocking(move || Segment::decode(bytes, dim, length))
            .await
            .map_err(|e| Error::internal(format!("segment decode task failed: {e}")))?
            .map_err(|e| at(blob, e))?;
        let segment = Arc::new(segment);
        let size = segment.memory_bytes();
        self.put(blob.clone(), Cached::Segment(segment.clone()), size);
        Ok((segment, false))
    }

    /// The codes at `range` of a segment blob (one list's).
    pub(crate) async fn codes(
        &self,
        io: &FileIO,
        blob: &BlobRef,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes> {
        let key = BlobRef {
            path: blob.path.clone(),
            offset: blob.offset + range.start,
            length: range.end - range.start,
        };
        if let Some(Cached::Codes(c)) = self.get(&key) {
            return Ok(c);
        }
        if range.end > blob.length {
            return Err(at(
                blob,
                Error::corrupt_index("a list's codes lie beyond the blob"),
            ));
        }
        let bytes = self.read(io, &key).await?;
        self.put(key, Cached::Codes(bytes.clone()), bytes.len());
        Ok(bytes)
    }
}

/// Names the blob in a corrupt-index error.
fn at(blob: &BlobRef, e: Error) -> Error {
    match e {
        Error::CorruptIndex { reason } => {
            Error::corrupt_index(format!("{} (blob at {}): {reason}", blob.path, blob.offset))
        }
        other => Error::corrupt_index(format!("{} (blob at {}): {other}", blob.path, blob.offset)),
    }
}

/// Every file the index entries of `metadata` name (statistics files and the segment files
/// their manifests list): referenced, for orphan removal. A manifest that cannot be read
/// leaves its segments unknown: `Err`, so nothing is deleted on a guess.
pub(crate) async fn referenced_files(
    io: &FileIO,
    metadata: &TableMetadata,
    cache: &IndexCache,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for stats in metadata.statistics_iter().filter(|s| is_index(s)) {
        if !seen.insert(stats.statistics_path.clone()) {
            continue;
        }
        out.push(stats.statistics_path.clone());
        let manifest = cache.manifest(io, stats).await?;
        out.extend(manifest.files().map(str::to_string));
    }
    Ok(out)
}
