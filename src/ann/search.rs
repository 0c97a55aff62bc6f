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
    /// Time spent planning (snapshot, pruning) and loading index parts.
    pub planning: Duration,
    /// Time spent probing lists and scoring entries.
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
    let plan_start = Instant::now();
    let effective = match &s.scope {
        Some(scope) => s.filter.clone().and(scope.clone()),
        None => s.filter.clone(),
    };
    let resolved: Resolved = effective.resolve()?;
    if resolved.matches_nothing {
        return Ok((Vec::new(), metrics));
    }
    let snapshot = version
        .metadata()
        .snapshot_by_id(id)
        .cloned()
        .ok_or_else(|| Error::SnapshotNotFound {
            table: table.name(),
            snapshot_id: id,
        })?;
    let live = table
        .shared
        .live_files
        .snapshot_files(&version, &snapshot)
        .await?;
    if live.has_deletes {
        return exact_all("the snapshot has row-level delete files", metrics, scan).await;
    }
    // The snapshot's live files the filter may match (bounds and partition values from their
    // manifest entries): the files of a scan with this filter, without planning one per query.
    let pruner = resolved.pruner(version.metadata());
    let files: Vec<(&str, u64)> = live
        .matching(&pruner)
        .map(|(_, f)| (f.file_path(), f.file_size_in_bytes()))
        .collect();
    metrics.files_planned = files.len();
    let planned: HashMap<&str, u64> = files.into_iter().collect();
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
    type Loaded = (usize, Result<(Arc<Segment>, bool)>);
    let loaded: Vec<Loaded> = futures::stream::iter(wanted.iter().copied())
        .map(|i| {
            let (io, seg) = (&io, &manifest.segments[i]);
            async move { (i, cache.segment(io, seg, dim).await) }
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
    let mut uncovered: HashSet<String> = planned
        .keys()
        .filter(|f| !covered.contains(*f))
        .map(|f| f.to_string())
        .collect();
    metrics.files_exact = uncovered.len();

    metrics.planning = plan_start.elapsed();
    let index_start = Instant::now();
    // Probe: lists nearest the query first, per segment at least `probes` of them and more
    // while fewer than `want` entries passed the filter. Each round reads the codes of the
    // lists it probes (cached per list), then scores them on the blocking pool, segments split
    // over the cores.
    let want = s.k.saturating_mul(s.refine.max(1)).max(s.k);
    let probes = s.probes.unwrap_or_else(|| default_probes(book.lists()));
    let query = Arc::new(Query::new(&s.query, s.metric));
    let filter = Arc::new((!resolved.is_trivial()).then_some(resolved));
    let (book2, query2) = (book.clone(), query.clone());
    let (dots, order) = tokio::task::spawn_blocking(move || {
        let dots = book2.query_dots(&query2);
        let order = book2.probe_order(&query2, &dots);
        (dots, order)
    })
    .await
    .map_err(|e| Error::internal(format!("probe task failed: {e}")))?;
    let (dots, order) = (Arc::new(dots), Arc::new(order));
    let mut states: Vec<Probing> = segments
        .iter()
        .enumerate()
        .map(|(no, (i, seg))| Probing {
            no: no as u32,
            seg: seg.clone(),
            blob: manifest.segments[*i].blob.clone(),
            file_ok: seg
                .files
                .iter()
                .map(|f| covered.contains(f.as_str()))
                .collect(),
            next: 0,
            passed: 0,
            lists: 0,
            out: Vec::new(),
            failed: None,
        })
        .collect();
    let threads = crate::cores();
    loop {
        // This round's lists per segment (empty lists skipped without a read).
        let mut reads: Vec<(usize, u32, std::ops::Range<u64>)> = Vec::new();
        for (si, st) in states.iter_mut().enumerate() {
            let mut budget = if st.next < probes {
                probes - st.next
            } else {
                probes
            };
            if st.failed.is_some() || (st.next >= probes && st.passed >= want) {
                continue;
            }
            while budget > 0 && st.next < order.len() {
                let l = order[st.next];
                st.next += 1;
                budget -= 1;
                let (bytes, entries) = st.seg.list_codes(l as usize, dim);
                if !entries.is_empty() {
                    reads.push((si, l, bytes));
                }
            }
        }
        if reads.is_empty() {
            break;
        }
        let fetched: Vec<(usize, u32, Result<bytes::Bytes>)> = futures::stream::iter(reads)
            .map(|(si, l, range)| {
                let (io, blob) = (&io, &states[si].blob);
                async move { (si, l, cache.codes(io, blob, range).await) }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut work: Vec<Vec<(u32, bytes::Bytes)>> = vec![Vec::new(); states.len()];
        for (si, l, codes) in fetched {
            match codes {
                Ok(codes) => work[si].push((l, codes)),
                // An unreadable list: the segment's files are searched exactly instead.
                Err(e) => {
                    states[si].failed.get_or_insert(e.to_string());
                }
            }
        }
        let (query, filter, dots) = (query.clone(), filter.clone(), dots.clone());
        states = tokio::task::spawn_blocking(move || {
            let chunk = states.len().div_ceil(threads).max(1);
            let results: Vec<Result<()>> = std::thread::scope(|sc| {
                let handles: Vec<_> = states
                    .chunks_mut(chunk)
                    .zip(work.chunks(chunk))
                    .map(|(sts, works)| {
                        let (query, filter, dots) = (&query, &filter, &dots);
                        sc.spawn(move || {
                            for (st, lists) in sts.iter_mut().zip(works) {
                                for (l, codes) in lists {
                                    if st.failed.is_some() {
                                        break;
                                    }
                                    if let Err(e) = st.score_list(
                                        *l,
                                        codes,
                                        dots[*l as usize],
                                        (**filter).as_ref(),
                                        query,
                                        dim,
                                        want,
                                    ) {
                                        st.failed = Some(e.to_string());
                                    }
                                }
                            }
                            Ok(())
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
            results.into_iter().collect::<Result<Vec<()>>>()?;
            Ok::<_, Error>(states)
        })
        .await
        .map_err(|e| Error::internal(format!("scoring task failed: {e}")))??;
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    let (mut lists_probed, mut entries_scored) = (0, 0);
    for st in states.iter_mut().filter(|st| st.failed.is_some()) {
        tracing::warn!(
            segment = %st.blob.path,
            error = st.failed.as_deref().unwrap_or_default(),
            "an index segment's codes are unreadable: its files are searched exactly"
        );
        metrics.index_fallbacks += 1;
        st.out.clear();
        for (f, ok) in st.seg.files.iter().zip(&st.file_ok) {
            if *ok {
                uncovered.insert(f.clone());
            }
        }
    }
    metrics.files_exact = uncovered.len();
    metrics.files_indexed = metrics.files_planned - uncovered.len();
    for st in &mut states {
        trim(&mut st.out, want);
        candidates.append(&mut st.out);
        lists_probed += st.lists;
        entries_scored += st.passed;
    }
    trim(&mut candidates, want);
    metrics.lists_probed = lists_probed;
    metrics.entries_scored = entries_scored;
    metrics.index_time = index_start.elapsed();

    // Re-rank: the candidates' rows from their data files, scored exactly.
    let rerank_start = Instant::now();
    metrics.candidates_reranked = candidates.len();
    let mut by_file: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in &candidates {
        let seg = &segments[c.segment as usize].1;
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
        let (io, footers) = (io.clone(), table.shared.footers.clone());
        async move { crate::scan::read_rows_at(&io, &path, size, &rows, decoder, &footers).await }
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

/// Default probes: 1/32 of the lists, at least 8.
pub(crate) fn default_probes(lists: usize) -> usize {
    (lists / 32).max(8).min(lists.max(1))
}

/// One segment's probing across rounds.
struct Probing {
    no: u32,
    seg: Arc<Segment>,
    blob: super::BlobRef,
    /// Per file of the segment: planned and live (searched through the index).
    file_ok: Vec<bool>,
    /// Position in the probe order.
    next: usize,
    /// Entries that passed the file and row filters so far.
    passed: usize,
    /// Non-empty lists probed.
    lists: usize,
    out: Vec<Candidate>,
    /// Why the segment could not be probed (its files are then searched exactly).
    failed: Option<String>,
}

impl Probing {
    /// Scores list `l`'s entries (`codes` in entry order) that pass the filters.
    #[allow(clippy::too_many_arguments)]
    fn score_list(
        &mut self,
        l: u32,
        codes: &[u8],
        q_dot_centroid: f64,
        filter: Option<&Resolved>,
        query: &Query,
        dim: usize,
        want: usize,
    ) -> Result<()> {
        let seg = &self.seg;
        let (a, b) = (
            seg.list_offsets[l as usize] as usize,
            seg.list_offsets[l as usize + 1] as usize,
        );
        if codes.len() != (b - a) * dim {
            return Err(Error::corrupt_index("a list's codes have the wrong length"));
        }
        self.lists += 1;
        let mask = match filter {
            Some(f) => Some(f.evaluate(b - a, |c: Column| {
                seg.attrs
                    .column_by_name(c.name())
                    .map(|col| col.slice(a, b - a))
            })?),
            None => None,
        };
        let metric = query.metric();
        for (j, code) in codes.chunks_exact(dim).enumerate() {
            let e = a + j;
            if !self.file_ok[seg.files_of_entries[e] as usize] {
                continue;
            }
            if let Some(m) = &mask
                && !m.value(j)
            {
                continue;
            }
            self.passed += 1;
            let Some(score) = query.score(code, seg.scales[e], seg.norms[e], q_dot_centroid) else {
                continue;
            };
            self.out.push(Candidate {
                key: key_of(metric, score),
                segment: self.no,
                entry: e as u32,
            });
        }
        if self.out.len() >= want.saturating_mul(2).max(64) {
            trim(&mut self.out, want);
        }
        Ok(())
    }
}
