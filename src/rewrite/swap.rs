//! Compare-and-swap of the table's metadata location, per catalog.
//!
//! - **SQLite** (the local catalog): `UPDATE iceberg_tables SET metadata_location = new,
//!   previous_metadata_location = old … WHERE … AND metadata_location = old`, the same row
//!   iceberg's and pyiceberg's SQL catalogs update; zero rows changed is a conflict.
//! - **Glue**: `GetTable` (the `VersionId` and the table as it is), then `UpdateTable` with that
//!   `VersionId` and a `TableInput` copied from the table, only `metadata_location` and
//!   `previous_metadata_location` changed. iceberg-catalog-glue's own table-input builder is
//!   private; copying keeps the typed StorageDescriptor columns, location, table type and
//!   every other parameter Athena reads exactly as the last commit left them.
//!
//! - **S3 Tables**: `GetTable` (the `versionToken` and the metadata location as it is), then
//!   `UpdateTableMetadataLocation` with that token; a `ConflictException` is a conflict.
//!
//! Custom catalogs are refused up front ([`supported`]).

use crate::catalog::CatalogConfig;
use crate::error::{Error, Result};
use crate::table::SalesHistory;

/// Why a swap did not happen (or may not have).
#[derive(Debug)]
pub(crate) enum SwapError {
    /// The table is not at the expected version any more: nothing changed.
    Conflict(String),
    /// The catalog throttled the request: nothing changed; worth retrying.
    #[cfg_attr(not(any(feature = "glue", feature = "s3tables")), allow(dead_code))]
    Throttled(String),
    /// The catalog refused: nothing changed.
    Refused(Error),
    /// The request may have been applied (no answer).
    #[cfg_attr(not(any(feature = "glue", feature = "s3tables")), allow(dead_code))]
    Unknown(Error),
}

/// What a table handle keeps between swaps: the Glue client (built once: the AWS config
/// loader resolves credentials and region).
#[derive(Default)]
pub(crate) struct SwapState {
    /// The local catalog's connection, opened on the first swap (dropped after an error).
    sqlite: tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
    #[cfg(feature = "glue")]
    glue: tokio::sync::OnceCell<aws_sdk_glue::Client>,
    #[cfg(feature = "s3tables")]
    s3tables: tokio::sync::OnceCell<aws_sdk_s3tables::Client>,
}

impl std::fmt::Debug for SwapState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwapState").finish_non_exhaustive()
    }
}

/// `Ok` when the table's catalog has a compare-and-swap this module implements.
pub(crate) fn supported(config: &CatalogConfig) -> Result<()> {
    match config {
        CatalogConfig::Local { .. } => Ok(()),
        #[cfg(feature = "glue")]
        CatalogConfig::Glue(_) => Ok(()),
        #[cfg(feature = "s3tables")]
        CatalogConfig::S3Tables(_) => Ok(()),
        CatalogConfig::Custom { .. } => Err(Error::Unsupported {
            operation: "rewrite commit (compact, delete_where)".into(),
            reason: "a custom catalog offers no compare-and-swap this crate can use; \
                     rewrites need the Local or Glue catalog configuration"
                .into(),
        }),
    }
}

/// Points the table at `new_location` if it still is at `expected`.
pub(crate) async fn swap(
    table: &SalesHistory,
    expected: &str,
    new_location: &str,
) -> std::result::Result<(), SwapError> {
    let ident = &table.shared.ident;
    let namespace = ident.namespace().join(".");
    match table.config() {
        CatalogConfig::Local { warehouse } => {
            let mut conn = table.shared.swap.sqlite.lock().await;
            let outcome = sqlite(
                &mut conn,
                warehouse,
                &namespace,
                ident.name(),
                expected,
                new_location,
            )
            .await;
            if matches!(outcome, Err(SwapError::Refused(_))) {
                *conn = None;
            }
            outcome
        }
        #[cfg(feature = "glue")]
        CatalogConfig::Glue(g) => {
            let client = table.shared.swap.glue.get_or_init(|| g.glue_client()).await;
            glue(client, g, &namespace, ident.name(), expected, new_location).await
        }
        #[cfg(feature = "s3tables")]
        CatalogConfig::S3Tables(t) => {
            let client = table
                .shared
                .swap
                .s3tables
                .get_or_init(|| t.s3tables_client())
                .await;
            s3tables(client, t, &namespace, ident.name(), expected, new_location).await
        }
        other => {
            Err(SwapError::Refused(supported(other).err().unwrap_or_else(
                || Error::internal("no swap for this catalog"),
            )))
        }
    }
}

