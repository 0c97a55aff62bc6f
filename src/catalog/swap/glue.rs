//! Glue's swap: `GetTable` (the `VersionId` and the table as it is), then `UpdateTable` with
//! that `VersionId` and a `TableInput` copied from the table, only `metadata_location` and
//! `previous_metadata_location` changed.
//!
//! iceberg-catalog-glue's own table-input builder is private; copying keeps the typed
//! StorageDescriptor columns, location, table type and every other parameter Athena reads
//! exactly as the last commit left them. A table without a `VersionId` is refused (the update
//! would not be conditional). Glue's `ConcurrentModificationException` is the conflict.

use async_trait::async_trait;

use super::{MetadataSwap, Proposal, SwapError, Swapped, read_failed, update_outcome};
use crate::catalog::GlueConfig;
use crate::error::Error;

/// The Glue swap, with its client (built once: the AWS config loader resolves credentials).
pub(crate) struct GlueSwap {
    config: GlueConfig,
    client: tokio::sync::OnceCell<aws_sdk_glue::Client>,
}

impl std::fmt::Debug for GlueSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlueSwap").finish_non_exhaustive()
    }
}

impl GlueSwap {
    pub(crate) fn new(config: GlueConfig) -> Self {
        GlueSwap {
            config,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// `GetTable` of the table: the probe's and the swap's one read.
    async fn get_table(
        &self,
        ident: &iceberg::TableIdent,
    ) -> Result<
        aws_sdk_glue::operation::get_table::GetTableOutput,
        aws_sdk_glue::error::SdkError<aws_sdk_glue::operation::get_table::GetTableError>,
    > {
        let client = self.client.get_or_init(|| self.config.glue_client()).await;
        client
            .get_table()
            .set_catalog_id(self.config.catalog_id.clone())
            .database_name(ident.namespace().join("."))
            .name(ident.name())
            .send()
            .await
    }
}

#[async_trait]
impl MetadataSwap for GlueSwap {
    async fn current_location(&self, ident: &iceberg::TableIdent) -> Option<String> {
        let got = self
            .get_table(ident)
            .await
            .inspect_err(|e| {
                tracing::debug!(error = %e, "probing Glue failed; the table is loaded");
            })
            .ok()?;
        got.table()?.parameters()?.get("metadata_location").cloned()
    }

    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError> {
        use aws_sdk_glue::operation::update_table::UpdateTableError;
        use aws_sdk_glue::types::TableInput;

        let Proposal::Location {
            ident,
            expected,
            staged,
        } = proposal
        else {
            return Err(SwapError::Refused(Error::internal(
                "the Glue swap takes a staged metadata location",
            )));
        };
        let client = self.client.get_or_init(|| self.config.glue_client()).await;
        let database = ident.namespace().join(".");
        let name = ident.name();
        let got = self
            .get_table(ident)
            .await
            .map_err(|e| read_failed(format!("Glue GetTable {database}.{name}"), e))?;
        let current = got.table().ok_or_else(|| {
            SwapError::Refused(Error::internal("Glue GetTable answered no table"))
        })?;
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
        parameters.insert("metadata_location".into(), staged.into());
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
            .set_catalog_id(self.config.catalog_id.clone())
            .database_name(&database)
            .skip_archive(true)
            .table_input(input)
            .version_id(version_id)
            .send()
            .await;
        update_outcome(format!("Glue UpdateTable {database}.{name}"), answer, |e| {
            matches!(e, UpdateTableError::ConcurrentModificationException(_))
        })
    }
}
