//! AWS S3 Tables (the managed Iceberg store) as the catalog: a table bucket, addressed by its
//! ARN, holds the namespace and the table; S3 Tables chooses the table's location and swaps
//! its metadata pointer with a version token (iceberg-catalog-s3tables 0.10.1).
//!
//! What S3 Tables forbids, this crate does not try: clients do not delete objects in a table
//! bucket (snapshot expiry and unreferenced-file removal are S3 Tables' own maintenance), and
//! table locations are assigned by the service.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};

use super::aws::{AwsCredentials, check_endpoint};
use crate::error::{Error, IcebergResultExt, Result};

/// Where the S3 Tables table bucket is and how to authenticate.
///
/// ```
/// use sales_history::{CatalogConfig, S3TablesConfig};
/// let config: CatalogConfig = S3TablesConfig::new(
///     "arn:aws:s3tables:eu-west-1:123456789012:bucket/pricing",
/// )
/// .into();
/// assert_eq!(
///     config.to_string(),
///     "s3tables://?arn=arn:aws:s3tables:eu-west-1:123456789012:bucket/pricing&region=eu-west-1"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3TablesConfig {
    /// The table bucket's ARN, `arn:aws:s3tables:{region}:{account}:bucket/{name}`.
    pub table_bucket_arn: String,
    /// AWS region (default: the ARN's).
    pub region: String,
    /// S3 Tables API endpoint override (emulator, VPC endpoint).
    pub endpoint: Option<String>,
    /// S3 endpoint override for the table's data (emulator); path-style addressing with it.
    pub s3_endpoint: Option<String>,
    /// Named profile from the shared AWS config.
    pub profile: Option<String>,
    /// Static credentials; `None` uses the standard chain.
    pub credentials: Option<AwsCredentials>,
}

impl S3TablesConfig {
    /// The table bucket with this ARN; the region is the ARN's (check with
    /// [`validate`](Self::validate), done on connect).
    pub fn new(table_bucket_arn: impl Into<String>) -> Self {
        let table_bucket_arn = table_bucket_arn.into();
        let region = table_bucket_arn
            .split(':')
            .nth(3)
            .unwrap_or_default()
            .to_string();
        S3TablesConfig {
            table_bucket_arn,
            region,
            endpoint: None,
            s3_endpoint: None,
            profile: None,
            credentials: None,
        }
    }

    /// Sets the region (must be the ARN's).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets the S3 Tables API endpoint (an emulator, a VPC endpoint).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Sets the S3 endpoint used for the table's data files (an emulator).
    pub fn s3_endpoint(mut self, url: impl Into<String>) -> Self {
        self.s3_endpoint = Some(url.into());
        self
    }

    /// Uses a named profile of the shared AWS config.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Uses static credentials instead of the standard chain.
    pub fn credentials(mut self, credentials: AwsCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The table bucket's name (the ARN's last part).
    pub(crate) fn bucket_name(&self) -> &str {
        self.table_bucket_arn
            .rsplit_once("bucket/")
            .map_or("", |(_, name)| name)
    }

    /// Checks the ARN's shape, that the region is the ARN's, and the endpoints.
    pub fn validate(&self) -> Result<()> {
        let arn = &self.table_bucket_arn;
        if arn.is_empty() {
            return Err(Error::config(
                "arn",
                "missing: the table bucket ARN, arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME",
            ));
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "s3tables"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5]
                .strip_prefix("bucket/")
                .is_some_and(valid_bucket_name);
        if !ok {
            return Err(Error::config(
                "arn",
                format!(
                    "`{arn}` is not a table bucket ARN (arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME)"
                ),
            ));
        }
        if self.region != parts[3] {
            return Err(Error::config(
                "region",
                format!(
                    "`{}` is not the table bucket's region `{}` (from its ARN)",
                    self.region, parts[3]
                ),
            ));
        }
        check_endpoint("endpoint", self.endpoint.as_deref())?;
        check_endpoint("s3_endpoint", self.s3_endpoint.as_deref())
    }

