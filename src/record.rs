//! Typed rows: [`SaleRecord`], its builder, and the exact [`Price`] and [`Season`] types.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::error::{Error, Result};
use crate::schema::Column;

/// A sale price in exact cents, within `decimal(10,2)`: 0.00 to 99,999,999.99.
///
/// There are no floats inside. Parsing `"12.345"` or a value of 10^8 or more is an error,
/// never a rounding.
///
/// ```
/// use sales_history::Price;
/// let p: Price = "1249.9".parse()?;
/// assert_eq!(p.cents(), 124_990);
/// assert_eq!(p.to_string(), "1249.90");
/// assert!("12.345".parse::<Price>().is_err());
/// assert!("100000000".parse::<Price>().is_err());
/// # Ok::<(), sales_history::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(i64);

impl Price {
    /// Largest value `decimal(10,2)` holds, in cents.
    pub const MAX_CENTS: i64 = 9_999_999_999;
    /// 0.00.
    pub const ZERO: Price = Price(0);

    /// A price from a number of cents; errors when negative or above [`Price::MAX_CENTS`].
    pub fn from_cents(cents: i64) -> Result<Self> {
        Self::check_cents(cents as i128).map(|c| Price(c as i64))
    }

    pub(crate) fn check_cents(cents: i128) -> Result<i128> {
        if cents < 0 {
            return Err(Error::invalid(
                Column::SoldPrice,
                None,
                format!("{} is negative", Price::format_cents(cents)),
            ));
        }
        if cents > Price::MAX_CENTS as i128 {
            return Err(Error::invalid(
                Column::SoldPrice,
                None,
                format!(
                    "{} does not fit decimal(10,2) (max 99999999.99)",
                    Price::format_cents(cents)
                ),
            ));
        }
        Ok(cents)
    }

    /// The price in cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    fn format_cents(cents: i128) -> String {
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Price::format_cents(self.0 as i128))
    }
}

impl FromStr for Price {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(Column::SoldPrice, None, format!("`{s}`: {why}"));
        let t = s.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad("not a number"));
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("not a decimal number"));
        }
        if frac.len() > 2 {
            return Err(bad("more than 2 decimal places (would need rounding)"));
        }
        let int = int.trim_start_matches('0');
        if int.len() > 8 {
            return Err(bad("does not fit decimal(10,2) (max 99999999.99)"));
        }
        let whole: i128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad("not a number"))?
        };
        let frac_cents: i128 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i128>().map_err(|_| bad("not a number"))? * 10,
            _ => frac.parse().map_err(|_| bad("not a number"))?,
        };
        let cents = whole * 100 + frac_cents;
        let cents = if neg { -cents } else { cents };
        Price::check_cents(cents).map(|c| Price(c as i64))
    }
}

/// Quarter of the year in which a sale happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Season {
    /// January–March.
    Q1,
    /// April–June.
    Q2,
    /// July–September.
    Q3,
    /// October–December.
    Q4,
}

impl Season {
    /// The quarter containing `date`.
    pub fn of(date: DateTime<Utc>) -> Season {
        Season::of_month(date.month())
    }

    pub(crate) fn of_month(month: u32) -> Season {
        match month {
            1..=3 => Season::Q1,
            4..=6 => Season::Q2,
            7..=9 => Season::Q3,
            _ => Season::Q4,
        }
    }

    /// `"Q1"` … `"Q4"`, as stored in the table.
    pub const fn as_str(self) -> &'static str {
        match self {
            Season::Q1 => "Q1",
            Season::Q2 => "Q2",
            Season::Q3 => "Q3",
            Season::Q4 => "Q4",
        }
    }
}

impl fmt::Display for Season {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Season {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "Q1" => Ok(Season::Q1),
            "Q2" => Ok(Season::Q2),
            "Q3" => Ok(Season::Q3),
            "Q4" => Ok(Season::Q4),
            _ => Err(Error::invalid(
                Column::Season,
                None,
                format!("`{s}` is not one of Q1, Q2, Q3, Q4"),
            )),
        }
    }
}

