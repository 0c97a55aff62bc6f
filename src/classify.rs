//! The one place where errors of the crates underneath are interpreted: iceberg's error kinds,
//! OpenDAL's error kinds and status, `sqlx` database errors, and — only where a crate flattens
//! an error to text — text markers, each commented with the crate and version that needs it.
//!
//! Which underlying error becomes which of our kinds is the table in the [`Error`] docs (written
//! there once). The commit loop's swaps ([`crate::catalog::swap`]) read their backends' answers
//! through the same functions: [`aws_answer`] for an AWS error code and status, [`sqlite_busy`]
//! and [`sqlx_retryable`] for SQLite.
//!
//! "Already exists" (a concurrent creator won) is recognised by [`already_exists`]: iceberg's
//! `*AlreadyExists` kinds, a `sqlx` unique violation (iceberg-catalog-sql 0.10.1 reports a
//! concurrent insert as `Unexpected` with the `sqlx::Error` as source), Glue's
//! `AlreadyExistsException` (iceberg-catalog-glue 0.10.1 flattens it to Debug text) and S3
//! Tables' `ConflictException` "already exists" (iceberg-catalog-s3tables 0.10.1, the same).

use std::error::Error as StdError;

use iceberg::ErrorKind;

use crate::error::Error;

/// AWS throttling and temporary unavailability: the request was not processed; retryable.
/// Text markers too: iceberg-catalog-glue 0.10.1 turns every AWS SDK error into `Unexpected`
/// carrying only the SDK's Debug text.
const THROTTLING_MARKERS: &[&str] = &[
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceUnavailable",
    "RequestThrottled",
    // Glue: a resource not ready for a transaction, a federated source to retry (not
    // processed; AWS documents both as retryable).
    "ResourceNotReadyException",
    "FederationSourceRetryableException",
];

/// AWS server errors: retryable, and for a write the request **may have been applied**
/// (so a commit's outcome is unknown until the table is read again).
/// Glue's `OperationTimeoutException` is a 400, but a timed-out `UpdateTable` may still be
/// applied: treated as a server error, so a commit that gets it is looked for before its
/// files are removed (were it "refused", the files would go and a late update would leave
/// the table pointing at a deleted `metadata.json`).
const SERVER_ERROR_MARKERS: &[&str] = &[
    "InternalServiceException",
    "InternalFailure",
    "OperationTimeoutException",
];

/// What an AWS answer means, the same for every caller: a read retries on `Throttled` and
/// `ServerError`; a conditional write (a swap) treats `Throttled` as "nothing changed" and
/// `ServerError` as "may have landed".
#[cfg_attr(not(any(feature = "glue", feature = "s3tables")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwsAnswer {
    /// Throttled or temporarily unavailable: not processed.
    Throttled,
    /// A 5xx or an internal failure: may have been processed.
    ServerError,
    /// Refused for lack of permission.
    Denied,
    /// The entity does not exist.
    NotFound,
    /// Any other refusal: not processed, not worth repeating.
    Refused,
}

impl AwsAnswer {
    /// Whether repeating the request may succeed.
    #[cfg_attr(not(any(feature = "glue", feature = "s3tables")), allow(dead_code))]
    pub(crate) fn is_retryable(self) -> bool {
        matches!(self, AwsAnswer::Throttled | AwsAnswer::ServerError)
    }
}

/// Classifies an AWS error answer by its code and HTTP status; no answer at all (`None, None`)
/// is a [`AwsAnswer::ServerError`] (the request may have been processed).
#[cfg_attr(not(any(feature = "glue", feature = "s3tables")), allow(dead_code))]
pub(crate) fn aws_answer(code: Option<&str>, status: Option<u16>) -> AwsAnswer {
    let code = code.unwrap_or_default();
    if THROTTLING_MARKERS.contains(&code) || status == Some(429) {
        AwsAnswer::Throttled
    } else if SERVER_ERROR_MARKERS.contains(&code) || status.is_none_or(|s| s >= 500) {
        AwsAnswer::ServerError
    } else if DENIED_MARKERS.contains(&code) {
        AwsAnswer::Denied
    } else if code == "EntityNotFoundException" || code == "NotFoundException" {
        AwsAnswer::NotFound
    } else {
        AwsAnswer::Refused
    }
}

/// The endpoint could not be reached or did not answer in time. Text markers: the AWS SDK's
/// `DispatchFailure` / `TimeoutError` reach us flattened to Debug text (iceberg-catalog-glue
/// 0.10.1); hyper's connect errors the same way.
const UNREACHABLE_MARKERS: &[&str] = &[
    "dispatch failure",
    "DispatchFailure",
    "Connection refused",
    "connection reset",
    "error trying to connect",
    "ConnectError",
    "connection error",
    "TimeoutError",
    "TimedOut",
    "timed out",
];

