//! The least-privilege IAM policies for a service that uses this crate: Glue + S3 ([`policy`])
//! and S3 Tables ([`s3tables_policy`]), each checked in the tests against the calls made.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::schema::TABLE_NAME;
use crate::table::namespace_for_stage;

/// Glue actions this crate calls: `GetDatabase` (does the namespace exist), `CreateDatabase`
/// and `CreateTable` (`ensure`), `GetTable` (load, refresh, verify), `UpdateTable` (commit).
pub const GLUE_ACTIONS: &[&str] = &[
    "glue:CreateDatabase",
    "glue:CreateTable",
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:UpdateTable",
];

/// S3 object actions this crate calls on the table's prefix: `GetObject` (reads, including
/// `HEAD`), `PutObject` (data, manifests, metadata; multipart uploads included) and
/// `DeleteObject` (files of a failed append, expired snapshots, orphans).
pub const S3_ACTIONS: &[&str] = &["s3:DeleteObject", "s3:GetObject", "s3:PutObject"];

/// S3 bucket action: `ListBucket`, limited to the table's prefix (orphan-file removal).
pub const S3_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket"];

/// Where the policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyScope {
    /// Stage: the database is `pricing_intelligence_{stage}`.
    pub stage: String,
    /// AWS region of the Glue catalog.
    pub region: String,
    /// 12-digit AWS account id owning the catalog.
    pub account: String,
    /// Warehouse bucket.
    pub bucket: String,
    /// Warehouse prefix inside the bucket (may be empty).
    pub prefix: String,
}

impl PolicyScope {
    /// A scope; checked by [`policy`].
    pub fn new(
        stage: impl Into<String>,
        region: impl Into<String>,
        account: impl Into<String>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        PolicyScope {
            stage: stage.into(),
            region: region.into(),
            account: account.into(),
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
        }
    }
}

/// The IAM policy document (JSON) granting exactly the actions this crate calls, on exactly
/// this stage's database and table and the table's S3 prefix.
///
/// ```
/// use sales_history::iam::{PolicyScope, policy};
/// let doc = policy(&PolicyScope::new("dev", "eu-west-1", "123456789012", "analytics", "iceberg"))?;
/// assert!(doc.to_string().contains("arn:aws:s3:::analytics/iceberg/pricing_intelligence_dev.db/sales_history/*"));
/// # Ok::<(), sales_history::Error>(())
/// ```
pub fn policy(scope: &PolicyScope) -> Result<Value> {
    let database = namespace_for_stage(&scope.stage)?;
    if scope.account.len() != 12 || !scope.account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::config(
            "account",
            format!("`{}` is not a 12-digit AWS account id", scope.account),
        ));
    }
    if scope.region.is_empty()
        || !scope
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::config(
            "region",
            format!("`{}` is not an AWS region", scope.region),
        ));
    }
    if scope.bucket.len() < 3 || scope.bucket.contains('/') {
        return Err(Error::config(
            "bucket",
            format!("`{}` is not a bucket name", scope.bucket),
        ));
    }
    let (region, account) = (&scope.region, &scope.account);
    let prefix = if scope.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", scope.prefix)
    };
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SalesHistoryGlueCatalog",
                "Effect": "Allow",
                "Action": GLUE_ACTIONS,
                "Resource": [
                    format!("arn:aws:glue:{region}:{account}:catalog"),
                    format!("arn:aws:glue:{region}:{account}:database/{database}"),
                    format!("arn:aws:glue:{region}:{account}:table/{database}/{TABLE_NAME}"),
                ],
            },
            {
                "Sid": "SalesHistoryTableFiles",
                "Effect": "Allow",
                "Action": S3_ACTIONS,
                "Resource": [
                    format!("arn:aws:s3:::{}/{prefix}{database}.db/{TABLE_NAME}/*", scope.bucket),
                ],
            },
            {
                "Sid": "SalesHistoryListTablePrefix",
                "Effect": "Allow",
                "Action": S3_BUCKET_ACTIONS,
                "Resource": [format!("arn:aws:s3:::{}", scope.bucket)],
                "Condition": {
                    "StringLike": {
                        "s3:prefix": [format!("{prefix}{database}.db/{TABLE_NAME}/*")],
                    },
                },
            },
        ],
    }))
}

/// S3 Tables actions this crate calls: `GetNamespace`/`CreateNamespace` and `GetTable`/
/// `CreateTable` (`ensure`; `GetTable` also loads the table with its version token) and
/// `UpdateTableMetadataLocation` (commit with the version token).
pub const S3TABLES_ACTIONS: &[&str] = &[
    "s3tables:CreateNamespace",
    "s3tables:CreateTable",
    "s3tables:GetNamespace",
    "s3tables:GetTable",
    "s3tables:UpdateTableMetadataLocation",
];

/// Data access to the table's files in its table bucket (S3 `GetObject`/`HeadObject` and
/// `PutObject` on the table's warehouse location are authorised as these). No delete: S3
/// Tables removes unreferenced files itself.
pub const S3TABLES_DATA_ACTIONS: &[&str] = &["s3tables:GetTableData", "s3tables:PutTableData"];

/// The least-privilege policy for a service using this crate on S3 Tables: the actions it
/// calls, on the table bucket and its tables, limited to the stage's namespace.
///
/// ```
/// use sales_history::iam::s3tables_policy;
/// let doc = s3tables_policy("dev", "arn:aws:s3tables:eu-west-1:123456789012:bucket/pricing")?;
/// assert!(doc.to_string().contains("bucket/pricing/table/*"));
/// # Ok::<(), sales_history::Error>(())
/// ```
pub fn s3tables_policy(stage: &str, table_bucket_arn: &str) -> Result<Value> {
    let namespace = namespace_for_stage(stage)?;
    let parts: Vec<&str> = table_bucket_arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "s3tables"
        && parts[5].starts_with("bucket/")
        && parts[5].len() > "bucket/".len();
    if !ok {
        return Err(Error::config(
            "table_bucket_arn",
            format!(
                "`{table_bucket_arn}` is not a table bucket ARN (arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME)"
            ),
        ));
    }
    let tables = format!("{table_bucket_arn}/table/*");
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SalesHistoryS3TablesCatalog",
                "Effect": "Allow",
                "Action": S3TABLES_ACTIONS,
                "Resource": [table_bucket_arn, tables],
                "Condition": { "StringEquals": { "s3tables:namespace": namespace } },
            },
            {
                "Sid": "SalesHistoryS3TablesData",
                "Effect": "Allow",
                "Action": S3TABLES_DATA_ACTIONS,
                "Resource": [format!("{table_bucket_arn}/table/*")],
                "Condition": {
                    "StringEquals": {
                        "s3tables:namespace": namespace,
                        "s3tables:tableName": TABLE_NAME,
                    }
                },
            },
        ],
    }))
}
