//! Our decode against parquet-rs's Arrow reader on random files: lengths, null rows, page and
//! row-group sizes, PLAIN / BYTE_STREAM_SPLIT, codecs, data page v1 / v2, subsets of row
//! groups; files pyarrow wrote; and the shapes left to parquet-rs.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::*;

use crate::test_rng::Rng;

#[derive(Debug, Clone)]
struct Case {
    rows: usize,
    /// `Some(d)`: every row has `d` values; `None`: 0–20.
    dim: Option<usize>,
    null_rows: bool,
    null_elements: bool,
    nullable_element: bool,
    encoding: Encoding,
    dictionary: bool,
    codec: Compression,
    v2: bool,
    page_rows: usize,
    group_rows: usize,
}

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let codecs = [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::LZ4_RAW,
        ];
        Case {
            rows: rng.below(1500) as usize,
            dim: match rng.below(3) {
                0 => None,
                _ => Some([1, 3, 8, 16, 17, 64][rng.below(6) as usize]),
            },
            null_rows: rng.below(3) == 0,
            null_elements: false,
            nullable_element: rng.below(2) == 0,
            encoding: if rng.below(2) == 0 {
                Encoding::PLAIN
            } else {
                Encoding::BYTE_STREAM_SPLIT
            },
            dictionary: false,
            codec: codecs[rng.below(4) as usize],
            v2: rng.below(2) == 0,
            page_rows: [7, 64, 1000, 20_000][rng.below(4) as usize],
            group_rows: [50, 333, 1024, 100_000][rng.below(4) as usize],
        }
    }

    fn file(&self, rng: &mut Rng) -> Bytes {
        let element = Field::new("element", DataType::Float64, self.nullable_element);
        let mut lists = ListBuilder::new(Float64Builder::new()).with_field(Arc::new(element));
        for _ in 0..self.rows {
            if self.null_rows && rng.below(5) == 0 {
                lists.append(false);
                continue;
            }
            let n = self.dim.unwrap_or_else(|| rng.below(21) as usize);
            for _ in 0..n {
                if self.null_elements && rng.below(4) == 0 {
                    lists.values().append_null();
                } else {
                    lists.values().append_value(rng.value());
                }
            }
            lists.append(true);
        }
        let lists: ArrayRef = Arc::new(lists.finish());
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..self.rows as i64));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("embedding", lists.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, lists]).unwrap();
        let path = ColumnPath::from("embedding.list.element");
        let props = WriterProperties::builder()
            .set_writer_version(if self.v2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            })
            .set_compression(self.codec)
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(path.clone(), self.dictionary)
            .set_column_encoding(path, self.encoding)
            .set_data_page_row_count_limit(self.page_rows)
            .set_write_batch_size(self.page_rows.min(1024))
            .set_max_row_group_row_count(Some(self.group_rows))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }
}

/// parquet-rs's reading of the embedding column of `row_groups`, as one array.
fn theirs(file: &Bytes, row_groups: &[usize]) -> ListArray {
    theirs_with(file, row_groups, None)
}

/// The file's metadata (with its page index, when one was written) and `embedding` field.
fn parsed(file: &Bytes) -> (ParquetMetaData, FieldRef) {
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
        .parse_and_finish(file)
        .unwrap();
    let schema = ParquetRecordBatchReaderBuilder::try_new(file.clone())
        .unwrap()
        .schema()
        .clone();
    (meta, Arc::new(schema.field(1).clone()))
}

/// A decode in one chunk (`usize::MAX` rows per array): its one array.
fn one_array(chunks: Option<Vec<ListArray>>) -> Option<ListArray> {
    chunks.map(|c| {
        assert_eq!(c.len(), 1, "one chunk");
        c.into_iter().next().unwrap()
    })
}

fn ours(file: &Bytes, row_groups: &[usize]) -> Option<ListArray> {
    let (meta, field) = parsed(file);
    one_array(decode_chunks(file, &meta, row_groups, 1, &field, None, usize::MAX).unwrap())
}

