//! Searching with the index: candidates from the probed lists (8-bit codes, filter applied
//! to entries), re-ranked exactly from the data files; unindexed files searched exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use super::codec::{Query, Segment};
use super::{IndexManifest, index_for};
use crate::error::{Error, Result};
use crate::scan::{Resolved, Scan};
use crate::schema::Column;
use crate::similarity::{Metric, SimilarSale, SimilarTo, TieKey, exact_top, sort_nearest};

/// Segments read at once.
const SEGMENT_READS: usize = 4;

/// What one similarity search did ([`SimilarTo::with_metrics`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SimilarityMetrics {
    /// The snapshot searched.
    pub snapshot_id: Option<i64>,
    /// Whether an index was used for some files.
    pub used_index: bool,
    /// Why the whole search ran exactly (`None` when the index was used).
    pub exact_reason: Option<String>,
    /// Data files left after pruning.
    pub files_planned: usize,
    /// Files searched through the index.
    pub files_indexed: usize,
    /// Files searched exactly (not covered by the index, or its part was unusable).
    pub files_exact: usize,
    /// Index parts that could not be read (searched exactly instead, with a warning).
    pub index_fallbacks: usize,
    /// Segments used / of them already in the handle's cache.
    pub segments_used: usize,
    /// Segments found in the cache.
    pub segments_cached: usize,
    /// Lists probed, summed over segments.
    pub lists_probed: usize,
    /// Entries scored on their 8-bit codes.
    pub entries_scored: usize,
    /// Candidates re-ranked with full-precision embeddings.
    pub candidates_reranked: usize,
    /// Bytes of index parts read from storage by this search.
    pub index_bytes_read: u64,
    /// Time spent in the index part (probe + score), the re-rank, and the exact part.
    pub index_time: Duration,
    /// Time spent reading candidates' rows and re-ranking them.
    pub rerank_time: Duration,
    /// Time spent on the exactly searched files.
    pub exact_time: Duration,
}

/// A candidate from the codes: segment, entry, approximate "smaller is nearer" key.
#[derive(Clone, Copy)]
struct Candidate {
    key: f64,
    segment: u32,
    entry: u32,
}

fn key_of(metric: Metric, score: f64) -> f64 {
    match metric {
        Metric::L2 => score,
        _ => -score,
    }
}

/// Keeps the best `want` candidates (trims when the buffer doubles).
fn trim(c: &mut Vec<Candidate>, want: usize) {
    if c.len() > want {
        c.select_nth_unstable_by(want - 1, |a, b| a.key.total_cmp(&b.key));
        c.truncate(want);
    }
}

