//! Building and updating the index: [`SalesHistory::index_embeddings`].

use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{
    Array, ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use iceberg::spec::StatisticsFile;

use super::codec::{self, Codebook, Segment};
use super::{BlobRef, IndexManifest, SegmentRef, index_for};
use crate::commit::{self, Change, ChangeKind};
use crate::error::{Error, IcebergResultExt, Result};
use crate::scan::EmbeddingDecoder;
use crate::schema::Column;
use crate::table::SalesHistory;

/// Entries per segment a build writes (files are not split: a segment ends after the file
/// that reaches this).
const SEGMENT_ROWS: usize = 64 * 1024;
/// Training rows per list (k-means sample = `lists × this`, capped).
const SAMPLE_PER_LIST: usize = 32;
const MAX_SAMPLE: usize = 64 * 1024;
const KMEANS_ITERATIONS: usize = 10;
/// The codebook is retrained when the table has grown this many times since training.
const RETRAIN_GROWTH: u64 = 4;

/// The columns a [`ScanFilter`](crate::ScanFilter) can test, kept with each entry: all but
/// the embedding and the two free-text columns.
fn filter_columns() -> impl Iterator<Item = Column> {
    Column::ALL.into_iter().filter(|c| {
        !matches!(
            c,
            Column::Embedding | Column::ImageS3Key | Column::Description
        )
    })
}

/// Lists for a table of `rows`: about √rows, 16–4,096.
pub(crate) fn default_lists(rows: u64) -> usize {
    ((rows as f64).sqrt().round() as usize).clamp(16, 4096)
}

/// An index build in preparation; `.await` it. Built by [`SalesHistory::index_embeddings`].
///
/// Indexes the data files of the current snapshot that no live segment covers (all of them
/// the first time), drops segments naming a removed file (compaction, erasure) and indexes
/// their live files again, and registers the new index manifest on the current
/// snapshot — one metadata commit, no new snapshot. Nothing to do: no commit.
#[must_use = "an index build does nothing until it is awaited"]
pub struct IndexEmbeddings {
    table: SalesHistory,
    lists: Option<usize>,
    rebuild: bool,
}

/// What an index build did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexReport {
    /// The snapshot whose files were indexed (`None`: the table has no data).
    pub snapshot_id: Option<i64>,
    /// Data files indexed by this build.
    pub files_indexed: usize,
    /// Rows indexed by this build.
    pub rows_indexed: u64,
    /// Rows skipped (null embedding or wrong length; exact search skips them too).
    pub rows_skipped: u64,
    /// Segments written / kept from the previous index / dropped from it.
    pub segments_written: usize,
    /// Segments of the previous index still in use.
    pub segments_kept: usize,
    /// Segments of the previous index dropped (a file of theirs was removed, or unreadable).
    pub segments_dropped: usize,
    /// Whether a new codebook was trained (first build, growth, [`rebuild`](IndexEmbeddings::rebuild)).
    pub codebook_trained: bool,
    /// Lists of the codebook in use.
    pub lists: usize,
    /// Bytes of the Puffin file written.
    pub bytes_written: u64,
    /// Bytes of every segment the index now uses (the index's size in storage).
    pub index_bytes: u64,
    /// Rows the index now covers.
    pub rows_covered: u64,
    /// Catalog attempts of the commit (0: nothing committed).
    pub attempts: u32,
    /// Time the build took.
    pub duration: Duration,
}

impl SalesHistory {
    /// Builds or updates the table's vector index (see [`crate::ann`] for the design):
    /// `similar_to` uses it for the files it covers and searches the rest exactly.
    ///
    /// ```no_run
    /// # async fn f(table: &sales_history::SalesHistory, q: Vec<f64>) -> sales_history::Result<()> {
    /// let report = table.index_embeddings().await?;
    /// println!("{} rows indexed in {:?}", report.rows_indexed, report.duration);
    /// let near = table.similar_to(q, 10).probes(16).await?;
    /// # Ok(()) }
    /// ```
    pub fn index_embeddings(&self) -> IndexEmbeddings {
        IndexEmbeddings {
            table: self.clone(),
            lists: None,
            rebuild: false,
        }
    }

