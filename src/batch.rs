//! [`SaleRecord`] ⇄ Arrow, and the validation every append goes through.
//!
//! Typed rows are converted to a batch and then validated by the same code as caller-built
//! batches ([`conform`]), so the rules live in one place.

use std::sync::Arc;

use arrow_array::builder::{
    Decimal128Builder, Float64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, FieldRef, TimeUnit};
use chrono::DateTime;

use crate::error::{Error, Result};
use crate::record::{
    Price, SaleRecord, Season, check_embedding_len, check_embedding_values, check_season,
    check_sold_date, check_text,
};
use crate::schema::{Column, arrow_schema};

/// Converts typed rows to one Arrow batch with the table's schema (not yet validated).
pub(crate) fn records_to_batch(records: &[SaleRecord]) -> Result<RecordBatch> {
    let schema = arrow_schema();
    let n = records.len();
    let mut text: Vec<StringBuilder> = (0..8)
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    let mut price = Decimal128Builder::with_capacity(n).with_precision_and_scale(10, 2)?;
    let mut date = TimestampMicrosecondBuilder::with_capacity(n);
    let element = embedding_element_field();
    let mut emb = ListBuilder::new(Float64Builder::new()).with_field(element);
    for r in records {
        let texts: [Option<&str>; 8] = [
            Some(&r.product_id),
            Some(&r.tenant_id),
            r.category.as_deref(),
            r.brand.as_deref(),
            r.condition.as_deref(),
            r.season.map(Season::as_str),
            r.image_s3_key.as_deref(),
            r.description.as_deref(),
        ];
        for (b, v) in text.iter_mut().zip(texts) {
            b.append_option(v);
        }
        price.append_value(r.sold_price.cents() as i128);
        date.append_value(r.sold_date.timestamp_micros());
        match &r.embedding {
            Some(v) => {
                emb.values().append_slice(v);
                emb.append(true);
            }
            None => emb.append(false),
        }
    }
    let mut source = StringBuilder::with_capacity(n, n * 8);
    for r in records {
        source.append_option(r.source.as_deref());
    }
    let mut t = text
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || t.next().ok_or_else(unreachable_col);
    let columns: Vec<ArrayRef> = vec![
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        Arc::new(price.finish()),
        Arc::new(date.finish()),
        next()?,
        next()?,
        Arc::new(emb.finish()),
        next()?,
        Arc::new(source.finish()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn unreachable_col() -> Error {
    Error::config("record", "internal column count mismatch")
}

fn embedding_element_field() -> FieldRef {
    match arrow_schema().field(Column::Embedding.index()).data_type() {
        DataType::List(f) => f.clone(),
        other => unreachable!("embedding is a list in the schema, found {other}"),
    }
}

/// Validates a batch and returns it with exactly the table's Arrow schema.
///
/// Arrays are reused, not copied: only the schema (field ids, list element name) is replaced,
/// a `FixedSizeList` embedding gets list offsets, a `UTC` timestamp loses its zone label, and a
/// missing `season` is filled from `sold_date`. `row_offset` is added to row indices in errors.
pub(crate) fn conform(
    batch: &RecordBatch,
    batch_index: usize,
    row_offset: usize,
    dimension: usize,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut differences = Vec::new();
    for f in schema.fields() {
        if f.name().parse::<Column>().is_err() {
            differences.push(format!("unexpected column `{}`", f.name()));
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(12);
    for column in Column::ALL {
        let Some((_, field)) = schema.column_with_name(column.name()) else {
            differences.push(format!("column `{column}` is missing"));
            continue;
        };
        let Some(array) = batch.column_by_name(column.name()) else {
            continue;
        };
        match conform_array(column, array, row_offset)? {
            Some(a) => columns.push(a),
            None => differences.push(format!(
                "column `{column}` has type {}, expected {}",
                field.data_type(),
                expected_type_text(column)
            )),
        }
    }
    if !differences.is_empty() {
        return Err(Error::BatchSchemaMismatch {
            batch: batch_index,
            differences,
        });
    }
    check_rows(&mut columns, row_offset, dimension)?;
    Ok(RecordBatch::try_new(arrow_schema(), columns)?)
}

fn expected_type_text(column: Column) -> &'static str {
    match column {
        Column::SoldPrice => "Decimal128(10, 2)",
        Column::SoldDate => "Timestamp(Microsecond, None or \"UTC\")",
        Column::Embedding => "List(Float64) or FixedSizeList(Float64)",
        _ => "Utf8",
    }
}

/// Returns the array re-typed to the table's type, or `None` when its type is wrong.
fn conform_array(column: Column, array: &ArrayRef, row_offset: usize) -> Result<Option<ArrayRef>> {
    if column == Column::Embedding {
        check_null_elements(array, row_offset)?;
    }
    Ok(retype(column, array))
}

/// The embedding's element is required: find a null element before re-typing the list.
fn check_null_elements(array: &ArrayRef, row_offset: usize) -> Result<()> {
    let (values, offsets): (&ArrayRef, Vec<usize>) = match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            (
                l.values(),
                l.offsets().iter().map(|o| *o as usize).collect(),
            )
        }
        DataType::FixedSizeList(_, size) => {
            let l = array.as_fixed_size_list();
            let size = (*size).max(0) as usize;
            (l.values(), (0..=l.len()).map(|i| i * size).collect())
        }
        _ => return Ok(()),
    };
    if values.null_count() == 0 {
        return Ok(());
    }
    // Only the elements of present rows: a null row's slots may hold anything, nulls
    // included (`FixedSizeListBuilder` and pyarrow fill them with nulls).
    for (row, range) in offsets.windows(2).enumerate() {
        if array.is_null(row) {
            continue;
        }
        if let Some(pos) = (range[0]..range[1]).find(|&j| values.is_null(j)) {
            return Err(Error::invalid(
                Column::Embedding,
                Some(row_offset + row),
                format!("element {} is null (elements are required)", pos - range[0]),
            ));
        }
    }
    Ok(())
}

/// The embedding's elements without their validity: checked ([`check_null_elements`]), a
/// null element can only lie under a null row or outside every row's range (a sliced list),
/// where nothing reads it, and the table's element field is required. Zero-copy.
fn elements(values: &ArrayRef) -> Option<ArrayRef> {
    if values.null_count() == 0 {
        return Some(values.clone());
    }
    let doubles = values.as_primitive_opt::<arrow_array::types::Float64Type>()?;
    Some(Arc::new(arrow_array::Float64Array::new(
        doubles.values().clone(),
        None,
    )))
}

fn retype(column: Column, array: &ArrayRef) -> Option<ArrayRef> {
    match (column, array.data_type()) {
        (Column::SoldPrice, DataType::Decimal128(10, 2)) => Some(array.clone()),
        (Column::SoldDate, DataType::Timestamp(TimeUnit::Microsecond, tz)) => match tz.as_deref() {
            None => Some(array.clone()),
            Some("UTC" | "+00:00" | "Z") => Some(Arc::new(
                array
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone_opt(None::<Arc<str>>),
            )),
            Some(_) => None,
        },
        (Column::Embedding, DataType::List(inner)) if inner.data_type() == &DataType::Float64 => {
            let list = array.as_list::<i32>();
            Some(Arc::new(
                ListArray::try_new(
                    embedding_element_field(),
                    list.offsets().clone(),
                    elements(list.values())?,
                    list.nulls().cloned(),
                )
                .ok()?,
            ))
        }
        (Column::Embedding, DataType::FixedSizeList(inner, size))
            if inner.data_type() == &DataType::Float64 =>
        {
            let list: &FixedSizeListArray = array.as_fixed_size_list();
            let size = usize::try_from(*size).ok()?;
            let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(size, list.len()));
            Some(Arc::new(
                ListArray::try_new(
                    embedding_element_field(),
                    offsets,
                    elements(list.values())?,
                    list.nulls().cloned(),
                )
                .ok()?,
            ))
        }
        (Column::Embedding, _) | (Column::SoldPrice, _) | (Column::SoldDate, _) => None,
        (_, DataType::Utf8) => Some(array.clone()),
        (_, DataType::LargeUtf8 | DataType::Utf8View) => {
            arrow_cast::cast(array, &DataType::Utf8).ok()
        }
        _ => None,
    }
}

/// Row-level checks over the conformed columns (table order). Fills a null `season`.
fn check_rows(columns: &mut [ArrayRef], row_offset: usize, dimension: usize) -> Result<()> {
    let at = |i: usize| move |e: Error| e.at_row(row_offset + i);
    for column in Column::ALL {
        let array = &columns[column.index()];
        if column.is_required() && array.null_count() > 0 {
            let i = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
            return Err(Error::invalid(
                column,
                Some(row_offset + i),
                "is null in a required column",
            ));
        }
        if matches!(
            column.iceberg_type(),
            iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::String)
        ) {
            for (i, v) in array.as_string::<i32>().iter().enumerate() {
                if let Some(v) = v {
                    check_text(column, v).map_err(at(i))?;
                }
            }
        }
    }
    let prices = columns[Column::SoldPrice.index()].as_primitive::<Decimal128Type>();
    for (i, v) in prices.values().iter().enumerate() {
        Price::check_cents(*v).map_err(at(i))?;
    }
    let dates = columns[Column::SoldDate.index()]
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    for (i, v) in dates.values().iter().enumerate() {
        check_sold_date(*v).map_err(at(i))?;
    }
    let seasons = columns[Column::Season.index()].as_string::<i32>().clone();
    for (i, s) in seasons.iter().enumerate() {
        if let Some(s) = s {
            check_season(s, dates.value(i)).map_err(at(i))?;
        }
    }
    if seasons.null_count() > 0 {
        columns[Column::Season.index()] = Arc::new(fill_seasons(&seasons, &dates));
    }
    let emb = columns[Column::Embedding.index()].as_list::<i32>();
    let values = emb.values().as_primitive::<Float64Type>();
    let raw = values.values();
    for (i, w) in emb.offsets().windows(2).enumerate() {
        if emb.is_null(i) {
            continue;
        }
        let (start, end) = (w[0] as usize, w[1] as usize);
        check_embedding_len(end - start, dimension).map_err(at(i))?;
        let slice = &raw[start..end];
        if !slice.iter().all(|v| v.is_finite()) {
            check_embedding_values(slice).map_err(at(i))?;
        }
    }
    Ok(())
}

