//! Source positions for exactly-once ingestion: [`SourcePosition`], stored in snapshot
//! summaries under `sales-history.position.<source>` and carried forward by every later commit.
//!
//! A position is a non-negative integer of any length (a line number, a Kinesis sequence
//! number of up to 128 digits, a Kafka offset), compared numerically. A commit stores, per
//! source, the highest position of the rows it adds, plus every position the current
//! snapshot's ancestry already carries (another engine's commits carry none), so expiring
//! old snapshots never loses one.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use iceberg::table::Table;

use crate::error::{Error, Result};

/// Snapshot-summary key prefix of a source's committed position.
pub const POSITION_PROPERTY_PREFIX: &str = "sales-history.position.";

/// Longest accepted source name, in bytes.
const MAX_SOURCE_LEN: usize = 200;
/// Longest accepted position, in digits.
const MAX_POSITION_DIGITS: usize = 128;

/// Where a row came from in an ordered source: the source's name (e.g. `stdin:events.jsonl`,
/// `kinesis:sales/shardId-000000000001`) and the row's position in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourcePosition {
    source: String,
    position: String,
}

impl SourcePosition {
    /// A position in `source`: a non-negative decimal integer (leading zeros are dropped).
    ///
    /// The source name: 1–200 printable ASCII characters without spaces. Errors are
    /// [`Error::Config`] naming `source` or `position`.
    pub fn new(source: impl Into<String>, position: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let position = position.into();
        if source.is_empty()
            || source.len() > MAX_SOURCE_LEN
            || !source.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::config(
                "source",
                format!(
                    "{source:?} must be 1-{MAX_SOURCE_LEN} printable ASCII characters without spaces"
                ),
            ));
        }
        if position.is_empty()
            || position.len() > MAX_POSITION_DIGITS
            || !position.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::config(
                "position",
                format!(
                    "{position:?} must be a non-negative integer of 1-{MAX_POSITION_DIGITS} digits"
                ),
            ));
        }
        let trimmed = position.trim_start_matches('0');
        let position = if trimmed.is_empty() { "0" } else { trimmed }.to_string();
        Ok(SourcePosition { source, position })
    }

    /// A numeric position (a line number, an offset).
    pub fn at(source: impl Into<String>, position: u64) -> Result<Self> {
        Self::new(source, position.to_string())
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The position, as decimal digits.
    pub fn position(&self) -> &str {
        &self.position
    }

    /// The position as a `u64`, when it fits.
    pub fn as_u64(&self) -> Option<u64> {
        self.position.parse().ok()
    }
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.source, self.position)
    }
}

/// Numeric order of two positions without leading zeros.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Highest position per source, as a commit stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Positions(BTreeMap<String, String>);

impl Positions {
    /// Keeps the higher of the stored and the given position of its source.
    pub(crate) fn advance(&mut self, p: &SourcePosition) {
        self.raise(&p.source, &p.position);
    }

    fn raise(&mut self, source: &str, position: &str) {
        match self.0.get_mut(source) {
            Some(old) if compare(position, old) != Ordering::Greater => {}
            Some(old) => *old = position.to_string(),
            None => {
                self.0.insert(source.to_string(), position.to_string());
            }
        }
    }

    /// Merges `other` in (the higher position per source wins).
    pub(crate) fn merge(&mut self, other: &Positions) {
        for (s, p) in &other.0 {
            self.raise(s, p);
        }
    }

    /// The positions the current snapshot's ancestry carries: per source, the highest any
    /// of its snapshots stores. Not the current snapshot's alone: a commit of another engine
    /// (an Athena `DELETE`, a pyiceberg append) carries none, and the next commit of ours
    /// would then store only its own sources; the others' positions would live on only in
    /// older snapshots, and be lost when those expire (a restart would ingest them again).
    pub(crate) fn of_ancestry(table: &Table) -> Positions {
        let mut out = Positions::default();
        for snapshot in ancestry(table) {
            for (k, v) in &snapshot.summary().additional_properties {
                if let Some(source) = k.strip_prefix(POSITION_PROPERTY_PREFIX) {
                    out.raise(source, v);
                }
            }
        }
        out
    }

    /// Summary properties: `sales-history.position.<source>` → position.
    pub(crate) fn properties(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0
            .iter()
            .map(|(s, p)| (format!("{POSITION_PROPERTY_PREFIX}{s}"), p.clone()))
    }
}

/// The committed position of `source` in `table`: the newest snapshot along the current
/// snapshot's ancestry whose summary carries it.
pub(crate) fn committed_in(table: &Table, source: &str) -> Option<SourcePosition> {
    let key = format!("{POSITION_PROPERTY_PREFIX}{source}");
    ancestry(table).into_iter().find_map(|snapshot| {
        let p = snapshot.summary().additional_properties.get(&key)?;
        Some(SourcePosition {
            source: source.to_string(),
            position: p.clone(),
        })
    })
}

/// The current snapshot and its ancestors, newest first (iceberg's `ancestors_of`), each at
/// most once: a parent chain that loops (corrupt metadata) ends after every snapshot.
fn ancestry(table: &Table) -> Vec<iceberg::spec::SnapshotRef> {
    let metadata = table.metadata_ref();
    let Some(current) = metadata.current_snapshot_id() else {
        return Vec::new();
    };
    iceberg::util::snapshot::ancestors_of(&metadata, current)
        .take(metadata.snapshots().len())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_numerically_at_any_length() {
        let long = "49590338271490256608559692538361571095921575989136588898";
        assert_eq!(compare("9", "10"), Ordering::Less);
        assert_eq!(compare(long, "9"), Ordering::Greater);
        let mut p = Positions::default();
        p.advance(&SourcePosition::at("a", 10).unwrap());
        p.advance(&SourcePosition::at("a", 9).unwrap());
        p.advance(&SourcePosition::new("b", long).unwrap());
        assert_eq!(p.0["a"], "10");
        assert_eq!(p.0["b"], long);
        assert_eq!(SourcePosition::new("a", "007").unwrap().position(), "7");
        assert!(SourcePosition::new("a", "-1").is_err());
        assert!(SourcePosition::new("has space", "1").is_err());
        assert!(SourcePosition::new("", "1").is_err());
    }
}