async fn sqlite(
    conn: &mut Option<sqlx::SqliteConnection>,
    warehouse: &std::path::Path,
    namespace: &str,
    name: &str,
    expected: &str,
    new_location: &str,
) -> std::result::Result<(), SwapError> {
    use sqlx::ConnectOptions;
    let path = warehouse.join(crate::catalog::LOCAL_CATALOG_FILE);
    let failed = |what: &str, e: sqlx::Error| {
        let busy = matches!(&e, sqlx::Error::Database(d) if d.message().contains("locked") || d.message().contains("busy"));
        let error = Error::Catalog {
            message: format!("{what} the local catalog {}: {e}", path.display()),
            retryable: busy || matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut),
            source: Box::new(e),
        };
        if busy {
            SwapError::Conflict(format!("the local catalog is busy: {error}"))
        } else {
            SwapError::Refused(error)
        }
    };
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(false)
                .busy_timeout(std::time::Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| failed("opening", e))?,
        ),
    };
    let result = sqlx::query(
        "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
         WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
         AND metadata_location = ?",
    )
    .bind(new_location)
    .bind(expected)
    .bind(crate::catalog::LOCAL_CATALOG_NAME)
    .bind(namespace)
    .bind(name)
    .bind(expected)
    .execute(&mut *conn)
    .await
    .map_err(|e| failed("updating", e))?;
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(SwapError::Conflict(format!(
            "the table's metadata location is no longer {expected}"
        )))
    }
}

/// A failed read before the swap (nothing changed): retryable unless the service answered
/// with something other than throttling.
#[cfg(any(feature = "glue", feature = "s3tables"))]
fn read_failed<E>(what: String, e: AwsSdkError<E>) -> SwapError
where
    E: AwsErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().map(str::to_string);
    let answered = matches!(e, AwsSdkError::ServiceError(_));
    let retryable = !answered
        || code
            .as_deref()
            .is_some_and(crate::classify::is_throttling_code);
    SwapError::Refused(Error::Catalog {
        message: format!("{what}: {}", code.as_deref().unwrap_or("no answer")),
        retryable,
        source: Box::new(e),
    })
}

/// What a failed update means, from the service's answer (`None`: no answer at all): the
/// service's conflict, a server error (may have been applied), throttling, or a refusal.
#[cfg(any(feature = "glue", feature = "s3tables"))]
fn update_failed(
    what: String,
    answer: Option<(&str, u16)>,
    conflict: bool,
    source: crate::error::BoxError,
) -> SwapError {
    match answer {
        _ if conflict => SwapError::Conflict(format!("{what}: refused as stale")),
        Some((code, status))
            if status >= 500 || code == "InternalServiceException" || code == "InternalFailure" =>
        {
            SwapError::Unknown(Error::Catalog {
                message: format!("{what}: {code}"),
                retryable: true,
                source,
            })
        }
        Some((code, _)) if crate::classify::is_throttling_code(code) => {
            SwapError::Throttled(format!("{what}: throttled ({code})"))
        }
        Some((code, _)) => SwapError::Refused(Error::Catalog {
            message: format!("{what}: {code}"),
            retryable: false,
            source,
        }),
        None => SwapError::Unknown(Error::Catalog {
            message: format!("{what}: no answer"),
            retryable: true,
            source,
        }),
    }
}

#[cfg(feature = "glue")]
use aws_sdk_glue::error::{ProvideErrorMetadata as AwsErrorMetadata, SdkError as AwsSdkError};
#[cfg(all(feature = "s3tables", not(feature = "glue")))]
use aws_sdk_s3tables::error::{ProvideErrorMetadata as AwsErrorMetadata, SdkError as AwsSdkError};

/// The outcome of an AWS update call as a swap outcome; `is_conflict` recognises the
/// service's "stale version" error.
#[cfg(any(feature = "glue", feature = "s3tables"))]
fn update_outcome<O, E>(
    what: String,
    answer: std::result::Result<O, AwsSdkError<E>>,
    is_conflict: impl Fn(&E) -> bool,
) -> std::result::Result<(), SwapError>
where
    E: AwsErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match answer {
        Ok(_) => Ok(()),
        Err(AwsSdkError::ServiceError(e)) => {
            let code = e.err().code().unwrap_or("unknown").to_string();
            let status = e.raw().status().as_u16();
            let err = e.into_err();
            let conflict = is_conflict(&err);
            Err(update_failed(
                what,
                Some((&code, status)),
                conflict,
                Box::new(err),
            ))
        }
        Err(other) => Err(update_failed(what, None, false, Box::new(other))),
    }
}

