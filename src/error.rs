//! The crate's one error type.
//!
//! Errors of the libraries underneath (iceberg, the catalogs, the object store) never appear in
//! this API as types: they are turned into one of our kinds here, in one place, and stay
//! reachable through [`std::error::Error::source`] for logging.

use crate::schema::Column;

/// A boxed underlying error, kept as the [`source`](std::error::Error::source) of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong when using this crate.
///
/// Every variant carries enough context (column, row index, table, key) for a caller to act on
/// it. [`Error::is_retryable`] says whether trying the same call again may succeed.
///
/// How errors of the layers underneath are classified (the same on every path: ensure, open,
/// append, scan, refresh, sql, maintenance):
///
/// | source | → kind | retryable |
/// |---|---|---|
/// | iceberg `CatalogCommitConflicts` | [`Error::Catalog`] (a commit: [`Error::CommitConflict`]) | yes |
/// | AWS throttling (`ThrottlingException`, `SlowDown`, …; text) | [`Error::Catalog`] / [`Error::Storage`] | yes |
/// | connection refused / reset, DNS, timeouts (`dispatch failure`, …; text) | [`Error::Unavailable`] | yes |
/// | OpenDAL `RateLimited`, status temporary or persistent (retries exhausted) | [`Error::Storage`] | yes |
/// | OpenDAL `PermissionDenied`, `NotFound`, `ConfigInvalid`, other permanent | [`Error::Storage`] | no |
/// | S3 `NoSuchBucket` (text) | [`Error::Config`] on `warehouse` | no |
/// | AWS `AccessDenied*` (text) | [`Error::Catalog`] / [`Error::Storage`] | no |
/// | `sqlx` pool timeout, I/O, SQLite busy/locked | [`Error::Catalog`] | yes |
/// | iceberg `TableNotFound`/`NamespaceNotFound`, Glue `EntityNotFoundException` (text) | [`Error::TableNotFound`] where the table is known, else [`Error::Catalog`] | no |
/// | anything else | [`Error::Catalog`] (no storage error in the chain) or [`Error::Storage`] | iceberg's own `retryable()` |
/// | a commit whose answer was lost and whose table cannot be re-read | [`Error::CommitStateUnknown`] | yes, with the same commit id |
/// | bad rows or batches, drift, configuration | [`Error::InvalidValue`], [`Error::BatchSchemaMismatch`], [`Error::SchemaDrift`], [`Error::Config`] | no |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value in a row is not acceptable for its column. Nothing was written.
    #[error("invalid value in column `{column}`{}: {reason}", row_suffix(*.row))]
    InvalidValue {
        /// The column holding the bad value.
        column: Column,
        /// Index of the row within the append (or batch) when the value came from one.
        row: Option<usize>,
        /// What is wrong with the value.
        reason: String,
    },

    /// A caller-built Arrow batch does not have the table's shape (a missing, extra or
    /// mistyped column). Nothing was written.
    #[error("record batch {batch} does not match the sales_history schema: {}", .differences.join("; "))]
    BatchSchemaMismatch {
        /// Index of the offending batch within the append.
        batch: usize,
        /// One entry per difference, each naming the column.
        differences: Vec<String>,
    },

    /// The existing table disagrees with the schema, partition spec or properties this crate
    /// writes. Nothing was changed.
    #[error("table `{table}` has drifted from the sales_history layout: {}", .differences.join("; "))]
    SchemaDrift {
        /// The table that was inspected.
        table: String,
        /// One entry per difference.
        differences: Vec<String>,
    },

    /// A configuration value (stage, warehouse, catalog option, commit id) is malformed.
    #[error("invalid configuration `{key}`: {reason}")]
    Config {
        /// The configuration key or argument at fault.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The table (or its namespace) does not exist; use [`SalesHistory::ensure`](crate::SalesHistory::ensure) to create it.
    #[error("table `{table}` does not exist")]
    TableNotFound {
        /// The fully qualified table name.
        table: String,
    },

    /// The requested snapshot is not in the table's history.
    #[error("snapshot {snapshot_id} does not exist in table `{table}`")]
    SnapshotNotFound {
        /// The table that was inspected.
        table: String,
        /// The snapshot id that was asked for.
        snapshot_id: i64,
    },

    /// A concurrent writer kept winning: the commit was retried until the retry budget ran out.
    /// The table is unchanged by this append; it is safe to try again.
    #[error("commit conflict on table `{table}` persisted after retries: {source}")]
    CommitConflict {
        /// The table being committed to.
        table: String,
        /// The last error the catalog returned.
        #[source]
        source: BoxError,
    },

    /// The catalog or the storage could not be reached (connection refused, DNS, timeout).
    /// Retryable; check the endpoint, region and network if it persists.
    #[error("cannot reach {service}: {reason}")]
    Unavailable {
        /// What could not be reached (e.g. the Glue endpoint).
        service: String,
        /// The underlying failure, without credentials.
        reason: String,
    },

    /// The catalog commit failed in a way that leaves its outcome unknown (a lost answer, a
    /// timeout) and the table could not be re-read to find out. The data files were kept.
    /// Retry the append with the same commit id ([`Append::commit_id`](crate::Append::commit_id)):
    /// it reports [`AppendOutcome::AlreadyCommitted`](crate::AppendOutcome::AlreadyCommitted)
    /// if the first attempt landed, and appends otherwise.
    #[error("commit {commit_id} to `{table}` has an unknown outcome: {source}")]
    CommitStateUnknown {
        /// The table being committed to.
        table: String,
        /// The commit id to retry with.
        commit_id: String,
        /// The error the commit returned.
        #[source]
        source: BoxError,
    },

    /// The catalog does not let clients do this (e.g. S3 Tables manages file deletion itself);
    /// the reason says what to use instead. Not retryable.
    #[error("`{operation}` is not available here: {reason}")]
    Unsupported {
        /// The operation asked for.
        operation: String,
        /// Why, and what to use instead.
        reason: String,
    },

    /// A vector index file of the table ([`SalesHistory::index_embeddings`](crate::SalesHistory::index_embeddings))
    /// is unreadable or does not describe this table. Searches never fail with it: they fall
    /// back to the exact scan for the files it covers (and count the fallback); an index
    /// build reports it and writes a fresh index. Not retryable.
    #[error("vector index is unusable: {reason}")]
    CorruptIndex {
        /// What is wrong, and with which part.
        reason: String,
    },

    /// A SQL statement (feature `sql`) failed to parse, plan or run.
    #[error("SQL query failed: {reason}")]
    Query {
        /// DataFusion's message.
        reason: String,
    },

    /// The catalog failed or refused a request (other than the cases with their own kind:
    /// [`TableNotFound`](Error::TableNotFound), [`CommitConflict`](Error::CommitConflict), …).
    /// [`is_retryable`](Error::is_retryable) says whether trying again may help.
    #[error("catalog request failed: {message}")]
    Catalog {
        /// What failed, in words.
        message: String,
        /// Whether the failure is transient (throttling, a timeout, a 5xx answer).
        retryable: bool,
        /// The catalog library's error.
        #[source]
        source: BoxError,
    },

    /// Reading or writing the table's files (data, manifests, metadata) failed.
    #[error("storage request failed: {message}")]
    Storage {
        /// What failed, in words.
        message: String,
        /// Whether the failure is transient (throttling, a timeout, a dropped connection).
        retryable: bool,
        /// The storage layer's error.
        #[source]
        source: BoxError,
    },

    /// An error from Arrow while building or converting batches.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),

    /// An error from the Parquet encoder or decoder.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),

    /// A local file-system error (creating the warehouse directory, ...).
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Results of the iceberg crates, turned into ours (`.or_ours()?` where `?` alone was).
pub(crate) trait IcebergResultExt<T> {
    /// The result with an iceberg error classified into one of our kinds.
    fn or_ours(self) -> Result<T>;
}

impl<T> IcebergResultExt<T> for std::result::Result<T, iceberg::Error> {
    fn or_ours(self) -> Result<T> {
        self.map_err(Error::from_iceberg)
    }
}

fn row_suffix(row: Option<usize>) -> String {
    match row {
        Some(r) => format!(" at row {r}"),
        None => String::new(),
    }
}

impl Error {
    /// `true` when repeating the same call may succeed: commit conflicts, throttling,
    /// timeouts, dropped connections, 5xx answers, and [`CommitStateUnknown`](Error::CommitStateUnknown)
    /// (retry with the same commit id: it appends at most once). `false` for access denied, a
    /// missing bucket or table, bad input, drift and configuration errors. The table in the
    /// [`Error`] docs says which underlying error becomes which kind.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::CommitConflict { .. }
            | Error::Unavailable { .. }
            | Error::CommitStateUnknown { .. } => true,
            Error::Catalog { retryable, .. } | Error::Storage { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Classifies an error of the iceberg crates (see [`crate::classify`]).
    pub(crate) fn from_iceberg(e: iceberg::Error) -> Self {
        crate::classify::from_iceberg(e)
    }

    /// An unexpected internal failure (a task that panicked): not retryable.
    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        Error::Storage {
            message: what.to_string(),
            retryable: false,
            source: what.to_string().into(),
        }
    }

    pub(crate) fn corrupt_index(reason: impl Into<String>) -> Self {
        Error::CorruptIndex {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(column: Column, row: Option<usize>, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            column,
            row,
            reason: reason.into(),
        }
    }

    #[cfg(feature = "s3tables")]
    pub(crate) fn managed_by_s3_tables(operation: &str, reason: &str) -> Self {
        Error::Unsupported {
            operation: operation.to_string(),
            reason: format!("managed by S3 Tables: {reason}"),
        }
    }

    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Attaches a row index to a value error raised without one.
    pub(crate) fn at_row(self, row: usize) -> Self {
        match self {
            Error::InvalidValue { column, reason, .. } => Error::InvalidValue {
                column,
                row: Some(row),
                reason,
            },
            other => other,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