/// Refused for lack of permission (text: iceberg-catalog-glue 0.10.1, see above).
const DENIED_MARKERS: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
];

/// The whole Debug text of an error and its sources (iceberg's Debug includes its source).
fn text(e: &iceberg::Error) -> String {
    format!("{e:?}")
}

fn sources(e: &iceberg::Error) -> impl Iterator<Item = &(dyn StdError + 'static)> {
    std::iter::successors(StdError::source(e), |c: &&(dyn StdError + 'static)| {
        (*c).source()
    })
}

/// Whether `e` says AWS throttled the request (text markers, see [`THROTTLING_MARKERS`]).
pub(crate) fn is_throttling(e: &iceberg::Error) -> bool {
    let t = text(e);
    THROTTLING_MARKERS.iter().any(|m| t.contains(m))
}

/// Whether `e` says a missing Glue database or table (iceberg-catalog-glue 0.10.1 reports
/// Glue's `EntityNotFoundException` as `Unexpected` with Debug text).
pub(crate) fn is_glue_not_found(e: &iceberg::Error) -> bool {
    e.kind() == ErrorKind::Unexpected && text(e).contains("EntityNotFoundException")
}

/// Whether `e` says the namespace or table was created by someone else first.
pub(crate) fn already_exists(e: &iceberg::Error) -> bool {
    if matches!(
        e.kind(),
        ErrorKind::NamespaceAlreadyExists | ErrorKind::TableAlreadyExists
    ) {
        return true;
    }
    let unique = sources(e).any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .is_some_and(|d| d.is_unique_violation())
    });
    let t = text(e);
    // iceberg-catalog-s3tables 0.10.1 flattens S3 Tables' answer to a concurrent create, a
    // `ConflictException` "... already exists ...", to Debug text as well.
    unique
        || t.contains("AlreadyExistsException")
        || (t.contains("ConflictException") && t.contains("already exists"))
}

/// What the chain says about retrying a storage (OpenDAL) failure, if one is in it.
fn storage_retry(e: &iceberg::Error) -> Option<bool> {
    sources(e)
        .find_map(|c| c.downcast_ref::<opendal::Error>())
        .map(|o| match o.kind() {
            opendal::ErrorKind::RateLimited => true,
            opendal::ErrorKind::PermissionDenied
            | opendal::ErrorKind::NotFound
            | opendal::ErrorKind::ConfigInvalid
            | opendal::ErrorKind::Unsupported => false,
            _ => o.is_temporary() || o.is_persistent(),
        })
}

/// Whether SQLite answered "database is locked" / "busy": the statement did not run.
pub(crate) fn sqlite_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let m = d.message();
            m.contains("database is locked") || m.contains("busy")
        }
        _ => false,
    }
}

/// Whether a SQLite catalog failure is transient: busy/locked, a pool timeout, I/O, a crashed
/// worker.
pub(crate) fn sqlx_retryable(e: &sqlx::Error) -> bool {
    sqlite_busy(e)
        || matches!(
            e,
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed
        )
}

/// What the chain says about retrying a SQLite catalog failure, if one is in it.
fn sql_retry(e: &iceberg::Error) -> Option<bool> {
    sources(e)
        .find_map(|c| c.downcast_ref::<sqlx::Error>())
        .map(sqlx_retryable)
}

