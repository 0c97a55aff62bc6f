//! Rows in the table's declared sort order: the order files are written in (appends, the
//! streaming appender, compaction).

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
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
