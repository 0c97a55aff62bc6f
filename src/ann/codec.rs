//! The index's building blocks: k-means for the coarse lists (IVF), 8-bit scalar quantization
//! of each vector (SQ8), the scoring kernels, and the segment format.
//!
//! Everything here is plain Rust on slices, written so the compiler vectorizes the inner
//! loops (independent lane accumulators, fixed-size chunks); no `unsafe`.

use arrow_array::RecordBatch;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::similarity::Metric;

/// Independent partial sums per kernel (kept in vector registers).
const LANES: usize = 16;

/// The query scaled to 13-bit integers: `i16` × `u8` products summed in `i32` stay exact for
/// up to 1,024 elements per block (|q| ≤ 8,191, code ≤ 255: 2,138,775,552 < 2³¹).
const QUERY_MAX: f32 = 8191.0;
/// Elements summed in `i32` before widening to `i64`.
const BLOCK: usize = 1024;
/// Codes are stored as `u8` = signed code + 128 (the signed code is −127…127).
pub(crate) const CODE_BIAS: i64 = 128;

/// `Σ a[i]·b[i]` in f32 lanes, with the widest vector unit this CPU has (see
/// [`dot_i16_u8`]).
#[inline]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU runs AVX2 (just checked), all `dot_f32_avx2` needs.
        return unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32_lanes(a, b)
}

/// [`dot_f32_lanes`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_lanes(a, b)
}

