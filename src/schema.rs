//! The `sales_history` table layout: columns, field ids, partition spec and table properties.
//!
//! This module is the single source of truth. Table creation, the Arrow schema used for
//! appends, row validation and the drift check on an existing table all derive from
//! [`Column`] and the functions here.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow_schema::SchemaRef as ArrowSchemaRef;
use iceberg::spec::{
    ListType, NestedField, PrimitiveType, Schema, TableMetadata, Transform, Type,
    UnboundPartitionSpec,
};

use crate::error::{Error, Result};

/// Table name inside the namespace.
pub const TABLE_NAME: &str = "sales_history";
/// Namespace (Glue database) prefix; the stage is appended: `pricing_intelligence_{stage}`.
pub const NAMESPACE_PREFIX: &str = "pricing_intelligence_";
/// Default length of the `embedding` vector (Amazon Titan multimodal embeddings).
pub const DEFAULT_EMBEDDING_DIMENSION: usize = 1024;
/// Field id of the `embedding` list's element.
pub const EMBEDDING_ELEMENT_FIELD_ID: i32 = 13;
/// Name of the single partition field, `month(sold_date)`.
pub const PARTITION_FIELD_NAME: &str = "sold_date_month";
/// Field id of the partition field.
pub const PARTITION_FIELD_ID: i32 = 1000;
/// Table property holding the embedding dimension chosen at creation.
pub const EMBEDDING_DIMENSION_PROPERTY: &str = "sales_history.embedding-dimension";
/// Table property naming the Parquet codec (read by Java, pyiceberg and this crate).
pub const COMPRESSION_CODEC_PROPERTY: &str = "write.parquet.compression-codec";
/// The codec this crate writes and expects.
pub const COMPRESSION_CODEC: &str = "snappy";
/// Longest accepted `product_id` / `tenant_id`, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest accepted `description`, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 65_536;
/// Longest accepted value of the other text columns, in bytes.
pub const MAX_TEXT_LEN: usize = 4_096;

/// One of the twelve columns of `sales_history`, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Column {
    /// `product_id string` (required): product identifier.
    ProductId,
    /// `tenant_id string` (required): multi-tenant identifier.
    TenantId,
    /// `category string`: product category.
    Category,
    /// `brand string`: product brand.
    Brand,
    /// `condition string`: product condition.
    Condition,
    /// `sold_price decimal(10,2)` (required): sale price.
    SoldPrice,
    /// `sold_date timestamp` (required, no zone, microseconds, UTC by convention).
    SoldDate,
    /// `season string`: quarter `Q1`–`Q4` of `sold_date`.
    Season,
    /// `image_s3_key string`: S3 key of the product image.
    ImageS3Key,
    /// `embedding list<double>`: image embedding, fixed dimension per table.
    Embedding,
    /// `description string`: product description.
    Description,
    /// `source string`: where the sale record came from.
    Source,
}

impl Column {
    /// All columns in table order (field ids 1–12).
    pub const ALL: [Column; 12] = [
        Column::ProductId,
        Column::TenantId,
        Column::Category,
        Column::Brand,
        Column::Condition,
        Column::SoldPrice,
        Column::SoldDate,
        Column::Season,
        Column::ImageS3Key,
        Column::Embedding,
        Column::Description,
        Column::Source,
    ];

    /// The column's name in the table.
    pub const fn name(self) -> &'static str {
        match self {
            Column::ProductId => "product_id",
            Column::TenantId => "tenant_id",
            Column::Category => "category",
            Column::Brand => "brand",
            Column::Condition => "condition",
            Column::SoldPrice => "sold_price",
            Column::SoldDate => "sold_date",
            Column::Season => "season",
            Column::ImageS3Key => "image_s3_key",
            Column::Embedding => "embedding",
            Column::Description => "description",
            Column::Source => "source",
        }
    }

    /// The column's Iceberg field id (1–12).
    pub const fn field_id(self) -> i32 {
        self as i32 + 1
    }

    /// Position of the column in the table (0-based).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the column is required (non-null).
    pub const fn is_required(self) -> bool {
        matches!(
            self,
            Column::ProductId | Column::TenantId | Column::SoldPrice | Column::SoldDate
        )
    }

    /// The column's Iceberg type.
    pub fn iceberg_type(self) -> Type {
        match self {
            Column::SoldPrice => Type::Primitive(PrimitiveType::Decimal {
                precision: 10,
                scale: 2,
            }),
            Column::SoldDate => Type::Primitive(PrimitiveType::Timestamp),
            Column::Embedding => Type::List(ListType::new(Arc::new(NestedField::list_element(
                EMBEDDING_ELEMENT_FIELD_ID,
                Type::Primitive(PrimitiveType::Double),
                true,
            )))),
            _ => Type::Primitive(PrimitiveType::String),
        }
    }

    /// The type as Athena / the Glue StorageDescriptor spells it.
    pub const fn athena_type(self) -> &'static str {
        match self {
            Column::SoldPrice => "decimal(10,2)",
            Column::SoldDate => "timestamp",
            Column::Embedding => "array<double>",
            _ => "string",
        }
    }

    /// Longest accepted text value in bytes, for string columns.
    pub(crate) const fn max_len(self) -> usize {
        match self {
            Column::ProductId | Column::TenantId => MAX_ID_LEN,
            Column::Description => MAX_DESCRIPTION_LEN,
            _ => MAX_TEXT_LEN,
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Column {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Column::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| Error::config("column", format!("`{s}` is not a sales_history column")))
    }
}

