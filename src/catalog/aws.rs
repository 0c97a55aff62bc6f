//! AWS credentials shared by the AWS catalogs (Glue, S3 Tables): never shown in `Debug`,
//! `Display`, errors or logs.

use std::fmt;

use crate::error::{Error, Result};

/// Checks an endpoint override: an http(s) URL with a host; errors name `key`.
pub(crate) fn check_endpoint(key: &str, url: Option<&str>) -> Result<()> {
    let Some(u) = url else { return Ok(()) };
    let parsed =
        url::Url::parse(u).map_err(|e| Error::config(key, format!("`{u}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::config(
            key,
            format!("`{u}` must be an http(s) URL with a host"),
        ));
    }
    Ok(())
}

#[cfg(feature = "glue")]
use aws_sdk_glue::config::Credentials as SdkCredentials;
#[cfg(all(feature = "s3tables", not(feature = "glue")))]
use aws_sdk_s3tables::config::Credentials as SdkCredentials;

/// The AWS SDK configuration both AWS catalogs' own clients use: region, endpoint override,
/// named profile and static credentials (else the standard chain).
pub(crate) async fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    profile: Option<&str>,
    credentials: Option<&AwsCredentials>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(u) = endpoint {
        loader = loader.endpoint_url(u);
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(SdkCredentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.expose().to_string(),
            c.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "sales-history",
        ));
    }
    loader.load().await
}

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; only call this where the value is handed to the AWS client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Explicit static AWS credentials (otherwise the standard AWS chain is used).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// Access key id (not secret, but shown only in part).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    /// Static credentials without a session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key),
            session_token: None,
        }
    }

    /// Adds a session token (temporary credentials).
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Secret::new(token));
        self
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.access_key_id;
        // By characters, never by byte index: a key id is caller input and may be any text.
        let shown = if id.chars().count() > 4 {
            format!("{}…", id.chars().take(4).collect::<String>())
        } else {
            "…".to_string()
        };
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &shown)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}