#[inline(always)]
fn dot_f32_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ q[i]·c[i]` of a 13-bit query and a biased 8-bit code, exact.
///
/// The crate is built for the baseline x86-64 (SSE2), where these loops get 4 lanes and no
/// 32-bit vector multiply; the same loops compiled for AVX2 (chosen at run time, when the CPU
/// has it) score an entry several times faster — the index's scoring phase is this loop
/// (`bench_vector`: see CHANGELOG). Results are the same integers either way.
#[inline]
pub(crate) fn dot_i16_u8(q: &[i16], c: &[u8]) -> i64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU runs AVX2 (just checked), all `dot_i16_u8_avx2` needs.
        return unsafe { dot_i16_u8_avx2(q, c) };
    }
    dot_i16_u8_lanes(q, c)
}

/// [`dot_i16_u8_lanes`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_i16_u8_avx2(q: &[i16], c: &[u8]) -> i64 {
    dot_i16_u8_lanes(q, c)
}

#[inline(always)]
fn dot_i16_u8_lanes(q: &[i16], c: &[u8]) -> i64 {
    let mut total = 0i64;
    for (qb, cb) in q.chunks(BLOCK).zip(c.chunks(BLOCK)) {
        let mut acc = [0i32; LANES];
        let (cq, cc) = (qb.chunks_exact(LANES), cb.chunks_exact(LANES));
        let tail: i32 = cq
            .remainder()
            .iter()
            .zip(cc.remainder())
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        for (x, y) in cq.zip(cc) {
            for l in 0..LANES {
                acc[l] += i32::from(x[l]) * i32::from(y[l]);
            }
        }
        total += acc.iter().map(|v| i64::from(*v)).sum::<i64>() + i64::from(tail);
    }
    total
}

/// One vector in 8 bits, as its residual from its list's centroid: `v ≈ c + scale · code`.
/// Residuals span a few times less than the vectors, so the same 8 bits rank finer. Returns
/// `(scale, |v|)` (the exact norm, for cosine and L2).
pub(crate) fn encode(v: &[f64], centroid: &[f32], code: &mut [u8]) -> (f32, f32) {
    let max = v
        .iter()
        .zip(centroid)
        .fold(0.0f64, |m, (x, c)| m.max((x - f64::from(*c)).abs()));
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt() as f32;
    if max == 0.0 || !max.is_finite() {
        code.iter_mut().for_each(|c| *c = CODE_BIAS as u8);
        return (0.0, norm);
    }
    let inv = 127.0 / max;
    for ((c, x), m) in code.iter_mut().zip(v).zip(centroid) {
        *c = (((x - f64::from(*m)) * inv).round().clamp(-127.0, 127.0) + CODE_BIAS as f64) as u8;
    }
    ((max / 127.0) as f32, norm)
}

/// A query prepared for the kernels.
pub(crate) struct Query {
    f64: Vec<f64>,
    q16: Vec<i16>,
    /// `Σ q16`: removes the codes' bias.
    q16_sum: i64,
    q_scale: f64,
    pub(crate) norm: f64,
    metric: Metric,
}

impl Query {
    pub(crate) fn new(q: &[f64], metric: Metric) -> Self {
        let max = q.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let inv = if max > 0.0 {
            f64::from(QUERY_MAX) / max
        } else {
            0.0
        };
        Query {
            f64: q.to_vec(),
            q16: q.iter().map(|x| (x * inv).round() as i16).collect(),
            q16_sum: q.iter().map(|x| (x * inv).round() as i64).sum(),
            q_scale: if inv > 0.0 { 1.0 / inv } else { 0.0 },
            norm: q.iter().map(|x| x * x).sum::<f64>().sqrt(),
            metric,
        }
    }

    pub(crate) fn metric(&self) -> Metric {
        self.metric
    }

    /// `q · c` in f64 (the query's full precision, the centroid's f32).
    fn f64_dot_f32(&self, c: &[f32]) -> f64 {
        let mut acc = [0.0f64; 8];
        let (cq, cc) = (self.f64.chunks_exact(8), c.chunks_exact(8));
        let tail: f64 = cq
            .remainder()
            .iter()
            .zip(cc.remainder())
            .map(|(x, y)| x * f64::from(*y))
            .sum();
        for (x, y) in cq.zip(cc) {
            for l in 0..8 {
                acc[l] += x[l] * f64::from(y[l]);
            }
        }
        acc.iter().sum::<f64>() + tail
    }

    /// The approximate score of an encoded vector (same sense as [`Metric::score`]);
    /// `q_dot_centroid` is `q · c` of the vector's list.
    #[inline]
    pub(crate) fn score(
        &self,
        code: &[u8],
        scale: f32,
        norm: f32,
        q_dot_centroid: f64,
    ) -> Option<f64> {
        let raw = dot_i16_u8(&self.q16, code) - CODE_BIAS * self.q16_sum;
        let dot = q_dot_centroid + raw as f64 * self.q_scale * f64::from(scale);
        match self.metric {
            Metric::Dot => Some(dot),
            Metric::Cosine => (norm > 0.0).then(|| dot / (self.norm * f64::from(norm))),
            Metric::L2 => {
                let n = f64::from(norm);
                Some((self.norm * self.norm - 2.0 * dot + n * n).max(0.0).sqrt())
            }
        }
    }
}

/// The coarse quantizer: `nlist` centroids (k-means, squared L2) the vectors are listed under.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Codebook {
    pub(crate) dim: usize,
    pub(crate) centroids: Vec<f32>,
    norms2: Vec<f32>,
}

/// Magic at the start of each blob this module writes.
const CODEBOOK_MAGIC: &[u8; 8] = b"SHIVFC01";
const SEGMENT_MAGIC: &[u8; 8] = b"SHIVFS02";

impl Codebook {
    fn new(dim: usize, centroids: Vec<f32>) -> Self {
        let norms2 = centroids.chunks_exact(dim).map(|c| dot_f32(c, c)).collect();
        Codebook {
            dim,
            centroids,
            norms2,
        }
    }

    pub(crate) fn lists(&self) -> usize {
        self.norms2.len()
    }

    /// The nearest centroid of `v` (squared L2).
    pub(crate) fn assign(&self, v: &[f32]) -> u32 {
        let mut best = (f32::INFINITY, 0u32);
        for (i, c) in self.centroids.chunks_exact(self.dim).enumerate() {
            let d = self.norms2[i] - 2.0 * dot_f32(v, c);
            if d < best.0 {
                best = (d, i as u32);
            }
        }
        best.1
    }

    /// `q · c` of every list's centroid.
    pub(crate) fn query_dots(&self, q: &Query) -> Vec<f64> {
        self.centroids
            .chunks_exact(self.dim)
            .map(|c| q.f64_dot_f32(c))
            .collect()
    }

    /// The `x` of the centroid of list `l`.
    pub(crate) fn centroid(&self, l: u32) -> &[f32] {
        &self.centroids[l as usize * self.dim..(l as usize + 1) * self.dim]
    }

    /// Lists by how near their centroid is to the query, nearest first (`dots` from
    /// [`query_dots`](Self::query_dots)).
    pub(crate) fn probe_order(&self, q: &Query, dots: &[f64]) -> Vec<u32> {
        let mut scored: Vec<(f32, u32)> = dots
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let dot = *d as f32;
                let key = match q.metric {
                    Metric::Dot => -dot,
                    Metric::Cosine => -dot / self.norms2[i].sqrt().max(f32::MIN_POSITIVE),
                    Metric::L2 => self.norms2[i] - 2.0 * dot,
                };
                (key, i as u32)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// Lloyd's k-means on `sample` (row-major, `dim` wide): `lists` centroids started from
    /// evenly spread sample rows, `iterations` rounds, assignments on `threads` threads. An
    /// emptied list takes the row farthest from its centroid.
    pub(crate) fn train(
        sample: &[f32],
        dim: usize,
        lists: usize,
        iterations: usize,
        threads: usize,
    ) -> Codebook {
        let n = sample.len() / dim.max(1);
        let lists = lists.clamp(1, n.max(1));
        let mut centroids: Vec<f32> = (0..lists)
            .flat_map(|i| {
                let row = i * n / lists;
                sample[row * dim..(row + 1) * dim].iter().copied()
            })
            .collect();
        let mut assigned = vec![0u32; n];
        let mut distance = vec![0f32; n];
        for _ in 0..iterations {
            let book = Codebook::new(dim, centroids.clone());
            let chunk = n.div_ceil(threads.max(1)).max(1);
            std::thread::scope(|s| {
                for ((rows, out), dist) in sample
                    .chunks(chunk * dim)
                    .zip(assigned.chunks_mut(chunk))
                    .zip(distance.chunks_mut(chunk))
                {
                    let book = &book;
                    s.spawn(move || {
                        for ((v, a), d) in rows.chunks_exact(dim).zip(out).zip(dist) {
                            *a = book.assign(v);
                            let c = &book.centroids[*a as usize * dim..][..dim];
                            *d = v.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum();
                        }
                    });
                }
            });
            let mut sums = vec![0f64; lists * dim];
            let mut counts = vec![0usize; lists];
            for (v, a) in sample.chunks_exact(dim).zip(&assigned) {
                let a = *a as usize;
                counts[a] += 1;
                for (s, x) in sums[a * dim..(a + 1) * dim].iter_mut().zip(v) {
                    *s += f64::from(*x);
                }
            }
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|a, b| distance[*b].total_cmp(&distance[*a]));
            let mut far = far.into_iter();
            for l in 0..lists {
                let c = &mut centroids[l * dim..(l + 1) * dim];
                if counts[l] == 0 {
                    if let Some(row) = far.next() {
                        c.copy_from_slice(&sample[row * dim..(row + 1) * dim]);
                    }
                    continue;
                }
                let inv = 1.0 / counts[l] as f64;
                for (c, s) in c.iter_mut().zip(&sums[l * dim..(l + 1) * dim]) {
                    *c = (s * inv) as f32;
                }
            }
        }
        Codebook::new(dim, centroids)
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.centroids.len() * 4);
        out.extend_from_slice(CODEBOOK_MAGIC);
        out.extend_from_slice(&(self.dim as u64).to_le_bytes());
        out.extend_from_slice(&(self.lists() as u64).to_le_bytes());
        for c in &self.centroids {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8], dim: usize) -> Result<Codebook> {
        let bad = |why: &str| Error::corrupt_index(format!("codebook: {why}"));
        if bytes.len() < 24 || &bytes[..8] != CODEBOOK_MAGIC {
            return Err(bad("not a codebook blob"));
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let (d, lists) = (word(8) as usize, word(16) as usize);
        if d != dim {
            return Err(bad(&format!("dimension {d}, the table's is {dim}")));
        }
        if lists == 0 || bytes.len() != 24 + lists * d * 4 {
            return Err(bad("truncated"));
        }
        let centroids: Vec<f32> = bytes[24..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if centroids.iter().any(|c| !c.is_finite()) {
            return Err(bad("a centroid is not finite"));
        }
        Ok(Codebook::new(d, centroids))
    }
}

/// One segment of the index: the entries of some data files, grouped by list.
///
/// Entry `i` (in list order) is row `attrs._pos[i]` of data file `files[attrs._file[i]]`;
/// its code is at `(i·dim..(i+1)·dim)` of the blob's code section, which follows the header
/// and attributes (at `codes_at`) and is read per list, on demand ([`Segment::list_codes`]). `attrs` also carries the row's filter columns
/// (every column but `embedding`), so a [`ScanFilter`](crate::ScanFilter) is applied to
/// entries before they are scored.
pub(crate) struct Segment {
    pub(crate) files: Vec<String>,
    pub(crate) list_offsets: Vec<u32>,
    pub(crate) attrs: RecordBatch,
    /// Where the code section starts in the blob.
    pub(crate) codes_at: u64,
    pub(crate) scales: Vec<f32>,
    pub(crate) norms: Vec<f32>,
    pub(crate) files_of_entries: Vec<u32>,
    pub(crate) positions: Vec<u64>,
}

/// The segment header (JSON after the magic).
#[derive(serde::Serialize, serde::Deserialize)]
struct SegmentHeader {
    dim: usize,
    files: Vec<String>,
    list_offsets: Vec<u32>,
    attrs_len: u64,
    codes_len: u64,
}

/// The internal columns of a segment's attributes.
pub(crate) const FILE_COL: &str = "_file";
pub(crate) const POS_COL: &str = "_pos";
pub(crate) const SCALE_COL: &str = "_scale";
pub(crate) const NORM_COL: &str = "_norm";

impl Segment {
    /// Bytes held in memory (for the cache's cap).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.attrs.get_array_memory_size()
            + self.scales.len() * 4
            + self.norms.len() * 4
            + self.files_of_entries.len() * 4
            + self.positions.len() * 8
            + self.files.iter().map(String::len).sum::<usize>()
    }

    /// Serializes a segment: `attrs` in list order (with the internal columns), `codes` in
    /// the same order.
    pub(crate) fn encode(
        dim: usize,
        files: Vec<String>,
        list_offsets: Vec<u32>,
        attrs: &RecordBatch,
        codes: &[u8],
    ) -> Result<(Vec<u8>, u64)> {
        let mut parquet = Vec::new();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut parquet, attrs.schema(), Some(props))?;
        writer.write(attrs)?;
        writer.close()?;
        let header = SegmentHeader {
            dim,
            files,
            list_offsets,
            attrs_len: parquet.len() as u64,
            codes_len: codes.len() as u64,
        };
        let header = serde_json::to_vec(&header)
            .map_err(|e| Error::internal(format!("segment header: {e}")))?;
        let mut out = Vec::with_capacity(16 + header.len() + parquet.len() + codes.len());
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&parquet);
        let codes_at = out.len() as u64;
        out.extend_from_slice(codes);
        Ok((out, codes_at))
    }

    /// Reads a segment's header and attributes (`bytes`: the blob up to its code section;
    /// `blob_length`: the whole blob's).
    pub(crate) fn decode(bytes: Bytes, dim: usize, blob_length: u64) -> Result<Segment> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Float32Type, Int32Type, Int64Type};
        let bad = |why: String| Error::corrupt_index(format!("segment: {why}"));
        if bytes.len() < 16 || &bytes[..8] != SEGMENT_MAGIC {
            return Err(bad("not a segment blob".into()));
        }
        let header_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or([0; 8])) as usize;
        let header_end = 16usize
            .checked_add(header_len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad("truncated header".into()))?;
        let header: SegmentHeader = serde_json::from_slice(&bytes[16..header_end])
            .map_err(|e| bad(format!("header: {e}")))?;
        if header.dim != dim {
            return Err(bad(format!(
                "dimension {}, the table's is {dim}",
                header.dim
            )));
        }
        let attrs_end = header_end + header.attrs_len as usize;
        if attrs_end != bytes.len() || attrs_end as u64 + header.codes_len != blob_length {
            return Err(bad("lengths do not add up".into()));
        }
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes.slice(header_end..attrs_end),
        )?
        .with_batch_size(usize::MAX >> 1)
        .build()?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| bad("no attributes".into()))?;
        let attrs = arrow_select::concat::concat_batches(&schema, &batches)?;
        let rows = attrs.num_rows();
        let lists_ok = header.list_offsets.first() == Some(&0)
            && header.list_offsets.last().map(|l| *l as usize) == Some(rows)
            && header.list_offsets.windows(2).all(|w| w[0] <= w[1]);
        if header.codes_len != (rows * dim) as u64 || !lists_ok {
            return Err(bad("entries, codes and lists disagree".into()));
        }
        let col = |name: &str| {
            attrs
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| bad(format!("no `{name}` column")))
        };
        let files_of_entries: Vec<u32> = col(FILE_COL)?
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| bad("`_file` type".into()))?
            .values()
            .iter()
            .map(|v| *v as u32)
            .collect();
        if files_of_entries
            .iter()
            .any(|f| *f as usize >= header.files.len())
        {
            return Err(bad("an entry names no file".into()));
        }
        let positions: Vec<u64> = col(POS_COL)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad("`_pos` type".into()))?
            .values()
            .iter()
            .map(|v| *v as u64)
            .collect();
        let floats = |name: &str| -> Result<Vec<f32>> {
            Ok(col(name)?
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| bad(format!("`{name}` type")))?
                .values()
                .to_vec())
        };
        Ok(Segment {
            files: header.files,
            list_offsets: header.list_offsets,
            scales: floats(SCALE_COL)?,
            norms: floats(NORM_COL)?,
            attrs,
            codes_at: attrs_end as u64,
            files_of_entries,
            positions,
        })
    }

    /// The byte range (within the blob) of list `l`'s codes, and its entries.
    pub(crate) fn list_codes(
        &self,
        l: usize,
        dim: usize,
    ) -> (std::ops::Range<u64>, std::ops::Range<usize>) {
        let (a, b) = (
            self.list_offsets[l] as usize,
            self.list_offsets[l + 1] as usize,
        );
        (
            self.codes_at + (a * dim) as u64..self.codes_at + (b * dim) as u64,
            a..b,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatched_kernels_equal_the_portable_loops() {
        // Extremes of the ranges (13-bit queries, 8-bit codes) and lengths off the lanes.
        for n in [0, 1, 15, 16, 17, 1000, 1024, 1030, 2100] {
            let q: Vec<i16> = (0..n)
                .map(|i| [4095i16, -4095, 7, -1][i % 4] - (i % 13) as i16)
                .collect();
            let c: Vec<u8> = (0..n)
                .map(|i| [255u8, 0, 128, 1][i % 4] ^ (i % 7) as u8)
                .collect();
            let want: i64 = q
                .iter()
                .zip(&c)
                .map(|(a, b)| i64::from(*a) * i64::from(*b))
                .sum();
            assert_eq!(dot_i16_u8(&q, &c), want, "n = {n}");
            assert_eq!(dot_i16_u8_lanes(&q, &c), want, "n = {n}");
            let a: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32 - 1.0).collect();
            assert_eq!(dot_f32(&a, &b), dot_f32_lanes(&a, &b), "n = {n}");
        }
    }

    #[test]
    fn integer_kernel_matches_float_dot() {
        let q: Vec<f64> = (0..1030)
            .map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let v: Vec<f64> = (0..1030)
            .map(|i| ((i * 53) % 97) as f64 / 48.0 - 1.0)
            .collect();
        let mut code = vec![0u8; v.len()];
        let centroid: Vec<f32> = v.iter().map(|x| (x * 0.8) as f32).collect();
        let (scale, norm) = encode(&v, &centroid, &mut code);
        let exact: f64 = q.iter().zip(&v).map(|(a, b)| a * b).sum();
        let qc: f64 = q
            .iter()
            .zip(&centroid)
            .map(|(a, b)| a * f64::from(*b))
            .sum();
        let query = Query::new(&q, Metric::Dot);
        let approx = query.score(&code, scale, norm, qc).unwrap_or(f64::NAN);
        assert!(
            (approx - exact).abs() < 0.01 * exact.abs().max(1.0),
            "{approx} vs {exact}"
        );
        let cos = Query::new(&q, Metric::Cosine)
            .score(&code, scale, norm, qc)
            .unwrap_or(f64::NAN);
        let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
        let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((cos - exact / (qn * vn)).abs() < 0.01);
    }

    #[test]
    fn kmeans_separates_clear_clusters_and_round_trips() {
        let dim = 8;
        let mut sample = Vec::new();
        for i in 0..300 {
            let c = (i % 3) as f32 * 10.0;
            sample.extend((0..dim).map(|j| c + ((i * 7 + j) % 5) as f32 * 0.1));
        }
        let book = Codebook::train(&sample, dim, 3, 5, 2);
        let lists: std::collections::HashSet<u32> = sample
            .chunks_exact(dim)
            .take(3)
            .map(|v| book.assign(v))
            .collect();
        assert_eq!(lists.len(), 3, "three clusters, three lists");
        let back = Codebook::from_bytes(&book.to_bytes(), dim).unwrap();
        assert_eq!(back, book);
        assert!(Codebook::from_bytes(&book.to_bytes()[..30], dim).is_err());
        assert!(Codebook::from_bytes(&book.to_bytes(), dim + 1).is_err());
    }
}