    /// Caps the bytes of index parts (manifests, codebooks, segments) this handle and its
    /// clones keep in memory (default [`DEFAULT_INDEX_CACHE_BYTES`](crate::ann::DEFAULT_INDEX_CACHE_BYTES)).
    /// `0` keeps nothing: every search reads what it probes.
    pub fn set_index_cache_bytes(&self, bytes: u64) {
        self.shared.index_cache.set_cap(bytes);
    }

    /// Bytes of index parts this handle holds in memory now.
    pub fn index_cache_bytes(&self) -> usize {
        self.shared.index_cache.bytes()
    }
}

impl IndexEmbeddings {
    /// Lists (centroids) of a newly trained codebook (default about √rows). Takes effect
    /// when a codebook is trained: the first build or [`rebuild`](Self::rebuild).
    pub fn lists(mut self, lists: usize) -> Self {
        self.lists = Some(lists);
        self
    }

    /// Trains a new codebook and indexes every file again.
    pub fn rebuild(mut self) -> Self {
        self.rebuild = true;
        self
    }

    #[tracing::instrument(name = "index_embeddings", skip_all, fields(table = %self.table.name()))]
    async fn run(self) -> Result<IndexReport> {
        let start = Instant::now();
        let table = &self.table;
        if self.lists == Some(0) {
            return Err(Error::config("lists", "an index needs at least one list"));
        }
        if let Some(reason) = table.swap().refuses("index") {
            return Err(Error::Unsupported {
                operation: "index_embeddings".into(),
                reason,
            });
        }
        table.refresh().await?;
        let current = table.current();
        let metadata = current.metadata();
        let io = current.file_io().clone();
        let dim = table.embedding_dimension();
        let Some(snapshot_id) = metadata.current_snapshot_id() else {
            return Ok(IndexReport {
                duration: start.elapsed(),
                ..IndexReport::default()
            });
        };
        let plan = table.scan().snapshot_id(snapshot_id).plan().await?;
        let live: HashMap<String, (u64, u64)> = plan
            .files
            .iter()
            .map(|f| (f.path.clone(), (f.size_bytes, f.record_count.unwrap_or(0))))
            .collect();
        let total_rows: u64 = live.values().map(|v| v.1).sum();
        let cache = &table.shared.index_cache;

        // The index in use, if it is readable.
        let previous_stats = index_for(metadata, snapshot_id).cloned();
        let mut previous: Option<Arc<IndexManifest>> = None;
        if let Some(stats) = &previous_stats {
            match cache.manifest(&io, stats).await {
                Ok(m) if m.dim == dim => previous = Some(m),
                Ok(m) => tracing::warn!(
                    index_dim = m.dim,
                    table_dim = dim,
                    "the index has another dimension: building a new one"
                ),
                Err(e) => tracing::warn!(error = %e, "the index is unreadable: building a new one"),
            }
        }
        let mut book: Option<Arc<Codebook>> = None;
        if let Some(m) = &previous
            && !self.rebuild
            && total_rows <= m.trained_on_rows.max(1).saturating_mul(RETRAIN_GROWTH)
        {
            match cache.codebook(&io, &m.codebook, dim).await {
                Ok(b) => book = Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "the codebook is unreadable: training a new one")
                }
            }
        }
        let mut report = IndexReport {
            snapshot_id: Some(snapshot_id),
            ..IndexReport::default()
        };
        // Segments kept: same codebook, every file still live. A segment naming a removed
        // file (compaction, a tenant erasure) is dropped and its live files indexed again, so
        // an erased tenant's entries leave the index with the next build (and its Puffin
        // file with expiry + orphan removal), not only the search results.
        let mut kept: Vec<SegmentRef> = Vec::new();
        if let (Some(m), Some(_)) = (&previous, &book) {
            for s in &m.segments {
                if s.rows == 0 || s.files.iter().any(|f| !live.contains_key(f)) {
                    report.segments_dropped += 1;
                    continue;
                }
                // A segment that cannot be read is dropped: its files are indexed again.
                match cache.segment(&io, s, dim).await {
                    Ok(_) => kept.push(s.clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, "an index segment is unreadable: its files are indexed again");
                        report.segments_dropped += 1;
                    }
                }
            }
        } else if let Some(m) = &previous {
            report.segments_dropped = m.segments.len();
        }
        let covered: HashSet<&str> = kept
            .iter()
            .flat_map(|s| s.files.iter())
            .map(String::as_str)
            .filter(|f| live.contains_key(*f))
            .collect();
        let mut todo: Vec<(String, u64, u64)> = plan
            .files
            .iter()
            .filter(|f| !covered.contains(f.path.as_str()))
            .map(|f| (f.path.clone(), f.size_bytes, f.record_count.unwrap_or(0)))
            .collect();
        todo.sort();
        report.segments_kept = kept.len();
        if todo.is_empty() && report.segments_dropped == 0 && book.is_some() {
            report.lists = book.as_ref().map_or(0, |b| b.lists());
            report.rows_covered = kept.iter().map(|s| s.rows).sum();
            report.index_bytes = kept.iter().map(|s| s.blob.length).sum();
            report.duration = start.elapsed();
            return Ok(report);
        }
        let threads = crate::cores();

        // A codebook: the previous one, or trained on a sample spread over the live files.
        let (book, trained_on_rows) = match book {
            Some(b) => {
                let m = previous
                    .as_ref()
                    .ok_or_else(|| Error::internal("codebook without manifest"))?;
                (b, m.trained_on_rows)
            }
            None => {
                let lists = self.lists.unwrap_or_else(|| default_lists(total_rows));
                let want = (lists * SAMPLE_PER_LIST).min(MAX_SAMPLE);
                let sample = sample_vectors(&io, &plan.files, dim, want, total_rows).await?;
                if sample.is_empty() {
                    report.duration = start.elapsed();
                    return Ok(report);
                }
                let book = tokio::task::spawn_blocking(move || {
                    Codebook::train(&sample, dim, lists, KMEANS_ITERATIONS, threads)
                })
                .await
                .map_err(|e| Error::internal(format!("k-means task failed: {e}")))?;
                report.codebook_trained = true;
                // Every segment of the old codebook goes: its lists mean nothing now.
                report.segments_dropped += kept.len();
                report.segments_kept = 0;
                kept.clear();
                todo = plan
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.size_bytes, f.record_count.unwrap_or(0)))
                    .collect();
                todo.sort();
                (Arc::new(book), total_rows)
            }
        };
        report.lists = book.lists();

        // Encode the files to index, a segment per ~SEGMENT_ROWS rows.
        let location = metadata.location().trim_end_matches('/').to_string();
        let path = format!("{location}/metadata/ann-{}.puffin", uuid::Uuid::new_v4());
        let mut blobs: Vec<(&'static str, Vec<u8>)> = Vec::new();
        let mut new_segments: Vec<(usize, u64, Vec<String>, u64)> = Vec::new();
        // Every build writes the codebook into its own file (a few MB), so an earlier file is
        // referenced only by the segments kept from it: once none is (a tenant erased, a month
        // compacted), expiry + orphan removal delete it with the entries it held.
        blobs.push((super::CODEBOOK_BLOB_TYPE, book.to_bytes()));
        let mut pending = Pending::default();
        for (file, size, _) in &todo {
            let batches =
                crate::scan::read_file_rows(&io, file, *size, None, EmbeddingDecoder::Auto).await?;
            let file_no = pending.files.len() as i32;
            pending.files.push(file.clone());
            let book2 = book.clone();
            let encoded = tokio::task::spawn_blocking(move || {
                encode_file(&batches, &book2, dim, file_no, threads)
            })
            .await
            .map_err(|e| Error::internal(format!("index encode task failed: {e}")))??;
            report.files_indexed += 1;
            report.rows_indexed += encoded.lists.len() as u64;
            report.rows_skipped += encoded.skipped;
            pending.add(encoded);
            if pending.rows() >= SEGMENT_ROWS {
                let files = pending.files.clone();
                let rows = pending.rows() as u64;
                let (blob, codes_at) = std::mem::take(&mut pending).finish(dim, book.lists())?;
                new_segments.push((blobs.len(), rows, files, codes_at));
                blobs.push((super::SEGMENT_BLOB_TYPE, blob));
            }
        }
        if !pending.files.is_empty() {
            let files = pending.files.clone();
            let rows = pending.rows() as u64;
            let (blob, codes_at) = pending.finish(dim, book.lists())?;
            new_segments.push((blobs.len(), rows, files, codes_at));
            blobs.push((super::SEGMENT_BLOB_TYPE, blob));
        }
        report.segments_written = new_segments.len();

        // Offsets in the Puffin file: the 4-byte magic, then the blobs uncompressed, in order.
        let mut offsets = Vec::with_capacity(blobs.len());
        let mut at = 4u64;
        for (_, b) in &blobs {
            offsets.push(at);
            at += b.len() as u64;
        }
        let blob_ref = |i: usize| BlobRef {
            path: path.clone(),
            offset: offsets[i],
            length: blobs[i].1.len() as u64,
        };
        let codebook = blob_ref(0);
        let mut segments = kept;
        segments.extend(
            new_segments
                .into_iter()
                .map(|(i, rows, files, codes_at)| SegmentRef {
                    blob: blob_ref(i),
                    codes_at,
                    rows,
                    files,
                }),
        );
        let manifest = IndexManifest {
            version: 1,
            dim,
            lists: book.lists(),
            trained_on_rows,
            codebook,
            segments,
        };
        report.rows_covered = manifest.segments.iter().map(|s| s.rows).sum();
        report.index_bytes =
            manifest.segments.iter().map(|s| s.blob.length).sum::<u64>() + manifest.codebook.length;
        let manifest_json = serde_json::to_vec(&manifest)
            .map_err(|e| Error::internal(format!("index manifest: {e}")))?;

        // Write the Puffin file (owned by the change: removed if the commit does not land).
        let mut change = Change::new(
            table,
            ChangeKind::Index {
                statistics: Box::new(StatisticsFile {
                    snapshot_id,
                    statistics_path: path.clone(),
                    file_size_in_bytes: 0,
                    file_footer_size_in_bytes: 0,
                    key_metadata: None,
                    blob_metadata: Vec::new(),
                }),
                expect: previous_stats.as_ref().map(|s| s.statistics_path.clone()),
            },
            format!("index-{}", uuid::Uuid::new_v4().simple()),
        );
        change.files.paths_mut().push(path.clone());
        let sequence_number = metadata
            .snapshot_by_id(snapshot_id)
            .map_or(0, |s| s.sequence_number());
        let field = Column::Embedding.field_id();
        let output = io.new_output(&path).or_ours()?;
        let mut writer = iceberg::puffin::PuffinWriter::new(&output, HashMap::new(), false)
            .await
            .or_ours()?;
        for (kind, data) in blobs
            .into_iter()
            .chain(std::iter::once((super::INDEX_BLOB_TYPE, manifest_json)))
        {
            let blob = iceberg::puffin::Blob::builder()
                .r#type(kind.to_string())
                .fields(vec![field])
                .snapshot_id(snapshot_id)
                .sequence_number(sequence_number)
                .data(data)
                .properties(HashMap::new())
                .build();
            writer
                .add(blob, iceberg::compression::CompressionCodec::None)
                .await
                .or_ours()?;
        }
        writer.close().await.or_ours()?;
        let size = output.to_input_file().metadata().await.or_ours()?.size;
        report.bytes_written = size;
        let written = iceberg::puffin::PuffinReader::new(io.new_input(&path).or_ours()?);
        let footer_blobs = written.file_metadata().await.or_ours()?.blobs().to_vec();
        let blob_bytes: u64 = footer_blobs.iter().map(|b| b.length()).sum();
        if let ChangeKind::Index { statistics, .. } = &mut change.kind {
            statistics.file_size_in_bytes = size as i64;
            statistics.file_footer_size_in_bytes = (size - 4 - blob_bytes) as i64;
            // No blobs listed in the table metadata: see `super::is_index`.
            statistics.blob_metadata = Vec::new();
        }
        let landed = commit::commit(table, change).await?;
        report.attempts = landed.attempts;
        report.duration = start.elapsed();
        tracing::info!(
            snapshot_id,
            files = report.files_indexed,
            rows = report.rows_indexed,
            segments_written = report.segments_written,
            segments_kept = report.segments_kept,
            segments_dropped = report.segments_dropped,
            codebook_trained = report.codebook_trained,
            ms = report.duration.as_millis() as u64,
            "vector index updated"
        );
        Ok(report)
    }
}