/// One sale: a row of `sales_history`.
///
/// Build it with [`SaleRecord::builder`], which checks every value that does not depend on
/// the table (the embedding length is checked against the table at append time).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use sales_history::{SaleRecord, Season};
/// let sale = SaleRecord::builder("sku-1", "tenant-a", "19.99".parse()?,
///         Utc.with_ymd_and_hms(2025, 5, 4, 12, 0, 0).unwrap())
///     .category("shoes")
///     .brand("Acme")
///     .build()?;
/// assert_eq!(sale.season, Some(Season::Q2)); // derived from sold_date
/// # Ok::<(), sales_history::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SaleRecord {
    /// Product identifier (required, non-empty).
    pub product_id: String,
    /// Tenant identifier (required, non-empty).
    pub tenant_id: String,
    /// Product category.
    pub category: Option<String>,
    /// Product brand.
    pub brand: Option<String>,
    /// Product condition (e.g. `new`, `like_new`, `used`).
    pub condition: Option<String>,
    /// Sale price (required).
    pub sold_price: Price,
    /// When the sale happened (required, stored as a zone-less UTC timestamp in µs).
    pub sold_date: DateTime<Utc>,
    /// Quarter of `sold_date`.
    pub season: Option<Season>,
    /// S3 key of the product image.
    pub image_s3_key: Option<String>,
    /// Image embedding; its length must equal the table's embedding dimension.
    pub embedding: Option<Vec<f64>>,
    /// Product description.
    pub description: Option<String>,
    /// Where the record came from.
    pub source: Option<String>,
}

impl SaleRecord {
    /// Starts a record with its four required values.
    pub fn builder(
        product_id: impl Into<String>,
        tenant_id: impl Into<String>,
        sold_price: Price,
        sold_date: DateTime<Utc>,
    ) -> SaleRecordBuilder {
        SaleRecordBuilder {
            record: SaleRecord {
                product_id: product_id.into(),
                tenant_id: tenant_id.into(),
                category: None,
                brand: None,
                condition: None,
                sold_price,
                sold_date,
                season: None,
                image_s3_key: None,
                embedding: None,
                description: None,
                source: None,
            },
        }
    }

    /// Converts rows to one Arrow batch with the table's schema (field ids included).
    ///
    /// The batch is not validated against a table; appending it does that.
    pub fn to_record_batch(records: &[SaleRecord]) -> Result<arrow_array::RecordBatch> {
        crate::batch::records_to_batch(records)
    }

    /// Converts a batch holding all twelve columns (in any order) back to rows.
    pub fn from_record_batch(batch: &arrow_array::RecordBatch) -> Result<Vec<SaleRecord>> {
        crate::batch::batch_to_records(batch)
    }

    /// Checks every value that does not depend on the table; `row` is reported in errors.
    pub(crate) fn check(&self, row: Option<usize>) -> Result<()> {
        let at = |e: Error| match row {
            Some(r) => e.at_row(r),
            None => e,
        };
        check_text(Column::ProductId, &self.product_id).map_err(at)?;
        check_text(Column::TenantId, &self.tenant_id).map_err(at)?;
        for (col, v) in [
            (Column::Category, &self.category),
            (Column::Brand, &self.brand),
            (Column::Condition, &self.condition),
            (Column::ImageS3Key, &self.image_s3_key),
            (Column::Description, &self.description),
            (Column::Source, &self.source),
        ] {
            if let Some(v) = v {
                check_text(col, v).map_err(at)?;
            }
        }
        Price::check_cents(self.sold_price.cents() as i128).map_err(at)?;
        let micros = self.sold_date.timestamp_micros();
        check_sold_date(micros).map_err(at)?;
        if let Some(season) = self.season {
            check_season(season.as_str(), micros).map_err(at)?;
        }
        if let Some(e) = &self.embedding {
            check_embedding_values(e).map_err(at)?;
        }
        Ok(())
    }
}

/// Builder for [`SaleRecord`]; [`build`](SaleRecordBuilder::build) validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct SaleRecordBuilder {
    record: SaleRecord,
}

macro_rules! text_setters {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.record.$name = Some(value.into());
            self
        }
    )*};
}

impl SaleRecordBuilder {
    text_setters!(
        /// Sets the category.
        category,
        /// Sets the brand.
        brand,
        /// Sets the condition.
        condition,
        /// Sets the image S3 key.
        image_s3_key,
        /// Sets the description.
        description,
        /// Sets the source.
        source
    );

    /// Sets the season; it must agree with `sold_date` (derived from it when not set).
    pub fn season(mut self, season: Season) -> Self {
        self.record.season = Some(season);
        self
    }

    /// Sets the embedding vector.
    pub fn embedding(mut self, embedding: Vec<f64>) -> Self {
        self.record.embedding = Some(embedding);
        self
    }

    /// Validates and returns the record; `season` is derived from `sold_date` when unset.
    pub fn build(mut self) -> Result<SaleRecord> {
        self.record.check(None)?;
        if self.record.season.is_none() {
            self.record.season = Some(Season::of(self.record.sold_date));
        }
        Ok(self.record)
    }
}

/// Earliest accepted `sold_date`: 2000-01-01T00:00:00 UTC.
pub const MIN_SOLD_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("valid date"),
};

/// How far in the future a `sold_date` may lie (clock skew between services): one day.
pub const MAX_FUTURE_SKEW_MICROS: i64 = 86_400 * 1_000_000;