/// The search (see [`crate::ann`]); exact when there is no usable index.
pub(crate) async fn search(
    s: SimilarTo,
    q_norm: f64,
) -> Result<(Vec<SimilarSale>, SimilarityMetrics)> {
    let mut metrics = SimilarityMetrics::default();
    let table = s.table.clone();
    let mut scan = table
        .scan()
        .filter(s.filter.clone())
        .embedding_decoder(s.decoder);
    if let Some(scope) = &s.scope {
        scan = scan.scoped(scope.clone());
    }
    let version = table.table_for_read().await?;
    let snapshot_id = match s.snapshot_id {
        Some(id) => {
            if version.metadata().snapshot_by_id(id).is_none() {
                return Err(Error::SnapshotNotFound {
                    table: table.name(),
                    snapshot_id: id,
                });
            }
            Some(id)
        }
        None => version.metadata().current_snapshot_id(),
    };
    metrics.snapshot_id = snapshot_id;
    if let Some(id) = snapshot_id {
        scan = scan.snapshot_id(id);
    }
    let exact_all = |reason: &str, mut metrics: SimilarityMetrics, scan: Scan| {
        let reason = reason.to_string();
        let s = &s;
        async move {
            let start = Instant::now();
            metrics.exact_reason = Some(reason);
            let (best, files) = exact_top(s, scan, q_norm).await?;
            metrics.files_exact = files;
            metrics.files_planned = files;
            metrics.exact_time = start.elapsed();
            Ok::<_, Error>((best.into_iter().map(|(s, _)| s).collect(), metrics))
        }
    };
    if s.exact {
        return exact_all("exact() was asked for", metrics, scan).await;
    }
    let Some(id) = snapshot_id else {
        return exact_all("the table has no snapshot", metrics, scan).await;
    };
    let Some(stats) = index_for(version.metadata(), id).cloned() else {
        return exact_all("the snapshot has no index", metrics, scan).await;
    };
    let io = version.file_io().clone();
    let cache = &table.shared.index_cache;
    let read_before = cache.bytes_read.load(AtomicOrdering::Relaxed);
    let dim = table.embedding_dimension();
    let manifest: Arc<IndexManifest> = match cache.manifest(&io, &stats).await {
        Ok(m) if m.dim == dim => m,
        Ok(m) => {
            tracing::warn!(
                index_dim = m.dim,
                dim,
                "the index has another dimension: searching exactly"
            );
            metrics.index_fallbacks += 1;
            return exact_all("the index has another dimension", metrics, scan).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the index is unreadable: searching exactly");
            metrics.index_fallbacks += 1;
            return exact_all("the index manifest is unreadable", metrics, scan).await;
        }
    };
    let book = match cache.codebook(&io, &manifest.codebook, dim).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "the index codebook is unreadable: searching exactly");
            metrics.index_fallbacks += 1;
            return exact_all("the index codebook is unreadable", metrics, scan).await;
        }
    };
    let index_start = Instant::now();
    let resolved: Resolved = {
        let f = match &s.scope {
            Some(scope) => s.filter.clone().and(scope.clone()),
            None => s.filter.clone(),
        };
        f.resolve()?
    };
    if resolved.matches_nothing {
        return Ok((Vec::new(), metrics));
    }
    let plan = scan.clone().plan().await?;
    metrics.files_planned = plan.files.len();
    let planned: HashMap<&str, u64> = plan
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size_bytes))
        .collect();
    // Segments with a planned file, and which of their files are planned.
    let mut wanted: Vec<usize> = Vec::new();
    let mut covered: HashSet<&str> = HashSet::new();
    for (i, seg) in manifest.segments.iter().enumerate() {
        let mut any = false;
        for f in &seg.files {
            if planned.contains_key(f.as_str()) && covered.insert(f.as_str()) {
                any = true;
            }
        }
        if any {
            wanted.push(i);
        }
    }
    let loaded: Vec<(usize, Result<(Arc<Segment>, bool)>)> =
        futures::stream::iter(wanted.iter().copied())
            .map(|i| {
                let (io, blob) = (&io, &manifest.segments[i].blob);
                async move { (i, cache.segment(io, blob, dim).await) }
            })
            .buffered(SEGMENT_READS)
            .collect()
            .await;
    let mut segments: Vec<(usize, Arc<Segment>)> = Vec::new();
    for (i, r) in loaded {
        match r {
            Ok((seg, hit)) => {
                metrics.segments_cached += usize::from(hit);
                segments.push((i, seg));
            }
            Err(e) => {
                tracing::warn!(error = %e, "an index segment is unreadable: its files are searched exactly");
                metrics.index_fallbacks += 1;
                for f in &manifest.segments[i].files {
                    covered.remove(f.as_str());
                }
            }
        }
    }
    metrics.segments_used = segments.len();
    metrics.files_indexed = covered.len();
    metrics.used_index = !segments.is_empty();
    let uncovered: HashSet<String> = planned
        .keys()
        .filter(|f| !covered.contains(*f))
        .map(|f| f.to_string())
        .collect();
    metrics.files_exact = uncovered.len();

    // Score the probed lists of every segment (on the blocking pool, segments split over
    // the cores).
    let want = s.k.saturating_mul(s.refine.max(1)).max(s.k);
    let probes = s.probes.unwrap_or_else(|| default_probes(book.lists()));
    let query = Arc::new(Query::new(&s.query, s.metric));
    let filter = (!resolved.is_trivial()).then_some(resolved);
    let file_ok: Vec<Vec<bool>> = segments
        .iter()
        .map(|(_, seg)| {
            seg.files
                .iter()
                .map(|f| covered.contains(f.as_str()))
                .collect()
        })
        .collect();
    let segs: Vec<Arc<Segment>> = segments.iter().map(|(_, s)| s.clone()).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(segs.len().max(1));
    let (book2, query2) = (book.clone(), query.clone());
    let scored = tokio::task::spawn_blocking(move || {
        let order = book2.probe_order(&query2);
        let results: Vec<Result<(Vec<Candidate>, usize, usize)>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (segs, file_ok, order, query, filter) =
                        (&segs, &file_ok, &order, &query2, &filter);
                    sc.spawn(move || {
                        let mut out = Vec::new();
                        let (mut lists, mut entries) = (0, 0);
                        for (i, seg) in segs.iter().enumerate().skip(t).step_by(threads) {
                            let (c, l, e) = score_segment(
                                seg,
                                i as u32,
                                order,
                                probes,
                                want,
                                &file_ok[i],
                                filter.as_ref(),
                                query,
                                dim,
                            )?;
                            out.extend(c);
                            trim(&mut out, want);
                            lists += l;
                            entries += e;
                        }
                        Ok((out, lists, entries))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::internal("a scoring thread panicked")))
                })
                .collect()
        });
        let mut all = Vec::new();
        let (mut lists, mut entries) = (0, 0);
        for r in results {
            let (c, l, e) = r?;
            all.extend(c);
            lists += l;
            entries += e;
        }
        trim(&mut all, want);
        Ok::<_, Error>((all, lists, entries))
    })
    .await
    .map_err(|e| Error::internal(format!("scoring task failed: {e}")))??;
    let (candidates, lists_probed, entries_scored) = scored;
    metrics.lists_probed = lists_probed;
    metrics.entries_scored = entries_scored;
    metrics.index_time = index_start.elapsed();

    // Re-rank: the candidates' rows from their data files, scored exactly.
    let rerank_start = Instant::now();
    metrics.candidates_reranked = candidates.len();
    let mut by_file: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let segs = segs_of(&segments);
    for c in &candidates {
        let seg = segs[c.segment as usize];
        let e = c.entry as usize;
        let file = &seg.files[seg.files_of_entries[e] as usize];
        by_file
            .entry(file.clone())
            .or_default()
            .push(seg.positions[e]);
    }
    let decoder = s.decoder;
    let reads = by_file.into_iter().map(|(path, mut rows)| {
        rows.sort_unstable();
        rows.dedup();
        let size = planned.get(path.as_str()).copied().unwrap_or(0);
        let io = io.clone();
        async move { crate::scan::read_rows_at(&io, &path, size, &rows, decoder).await }
    });
    let batches: Vec<Vec<arrow_array::RecordBatch>> = futures::stream::iter(reads)
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let mut best: Vec<(SimilarSale, TieKey)> = Vec::new();
    for batch in batches.iter().flatten() {
        for record in crate::batch::batch_to_records(batch)? {
            let Some(v) = record.embedding.as_deref() else {
                continue;
            };
            if v.len() != dim {
                continue;
            }
            let Some(score) = s.metric.score(&s.query, q_norm, v) else {
                continue;
            };
            let key = (
                record.tenant_id.clone(),
                record.product_id.clone(),
                record.sold_date.timestamp_micros(),
            );
            best.push((SimilarSale { score, record }, key));
        }
    }
    metrics.rerank_time = rerank_start.elapsed();

    // The files the index does not cover: exactly.
    if !uncovered.is_empty() {
        let start = Instant::now();
        let (exact, _) = exact_top(&s, scan.only_files(uncovered), q_norm).await?;
        best.extend(exact);
        metrics.exact_time = start.elapsed();
    }
    sort_nearest(&mut best, s.metric);
    best.truncate(s.k);
    metrics.index_bytes_read = cache.bytes_read.load(AtomicOrdering::Relaxed) - read_before;
    Ok((best.into_iter().map(|(s, _)| s).collect(), metrics))
}