impl IntoFuture for IndexEmbeddings {
    type Output = Result<IndexReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A k-means sample of about `want` vectors, spread over the files (every n-th row of files
/// taken at an even stride), as f32 rows.
async fn sample_vectors(
    io: &iceberg::io::FileIO,
    files: &[crate::scan::PlannedDataFile],
    dim: usize,
    want: usize,
    total_rows: u64,
) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = Vec::with_capacity(want * dim);
    if files.is_empty() || total_rows == 0 {
        return Ok(out);
    }
    // Read whole files at an even stride until the sample is full; within a file, every
    // `step`-th row, where `step` spreads `want` over the rows of the files read.
    let mut order: Vec<usize> = (0..files.len()).collect();
    let stride = (files.len() as f64 / (want as f64 / 256.0).max(1.0)).max(1.0) as usize;
    order.sort_by_key(|i| (i % stride, *i));
    let rows_per_file = (total_rows / files.len() as u64).max(1) as usize;
    let files_needed = (want / rows_per_file.max(1)).clamp(1, files.len());
    let step = ((files_needed * rows_per_file) / want.max(1)).max(1);
    for i in order {
        if out.len() >= want * dim {
            break;
        }
        let f = &files[i];
        for batch in
            crate::scan::read_file_rows(io, &f.path, f.size_bytes, None, EmbeddingDecoder::Auto)
                .await?
        {
            let Some((values, offsets)) = embeddings(&batch) else {
                continue;
            };
            for r in (0..batch.num_rows()).step_by(step) {
                let (s, e) = (offsets[r] as usize, offsets[r + 1] as usize);
                if e - s == dim && out.len() < want * dim {
                    out.extend(values[s..e].iter().map(|v| *v as f32));
                }
            }
        }
    }
    Ok(out)
}

/// The embedding values and offsets of a batch (rows with a null list have empty ranges).
fn embeddings(batch: &RecordBatch) -> Option<(&[f64], &[i32])> {
    let list = batch
        .column_by_name(Column::Embedding.name())?
        .as_list_opt::<i32>()?;
    let values = list.values().as_primitive_opt::<Float64Type>()?;
    Some((values.values(), list.value_offsets()))
}

/// One file's entries.
struct Encoded {
    lists: Vec<u32>,
    codes: Vec<u8>,
    scales: Vec<f32>,
    norms: Vec<f32>,
    positions: Vec<i64>,
    /// The file's rows (without `embedding`), taken at the entries' rows.
    attrs: RecordBatch,
    file_no: i32,
    skipped: u64,
}

fn encode_file(
    batches: &[RecordBatch],
    book: &Codebook,
    dim: usize,
    file_no: i32,
    threads: usize,
) -> Result<Encoded> {
    let schema = crate::schema::arrow_schema();
    let all = arrow_select::concat::concat_batches(&schema, batches)?;
    let Some((values, offsets)) = embeddings(&all) else {
        return Err(Error::invalid(
            Column::Embedding,
            None,
            "unexpected Arrow type",
        ));
    };
    let list = all
        .column_by_name(Column::Embedding.name())
        .ok_or_else(|| Error::invalid(Column::Embedding, None, "missing"))?
        .clone();
    let rows: Vec<usize> = (0..all.num_rows())
        .filter(|&r| {
            list.is_valid(r)
                && offsets[r + 1] - offsets[r] == dim as i32
                && values[offsets[r] as usize..offsets[r + 1] as usize]
                    .iter()
                    .all(|v| v.is_finite())
        })
        .collect();
    let n = rows.len();
    let mut lists = vec![0u32; n];
    let mut codes = vec![0u8; n * dim];
    let mut scales = vec![0f32; n];
    let mut norms = vec![0f32; n];
    let chunk = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for ((((rows, lists), codes), scales), norms) in rows
            .chunks(chunk)
            .zip(lists.chunks_mut(chunk))
            .zip(codes.chunks_mut(chunk * dim))
            .zip(scales.chunks_mut(chunk))
            .zip(norms.chunks_mut(chunk))
        {
            s.spawn(move || {
                let mut v32 = vec![0f32; dim];
                for (j, &r) in rows.iter().enumerate() {
                    let v = &values[offsets[r] as usize..offsets[r + 1] as usize];
                    for (a, b) in v32.iter_mut().zip(v) {
                        *a = *b as f32;
                    }
                    lists[j] = book.assign(&v32);
                    let (scale, norm) = codec::encode(
                        v,
                        book.centroid(lists[j]),
                        &mut codes[j * dim..(j + 1) * dim],
                    );
                    scales[j] = scale;
                    norms[j] = norm;
                }
            });
        }
    });
    let take = UInt32Array::from(rows.iter().map(|r| *r as u32).collect::<Vec<_>>());
    let keep: Vec<usize> = filter_columns().map(|c| c.index()).collect();
    let attrs = arrow_select::take::take_record_batch(&all.project(&keep)?, &take)?;
    Ok(Encoded {
        positions: rows.iter().map(|r| *r as i64).collect(),
        lists,
        codes,
        scales,
        norms,
        attrs,
        file_no,
        skipped: (all.num_rows() - n) as u64,
    })
}