/// Classifies an error of the iceberg crates into one of our kinds (see the module docs).
pub(crate) fn from_iceberg(e: iceberg::Error) -> Error {
    let t = text(&e);
    if t.contains("NoSuchBucket") {
        return Error::config(
            "warehouse",
            "the bucket does not exist or is not accessible with these credentials",
        );
    }
    let denied = DENIED_MARKERS.iter().any(|m| t.contains(m));
    let storage = storage_retry(&e);
    let io = sources(&e).any(|c| c.is::<std::io::Error>());
    let message = e.message().to_string();
    if storage.is_none() && !denied && UNREACHABLE_MARKERS.iter().any(|m| t.contains(m)) {
        return Error::Unavailable {
            service: "the catalog".to_string(),
            reason: message,
        };
    }
    let retryable = !denied
        && (e.retryable()
            || e.kind() == ErrorKind::CatalogCommitConflicts
            || THROTTLING_MARKERS.iter().any(|m| t.contains(m))
            || SERVER_ERROR_MARKERS.iter().any(|m| t.contains(m))
            || storage == Some(true)
            || sql_retry(&e) == Some(true));
    if storage.is_some() || (io && sql_retry(&e).is_none()) {
        Error::Storage {
            message,
            retryable,
            source: Box::new(e),
        }
    } else {
        Error::Catalog {
            message,
            retryable,
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unexpected(source: impl StdError + Send + Sync + 'static) -> iceberg::Error {
        iceberg::Error::new(ErrorKind::Unexpected, "operation failed").with_source(source)
    }

    #[test]
    fn storage_errors_are_classified_by_opendal_kind_and_status() {
        let temporary = opendal::Error::new(opendal::ErrorKind::Unexpected, "503").set_temporary();
        let e = from_iceberg(unexpected(temporary));
        assert!(
            matches!(
                e,
                Error::Storage {
                    retryable: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_retryable());
        let exhausted = opendal::Error::new(opendal::ErrorKind::Unexpected, "503").set_persistent();
        assert!(from_iceberg(unexpected(exhausted)).is_retryable());
        let denied = opendal::Error::new(opendal::ErrorKind::PermissionDenied, "403");
        let e = from_iceberg(unexpected(denied));
        assert!(
            matches!(
                e,
                Error::Storage {
                    retryable: false,
                    ..
                }
            ),
            "{e:?}"
        );
        let throttled = opendal::Error::new(opendal::ErrorKind::RateLimited, "SlowDown");
        assert!(from_iceberg(unexpected(throttled)).is_retryable());
    }

    #[test]
    fn aws_answers_by_code_and_status() {
        let a = |code: &str, status: u16| aws_answer(Some(code), Some(status));
        assert_eq!(a("ThrottlingException", 400), AwsAnswer::Throttled);
        assert_eq!(a("ResourceNotReadyException", 400), AwsAnswer::Throttled);
        assert_eq!(
            a("FederationSourceRetryableException", 400),
            AwsAnswer::Throttled
        );
        assert_eq!(a("SomethingElse", 429), AwsAnswer::Throttled);
        // A timed-out update may have been applied: not "refused".
        assert_eq!(a("OperationTimeoutException", 400), AwsAnswer::ServerError);
        assert_eq!(a("InternalServiceException", 500), AwsAnswer::ServerError);
        assert_eq!(a("SomethingElse", 503), AwsAnswer::ServerError);
        assert_eq!(aws_answer(None, None), AwsAnswer::ServerError);
        assert_eq!(a("AccessDeniedException", 400), AwsAnswer::Denied);
        assert_eq!(a("EntityNotFoundException", 400), AwsAnswer::NotFound);
        assert_eq!(a("InvalidInputException", 400), AwsAnswer::Refused);
        assert!(AwsAnswer::ServerError.is_retryable() && AwsAnswer::Throttled.is_retryable());
        assert!(!AwsAnswer::Refused.is_retryable() && !AwsAnswer::Denied.is_retryable());
    }

    #[test]
    fn flattened_aws_errors_are_classified_by_marker() {
        let text = |t: &str| {
            iceberg::Error::new(ErrorKind::Unexpected, "aws sdk error").with_source(anyhow_like(t))
        };
        let e = from_iceberg(text("ServiceError { err: ThrottlingException { .. } }"));
        assert!(
            matches!(
                e,
                Error::Catalog {
                    retryable: true,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = from_iceberg(text(
            "DispatchFailure(ConnectorError { Connection refused })",
        ));
        assert!(
            matches!(e, Error::Unavailable { .. }) && e.is_retryable(),
            "{e:?}"
        );
        let e = from_iceberg(text("ServiceError { err: AccessDeniedException { .. } }"));
        assert!(
            matches!(
                e,
                Error::Catalog {
                    retryable: false,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = from_iceberg(text("NoSuchBucket"));
        assert!(
            matches!(e, Error::Config { .. }) && !e.is_retryable(),
            "{e:?}"
        );
        assert!(already_exists(&text(
            "ServiceError { err: AlreadyExistsException { .. } }"
        )));
        let conflict = iceberg::Error::new(ErrorKind::CatalogCommitConflicts, "stale");
        assert!(from_iceberg(conflict).is_retryable());
        let other = iceberg::Error::new(ErrorKind::DataInvalid, "bad metadata");
        assert!(!from_iceberg(other).is_retryable());
    }

    /// A plain error carrying text, as the Glue catalog's flattened SDK errors are.
    #[derive(Debug)]
    struct Text(String);

    impl std::fmt::Display for Text {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl StdError for Text {}

    fn anyhow_like(t: &str) -> Text {
        Text(t.to_string())
    }
}