fn segs_of(segments: &[(usize, Arc<Segment>)]) -> Vec<&Segment> {
    segments.iter().map(|(_, s)| s.as_ref()).collect()
}

/// Default probes: 1/32 of the lists, at least 8.
pub(crate) fn default_probes(lists: usize) -> usize {
    (lists / 32).max(8).min(lists.max(1))
}

/// The best `want` entries of one segment: lists in probe order, at least `probes` of them
/// and more while fewer than `want` entries passed the filter.
#[allow(clippy::too_many_arguments)]
fn score_segment(
    seg: &Segment,
    segment_no: u32,
    order: &[u32],
    probes: usize,
    want: usize,
    file_ok: &[bool],
    filter: Option<&Resolved>,
    query: &Query,
    dim: usize,
) -> Result<(Vec<Candidate>, usize, usize)> {
    let mut out: Vec<Candidate> = Vec::new();
    let (mut lists, mut passed) = (0usize, 0usize);
    let metric = query_metric(query);
    for (n, &l) in order.iter().enumerate() {
        if n >= probes && passed >= want {
            break;
        }
        let (a, b) = (
            seg.list_offsets[l as usize] as usize,
            seg.list_offsets[l as usize + 1] as usize,
        );
        if a == b {
            continue;
        }
        lists += 1;
        let mask = match filter {
            Some(f) => Some(f.evaluate(b - a, |c: Column| {
                seg.attrs
                    .column_by_name(c.name())
                    .map(|col| col.slice(a, b - a))
            })?),
            None => None,
        };
        for e in a..b {
            if !file_ok[seg.files_of_entries[e] as usize] {
                continue;
            }
            if let Some(m) = &mask
                && !m.value(e - a)
            {
                continue;
            }
            passed += 1;
            let Some(score) = query.score(seg.code(e, dim), seg.scales[e], seg.norms[e]) else {
                continue;
            };
            out.push(Candidate {
                key: key_of(metric, score),
                segment: segment_no,
                entry: e as u32,
            });
        }
        if out.len() >= want.saturating_mul(2).max(64) {
            trim(&mut out, want);
        }
    }
    trim(&mut out, want);
    Ok((out, lists, passed))
}

fn query_metric(q: &Query) -> Metric {
    q.metric()
}