pub(crate) fn check_text(column: Column, value: &str) -> Result<()> {
    if column.is_required() && value.trim().is_empty() {
        return Err(Error::invalid(column, None, "must not be empty"));
    }
    if value.len() > column.max_len() {
        return Err(Error::invalid(
            column,
            None,
            format!(
                "{} bytes is longer than the limit of {}",
                value.len(),
                column.max_len()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_sold_date(micros: i64) -> Result<()> {
    let min = MIN_SOLD_DATE
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_micros())
        .unwrap_or(0);
    let max = Utc::now()
        .timestamp_micros()
        .saturating_add(MAX_FUTURE_SKEW_MICROS);
    if micros < min || micros > max {
        let shown = DateTime::<Utc>::from_timestamp_micros(micros)
            .map_or_else(|| format!("{micros} µs"), |d| d.to_rfc3339());
        return Err(Error::invalid(
            Column::SoldDate,
            None,
            format!("{shown} is outside the plausible window [{MIN_SOLD_DATE}, now + 1 day]"),
        ));
    }
    Ok(())
}

pub(crate) fn check_season(season: &str, sold_date_micros: i64) -> Result<()> {
    let season: Season = season.parse()?;
    let expected = DateTime::<Utc>::from_timestamp_micros(sold_date_micros).map(Season::of);
    if Some(season) != expected {
        return Err(Error::invalid(
            Column::Season,
            None,
            format!(
                "{season} contradicts sold_date (expected {})",
                expected.map_or("?", |s| s.as_str())
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_embedding_values(values: &[f64]) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            Column::Embedding,
            None,
            format!("element {i} is {} (values must be finite)", values[i]),
        ));
    }
    Ok(())
}

pub(crate) fn check_embedding_len(len: usize, dimension: usize) -> Result<()> {
    if len != dimension {
        return Err(Error::invalid(
            Column::Embedding,
            None,
            format!("has {len} values, the table's dimension is {dimension}"),
        ));
    }
    Ok(())
}

/// `n` valid rows for unit tests: tenant `t`, March 2025, prices from 1.00 up, embeddings of
/// `dim` distinct values.
#[cfg(test)]
pub(crate) fn test_rows(n: usize, dim: usize) -> Vec<SaleRecord> {
    use chrono::TimeZone;
    let date = Utc
        .with_ymd_and_hms(2025, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..n)
        .map(|i| {
            let price = Price::from_cents(100 + i as i64).unwrap_or(Price::ZERO);
            SaleRecord::builder(format!("p{i}"), "t", price, date)
                .embedding((0..dim).map(|j| (i * dim + j) as f64 / 7.0).collect())
                .build()
                .unwrap_or_else(|e| panic!("test row {i}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn price_parsing_is_exact() {
        assert_eq!("0".parse::<Price>().map(Price::cents).ok(), Some(0));
        assert_eq!("12.3".parse::<Price>().map(Price::cents).ok(), Some(1230));
        assert_eq!(".05".parse::<Price>().map(Price::cents).ok(), Some(5));
        assert_eq!(
            "99999999.99".parse::<Price>().map(Price::cents).ok(),
            Some(Price::MAX_CENTS)
        );
        for bad in ["12.345", "100000000", "-1", "", "1e3", "abc", "1.2.3", "."] {
            assert!(bad.parse::<Price>().is_err(), "{bad} accepted");
        }
        assert!(Price::from_cents(Price::MAX_CENTS + 1).is_err());
        assert!(Price::from_cents(-1).is_err());
    }

    #[test]
    fn season_is_derived_and_checked() {
        let d = Utc.with_ymd_and_hms(2024, 11, 2, 0, 0, 0).unwrap();
        let p = Price::from_cents(100).unwrap();
        let r = SaleRecord::builder("p", "t", p, d).build().unwrap();
        assert_eq!(r.season, Some(Season::Q4));
        let err = SaleRecord::builder("p", "t", p, d)
            .season(Season::Q1)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidValue {
                    column: Column::Season,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn builder_rejects_bad_values() {
        let d = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let p = Price::from_cents(100).unwrap();
        let cases = [
            (SaleRecord::builder(" ", "t", p, d), Column::ProductId),
            (SaleRecord::builder("p", "", p, d), Column::TenantId),
            (
                SaleRecord::builder("x".repeat(300), "t", p, d),
                Column::ProductId,
            ),
            (
                SaleRecord::builder(
                    "p",
                    "t",
                    p,
                    Utc.with_ymd_and_hms(1999, 12, 31, 0, 0, 0).unwrap(),
                ),
                Column::SoldDate,
            ),
            (
                SaleRecord::builder("p", "t", p, d).embedding(vec![0.0, f64::NAN]),
                Column::Embedding,
            ),
        ];
        for (b, col) in cases {
            match b.build() {
                Err(Error::InvalidValue { column, .. }) => assert_eq!(column, col),
                other => panic!("expected an error on {col}, got {other:?}"),
            }
        }
    }
}
