//! [`Month`]: the value of the table's one partition field, `month(sold_date)`.
//!
//! Iceberg's `month` transform counts months since 1970-01. Every place that turns a timestamp
//! into a partition, a partition into a time range or a directory name (append, scan pruning,
//! verify, sample data) goes through this type.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// A calendar month in UTC, as Iceberg's `month` transform numbers it (months since 1970-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month(i32);

impl Month {
    /// The month with this ordinal (months since 1970-01; negative before 1970).
    pub(crate) const fn from_ordinal(ordinal: i32) -> Self {
        Month(ordinal)
    }

    /// The month of `year`-`month` (1–12); `None` when `month` is not 1–12.
    pub(crate) fn from_year_month(year: i32, month: u32) -> Option<Self> {
        if !(1..=12).contains(&month) {
            return None;
        }
        let ordinal = (i64::from(year) - 1970) * 12 + i64::from(month) - 1;
        i32::try_from(ordinal).ok().map(Month)
    }

    /// The month holding a timestamp in microseconds since the epoch (UTC), as Iceberg's
    /// `month` transform computes it.
    pub(crate) fn of_micros(micros: i64) -> Self {
        let date = DateTime::from_timestamp_micros(micros).unwrap_or_default();
        Month((date.year() - 1970) * 12 + date.month0() as i32)
    }

    /// Months since 1970-01 (the partition value).
    pub(crate) const fn ordinal(self) -> i32 {
        self.0
    }

    /// The calendar year.
    pub(crate) const fn year(self) -> i32 {
        1970 + self.0.div_euclid(12)
    }

    /// The calendar month, 1–12.
    pub(crate) const fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    /// The next month.
    pub(crate) const fn next(self) -> Self {
        Month(self.0.saturating_add(1))
    }

    /// The first day of the month.
    pub(crate) fn first_day(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1)
    }

    /// The first microsecond of the month (UTC), `None` outside chrono's range.
    pub(crate) fn start_micros(self) -> Option<i64> {
        let start = self.first_day()?.and_hms_opt(0, 0, 0)?;
        Some(DateTime::<Utc>::from_naive_utc_and_offset(start, Utc).timestamp_micros())
    }

    /// The first microsecond after the month (the start of the next).
    pub(crate) fn end_micros(self) -> Option<i64> {
        self.next().start_micros()
    }
}

/// `YYYY-MM`.
impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_match_icebergs_month_transform() {
        // 2024-03-15 → (2024-1970)*12 + 2 = 650
        let m = Month::of_micros(1_710_460_800_000_000);
        assert_eq!(m.ordinal(), 650);
        assert_eq!(m.to_string(), "2024-03");
        assert_eq!(Month::of_micros(0).ordinal(), 0);
        assert_eq!(Month::of_micros(-1).to_string(), "1969-12");
        assert_eq!(Month::from_year_month(2024, 3), Some(m));
        assert_eq!(Month::from_year_month(2024, 13), None);
    }

    #[test]
    fn ranges_are_half_open_and_adjacent() {
        let dec = Month::from_year_month(2024, 12).unwrap();
        let jan = dec.next();
        assert_eq!(jan.to_string(), "2025-01");
        assert_eq!(dec.end_micros(), jan.start_micros());
        let start = dec.start_micros().unwrap();
        assert_eq!(Month::of_micros(start), dec);
        assert_eq!(Month::of_micros(start - 1).to_string(), "2024-11");
    }
}
