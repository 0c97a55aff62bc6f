//! The catalog seam of the commit loop: one [`MetadataSwap`] per catalog.
//!
//! # The contract (every implementation keeps it)
//!
//! A swap moves the table from the version an attempt read to the version it staged, **only if
//! the table is still at the version the attempt read**. Its answer says what happened:
//!
//! - `Ok` — the table is at the staged version now;
//! - [`SwapError::Conflict`] / [`SwapError::Throttled`] — **nothing changed** (another commit got
//!   there first, or the catalog refused to look); worth re-validating and trying again;
//! - [`SwapError::Refused`] — **nothing changed** (access denied, a malformed request, …); not
//!   worth trying again, though an SDK-internal retry of the same request may have landed, which
//!   the loop checks by commit id;
//! - [`SwapError::Unknown`] — the request **may have been applied** (no answer, a 5xx): the
//!   loop settles it by looking for the commit id, and keeps every file until it knows.
//!
//! Each swap maps its backend's answers to these kinds itself (as object_store's stores map
//! their conditional-write refusals to one shared error), interpreting the backend's errors
//! through [`crate::classify`], the one place where they are read.
//!
//! | catalog | how it swaps | module |
//! |---|---|---|
//! | SQLite (local) | `UPDATE iceberg_tables … WHERE metadata_location = expected` | [`sqlite`] |
//! | Glue | `UpdateTable` with the `VersionId` read, `TableInput` copied (Athena's fields kept) | [`glue`] |
//! | S3 Tables | `UpdateTableMetadataLocation` with the version token read | [`s3tables`] |
//! | custom catalogs | iceberg's `Catalog::update_table` (appends and snapshot expiry only) | [`update_table`] |
//!
//! The first three take a staged metadata file ([`Proposal::Location`]); a custom catalog
//! writes its metadata file itself inside `update_table`, so it takes the change as iceberg's
//! own action ([`Proposal::Append`], [`Proposal::Expire`]) and cannot do rewrites (iceberg
//! 0.10.1 has no replace/overwrite/delete action and its `TableCommit` cannot be built outside
//! the crate).

#[cfg(feature = "fault-injection")]
pub(crate) mod faulty;
#[cfg(feature = "glue")]
pub(crate) mod glue;
#[cfg(feature = "s3tables")]
pub(crate) mod s3tables;
pub(crate) mod sqlite;
pub(crate) mod update_table;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::TableIdent;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use crate::catalog::{CatalogConfig, GuardedCatalog};
use crate::error::Error;

/// Why a swap did not happen (or may not have); see the [module docs](self) for the contract.
#[derive(Debug)]
pub(crate) enum SwapError {
    /// The table is not at the expected version any more: nothing changed.
    Conflict(String),
    /// The catalog throttled the request (or was busy): nothing changed; worth retrying.
    Throttled(String),
    /// The catalog refused: nothing changed (unless an earlier try of the same request landed).
    Refused(Error),
    /// The request may have been applied (no answer, a server error).
    Unknown(Error),
}

/// What an attempt asks the catalog to do.
#[derive(Debug)]
pub(crate) enum Proposal<'a> {
    /// Point the table at the staged metadata file `staged` iff it is at `expected`.
    Location {
        /// The table.
        ident: &'a TableIdent,
        /// The metadata location the attempt read.
        expected: &'a str,
        /// The metadata file the attempt wrote.
        staged: &'a str,
    },
    /// Add `files` as one append snapshot on `base` (with these summary properties), through
    /// iceberg's own action (custom catalogs).
    Append {
        /// The version the attempt read.
        base: &'a Table,
        /// The data files.
        files: &'a [DataFile],
        /// Extra summary properties (commit id, writer, source positions).
        properties: HashMap<String, String>,
    },
    /// Remove these snapshots from `base`'s metadata through iceberg's own action (which
    /// applies its own age cut-off and minimum count: given as the expiry's own).
    Expire {
        /// The version the attempt read.
        base: &'a Table,
        /// The snapshots to remove.
        snapshot_ids: &'a [i64],
        /// The expiry's cut-off (milliseconds since the epoch; `i64::MAX`: any age).
        older_than_ms: i64,
        /// The most recent snapshots the expiry keeps.
        retain_last: usize,
    },
}

/// What a successful swap left.
#[derive(Debug)]
pub(crate) enum Swapped {
    /// The table is at the staged location (the loop builds the new version from what it staged).
    AtStaged,
    /// The catalog built and returned the new version itself.
    Table(Box<Table>),
}

/// One catalog's compare-and-swap of the table version (see the [module docs](self)).
#[async_trait]
pub(crate) trait MetadataSwap: Send + Sync + std::fmt::Debug {
    /// Whether this swap takes a staged metadata file ([`Proposal::Location`]); `false`: it
    /// takes the change as iceberg's own action.
    fn takes_staged_metadata(&self) -> bool {
        true
    }

    /// Whether this crate may delete objects in the table's storage (not on S3 Tables, whose
    /// service owns deletion).
    fn may_delete_files(&self) -> bool {
        true
    }

