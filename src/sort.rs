//! Rows in the table's declared sort order: the order files are written in (appends, the
//! streaming appender, compaction).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, Float64Array, ListArray, RecordBatch, RecordBatchOptions};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{ArrowError, DataType, FieldRef};
use iceberg::spec::{NullOrder, SortDirection, TableMetadata, Transform};

use crate::schema::Column;

/// One key of a sort order: a column of our layout, its direction and null placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortKey {
    column: Column,
    descending: bool,
    nulls_first: bool,
}

/// The keys of the table's default sort order, with its order id; `None` when it has none or
/// uses something other than identity transforms of our string, timestamp or price columns
/// (then rows are written as they come).
pub(crate) fn keys(metadata: &TableMetadata) -> Option<(i64, Vec<SortKey>)> {
    let order = metadata.default_sort_order();
    if order.fields.is_empty() {
        return None;
    }
    let mut keys = Vec::with_capacity(order.fields.len());
    for field in &order.fields {
        let column = Column::ALL
            .into_iter()
            .find(|c| c.field_id() == field.source_id)?;
        if field.transform != Transform::Identity || column == Column::Embedding {
            return None;
        }
        keys.push(SortKey {
            column,
            descending: field.direction == SortDirection::Descending,
            nulls_first: field.null_order == NullOrder::First,
        });
    }
    Some((order.order_id, keys))
}

/// `file` with its `sort_order_id` set (iceberg 0.10.1's `DataFileWriter` leaves it unset and
/// `DataFile`'s fields are crate-private: rebuilt field by field with its public builder).
pub(crate) fn with_sort_order_id(
    file: iceberg::spec::DataFile,
    order_id: i64,
    spec_id: i32,
) -> crate::Result<iceberg::spec::DataFile> {
    let Ok(order_id) = i32::try_from(order_id) else {
        return Ok(file);
    };
    let mut b = iceberg::spec::DataFileBuilder::default();
    b.content(file.content_type())
        .file_path(file.file_path().to_string())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(<[u8]>::to_vec))
        .split_offsets(file.split_offsets().map(<[i64]>::to_vec))
        .equality_ids(file.equality_ids())
        .sort_order_id(order_id)
        .first_row_id(file.first_row_id())
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    b.build()
        .map_err(|e| crate::Error::internal(format!("rebuilding a data file entry: {e}")))
}

/// A key value of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Value<'a> {
    Int(i128),
    Str(&'a str),
}

/// The key value of `row` in `array` (`None`: null, or a type no key uses).
fn value(array: &ArrayRef, row: usize) -> Option<Value<'_>> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(Value::Str(array.as_string::<i32>().value(row))),
        DataType::LargeUtf8 => Some(Value::Str(array.as_string::<i64>().value(row))),
        DataType::Timestamp(_, _) => Some(Value::Int(i128::from(
            array.as_primitive::<TimestampMicrosecondType>().value(row),
        ))),
        DataType::Decimal128(_, _) => Some(Value::Int(
            array.as_primitive::<Decimal128Type>().value(row),
        )),
        _ => None,
    }
}

/// Two key values in the order of `key` (direction, null placement).
fn compare_values(key: &SortKey, a: Option<Value<'_>>, b: Option<Value<'_>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) if key.nulls_first => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if key.nulls_first => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) if key.descending => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
    }
}