fn ours_in_chunks(file: &Bytes, row_groups: &[usize], chunk: usize) -> Option<Vec<ListArray>> {
    let (meta, field) = parsed(file);
    decode_chunks(file, &meta, row_groups, 1, &field, None, chunk).unwrap()
}

fn groups_of(file: &Bytes) -> usize {
    ParquetRecordBatchReaderBuilder::try_new(file.clone())
        .unwrap()
        .metadata()
        .num_row_groups()
}

#[test]
fn random_files_decode_as_parquet_rs_does() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut checked = 0;
    for round in 0..120 {
        let case = Case::random(&mut rng);
        let file = case.file(&mut rng);
        let groups = groups_of(&file);
        let mut selections = vec![(0..groups).collect::<Vec<_>>()];
        if groups > 1 {
            selections.push((0..groups).filter(|g| g % 2 == 1).collect());
            selections.push(vec![groups - 1]);
        }
        for rgs in selections {
            let ours =
                ours(&file, &rgs).unwrap_or_else(|| panic!("round {round}: {case:?} fell back"));
            let theirs = theirs(&file, &rgs);
            assert!(
                same_lists(&ours, &theirs),
                "round {round}, row groups {rgs:?}: {case:?}"
            );
            assert_eq!(ours.data_type(), theirs.data_type(), "{case:?}");
            assert_eq!(ours.null_count(), theirs.null_count(), "{case:?}");
            // In chunks of a random row count: each chunk that many rows but the last, and
            // together the same lists.
            let chunk = 1 + (rng.next() % 40) as usize;
            let chunks = ours_in_chunks(&file, &rgs, chunk)
                .unwrap_or_else(|| panic!("round {round}: {case:?} fell back in chunks"));
            let (last, full) = chunks.split_last().expect("at least one chunk");
            assert!(full.iter().all(|c| c.len() == chunk), "{case:?}, {chunk}");
            assert!(last.len() <= chunk && (last.len() > 0 || full.is_empty()));
            let refs: Vec<&dyn Array> = chunks.iter().map(|c| c as _).collect();
            let joined = arrow_select::concat::concat(&refs).unwrap();
            assert!(
                same_lists(joined.as_any().downcast_ref().unwrap(), &theirs),
                "round {round}, row groups {rgs:?}, chunks of {chunk}: {case:?}"
            );
            assert_eq!(joined.null_count(), theirs.null_count(), "{case:?}");
            checked += 1;
        }
    }
    assert!(checked >= 120);
}

/// parquet-rs's reading of `row_groups` (with a row selection, if any), as one array.
fn theirs_with(file: &Bytes, row_groups: &[usize], selection: Option<&RowSelection>) -> ListArray {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
    let mask = ProjectionMask::roots(builder.parquet_schema(), [1]);
    let field = builder.schema().field(1).clone();
    let mut builder = builder
        .with_projection(mask)
        .with_row_groups(row_groups.to_vec())
        .with_batch_size(97);
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection.clone());
    }
    let batches: Vec<ArrayRef> = builder
        .build()
        .unwrap()
        .map(|b| b.unwrap().column(0).clone())
        .collect();
    let refs: Vec<&dyn Array> = batches.iter().map(|a| a.as_ref()).collect();
    if refs.is_empty() {
        return arrow_array::new_empty_array(field.data_type())
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap()
            .clone();
    }
    let all = arrow_select::concat::concat(&refs).unwrap();
    all.as_any().downcast_ref::<ListArray>().unwrap().clone()
}

fn ours_selected(
    file: &Bytes,
    row_groups: &[usize],
    selection: &RowSelection,
) -> Option<ListArray> {
    let (meta, field) = parsed(file);
    assert!(
        meta.offset_index().is_some(),
        "the writer wrote no offset index"
    );
    one_array(
        decode_chunks(
            file,
            &meta,
            row_groups,
            1,
            &field,
            Some(selection),
            usize::MAX,
        )
        .unwrap(),
    )
}