    /// The catalog properties, built in exactly this one place.
    fn properties(&self) -> HashMap<String, String> {
        use iceberg::io::{
            S3_ACCESS_KEY_ID, S3_DISABLE_EC2_METADATA, S3_ENDPOINT, S3_PATH_STYLE_ACCESS,
            S3_REGION, S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN,
        };
        use iceberg_catalog_s3tables::{
            S3TABLES_CATALOG_PROP_ENDPOINT_URL, S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN,
        };
        let mut p = HashMap::from([
            (
                S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN.to_string(),
                self.table_bucket_arn.clone(),
            ),
            ("region_name".to_string(), self.region.clone()),
            (S3_REGION.to_string(), self.region.clone()),
        ]);
        if let Some(u) = &self.endpoint {
            p.insert(S3TABLES_CATALOG_PROP_ENDPOINT_URL.to_string(), u.clone());
        }
        if let Some(u) = &self.s3_endpoint {
            p.insert(S3_ENDPOINT.to_string(), u.clone());
            p.insert(S3_PATH_STYLE_ACCESS.to_string(), "true".to_string());
        }
        if let Some(profile) = &self.profile {
            p.insert("profile_name".to_string(), profile.clone());
        }
        if let Some(c) = &self.credentials {
            p.insert("aws_access_key_id".to_string(), c.access_key_id.clone());
            p.insert(
                "aws_secret_access_key".to_string(),
                c.secret_access_key.expose().to_string(),
            );
            p.insert(S3_ACCESS_KEY_ID.to_string(), c.access_key_id.clone());
            p.insert(
                S3_SECRET_ACCESS_KEY.to_string(),
                c.secret_access_key.expose().to_string(),
            );
            if let Some(t) = &c.session_token {
                p.insert("aws_session_token".to_string(), t.expose().to_string());
                p.insert(S3_SESSION_TOKEN.to_string(), t.expose().to_string());
            }
            p.insert(S3_DISABLE_EC2_METADATA.to_string(), "true".to_string());
        }
        p
    }

    /// An AWS SDK S3 Tables client with the same region, endpoint and credentials (for the
    /// compare-and-swap of our own commit path).
    pub(crate) async fn s3tables_client(&self) -> aws_sdk_s3tables::Client {
        let config = super::aws::sdk_config(
            &self.region,
            self.endpoint.as_deref(),
            self.profile.as_deref(),
            self.credentials.as_ref(),
        )
        .await;
        aws_sdk_s3tables::Client::new(&config)
    }

    pub(crate) async fn connect(&self) -> Result<(Arc<dyn Catalog>, String)> {
        self.validate()?;
        let catalog = iceberg_catalog_s3tables::S3TablesCatalogBuilder::default()
            .with_storage_factory(Arc::new(
                iceberg_storage_opendal::OpenDalResolvingStorageFactory::new(),
            ))
            .load("s3tables", self.properties())
            .await
            .or_ours()?;
        // S3 Tables assigns table locations; the "warehouse" is only a name here.
        Ok((Arc::new(catalog), self.table_bucket_arn.clone()))
    }
}

/// S3 table bucket names: 3-63 characters of lowercase letters, digits and `-`.
fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_regions_are_checked_by_part() {
        let ok = S3TablesConfig::new("arn:aws:s3tables:eu-west-1:123456789012:bucket/pricing");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.bucket_name(), "pricing");
        let key = |c: S3TablesConfig| match c.validate() {
            Err(Error::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(S3TablesConfig::new("")), "arn");
        assert_eq!(key(S3TablesConfig::new("arn:aws:s3:::bucket")), "arn");
        assert_eq!(
            key(S3TablesConfig::new(
                "arn:aws:s3tables:eu-west-1:12:bucket/pricing"
            )),
            "arn"
        );
        assert_eq!(key(ok.clone().region("us-east-1")), "region");
        assert_eq!(key(ok.clone().endpoint("ftp://x")), "endpoint");
        let secret = ok.credentials(AwsCredentials::new("AKIAEXAMPLEKEY", "s3cr3t-value"));
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }
}