/// Entries gathered for the next segment.
#[derive(Default)]
struct Pending {
    files: Vec<String>,
    parts: Vec<Encoded>,
}

impl Pending {
    fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.lists.len()).sum()
    }

    fn add(&mut self, e: Encoded) {
        self.parts.push(e);
    }

    /// The segment blob: entries ordered by list.
    fn finish(self, dim: usize, lists: usize) -> Result<(Vec<u8>, u64)> {
        let n = self.rows();
        let mut order: Vec<(u32, u32, u32)> = Vec::with_capacity(n);
        for (p, part) in self.parts.iter().enumerate() {
            for (i, l) in part.lists.iter().enumerate() {
                order.push((*l, p as u32, i as u32));
            }
        }
        order.sort_unstable();
        let mut list_offsets = vec![0u32; lists + 1];
        for (l, _, _) in &order {
            list_offsets[*l as usize + 1] += 1;
        }
        for i in 0..lists {
            list_offsets[i + 1] += list_offsets[i];
        }
        let mut codes = Vec::with_capacity(n * dim);
        let (mut files, mut positions, mut scales, mut norms) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (_, p, i) in &order {
            let (part, i) = (&self.parts[*p as usize], *i as usize);
            codes.extend_from_slice(&part.codes[i * dim..(i + 1) * dim]);
            files.push(part.file_no);
            positions.push(part.positions[i]);
            scales.push(part.scales[i]);
            norms.push(part.norms[i]);
        }
        // The attributes in list order: interleave the parts' batches.
        let batches: Vec<&RecordBatch> = self.parts.iter().map(|p| &p.attrs).collect();
        let indices: Vec<(usize, usize)> = order
            .iter()
            .map(|(_, p, i)| (*p as usize, *i as usize))
            .collect();
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| Error::internal("a segment without entries"))?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 4);
        for c in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(arrow_select::interleave::interleave(&arrays, &indices)?);
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (name, dt, array) in [
            (
                codec::FILE_COL,
                DataType::Int32,
                Arc::new(Int32Array::from(files)) as ArrayRef,
            ),
            (
                codec::POS_COL,
                DataType::Int64,
                Arc::new(Int64Array::from(positions)),
            ),
            (
                codec::SCALE_COL,
                DataType::Float32,
                Arc::new(Float32Array::from(scales)),
            ),
            (
                codec::NORM_COL,
                DataType::Float32,
                Arc::new(Float32Array::from(norms)),
            ),
        ] {
            fields.push(Field::new(name, dt, false));
            columns.push(array);
        }
        let attrs = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Segment::encode(dim, self.files, list_offsets, &attrs, &codes)
    }
}