/// The Iceberg schema of `sales_history` (schema id 0).
pub fn iceberg_schema() -> Schema {
    let fields = Column::ALL.map(|c| {
        Arc::new(NestedField::new(
            c.field_id(),
            c.name(),
            c.iceberg_type(),
            c.is_required(),
        ))
    });
    // The fields are fixed and valid: a failure here is a bug in this module, covered by tests.
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .unwrap_or_else(|e| unreachable!("the sales_history schema is valid: {e}"))
}

/// The partition spec: one field, `month(sold_date)` named `sold_date_month` (id 1000).
///
/// `month` already encodes the year, so this is the seed's year/month partitioning; a filter
/// on a year or a date range prunes months.
pub fn partition_spec() -> UnboundPartitionSpec {
    UnboundPartitionSpec::builder()
        .with_spec_id(0)
        .add_partition_field(
            Column::SoldDate.field_id(),
            PARTITION_FIELD_NAME,
            Transform::Month,
        )
        .map(|b| b.build())
        .unwrap_or_else(|e| unreachable!("the sales_history partition spec is valid: {e}"))
}

/// The table's sort order: `tenant_id, sold_date` (ascending, nulls first), order id 1.
///
/// Appends (and the streaming appender, and compaction) write each month's rows in this order,
/// so one tenant's rows of a month sit together: row-group and page statistics of `tenant_id`
/// and `sold_date` then let a tenant (and time) filter skip the rest of the file. Tables
/// without it (made by other engines) are accepted and written in their own order.
pub fn sort_order() -> iceberg::spec::SortOrder {
    use iceberg::spec::{NullOrder, SortDirection, SortField, SortOrder};
    let field = |c: Column| {
        SortField::builder()
            .source_id(c.field_id())
            .transform(Transform::Identity)
            .direction(SortDirection::Ascending)
            .null_order(NullOrder::First)
            .build()
    };
    SortOrder::builder()
        .with_order_id(1)
        .with_sort_field(field(Column::TenantId))
        .with_sort_field(field(Column::SoldDate))
        .build_unbound()
        .unwrap_or_else(|e| unreachable!("the sales_history sort order is valid: {e}"))
}

/// The Arrow schema of a batch this crate writes (fields carry their Iceberg field ids).
pub fn arrow_schema() -> ArrowSchemaRef {
    static ARROW: LazyLock<ArrowSchemaRef> = LazyLock::new(|| {
        let schema = iceberg::arrow::schema_to_arrow_schema(&iceberg_schema())
            .unwrap_or_else(|e| unreachable!("the sales_history schema converts to Arrow: {e}"));
        Arc::new(schema)
    });
    ARROW.clone()
}

/// Default `commit.retry.num-retries` of a new table.
pub const DEFAULT_COMMIT_RETRIES: u32 = 20;