fn fill_seasons(seasons: &StringArray, dates: &TimestampMicrosecondArray) -> StringArray {
    seasons
        .iter()
        .zip(dates.values().iter())
        .map(|(s, d)| match s {
            Some(s) => Some(s.to_string()),
            None => DateTime::from_timestamp_micros(*d).map(|d| Season::of(d).as_str().to_string()),
        })
        .collect()
}

/// Converts a scanned batch (all twelve columns, any order) back to typed rows.
pub(crate) fn batch_to_records(batch: &RecordBatch) -> Result<Vec<SaleRecord>> {
    let text = |c: Column| -> Result<StringArray> {
        let a = batch.column_by_name(c.name()).ok_or_else(|| missing(c))?;
        let a = arrow_cast::cast(a, &DataType::Utf8)?;
        Ok(a.as_string::<i32>().clone())
    };
    let col = |c: Column| batch.column_by_name(c.name()).ok_or_else(|| missing(c));
    let [pid, tid, cat, brand, cond, season, img, desc, src] = [
        Column::ProductId,
        Column::TenantId,
        Column::Category,
        Column::Brand,
        Column::Condition,
        Column::Season,
        Column::ImageS3Key,
        Column::Description,
        Column::Source,
    ]
    .map(text);
    let (pid, tid, cat, brand, cond, season, img, desc, src) =
        (pid?, tid?, cat?, brand?, cond?, season?, img?, desc?, src?);
    let price = col(Column::SoldPrice)?;
    let price = price
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| wrong_type(Column::SoldPrice))?;
    let date = col(Column::SoldDate)?;
    let date = date
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| wrong_type(Column::SoldDate))?;
    let emb = col(Column::Embedding)?;
    let emb = emb
        .as_list_opt::<i32>()
        .ok_or_else(|| wrong_type(Column::Embedding))?;
    let emb_values = emb
        .values()
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| wrong_type(Column::Embedding))?;
    let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    (0..batch.num_rows())
        .map(|i| {
            let sold_date = DateTime::from_timestamp_micros(date.value(i))
                .ok_or_else(|| Error::invalid(Column::SoldDate, Some(i), "out of range"))?;
            let embedding = emb.is_valid(i).then(|| {
                let (s, e) = (
                    emb.value_offsets()[i] as usize,
                    emb.value_offsets()[i + 1] as usize,
                );
                emb_values.values()[s..e].to_vec()
            });
            Ok(SaleRecord {
                product_id: pid.value(i).to_string(),
                tenant_id: tid.value(i).to_string(),
                category: opt(&cat, i),
                brand: opt(&brand, i),
                condition: opt(&cond, i),
                sold_price: Price::from_cents(
                    i64::try_from(price.value(i)).map_err(|_| wrong_type(Column::SoldPrice))?,
                )
                .map_err(|e| e.at_row(i))?,
                sold_date,
                season: opt(&season, i)
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e: Error| e.at_row(i))?,
                image_s3_key: opt(&img, i),
                embedding,
                description: opt(&desc, i),
                source: opt(&src, i),
            })
        })
        .collect()
}