    /// What this catalog cannot do, for an operation's refusal; `None`: everything.
    fn refuses(&self, _proposal: &str) -> Option<String> {
        None
    }

    /// Called before each staged write (manifest, manifest list, metadata file): the seam where
    /// the fault-injection wrapper fails a staged write; real swaps never refuse.
    fn check_staged_write(&self, _what: &str) -> Result<(), Error> {
        Ok(())
    }

    /// Performs the proposal if the table is still where the attempt read it.
    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError>;

    /// Where the catalog has the table's metadata now, asked more cheaply than loading the
    /// table: one row (SQLite) or one `GetTable` (Glue, S3 Tables), no `metadata.json` read or
    /// parsed. `None`: this catalog cannot say, or the probe failed; the caller loads the table
    /// (and meets any real error there, classified as every load is).
    ///
    /// [`SalesHistory::refresh`](crate::SalesHistory::refresh) uses it: a metadata file never
    /// changes once written, so a catalog still at the location a handle holds means nothing
    /// to reload, and a new location is read directly.
    async fn current_location(&self, _ident: &TableIdent) -> Option<String> {
        None
    }
}

/// The swap of a catalog configuration.
pub(crate) fn for_config(
    config: &CatalogConfig,
    catalog: &Arc<GuardedCatalog>,
) -> Arc<dyn MetadataSwap> {
    match config {
        CatalogConfig::Local { warehouse } => Arc::new(sqlite::SqliteSwap::new(warehouse)),
        #[cfg(feature = "glue")]
        CatalogConfig::Glue(g) => Arc::new(glue::GlueSwap::new(g.clone())),
        #[cfg(feature = "s3tables")]
        CatalogConfig::S3Tables(t) => Arc::new(s3tables::S3TablesSwap::new(t.clone())),
        CatalogConfig::Custom { .. } => {
            Arc::new(update_table::UpdateTableSwap::new(catalog.clone()))
        }
    }
}

/// A failed read before an AWS update (nothing changed): retryable unless the service
/// answered with something other than throttling or a server error.
#[cfg(any(feature = "glue", feature = "s3tables"))]
pub(crate) fn read_failed<E>(what: String, e: aws::SdkError<E>) -> SwapError
where
    E: aws::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, status) = match &e {
        aws::SdkError::ServiceError(s) => (
            s.err().code().map(str::to_string),
            Some(s.raw().status().as_u16()),
        ),
        _ => (None, None),
    };
    let retryable = crate::classify::aws_answer(code.as_deref(), status).is_retryable();
    let message = format!("{what}: {}", code.as_deref().unwrap_or("no answer"));
    if retryable {
        // Nothing was changed (only a read failed): back off and try again, like throttling.
        return SwapError::Throttled(message);
    }
    SwapError::Refused(Error::Catalog {
        message,
        retryable,
        source: Box::new(e),
    })
}

/// The outcome of an AWS update call as a swap outcome; `is_conflict` recognises the
/// service's "stale version" error. What each answer means is [`crate::classify::aws_answer`]'s.
#[cfg(any(feature = "glue", feature = "s3tables"))]
pub(crate) fn update_outcome<O, E>(
    what: String,
    answer: std::result::Result<O, aws::SdkError<E>>,
    is_conflict: impl Fn(&E) -> bool,
) -> std::result::Result<Swapped, SwapError>
where
    E: aws::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use crate::classify::AwsAnswer;
    match answer {
        Ok(_) => Ok(Swapped::AtStaged),
        Err(aws::SdkError::ServiceError(e)) => {
            let code = e.err().code().unwrap_or("unknown").to_string();
            let status = e.raw().status().as_u16();
            let err = e.into_err();
            if is_conflict(&err) {
                return Err(SwapError::Conflict(format!(
                    "{what}: refused as stale ({code})"
                )));
            }
            let catalog = |retryable| Error::Catalog {
                message: format!("{what}: {code}"),
                retryable,
                source: Box::new(err),
            };
            Err(
                match crate::classify::aws_answer(Some(&code), Some(status)) {
                    AwsAnswer::ServerError => SwapError::Unknown(catalog(true)),
                    AwsAnswer::Throttled => {
                        SwapError::Throttled(format!("{what}: throttled ({code})"))
                    }
                    AwsAnswer::Denied | AwsAnswer::NotFound | AwsAnswer::Refused => {
                        SwapError::Refused(catalog(false))
                    }
                },
            )
        }
        // No answer (dispatch failure, timeout, a response that could not be read).
        Err(other) => Err(SwapError::Unknown(Error::Catalog {
            message: format!("{what}: no answer"),
            retryable: true,
            source: Box::new(other),
        })),
    }
}

/// The AWS SDK error types the swaps share (Glue's and S3 Tables' are the same smithy types).
#[cfg(any(feature = "glue", feature = "s3tables"))]
pub(crate) mod aws {
    #[cfg(feature = "glue")]
    pub(crate) use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
    #[cfg(all(feature = "s3tables", not(feature = "glue")))]
    pub(crate) use aws_sdk_s3tables::error::{ProvideErrorMetadata, SdkError};
}