#[cfg(feature = "glue")]
async fn glue(
    client: &aws_sdk_glue::Client,
    config: &crate::catalog::GlueConfig,
    database: &str,
    name: &str,
    expected: &str,
    new_location: &str,
) -> std::result::Result<(), SwapError> {
    use aws_sdk_glue::operation::update_table::UpdateTableError;
    use aws_sdk_glue::types::TableInput;

    let got = client
        .get_table()
        .set_catalog_id(config.catalog_id.clone())
        .database_name(database)
        .name(name)
        .send()
        .await
        .map_err(|e| read_failed(format!("Glue GetTable {database}.{name}"), e))?;
    let current = got
        .table()
        .ok_or_else(|| SwapError::Refused(Error::internal("Glue GetTable answered no table")))?;
    // Without a VersionId the update would not be conditional.
    let Some(version_id) = current.version_id().map(str::to_string) else {
        return Err(SwapError::Refused(Error::Catalog {
            message: format!("Glue GetTable {database}.{name}: no VersionId to update against"),
            retryable: false,
            source: "missing VersionId".into(),
        }));
    };
    let mut parameters = current.parameters().cloned().unwrap_or_default();
    let at = parameters.get("metadata_location").map(String::as_str);
    if at != Some(expected) {
        return Err(SwapError::Conflict(format!(
            "the Glue table points at {} instead of {expected}",
            at.unwrap_or("no metadata")
        )));
    }
    parameters.insert("metadata_location".into(), new_location.into());
    parameters.insert("previous_metadata_location".into(), expected.into());
    let input = TableInput::builder()
        .name(current.name())
        .set_description(current.description().map(str::to_string))
        .set_owner(current.owner().map(str::to_string))
        .set_retention(Some(current.retention()))
        .set_storage_descriptor(current.storage_descriptor().cloned())
        .set_partition_keys(Some(current.partition_keys().to_vec()))
        .set_table_type(current.table_type().map(str::to_string))
        .set_parameters(Some(parameters))
        .build()
        .map_err(|e| {
            SwapError::Refused(Error::internal(format!(
                "building the Glue TableInput: {e}"
            )))
        })?;
    let answer = client
        .update_table()
        .set_catalog_id(config.catalog_id.clone())
        .database_name(database)
        .skip_archive(true)
        .table_input(input)
        .version_id(version_id)
        .send()
        .await;
    update_outcome(format!("Glue UpdateTable {database}.{name}"), answer, |e| {
        matches!(e, UpdateTableError::ConcurrentModificationException(_))
    })
}

#[cfg(feature = "s3tables")]
async fn s3tables(
    client: &aws_sdk_s3tables::Client,
    config: &crate::catalog::S3TablesConfig,
    namespace: &str,
    name: &str,
    expected: &str,
    new_location: &str,
) -> std::result::Result<(), SwapError> {
    use aws_sdk_s3tables::operation::update_table_metadata_location::UpdateTableMetadataLocationError;
    let got = client
        .get_table()
        .table_bucket_arn(&config.table_bucket_arn)
        .namespace(namespace)
        .name(name)
        .send()
        .await
        .map_err(|e| read_failed(format!("S3 Tables GetTable {namespace}.{name}"), e))?;
    let at = got.metadata_location();
    if at != Some(expected) {
        return Err(SwapError::Conflict(format!(
            "the S3 table points at {} instead of {expected}",
            at.unwrap_or("no metadata")
        )));
    }
    let answer = client
        .update_table_metadata_location()
        .table_bucket_arn(&config.table_bucket_arn)
        .namespace(namespace)
        .name(name)
        .version_token(got.version_token())
        .metadata_location(new_location)
        .send()
        .await;
    update_outcome(
        format!("S3 Tables UpdateTableMetadataLocation {namespace}.{name}"),
        answer,
        |e| matches!(e, UpdateTableMetadataLocationError::ConflictException(_)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQLite compare-and-swap is enforced: a swap from a location the table is not at
    /// changes nothing; from the right one it moves the table.
    #[tokio::test]
    async fn the_sqlite_swap_refuses_a_stale_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CatalogConfig::local(dir.path());
        let table = SalesHistory::ensure(&config, "cas").await.expect("ensure");
        let current = table
            .iceberg_table()
            .metadata_location()
            .expect("location")
            .to_string();
        let stale = format!("{current}.stale");
        let outcome = swap(&table, &stale, "file:///elsewhere.metadata.json").await;
        assert!(
            matches!(outcome, Err(SwapError::Conflict(_))),
            "{outcome:?}"
        );
        table.refresh().await.expect("refresh");
        assert_eq!(
            table.iceberg_table().metadata_location(),
            Some(current.as_str())
        );
        // The right expected location swaps (to a copy of the same metadata, so it loads).
        let copy = current.replace(".metadata.json", "-copy.metadata.json");
        let io = table.iceberg_table().file_io().clone();
        let bytes = io.new_input(&current).unwrap().read().await.unwrap();
        io.new_output(&copy).unwrap().write(bytes).await.unwrap();
        swap(&table, &current, &copy)
            .await
            .expect("swap from the current location");
        table.refresh().await.expect("refresh");
        assert_eq!(
            table.iceberg_table().metadata_location(),
            Some(copy.as_str())
        );
    }
}