/// A random selection over `rows` rows: runs of skipped and selected rows (sometimes none,
/// sometimes all).
fn random_selection(rng: &mut Rng, rows: usize) -> RowSelection {
    use parquet::arrow::arrow_reader::RowSelector;
    let mut selectors = Vec::new();
    let mut left = rows;
    let mode = rng.below(6);
    while left > 0 {
        let n = (1 + rng.below(150) as usize).min(left);
        let select = match mode {
            0 => true,
            1 => false,
            _ => rng.below(3) == 0,
        };
        selectors.push(if select {
            RowSelector::select(n)
        } else {
            RowSelector::skip(n)
        });
        left -= n;
    }
    RowSelection::from(selectors)
}

/// Page-index row selections (what a tenant or time filter makes): only the pages holding
/// selected rows are decoded, and the selected rows come out as parquet-rs returns them.
#[test]
fn random_selections_decode_as_parquet_rs_does() {
    let mut rng = Rng(0x5e1e_c7ed_0000_0002);
    let mut checked = 0;
    for round in 0..120 {
        let case = Case::random(&mut rng);
        let file = case.file(&mut rng);
        let groups = groups_of(&file);
        let mut choices = vec![(0..groups).collect::<Vec<_>>()];
        if groups > 1 {
            choices.push((0..groups).filter(|g| g % 2 == 1).collect());
        }
        let meta = ParquetRecordBatchReaderBuilder::try_new(file.clone())
            .unwrap()
            .metadata()
            .clone();
        for rgs in choices {
            let rows: usize = rgs
                .iter()
                .map(|g| meta.row_group(*g).num_rows() as usize)
                .sum();
            let selection = random_selection(&mut rng, rows);
            let ours = ours_selected(&file, &rgs, &selection)
                .unwrap_or_else(|| panic!("round {round}: {case:?} fell back"));
            let theirs = theirs_with(&file, &rgs, Some(&selection));
            assert_eq!(ours.len(), theirs.len(), "round {round}: {case:?}");
            assert!(
                same_lists(&ours, &theirs),
                "round {round}, row groups {rgs:?}, {selection:?}: {case:?}"
            );
            assert_eq!(ours.null_count(), theirs.null_count(), "{case:?}");
            // Whole pages (a row range of a large row group) decode in chunks.
            let pages = whole_pages(&mut rng, &file, &rgs);
            let chunk = 1 + rng.below(200) as usize;
            let (meta, field) = parsed(&file);
            let chunks = decode_chunks(&file, &meta, &rgs, 1, &field, Some(&pages), chunk)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: {case:?} fell back"));
            let theirs = theirs_with(&file, &rgs, Some(&pages));
            let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert!(
                lens.iter().rev().skip(1).all(|n| *n == chunk)
                    && lens
                        .last()
                        .is_some_and(|n| *n <= chunk && (*n > 0 || lens.len() == 1)),
                "round {round}: chunks of {lens:?} for {chunk} rows each"
            );
            let joined: Vec<&dyn Array> = chunks.iter().map(|c| c as &dyn Array).collect();
            let joined = arrow_select::concat::concat(&joined).unwrap();
            let joined = joined.as_any().downcast_ref::<ListArray>().unwrap();
            assert!(
                same_lists(joined, &theirs),
                "round {round}, whole pages {pages:?} in chunks of {chunk}: {case:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 120);
}

/// A selection of random whole pages of the embedding column of `row_groups`.
fn whole_pages(rng: &mut Rng, file: &Bytes, row_groups: &[usize]) -> RowSelection {
    use parquet::arrow::arrow_reader::RowSelector;
    let (meta, _) = parsed(file);
    let index = meta
        .offset_index()
        .expect("the writer wrote no offset index");
    let mut selectors = Vec::new();
    for &rg in row_groups {
        let rows = meta.row_group(rg).num_rows() as usize;
        let pages = index[rg][1].page_locations();
        for (i, page) in pages.iter().enumerate() {
            let start = page.first_row_index as usize;
            let end = pages
                .get(i + 1)
                .map_or(rows, |n| n.first_row_index as usize);
            selectors.push(if rng.below(2) == 0 {
                RowSelector::select(end - start)
            } else {
                RowSelector::skip(end - start)
            });
        }
    }
    RowSelection::from(selectors)
}

#[test]
fn shapes_it_does_not_read_fall_back() {
    let mut rng = Rng(7);
    let base = Case {
        rows: 300,
        dim: Some(16),
        null_rows: false,
        null_elements: false,
        nullable_element: true,
        encoding: Encoding::BYTE_STREAM_SPLIT,
        dictionary: false,
        codec: Compression::SNAPPY,
        v2: false,
        page_rows: 64,
        group_rows: 1000,
    };
    let file = base.file(&mut rng);
    assert!(ours(&file, &[0]).is_some());
    let nulls = Case {
        null_elements: true,
        ..base
    };
    let file = nulls.file(&mut rng);
    assert!(ours(&file, &[0]).is_none(), "null elements");
    // Dictionary pages: pyarrow's dictionary-encoded file in
    // `files_pyarrow_wrote_decode_as_parquet_rs_does` (parquet-rs's writer did not use a
    // dictionary for these doubles).
}

#[test]
fn levels_decode_rle_and_bit_packed_runs() {
    // RLE run of 5 × 1 (header 5<<1 = 10), then one bit-packed group (header 1<<1|1 = 3) of
    // 8 levels at width 1: 0b1010_0101.
    let data = [10u8, 1, 3, 0b1010_0101];
    let mut out = Vec::new();
    decode_levels(&data, 1, 13, &mut out).unwrap();
    assert_eq!(out, [1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1]);
    // A block shorter than the levels it should hold is an error, not a panic.
    assert!(decode_levels(&data[..3], 1, 13, &mut out).is_err());
    assert!(decode_levels(&[], 1, 1, &mut out).is_err());
    assert_eq!(single_run(&[20, 3], 2, 10), Some(3));
    assert_eq!(single_run(&[20, 3], 2, 11), None);
}

/// Appends `v` as an unsigned LEB128 varint.
fn push_uleb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[test]
fn row_starts_are_the_zero_levels_decode_levels_gives() {
    let mut rng = Rng(4242);
    for case in 0..300 {
        // A random hybrid block of bit-width-1 levels: RLE runs of 0s or 1s (short and long,
        // as a 1024-dim row's 1,023 1s) and bit-packed groups of random bits.
        let mut data = Vec::new();
        let mut total = 0usize;
        for _ in 0..1 + rng.below(12) {
            if rng.below(2) == 0 {
                let most = if rng.below(3) == 0 { 2000 } else { 9 };
                let count = 1 + rng.below(most) as usize;
                push_uleb128(&mut data, (count as u64) << 1);
                data.push(rng.below(2) as u8);
                total += count;
            } else {
                let groups = 1 + rng.below(5) as usize;
                push_uleb128(&mut data, ((groups as u64) << 1) | 1);
                data.extend((0..groups).map(|_| rng.next() as u8));
                total += groups * 8;
            }
        }
        // Sometimes fewer entries than the block holds (a page's last group is padded).
        let entries = if case % 3 == 0 {
            total - rng.below(8).min(total as u64 - 1) as usize
        } else {
            total
        };
        let mut levels = Vec::new();
        decode_levels(&data, 1, entries, &mut levels).unwrap();
        let want: Vec<usize> = (0..entries).filter(|&i| levels[i] == 0).collect();
        let mut got = Vec::new();
        row_starts(&data, entries, |i| {
            got.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, want, "case {case}");
    }
    let ok = |_| Ok(());
    // A level of 2 at bit width 1, an RLE run without its value, bit-packed bytes missing,
    // fewer levels than entries: errors, not panics.
    assert!(row_starts(&[8, 2], 4, ok).is_err());
    assert!(row_starts(&[8], 4, ok).is_err());
    assert!(row_starts(&[5, 0xff], 16, ok).is_err());
    assert!(row_starts(&[8, 1], 5, ok).is_err());
    assert!(row_starts(&[], 1, ok).is_err());
}

#[test]
fn the_blocked_transpose_equals_the_byte_loop() {
    let mut rng = Rng(99);
    for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 63, 64, 65, 1000] {
        let values: Vec<f64> = (0..n).map(|_| rng.value()).collect();
        let mut split = vec![0u8; n * 8];
        for (i, v) in values.iter().enumerate() {
            for (j, b) in v.to_le_bytes().iter().enumerate() {
                split[j * n + i] = *b;
            }
        }
        let mut out = Vec::new();
        join_streams(&split, n, &mut out);
        let back: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(back, want, "n = {n}");
    }
}

/// Files written by pyarrow (pyiceberg's writer): PLAIN and BYTE_STREAM_SPLIT, v1 and v2 data
/// pages, several codecs, null rows; a dictionary-encoded file is left to parquet-rs.
#[cfg(feature = "python-tests")]
#[test]
fn files_pyarrow_wrote_decode_as_parquet_rs_does() {
    let python = std::env::var("SALES_HISTORY_PYTHON").unwrap_or_else(|_| {
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/venv.sh"))
            .output()
            .expect("run scripts/venv.sh");
        assert!(out.status.success(), "scripts/venv.sh failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    });
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, random
import pyarrow as pa, pyarrow.parquet as pq
out = sys.argv[1]
rnd = random.Random(5)
def rows(n, dim, null_rows):
    return [None if null_rows and rnd.random() < 0.2 else [rnd.uniform(-1, 1) for _ in range(dim)] for _ in range(n)]
t = lambda vals: pa.table({"id": pa.array(range(len(vals)), pa.int64()),
                           "embedding": pa.array(vals, pa.list_(pa.float64()))})
col = "embedding.list.element"
cases = {
  "plain_v1_snappy": (t(rows(700, 16, False)), dict(use_dictionary=False, compression="snappy", data_page_size=4096, row_group_size=300)),
  "bss_v2_zstd": (t(rows(900, 24, True)), dict(use_dictionary=False, column_encoding={col: "BYTE_STREAM_SPLIT"}, data_page_version="2.0", compression="zstd", data_page_size=2048, row_group_size=400)),
  "bss_v1_gzip": (t(rows(333, 7, True)), dict(use_dictionary=False, column_encoding={col: "BYTE_STREAM_SPLIT"}, compression="gzip")),
  "plain_v2_none": (t(rows(100, 1024, False)), dict(use_dictionary=False, compression="none", data_page_version="2.0")),
  "dictionary": (t(rows(200, 4, False)), dict(compression="snappy")),
}
for name, (table, opts) in cases.items():
    pq.write_table(table, f"{out}/{name}.parquet", **opts)
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "plain_v1_snappy",
        "bss_v2_zstd",
        "bss_v1_gzip",
        "plain_v2_none",
    ] {
        let file = Bytes::from(std::fs::read(dir.path().join(format!("{name}.parquet"))).unwrap());
        let all: Vec<usize> = (0..groups_of(&file)).collect();
        let ours = ours(&file, &all).unwrap_or_else(|| panic!("{name} fell back"));
        let theirs = theirs(&file, &all);
        assert!(!ours.is_empty(), "{name}");
        assert!(same_lists(&ours, &theirs), "{name}");
    }
    let file = Bytes::from(std::fs::read(dir.path().join("dictionary.parquet")).unwrap());
    assert!(ours(&file, &[0]).is_none(), "pyarrow's dictionary pages");
}
