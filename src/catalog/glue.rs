//! AWS Glue catalog + S3 storage configuration.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::CatalogBuilder;

use super::aws::{AwsCredentials, check_endpoint};
use crate::error::{Error, IcebergResultExt, Result};
use iceberg::Catalog;

/// Where the Glue catalog and the S3 warehouse are, and how to authenticate.
///
/// ```
/// use sales_history::{CatalogConfig, GlueConfig};
/// let config: CatalogConfig = GlueConfig::new("eu-west-1", "s3://analytics-bucket/iceberg")
///     .catalog_id("123456789012")
///     .into();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GlueConfig {
    /// AWS region of the Glue catalog and the bucket.
    pub region: String,
    /// Warehouse root, `s3://bucket[/prefix]`; tables go to `{warehouse}/{database}.db/{table}`.
    pub warehouse: String,
    /// Glue catalog id (the AWS account id) when it is not the caller's account.
    pub catalog_id: Option<String>,
    /// Glue endpoint override (emulator, VPC endpoint).
    pub glue_endpoint: Option<String>,
    /// S3 endpoint override (emulator, VPC endpoint).
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing; defaults to on when `s3_endpoint` is set.
    pub s3_path_style: Option<bool>,
    /// Named profile from the shared AWS config.
    pub profile: Option<String>,
    /// Static credentials; `None` uses the standard chain (environment, profile, web
    /// identity, container and instance roles).
    pub credentials: Option<AwsCredentials>,
}

impl GlueConfig {
    /// A Glue catalog in `region` with its warehouse at `warehouse` (`s3://bucket/prefix`).
    pub fn new(region: impl Into<String>, warehouse: impl Into<String>) -> Self {
        GlueConfig {
            region: region.into(),
            warehouse: warehouse.into(),
            catalog_id: None,
            glue_endpoint: None,
            s3_endpoint: None,
            s3_path_style: None,
            profile: None,
            credentials: None,
        }
    }

    /// Sets the Glue catalog id (AWS account id).
    pub fn catalog_id(mut self, id: impl Into<String>) -> Self {
        self.catalog_id = Some(id.into());
        self
    }

    /// Overrides the Glue endpoint.
    pub fn glue_endpoint(mut self, url: impl Into<String>) -> Self {
        self.glue_endpoint = Some(url.into());
        self
    }

    /// Overrides the S3 endpoint.
    pub fn s3_endpoint(mut self, url: impl Into<String>) -> Self {
        self.s3_endpoint = Some(url.into());
        self
    }

    /// Forces path-style (`true`) or virtual-host (`false`) S3 addressing.
    pub fn s3_path_style(mut self, path_style: bool) -> Self {
        self.s3_path_style = Some(path_style);
        self
    }

