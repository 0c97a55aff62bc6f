//! Whole numbers on the command line, with messages that say what is wrong.
//!
//! Use as a clap value parser: `#[arg(long, value_parser = number::parse::<usize>)]`, or with
//! a `NonZero*` type for "at least 1". `_` may separate digits: `100_000`.

use std::num::{IntErrorKind, ParseIntError};
use std::str::FromStr;

/// Parses a whole number of type `T` (any unsigned integer or `NonZero*` type).
pub fn parse<T: FromStr<Err = ParseIntError>>(text: &str) -> Result<T, String> {
    let digits = text.trim().replace('_', "");
    digits.parse().map_err(|e: ParseIntError| match e.kind() {
        IntErrorKind::Empty => "empty: give a whole number".to_string(),
        IntErrorKind::Zero => "must be at least 1".to_string(),
        IntErrorKind::PosOverflow => format!("`{text}` is too large"),
        _ => format!("`{text}` is not a whole number"),
    })
}
