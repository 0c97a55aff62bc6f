//! [`PartialSaleRecord`]: typed rows of a projected scan, unread columns absent.

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::record::{Price, SaleRecord, Season};
use crate::schema::Column;

/// A row read with a projection ([`Scan::select`](crate::Scan::select)).
///
/// A column that was **not read** is `None`. For the optional columns the inner `Option` is the
/// value itself: `Some(None)` is a `NULL` stored in the table, `Some(Some(v))` a value. Nothing
/// is defaulted: an unread `sold_price` is `None`, never `0.00`.
///
/// ```no_run
/// # async fn f(table: &sales_history::SalesHistory) -> sales_history::Result<()> {
/// use sales_history::Column;
/// let rows = table.scan().select([Column::ProductId, Column::Brand]).to_partial_records().await?;
/// for r in &rows {
///     assert!(r.product_id.is_some() && r.sold_price.is_none());
///     let brand: Option<&str> = r.brand.as_ref().and_then(|b| b.as_deref());
/// #   let _ = brand;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PartialSaleRecord {
    /// `product_id` (required in the table), when read.
    pub product_id: Option<String>,
    /// `tenant_id` (required in the table), when read.
    pub tenant_id: Option<String>,
    /// `category`, when read.
    pub category: Option<Option<String>>,
    /// `brand`, when read.
    pub brand: Option<Option<String>>,
    /// `condition`, when read.
    pub condition: Option<Option<String>>,
    /// `sold_price` (required in the table), when read.
    pub sold_price: Option<Price>,
    /// `sold_date` (required in the table), when read.
    pub sold_date: Option<DateTime<Utc>>,
    /// `season`, when read.
    pub season: Option<Option<Season>>,
    /// `image_s3_key`, when read.
    pub image_s3_key: Option<Option<String>>,
    /// `embedding`, when read.
    pub embedding: Option<Option<Vec<f64>>>,
    /// `description`, when read.
    pub description: Option<Option<String>>,
    /// `source`, when read.
    pub source: Option<Option<String>>,
}

impl PartialSaleRecord {
    /// Whether `column` was read for this row.
    pub fn has(&self, column: Column) -> bool {
        match column {
            Column::ProductId => self.product_id.is_some(),
            Column::TenantId => self.tenant_id.is_some(),
            Column::Category => self.category.is_some(),
            Column::Brand => self.brand.is_some(),
            Column::Condition => self.condition.is_some(),
            Column::SoldPrice => self.sold_price.is_some(),
            Column::SoldDate => self.sold_date.is_some(),
            Column::Season => self.season.is_some(),
            Column::ImageS3Key => self.image_s3_key.is_some(),
            Column::Embedding => self.embedding.is_some(),
            Column::Description => self.description.is_some(),
            Column::Source => self.source.is_some(),
        }
    }

    /// The full record; [`Error::Config`] naming the first column that was not read.
    pub fn into_record(self) -> Result<SaleRecord> {
        if let Some(c) = Column::ALL.into_iter().find(|c| !self.has(*c)) {
            return Err(Error::config(
                "select",
                format!("column `{c}` was not read; a full SaleRecord needs every column"),
            ));
        }
        let missing = || Error::config("select", "a column was not read");
        Ok(SaleRecord {
            product_id: self.product_id.ok_or_else(missing)?,
            tenant_id: self.tenant_id.ok_or_else(missing)?,
            category: self.category.flatten(),
            brand: self.brand.flatten(),
            condition: self.condition.flatten(),
            sold_price: self.sold_price.ok_or_else(missing)?,
            sold_date: self.sold_date.ok_or_else(missing)?,
            season: self.season.flatten(),
            image_s3_key: self.image_s3_key.flatten(),
            embedding: self.embedding.flatten(),
            description: self.description.flatten(),
            source: self.source.flatten(),
        })
    }

    /// Converts a scanned batch (any subset of the columns, by name) to rows.
    pub(crate) fn from_batch(batch: &RecordBatch) -> Result<Vec<PartialSaleRecord>> {
        let n = batch.num_rows();
        let mut rows = vec![PartialSaleRecord::default(); n];
        for column in Column::ALL {
            let Some(array) = batch.column_by_name(column.name()) else {
                continue;
            };
            fill(&mut rows, column, array)?;
        }
        Ok(rows)
    }
}

fn wrong_type(c: Column) -> Error {
    Error::invalid(c, None, "scanned column has an unexpected Arrow type")
}

fn strings(array: &ArrayRef) -> Result<StringArray> {
    let a = arrow_cast::cast(array, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().clone())
}

fn fill(rows: &mut [PartialSaleRecord], column: Column, array: &ArrayRef) -> Result<()> {
    let text = |i: usize, a: &StringArray| a.is_valid(i).then(|| a.value(i).to_string());
    match column {
        Column::SoldPrice => {
            let a = array
                .as_primitive_opt::<Decimal128Type>()
                .ok_or_else(|| wrong_type(column))?;
            for (i, r) in rows.iter_mut().enumerate() {
                let cents = i64::try_from(a.value(i)).map_err(|_| wrong_type(column))?;
                r.sold_price = Some(Price::from_cents(cents).map_err(|e| e.at_row(i))?);
            }
        }
        Column::SoldDate => {
            let a = array
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| wrong_type(column))?;
            for (i, r) in rows.iter_mut().enumerate() {
                r.sold_date = Some(
                    DateTime::from_timestamp_micros(a.value(i))
                        .ok_or_else(|| Error::invalid(column, Some(i), "out of range"))?,
                );
            }
        }
        Column::Embedding => {
            let list = array
                .as_list_opt::<i32>()
                .ok_or_else(|| wrong_type(column))?;
            let values = list
                .values()
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| wrong_type(column))?;
            let offsets = list.value_offsets();
            for (i, r) in rows.iter_mut().enumerate() {
                let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
                r.embedding = Some(list.is_valid(i).then(|| values.values()[s..e].to_vec()));
            }
        }
        Column::Season => {
            let a = strings(array)?;
            for (i, r) in rows.iter_mut().enumerate() {
                let s = text(i, &a).map(|s| s.parse::<Season>()).transpose();
                r.season = Some(s.map_err(|e| e.at_row(i))?);
            }
        }
        _ => {
            let a = strings(array)?;
            for (i, r) in rows.iter_mut().enumerate() {
                let v = text(i, &a);
                match column {
                    Column::ProductId => r.product_id = v,
                    Column::TenantId => r.tenant_id = v,
                    Column::Category => r.category = Some(v),
                    Column::Brand => r.brand = Some(v),
                    Column::Condition => r.condition = Some(v),
                    Column::ImageS3Key => r.image_s3_key = Some(v),
                    Column::Description => r.description = Some(v),
                    _ => r.source = Some(v),
                }
            }
        }
    }
    Ok(())
}