/// Row `a` of batch `x` against row `b` of batch `y` (both in our layout) by `keys`.
pub(crate) fn compare_rows(
    keys: &[SortKey],
    x: &RecordBatch,
    a: usize,
    y: &RecordBatch,
    b: usize,
) -> Ordering {
    for key in keys {
        let i = key.column.index();
        let ord = compare_values(key, value(x.column(i), a), value(y.column(i), b));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// `(batch, row)` pairs of `parts` in the order of `keys` (stable: ties keep their order).
pub(crate) fn sorted_pairs(
    batches: &[RecordBatch],
    parts: &[(usize, Vec<u32>)],
    keys: &[SortKey],
) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(usize, usize)> = parts
        .iter()
        .flat_map(|(b, rows)| rows.iter().map(move |r| (*b, *r as usize)))
        .collect();
    pairs.sort_by(|&(ab, ar), &(bb, br)| compare_rows(keys, &batches[ab], ar, &batches[bb], br));
    pairs
}

/// The rows `pairs` (`(batch, row)`) of `batches`, gathered into one batch in that order:
/// arrow-select's `interleave_record_batch`, except that lists of doubles without null
/// elements (the embedding) are copied a row's values at a time.
///
/// arrow-select 58's `interleave_list` expands every list into one `(array, index)` pair per
/// value and gathers the values one by one: 1,024 pairs (16 KB) for a 1024-dim row, 12% of a
/// compaction's CPU in `perf record`. When arrow-select copies list values by row, this goes.
pub(crate) fn interleave_rows(
    batches: &[&RecordBatch],
    pairs: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let Some(first) = batches.first() else {
        return Err(ArrowError::InvalidArgumentError(
            "no batches to gather rows from".into(),
        ));
    };
    // arrow-select panics on a pair out of bounds.
    if let Some((b, r)) = pairs
        .iter()
        .find(|&&(b, r)| batches.get(b).is_none_or(|batch| r >= batch.num_rows()))
    {
        return Err(ArrowError::InvalidArgumentError(format!(
            "row ({b}, {r}) is out of bounds"
        )));
    }
    let schema = first.schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for i in 0..schema.fields().len() {
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
        columns.push(match double_lists(&arrays) {
            Some((field, lists)) => gather_double_lists(field, &lists, pairs)?,
            None => arrow_select::interleave::interleave(&arrays, pairs)?,
        });
    }
    let options = RecordBatchOptions::new().with_row_count(Some(pairs.len()));
    RecordBatch::try_new_with_options(schema, columns, &options)
}

/// `arrays` as lists of doubles of one type without null elements, with their element field;
/// `None` for any other shape.
fn double_lists<'a>(arrays: &[&'a dyn Array]) -> Option<(FieldRef, Vec<&'a ListArray>)> {
    let first = arrays.first()?;
    let DataType::List(field) = first.data_type() else {
        return None;
    };
    if field.data_type() != &DataType::Float64 {
        return None;
    }
    let lists = arrays
        .iter()
        .map(|a| {
            let list = a.as_list_opt::<i32>()?;
            (list.data_type() == first.data_type() && list.values().null_count() == 0)
                .then_some(list)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((field.clone(), lists))
}

/// The rows `pairs` (in bounds) of `lists`, each row's values copied as one slice.
fn gather_double_lists(
    field: FieldRef,
    lists: &[&ListArray],
    pairs: &[(usize, usize)],
) -> Result<ArrayRef, ArrowError> {
    let values: Vec<&[f64]> = lists
        .iter()
        .map(|l| l.values().as_primitive::<Float64Type>().values().as_ref())
        .collect();
    let mut ranges = Vec::with_capacity(pairs.len());
    let mut offsets = Vec::with_capacity(pairs.len() + 1);
    offsets.push(0i32);
    let mut total = 0usize;
    for &(b, r) in pairs {
        let o = lists[b].value_offsets();
        let (start, end) = (o[r] as usize, o[r + 1] as usize);
        total += end - start;
        offsets.push(i32::try_from(total).map_err(|_| ArrowError::OffsetOverflowError(total))?);
        ranges.push((b, start, end));
    }
    let mut out = Vec::with_capacity(total);
    for (b, start, end) in ranges {
        out.extend_from_slice(&values[b][start..end]);
    }
    let nulls = lists
        .iter()
        .any(|l| l.null_count() > 0)
        .then(|| NullBuffer::from_iter(pairs.iter().map(|&(b, r)| lists[b].is_valid(r))));
    let values: ArrayRef = Arc::new(Float64Array::new(out.into(), None));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        values,
        nulls,
    )?))
}

#[cfg(test)]
mod interleave_tests {
    use super::*;
    use arrow_array::StringArray;
    use arrow_schema::{Field, Schema};