/// Table properties stored at creation.
pub(crate) fn table_properties(options: &crate::TableOptions) -> HashMap<String, String> {
    let embedding_dimension = options.embedding_dimension;
    [
        ("write.format.default", "parquet".to_string()),
        (
            COMPRESSION_CODEC_PROPERTY,
            options.codec.as_property().to_string(),
        ),
        (
            EMBEDDING_DIMENSION_PROPERTY,
            embedding_dimension.to_string(),
        ),
        ("write.parquet.row-group-limit", "16384".to_string()),
        (
            crate::EMBEDDING_ENCODING_PROPERTY,
            options.embedding_encoding.as_property().to_string(),
        ),
        // Appends retry conflicts with refreshed metadata (see `Transaction::commit`).
        (
            "commit.retry.num-retries",
            options.commit_retries.to_string(),
        ),
        ("commit.retry.min-wait-ms", "20".to_string()),
        ("commit.retry.max-wait-ms", "2000".to_string()),
        ("commit.retry.total-timeout-ms", "120000".to_string()),
        // A table that lives for months under a streaming writer: manifests merged on every
        // commit (Java's MergeAppend defaults, set explicitly), old metadata files deleted
        // once they fall out of the metadata log.
        (crate::MANIFEST_MERGE_ENABLED_PROPERTY, "true".to_string()),
        (
            crate::MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY,
            "100".to_string(),
        ),
        (
            crate::MANIFEST_TARGET_SIZE_BYTES_PROPERTY,
            "8388608".to_string(),
        ),
        (
            crate::METADATA_DELETE_AFTER_COMMIT_PROPERTY,
            "true".to_string(),
        ),
        ("write.metadata.previous-versions-max", "100".to_string()),
    ]
    .into_iter()
    .chain(
        options
            .codec
            .level()
            .map(|l| (crate::COMPRESSION_LEVEL_PROPERTY, l.to_string())),
    )
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The embedding dimension recorded in a table's properties (default when absent).
pub(crate) fn embedding_dimension_of(metadata: &TableMetadata) -> Result<usize> {
    match metadata.properties().get(EMBEDDING_DIMENSION_PROPERTY) {
        None => Ok(DEFAULT_EMBEDDING_DIMENSION),
        Some(v) => v.parse::<usize>().ok().filter(|d| *d > 0).ok_or_else(|| {
            Error::config(
                EMBEDDING_DIMENSION_PROPERTY,
                format!("table property is `{v}`, expected a positive integer"),
            )
        }),
    }
}

/// How an Iceberg type reads in a message: `string`, `decimal(10,2)`, `list<double>`.
fn type_text(t: &Type) -> String {
    match t {
        Type::Primitive(p) => p.to_string(),
        Type::List(l) => format!("list<{}>", type_text(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{}, {}>",
            type_text(&m.key_field.field_type),
            type_text(&m.value_field.field_type)
        ),
        Type::Struct(s) => {
            let fields: Vec<String> = s
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name, type_text(&f.field_type)))
                .collect();
            format!("struct<{}>", fields.join(", "))
        }
    }
}

/// The differences between a column's type in the table and ours (empty when compatible).
fn type_drift(column: Column, table_type: &Type) -> Vec<String> {
    let ours = column.iceberg_type();
    match (&ours, table_type) {
        (Type::List(ours), Type::List(theirs)) => {
            let (o, t) = (&ours.element_field, &theirs.element_field);
            let mut diffs = Vec::new();
            if *o.field_type != *t.field_type {
                diffs.push(format!(
                    "column `{column}`: element is `{}` here and `{}` in the table",
                    type_text(&o.field_type),
                    type_text(&t.field_type)
                ));
            }
            if o.id != t.id {
                diffs.push(format!(
                    "column `{column}`: list element has field id {} in the table, expected {}",
                    t.id, o.id
                ));
            }
            if t.required && !o.required {
                diffs.push(format!(
                    "column `{column}`: list element is required in the table but optional here"
                ));
            }
            diffs
        }
        _ if ours == *table_type => Vec::new(),
        _ => vec![format!(
            "column `{column}`: type is `{}` here and `{}` in the table",
            type_text(&ours),
            type_text(table_type)
        )],
    }
}

