//! S3 Tables' swap: `GetTable` (the `versionToken` and the metadata location as it is), then
//! `UpdateTableMetadataLocation` with that token; a `ConflictException` is the conflict.
//!
//! This crate never deletes objects in a table bucket (S3 Tables refuses client deletes and
//! removes unreferenced files itself): [`MetadataSwap::may_delete_files`] is `false`.

use async_trait::async_trait;

use super::{MetadataSwap, Proposal, SwapError, Swapped, read_failed, update_outcome};
use crate::catalog::S3TablesConfig;
use crate::error::Error;

/// The S3 Tables swap, with its client (built once).
pub(crate) struct S3TablesSwap {
    config: S3TablesConfig,
    client: tokio::sync::OnceCell<aws_sdk_s3tables::Client>,
}

impl std::fmt::Debug for S3TablesSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3TablesSwap").finish_non_exhaustive()
    }
}

impl S3TablesSwap {
    pub(crate) fn new(config: S3TablesConfig) -> Self {
        S3TablesSwap {
            config,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// `GetTable` of the table: the probe's and the swap's one read.
    async fn get_table(
        &self,
        ident: &iceberg::TableIdent,
    ) -> Result<
        aws_sdk_s3tables::operation::get_table::GetTableOutput,
        aws_sdk_s3tables::error::SdkError<aws_sdk_s3tables::operation::get_table::GetTableError>,
    > {
        let client = self
            .client
            .get_or_init(|| self.config.s3tables_client())
            .await;
        client
            .get_table()
            .table_bucket_arn(&self.config.table_bucket_arn)
            .namespace(ident.namespace().join("."))
            .name(ident.name())
            .send()
            .await
    }
}

#[async_trait]
impl MetadataSwap for S3TablesSwap {
    fn may_delete_files(&self) -> bool {
        false
    }

    async fn current_location(&self, ident: &iceberg::TableIdent) -> Option<String> {
        let got = self
            .get_table(ident)
            .await
            .inspect_err(|e| {
                tracing::debug!(error = %e, "probing S3 Tables failed; the table is loaded");
            })
            .ok()?;
        got.metadata_location().map(str::to_string)
    }

    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError> {
        use aws_sdk_s3tables::operation::update_table_metadata_location::UpdateTableMetadataLocationError;
        let Proposal::Location {
            ident,
            expected,
            staged,
        } = proposal
        else {
            return Err(SwapError::Refused(Error::internal(
                "the S3 Tables swap takes a staged metadata location",
            )));
        };
        let client = self
            .client
            .get_or_init(|| self.config.s3tables_client())
            .await;
        let namespace = ident.namespace().join(".");
        let name = ident.name();
        let got = self
            .get_table(ident)
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
            .table_bucket_arn(&self.config.table_bucket_arn)
            .namespace(&namespace)
            .name(name)
            .version_token(got.version_token())
            .metadata_location(staged)
            .send()
            .await;
        update_outcome(
            format!("S3 Tables UpdateTableMetadataLocation {namespace}.{name}"),
            answer,
            |e| matches!(e, UpdateTableMetadataLocationError::ConflictException(_)),
        )
    }
}