    /// A batch of `rows` rows: an id string and a list of doubles, some lists null or empty
    /// when `nulls`, sliced by `skip` rows so offsets do not start at 0.
    fn batch(seed: u64, rows: usize, skip: usize, nulls: bool) -> RecordBatch {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let mut list =
            arrow_array::builder::ListBuilder::new(arrow_array::builder::Float64Builder::new())
                .with_field(Arc::new(Field::new("element", DataType::Float64, false)));
        let mut ids = Vec::new();
        for i in 0..rows + skip {
            ids.push(format!("{seed}-{i}"));
            match next() % 7 {
                0 if nulls => list.append(false),
                1 if nulls => list.append(true),
                _ => {
                    for _ in 0..1 + next() % 9 {
                        list.values().append_value(next() as f64 / 7.0);
                    }
                    list.append(true);
                }
            }
        }
        let list = list.finish();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("embedding", list.data_type().clone(), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(ids)), Arc::new(list)],
        )
        .expect("test batch")
        .slice(skip, rows)
    }

    #[test]
    fn rows_gather_as_arrow_interleaves_them() {
        for (case, nulls) in [(0u64, false), (1, true), (2, false), (3, true)] {
            let batches: Vec<RecordBatch> = (0..4)
                .map(|b| batch(case * 10 + b, 20 + b as usize * 7, b as usize * 3, nulls))
                .collect();
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            assert!(double_lists(&[batches[0].column(1).as_ref()]).is_some());
            let mut pairs = Vec::new();
            for i in 0..200usize {
                let b = (i * 7 + case as usize) % batches.len();
                pairs.push((b, (i * 13) % batches[b].num_rows()));
            }
            let ours = interleave_rows(&refs, &pairs).expect("ours");
            let arrow =
                arrow_select::interleave::interleave_record_batch(&refs, &pairs).expect("arrow");
            assert_eq!(ours, arrow, "case {case}");
            assert_eq!(
                ours.column(1).null_count() > 0,
                nulls,
                "case {case}: null lists kept"
            );
        }
        assert!(interleave_rows(&[], &[]).is_err(), "no batches");
    }

    #[test]
    fn a_row_out_of_bounds_is_an_error() {
        let batches = [batch(5, 10, 0, false)];
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        assert!(interleave_rows(&refs, &[(0, 10)]).is_err());
        assert!(interleave_rows(&refs, &[(1, 0)]).is_err());
    }
}

#[cfg(all(test, feature = "sample-data"))]
mod tests {
    use super::*;
    use crate::sample::{SampleConfig, SampleGenerator};

    #[test]
    fn pairs_follow_tenant_then_date_across_batches() {
        let mut generator =
            SampleGenerator::new(SampleConfig::default().seed(3).embedding_dimension(4));
        let batches: Vec<RecordBatch> = (0..3)
            .map(|_| crate::batch::records_to_batch(&generator.take_records(50)).expect("batch"))
            .collect();
        let parts: Vec<(usize, Vec<u32>)> = (0..3).map(|b| (b, (0..50).collect())).collect();
        let keys = vec![
            SortKey {
                column: Column::TenantId,
                descending: false,
                nulls_first: true,
            },
            SortKey {
                column: Column::SoldDate,
                descending: false,
                nulls_first: true,
            },
        ];
        let pairs = sorted_pairs(&batches, &parts, &keys);
        assert_eq!(pairs.len(), 150);
        let key = |(b, r): (usize, usize)| {
            let t = batches[b]
                .column(Column::TenantId.index())
                .as_string::<i32>()
                .value(r)
                .to_string();
            let d = batches[b]
                .column(Column::SoldDate.index())
                .as_primitive::<TimestampMicrosecondType>()
                .value(r);
            (t, d)
        };
        let keyed: Vec<_> = pairs.iter().map(|p| key(*p)).collect();
        let mut sorted = keyed.clone();
        sorted.sort();
        assert_eq!(keyed, sorted);
        assert!(keyed.first() != keyed.last());
    }
}