    /// Uses a named profile of the shared AWS config files.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Uses static credentials instead of the standard chain.
    pub fn credentials(mut self, credentials: AwsCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Checks every field; the errors name the field and say what to fix.
    pub fn validate(&self) -> Result<()> {
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(Error::config(
                "region",
                format!("`{}` is not an AWS region such as eu-west-1", self.region),
            ));
        }
        let bucket = self.bucket()?;
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(Error::config(
                "warehouse",
                format!("`{bucket}` is not a valid S3 bucket name"),
            ));
        }
        check_endpoint("glue_endpoint", self.glue_endpoint.as_deref())?;
        check_endpoint("s3_endpoint", self.s3_endpoint.as_deref())?;
        if let Some(id) = &self.catalog_id
            && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::config(
                "catalog_id",
                format!("`{id}` is not a 12-digit AWS account id"),
            ));
        }
        if let Some(c) = &self.credentials
            && (c.access_key_id.is_empty() || c.secret_access_key.expose().is_empty())
        {
            return Err(Error::config(
                "credentials",
                "access key id and secret access key must not be empty",
            ));
        }
        Ok(())
    }

    /// The bucket of the warehouse URI.
    pub(crate) fn bucket(&self) -> Result<&str> {
        let rest = self
            .warehouse
            .strip_prefix("s3://")
            .or_else(|| self.warehouse.strip_prefix("s3a://"))
            .ok_or_else(|| {
                Error::config(
                    "warehouse",
                    format!("`{}` must be an s3://bucket/prefix URI", self.warehouse),
                )
            })?;
        Ok(rest.split('/').next().unwrap_or_default())
    }

    /// Warehouse URI without a trailing slash.
    pub(crate) fn warehouse_uri(&self) -> String {
        self.warehouse.trim_end_matches('/').to_string()
    }

    /// The catalog properties, built in exactly this one place.
    fn properties(&self) -> HashMap<String, String> {
        use iceberg::io::{S3_DISABLE_EC2_METADATA, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION};
        use iceberg_catalog_glue::{
            AWS_ACCESS_KEY_ID, AWS_PROFILE_NAME, AWS_REGION_NAME, AWS_SECRET_ACCESS_KEY,
            AWS_SESSION_TOKEN, GLUE_CATALOG_PROP_CATALOG_ID, GLUE_CATALOG_PROP_URI,
            GLUE_CATALOG_PROP_WAREHOUSE,
        };
        let mut p = HashMap::new();
        p.insert(
            GLUE_CATALOG_PROP_WAREHOUSE.to_string(),
            self.warehouse_uri(),
        );
        p.insert(AWS_REGION_NAME.to_string(), self.region.clone());
        p.insert(S3_REGION.to_string(), self.region.clone());
        if let Some(u) = &self.glue_endpoint {
            p.insert(GLUE_CATALOG_PROP_URI.to_string(), u.clone());
        }
        // Always set the S3 endpoint: without it iceberg's Glue catalog sends data to the Glue
        // endpoint override.
        let s3 = self
            .s3_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region));
        p.insert(S3_ENDPOINT.to_string(), s3);
        let path_style = self.s3_path_style.unwrap_or(self.s3_endpoint.is_some());
        p.insert(S3_PATH_STYLE_ACCESS.to_string(), path_style.to_string());
        if let Some(id) = &self.catalog_id {
            p.insert(GLUE_CATALOG_PROP_CATALOG_ID.to_string(), id.clone());
        }
        if let Some(profile) = &self.profile {
            p.insert(AWS_PROFILE_NAME.to_string(), profile.clone());
        }
        if let Some(c) = &self.credentials {
            p.insert(AWS_ACCESS_KEY_ID.to_string(), c.access_key_id.clone());
            p.insert(
                AWS_SECRET_ACCESS_KEY.to_string(),
                c.secret_access_key.expose().to_string(),
            );
            if let Some(t) = &c.session_token {
                p.insert(AWS_SESSION_TOKEN.to_string(), t.expose().to_string());
            }
            // Static credentials: never fall back to the instance metadata service.
            p.insert(S3_DISABLE_EC2_METADATA.to_string(), "true".to_string());
        }
        p
    }

    /// An AWS SDK Glue client with the same region, endpoint and credentials (for the checks
    /// iceberg's catalog does not expose, e.g. the fields Athena reads).
    pub(crate) async fn glue_client(&self) -> aws_sdk_glue::Client {
        let config = super::aws::sdk_config(
            &self.region,
            self.glue_endpoint.as_deref(),
            self.profile.as_deref(),
            self.credentials.as_ref(),
        )
        .await;
        aws_sdk_glue::Client::new(&config)
    }

    /// Lists every object under `prefix_uri` (`s3://bucket/key/`) with its last-modified time.
    pub(crate) async fn list(
        &self,
        prefix_uri: &str,
    ) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
        let rest = prefix_uri
            .strip_prefix("s3://")
            .or_else(|| prefix_uri.strip_prefix("s3a://"))
            .ok_or_else(|| {
                Error::config("location", format!("`{prefix_uri}` is not an s3:// URI"))
            })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = opendal::services::S3::default()
            .root("/")
            .bucket(bucket)
            .region(&self.region);
        if let Some(e) = &self.s3_endpoint {
            builder = builder.endpoint(e);
        }
        if !self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()) {
            builder = builder.enable_virtual_host_style();
        }
        if let Some(c) = &self.credentials {
            builder = builder
                .access_key_id(&c.access_key_id)
                .secret_access_key(c.secret_access_key.expose())
                .disable_ec2_metadata()
                .disable_config_load();
            if let Some(t) = &c.session_token {
                builder = builder.session_token(t.expose());
            }
        }
        let storage_err = |e: opendal::Error| Error::Unavailable {
            service: format!("S3 bucket {bucket}"),
            reason: e.to_string(),
        };
        let op = opendal::Operator::new(builder)
            .map_err(storage_err)?
            .finish();
        let dir = format!("{}/", key.trim_end_matches('/'));
        let entries = op
            .list_with(&dir)
            .recursive(true)
            .await
            .map_err(storage_err)?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| {
                let when = e
                    .metadata()
                    .last_modified()
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::from(t)))
                    .unwrap_or_default();
                (
                    format!("s3://{bucket}/{}", e.path().trim_start_matches('/')),
                    when,
                )
            })
            .collect())
    }

    pub(crate) async fn connect(&self) -> Result<(Arc<dyn Catalog>, String)> {
        self.validate()?;
        let catalog = iceberg_catalog_glue::GlueCatalogBuilder::default()
            .with_storage_factory(Arc::new(
                iceberg_storage_opendal::OpenDalResolvingStorageFactory::new(),
            ))
            .load("glue", self.properties())
            .await
            .or_ours()?;
        Ok((Arc::new(catalog), self.warehouse_uri()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let cfg = GlueConfig::new("eu-west-1", "s3://bucket/prefix").credentials(
            AwsCredentials::new("AKIAEXAMPLEKEY", "wJalrXUtnFEMI-secret")
                .session_token("tok-secret"),
        );
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("tok-secret"), "{shown}");
        assert!(!shown.contains("AKIAEXAMPLEKEY"), "{shown}");
    }

    #[test]
    fn debug_of_a_multi_byte_key_id_does_not_panic() {
        // "é" and "€" are 2 and 3 bytes: byte index 4 falls inside a character.
        for id in ["AKIé€XYZ-rest", "éé€€€", "€"] {
            let creds = AwsCredentials::new(id, "s3cr3t-value");
            let shown = format!("{creds:?}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains(id) || id.chars().count() <= 4, "{shown}");
        }
        let shown = format!("{:?}", AwsCredentials::new("AKIé€XYZ-rest", "x"));
        assert!(shown.contains("AKIé…"), "{shown}");
    }

    #[test]
    fn validation_names_the_field() {
        let key = |c: GlueConfig| match c.validate() {
            Err(Error::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(key(GlueConfig::new("", "s3://bucket/x")), "region");
        assert_eq!(key(GlueConfig::new("eu-west-1", "")), "warehouse");
        assert_eq!(key(GlueConfig::new("eu-west-1", "/tmp/x")), "warehouse");
        assert_eq!(
            key(GlueConfig::new("eu-west-1", "s3://B_ad/x")),
            "warehouse"
        );
        assert_eq!(
            key(GlueConfig::new("eu-west-1", "s3://bucket").glue_endpoint("nope")),
            "glue_endpoint"
        );
        assert_eq!(
            key(GlueConfig::new("eu-west-1", "s3://bucket").catalog_id("12")),
            "catalog_id"
        );
        assert!(
            GlueConfig::new("eu-west-1", "s3://bucket/prefix/")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn data_never_goes_to_the_glue_endpoint() {
        let p = GlueConfig::new("eu-west-1", "s3://bucket")
            .glue_endpoint("https://glue.vpce.example")
            .properties();
        assert_eq!(p["s3.endpoint"], "https://s3.eu-west-1.amazonaws.com");
        assert_eq!(p["s3.path-style-access"], "false");
    }
}
