//! Rows in the table's declared sort order (for files a rewrite writes).

use arrow_array::RecordBatch;
use arrow_ord::sort::{SortColumn, SortOptions, lexsort_to_indices};
use iceberg::spec::{NullOrder, SortDirection, TableMetadata, Transform};

use crate::error::Result;
use crate::schema::Column;

/// `batches` as one batch sorted by the table's default sort order, when it has one made of
/// identity transforms of our columns; otherwise unchanged.
pub(crate) fn by_sort_order(
    metadata: &TableMetadata,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let order = metadata.default_sort_order();
    if order.fields.is_empty() || batches.is_empty() {
        return Ok(batches);
    }
    let mut keys = Vec::new();
    for field in &order.fields {
        let column = Column::ALL
            .into_iter()
            .find(|c| c.field_id() == field.source_id);
        match (column, &field.transform) {
            (Some(c), Transform::Identity) => keys.push((
                c,
                SortOptions {
                    descending: field.direction == SortDirection::Descending,
                    nulls_first: field.null_order == NullOrder::First,
                },
            )),
            _ => {
                tracing::debug!(
                    order_id = order.order_id,
                    "sort order is not identity transforms of our columns; rows left unsorted"
                );
                return Ok(batches);
            }
        }
    }
    let schema = batches[0].schema();
    let all = arrow_select::concat::concat_batches(&schema, &batches)?;
    let columns: Vec<SortColumn> = keys
        .iter()
        .map(|(c, options)| SortColumn {
            values: all.column(c.index()).clone(),
            options: Some(*options),
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(vec![arrow_select::take::take_record_batch(&all, &indices)?])
}