/// Lists every way an existing table differs from the layout this crate writes in a way that
/// makes it unusable (real drift). An empty list means the table can be adopted as it is.
///
/// Compatible, and so not listed here (see [`layout_notes`]): a column or the `embedding` list
/// element that is optional in the table where ours is required (this crate never writes nulls
/// there), any Parquet codec this crate can write, extra table properties, a sort order.
pub(crate) fn drift(metadata: &TableMetadata) -> Vec<String> {
    let mut diffs = Vec::new();
    let schema = metadata.current_schema();
    for column in Column::ALL {
        match schema.field_by_name(column.name()) {
            None => diffs.push(format!("column `{column}` is missing from the table")),
            Some(field) => {
                if field.id != column.field_id() {
                    diffs.push(format!(
                        "column `{column}` has field id {} in the table, expected {}",
                        field.id,
                        column.field_id()
                    ));
                }
                diffs.extend(type_drift(column, &field.field_type));
                if field.required && !column.is_required() {
                    diffs.push(format!(
                        "column `{column}` is required in the table but optional here"
                    ));
                }
            }
        }
    }
    for field in schema.as_struct().fields() {
        if Column::from_str(&field.name).is_err() {
            diffs.push(format!(
                "the table has a column `{}` that sales_history does not have",
                field.name
            ));
        }
    }

    // The default spec must be one of our layouts; so must every earlier spec (files written
    // under it are still read, compacted and deleted by this crate).
    let spec = metadata.default_partition_spec();
    if crate::layout::Layout::of(spec).is_none() {
        diffs.push(format!(
            "partition spec is {} in the table, expected one of the sales_history layouts: [month(sold_date) as {PARTITION_FIELD_NAME}], or identity(tenant_id) / bucket(N, tenant_id) then month(sold_date)",
            crate::layout::describe_spec(spec, schema)
        ));
    }
    let mut older: Vec<_> = metadata
        .partition_specs_iter()
        .filter(|s| s.spec_id() != spec.spec_id() && crate::layout::Layout::of(s).is_none())
        .collect();
    older.sort_by_key(|s| s.spec_id());
    for old in older {
        diffs.push(format!(
            "partition spec {} of the table's history is {}, which is none of the sales_history layouts",
            old.spec_id(),
            crate::layout::describe_spec(old, schema)
        ));
    }

    // Any codec (and any other write.parquet.* setting) this crate can write with is fine.
    if let Err(e) = crate::parquet_props::writer_properties(metadata.properties()) {
        diffs.push(e.to_string());
    }
    if let Some(fmt) = metadata.properties().get("write.format.default")
        && !fmt.eq_ignore_ascii_case("parquet")
    {
        diffs.push(format!(
            "property write.format.default is `{fmt}` in the table, expected parquet"
        ));
    }
    if metadata.format_version() != iceberg::spec::FormatVersion::V2 {
        diffs.push(format!(
            "format version is {} in the table, expected 2",
            metadata.format_version()
        ));
    }
    if let Err(e) = embedding_dimension_of(metadata) {
        diffs.push(e.to_string());
    }
    diffs
}

/// Compatible ways a table differs from the seed's layout (optional columns, an optional list
/// element, another codec): information for `verify` and `create_schema --dry-run`, never a
/// reason to refuse the table.
pub(crate) fn layout_notes(metadata: &TableMetadata) -> Vec<String> {
    let mut notes = Vec::new();
    let schema = metadata.current_schema();
    let optional: Vec<String> = Column::ALL
        .into_iter()
        .filter(|c| c.is_required())
        .filter(|c| schema.field_by_name(c.name()).is_some_and(|f| !f.required))
        .map(|c| format!("`{c}`"))
        .collect();
    if !optional.is_empty() {
        notes.push(format!(
            "{} optional in the table (required in the seed's layout); appends still never write nulls there",
            match optional.len() {
                1 => format!("column {} is", optional[0]),
                _ => format!("columns {} are", optional.join(", ")),
            }
        ));
    }
    if let Some(field) = schema.field_by_name(Column::Embedding.name())
        && let Type::List(list) = &*field.field_type
        && !list.element_field.required
    {
        notes.push(
            "list element of `embedding` is optional in the table (required in the seed's layout); appends never write null elements"
                .to_string(),
        );
    }
    match metadata.properties().get(COMPRESSION_CODEC_PROPERTY) {
        Some(codec) if codec.eq_ignore_ascii_case(COMPRESSION_CODEC) => {}
        Some(codec) => notes.push(format!(
            "{COMPRESSION_CODEC_PROPERTY} is `{codec}` (the seed's layout uses {COMPRESSION_CODEC}); appends write {}",
            codec.to_ascii_lowercase()
        )),
        None => notes.push(format!(
            "{COMPRESSION_CODEC_PROPERTY} is unset (the seed's layout sets {COMPRESSION_CODEC}); appends write {COMPRESSION_CODEC}"
        )),
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ids_follow_seed_order() {
        let schema = iceberg_schema();
        for (i, c) in Column::ALL.iter().enumerate() {
            let f = schema.field_by_id(i as i32 + 1).expect("field present");
            assert_eq!(f.name, c.name());
            assert_eq!(f.required, c.is_required());
        }
        assert_eq!(
            schema
                .field_by_id(EMBEDDING_ELEMENT_FIELD_ID)
                .map(|f| f.required),
            Some(true)
        );
        assert_eq!(schema.highest_field_id(), 13);
    }

    #[test]
    fn arrow_schema_carries_field_ids() {
        let a = arrow_schema();
        assert_eq!(a.fields().len(), 12);
        let id = a.field(9).metadata().get("PARQUET:field_id").cloned();
        assert_eq!(id.as_deref(), Some("10"));
        assert!(!a.field(0).is_nullable());
        assert!(a.field(2).is_nullable());
    }

    #[test]
    fn column_names_round_trip() {
        for c in Column::ALL {
            assert_eq!(c.name().parse::<Column>().ok(), Some(c));
        }
        assert!("price".parse::<Column>().is_err());
    }
}