fn missing(c: Column) -> Error {
    Error::invalid(c, None, "column is not in the scanned batch")
}

fn wrong_type(c: Column) -> Error {
    Error::invalid(c, None, "scanned column has an unexpected Arrow type")
}

/// The array with exactly the field's type: reused when equal, relabelled without copying
/// (list element field, timestamp zone), cast otherwise.
pub(crate) fn relabel_array(array: &ArrayRef, field: &FieldRef) -> Result<ArrayRef> {
    let target = field.data_type();
    if array.data_type() == target {
        return Ok(array.clone());
    }
    match (array.data_type(), target) {
        (DataType::List(from), DataType::List(to)) if from.data_type() == to.data_type() => {
            let list = array.as_list::<i32>();
            Ok(Arc::new(ListArray::try_new(
                to.clone(),
                list.offsets().clone(),
                list.values().clone(),
                list.nulls().cloned(),
            )?))
        }
        (DataType::Timestamp(u1, _), DataType::Timestamp(u2, None)) if u1 == u2 => {
            let ts = array.as_primitive_opt::<TimestampMicrosecondType>();
            match ts {
                Some(ts) => Ok(Arc::new(ts.clone().with_timezone_opt(None::<Arc<str>>))),
                None => Ok(arrow_cast::cast(array, target)?),
            }
        }
        _ => Ok(arrow_cast::cast(array, target)?),
    }
}

/// The error for a row of `found` in a scope of `scope`.
pub(crate) fn foreign_tenant(found: &str, scope: &str, row: Option<usize>) -> Error {
    Error::InvalidValue {
        column: Column::TenantId,
        row,
        reason: format!("the row is tenant `{found}`'s; this scope writes only tenant `{scope}`"),
    }
}

/// Checks that every row of a validated batch is `tenant`'s; rows are numbered from `offset`.
pub(crate) fn check_tenant(batch: &RecordBatch, tenant: &str, offset: usize) -> Result<()> {
    let column = batch.column(Column::TenantId.index());
    let Some(values) = column.as_string_opt::<i32>() else {
        return Err(Error::internal("tenant_id is not a string column"));
    };
    for (i, v) in values.iter().enumerate() {
        if v != Some(tenant) {
            return Err(foreign_tenant(
                v.unwrap_or("(null)"),
                tenant,
                Some(offset + i),
            ));
        }
    }
    Ok(())
}
