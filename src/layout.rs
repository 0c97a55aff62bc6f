//! [`Layout`]: how `sales_history`'s data files are partitioned, as a typed choice.
//!
//! Three layouts, all ending in the seed's `month(sold_date)`:
//!
//! | layout | partition spec | directories |
//! |---|---|---|
//! | [`Layout::Month`] (the seed's, default) | `month(sold_date)` | `sold_date_month=2024-03/` |
//! | [`Layout::TenantMonth`] | `identity(tenant_id)`, `month(sold_date)` | `tenant_id=acme/sold_date_month=2024-03/` |
//! | [`Layout::TenantBucketMonth`] | `bucket(N, tenant_id)`, `month(sold_date)` | `tenant_id_bucket=5/sold_date_month=2024-03/` |
//!
//! A table is created with one ([`TableOptions::layout`](crate::TableOptions::layout)) and can
//! move to another in place ([`SalesHistory::evolve_layout`](crate::SalesHistory::evolve_layout)):
//! a new partition spec becomes the default, files already written keep theirs, and every
//! reader plans each spec on its own (iceberg binds a filter per manifest spec).
//!
//! **What iceberg 0.10.1 lacks**: an action to evolve a spec (apache/iceberg-rust#2583 is
//! open). Its metadata builder has the pieces (`add_partition_spec` reuses the id of an
//! equivalent field of an earlier spec and assigns fresh ids above `last-partition-id`;
//! `set_default_partition_spec`), and the commit loop stages them like any other change.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use iceberg::spec::{Literal, PartitionSpec, Schema, Struct, Transform, UnboundPartitionSpec};

use crate::error::{Error, Result};
use crate::month::Month;
use crate::schema::{Column, PARTITION_FIELD_NAME};

/// Name of the `identity(tenant_id)` partition field (as Java and pyiceberg name identity
/// fields: the column's name).
pub const TENANT_PARTITION_FIELD_NAME: &str = "tenant_id";
/// Name of the `bucket(N, tenant_id)` partition field.
pub const TENANT_BUCKET_PARTITION_FIELD_NAME: &str = "tenant_id_bucket";
/// Largest bucket count [`Layout::TenantBucketMonth`] accepts.
pub const MAX_TENANT_BUCKETS: u32 = 65_536;

/// How the table's data files are partitioned. All three end in the seed's `month(sold_date)`:
///
/// | layout | partition spec | directories |
/// |---|---|---|
/// | [`Layout::Month`] (default) | `month(sold_date)` | `sold_date_month=2024-03/` |
/// | [`Layout::TenantMonth`] | `identity(tenant_id)`, `month(sold_date)` | `tenant_id=acme/sold_date_month=2024-03/` |
/// | [`Layout::TenantBucketMonth`] | `bucket(N, tenant_id)`, `month(sold_date)` | `tenant_id_bucket=5/sold_date_month=2024-03/` |
///
/// A table is created with one ([`TableOptions::layout`](crate::TableOptions::layout)) and
/// can move to another in place
/// ([`SalesHistory::evolve_layout`](crate::SalesHistory::evolve_layout)); files already
/// written keep their spec and every reader prunes each spec on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Layout {
    /// `month(sold_date)`: the seed's layout, and the default.
    #[default]
    Month,
    /// `identity(tenant_id)`, then `month(sold_date)`: one tenant's month per directory.
    /// Tenant filters open only that tenant's files, and erasing a tenant drops whole
    /// partitions from metadata. Best with tens to a few thousand tenants.
    TenantMonth,
    /// `bucket(N, tenant_id)`, then `month(sold_date)`: tenants hashed into `buckets` groups
    /// (Iceberg's murmur3 bucket transform). Bounds the partition count whatever the number
    /// of tenants; a tenant filter opens 1/N of the files.
    TenantBucketMonth {
        /// Number of buckets, 1 to [`MAX_TENANT_BUCKETS`].
        buckets: u32,
    },
}

impl Layout {
    /// `bucket(buckets, tenant_id)` + `month(sold_date)`, checked: 1 to
    /// [`MAX_TENANT_BUCKETS`] buckets, else [`Error::Config`].
    pub fn tenant_buckets(buckets: u32) -> Result<Self> {
        let layout = Layout::TenantBucketMonth { buckets };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks the layout's parameters ([`Error::Config`] naming `partitioning`).
    pub fn validate(&self) -> Result<()> {
        match self {
            Layout::TenantBucketMonth { buckets }
                if !(1..=MAX_TENANT_BUCKETS).contains(buckets) =>
            {
                Err(Error::config(
                    "partitioning",
                    format!(
                        "bucket count {buckets} is out of range: a tenant bucket layout takes 1 to {MAX_TENANT_BUCKETS} buckets"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether the layout partitions by tenant (identity or bucket).
    pub const fn partitions_by_tenant(&self) -> bool {
        !matches!(self, Layout::Month)
    }

    /// The partition spec, unbound and without field or spec ids: table creation assigns
    /// them; an evolve reuses the id of an equivalent field of an earlier spec (the month
    /// field keeps its id) and gives new fields fresh ones.
    pub fn partition_spec(&self) -> Result<UnboundPartitionSpec> {
        self.validate()?;
        let month = (
            Column::SoldDate.field_id(),
            PARTITION_FIELD_NAME,
            Transform::Month,
        );
        let fields = match self {
            Layout::Month => vec![month],
            Layout::TenantMonth => vec![
                (
                    Column::TenantId.field_id(),
                    TENANT_PARTITION_FIELD_NAME,
                    Transform::Identity,
                ),
                month,
            ],
            Layout::TenantBucketMonth { buckets } => vec![
                (
                    Column::TenantId.field_id(),
                    TENANT_BUCKET_PARTITION_FIELD_NAME,
                    Transform::Bucket(*buckets),
                ),
                month,
            ],
        };
        let mut builder = UnboundPartitionSpec::builder();
        for (source, name, transform) in fields {
            builder = builder
                .add_partition_field(source, name, transform)
                .map_err(|e| Error::config("partitioning", e.to_string()))?;
        }
        Ok(builder.build())
    }

    /// The layout a partition spec is, or `None` when it is none of ours. Matched by source
    /// column and transform in order; the month field must be named `sold_date_month` (it
    /// names the directories every engine writes), the tenant field may have any name (Java
    /// and pyiceberg name an evolved bucket field `tenant_id_bucket_16`).
    pub fn of(spec: &PartitionSpec) -> Option<Layout> {
        let fields = spec.fields();
        let month_ok = |f: &iceberg::spec::PartitionField| {
            f.source_id == Column::SoldDate.field_id()
                && f.transform == Transform::Month
                && f.name == PARTITION_FIELD_NAME
        };
        match fields {
            [m] if month_ok(m) => Some(Layout::Month),
            [t, m] if month_ok(m) && t.source_id == Column::TenantId.field_id() => {
                match t.transform {
                    Transform::Identity => Some(Layout::TenantMonth),
                    Transform::Bucket(n) if n >= 1 => {
                        Some(Layout::TenantBucketMonth { buckets: n })
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// How the spec reads: `[identity(tenant_id), month(sold_date)]`.
    pub fn spec_text(&self) -> String {
        match self {
            Layout::Month => "[month(sold_date)]".to_string(),
            Layout::TenantMonth => "[identity(tenant_id), month(sold_date)]".to_string(),
            Layout::TenantBucketMonth { buckets } => {
                format!("[bucket({buckets}, tenant_id), month(sold_date)]")
            }
        }
    }

    /// The partitions of `batch`'s rows under this layout: the distinct partition values, and
    /// for each row the index of its value. Rows are keyed by `(month, tenant key)` with the
    /// tenant key a small integer (the bucket, or the position of the tenant id among the
    /// batch's distinct ids), so no row allocates: a value is built once per partition.
    pub(crate) fn partitions_of(
        &self,
        batch: &RecordBatch,
    ) -> Result<(Vec<PartitionValue>, Vec<u32>)> {
        let dates = batch
            .column(Column::SoldDate.index())
            .as_primitive::<TimestampMicrosecondType>();
        let tenants = batch.column(Column::TenantId.index());
        // Per row: the tenant key (the bucket, or an index into `names`).
        let mut names: Vec<&str> = Vec::new();
        let keys: Vec<i32> = match self {
            Layout::Month => vec![0; batch.num_rows()],
            Layout::TenantMonth => {
                let strings = tenants.as_string_opt::<i32>().ok_or_else(|| {
                    Error::internal("tenant_id is not a string column in a validated batch")
                })?;
                let mut ids: HashMap<&str, i32> = HashMap::new();
                (0..strings.len())
                    .map(|i| {
                        let t = strings.value(i);
                        *ids.entry(t).or_insert_with(|| {
                            names.push(t);
                            names.len() as i32 - 1
                        })
                    })
                    .collect()
            }
            Layout::TenantBucketMonth { buckets } => {
                let bucket =
                    iceberg::transform::create_transform_function(&Transform::Bucket(*buckets))
                        .map_err(Error::from_iceberg)?
                        .transform(tenants.clone())
                        .map_err(Error::from_iceberg)?;
                bucket
                    .as_primitive_opt::<Int32Type>()
                    .ok_or_else(|| {
                        Error::internal("iceberg's bucket transform did not return int32 values")
                    })?
                    .values()
                    .to_vec()
            }
        };
        let part = |key: i32| match self {
            Layout::Month => None,
            Layout::TenantMonth => Some(TenantPart::Id(names[key as usize].to_string())),
            Layout::TenantBucketMonth { .. } => Some(TenantPart::Bucket(key)),
        };
        let mut groups: HashMap<(i32, i32), u32> = HashMap::new();
        let mut values: Vec<PartitionValue> = Vec::new();
        let rows = dates
            .values()
            .iter()
            .zip(&keys)
            .map(|(micros, key)| {
                let month = Month::of_micros(*micros);
                *groups.entry((month.ordinal(), *key)).or_insert_with(|| {
                    values.push(PartitionValue {
                        tenant: part(*key),
                        month,
                    });
                    values.len() as u32 - 1
                })
            })
            .collect();
        Ok((values, rows))
    }
}

impl fmt::Display for Layout {
    /// `month`, `tenant-month`, `bucket16-month` (what [`FromStr`] reads).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Month => f.write_str("month"),
            Layout::TenantMonth => f.write_str("tenant-month"),
            Layout::TenantBucketMonth { buckets } => write!(f, "bucket{buckets}-month"),
        }
    }
}

impl FromStr for Layout {
    type Err = Error;

    /// `month`, `tenant-month`, or `bucketN-month` (N buckets of tenants).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "month" => return Ok(Layout::Month),
            "tenant-month" => return Ok(Layout::TenantMonth),
            _ => {}
        }
        if let Some(n) = t
            .strip_prefix("bucket")
            .and_then(|r| r.strip_suffix("-month"))
        {
            let buckets = n.parse::<u32>().map_err(|_| {
                Error::config(
                    "partitioning",
                    format!("`{s}`: the bucket count `{n}` is not a number"),
                )
            })?;
            return Layout::tenant_buckets(buckets);
        }
        Err(Error::config(
            "partitioning",
            format!(
                "unknown layout `{s}`; expected month, tenant-month or bucketN-month (e.g. bucket16-month)"
            ),
        ))
    }
}

/// A row's tenant partition value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TenantPart {
    /// `identity(tenant_id)`.
    Id(String),
    /// `bucket(N, tenant_id)`.
    Bucket(i32),
}

/// A row's partition under one of our layouts: the tenant part (if any), then the month.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PartitionValue {
    pub(crate) tenant: Option<TenantPart>,
    pub(crate) month: Month,
}

impl PartitionValue {
    /// The partition tuple as iceberg stores it (the spec's field order: tenant, month).
    pub(crate) fn to_struct(&self) -> Struct {
        let month = Some(Literal::int(self.month.ordinal()));
        match &self.tenant {
            None => Struct::from_iter([month]),
            Some(TenantPart::Id(t)) => Struct::from_iter([Some(Literal::string(t.clone())), month]),
            Some(TenantPart::Bucket(b)) => Struct::from_iter([Some(Literal::int(*b)), month]),
        }
    }
}

/// The directory of a partition, from the spec's field names and the partition tuple:
/// `tenant_id=acme/sold_date_month=2024-03` (months as `YYYY-MM`, as Java and pyiceberg name
/// them; other values percent-encoded as Java's `URLEncoder` would leave them readable).
pub(crate) fn partition_path(spec: &PartitionSpec, data: &Struct) -> Option<String> {
    let mut segments = Vec::with_capacity(spec.fields().len());
    for (field, value) in spec.fields().iter().zip(data.fields()) {
        let text = match (&field.transform, value.as_ref()) {
            (_, None) => "null".to_string(),
            (
                Transform::Month,
                Some(Literal::Primitive(iceberg::spec::PrimitiveLiteral::Int(m))),
            ) => Month::from_ordinal(*m).to_string(),
            (_, Some(Literal::Primitive(iceberg::spec::PrimitiveLiteral::Int(i)))) => i.to_string(),
            (_, Some(Literal::Primitive(iceberg::spec::PrimitiveLiteral::String(s)))) => escape(s),
            _ => return None,
        };
        segments.push(format!("{}={text}", escape(&field.name)));
    }
    Some(segments.join("/"))
}

/// Percent-encodes everything but `[A-Za-z0-9._-]`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The month of a partition tuple of one of our layouts (the last field), if it is one.
pub(crate) fn month_of(partition: &Struct) -> Option<Month> {
    match partition.fields().last().cloned().flatten()? {
        Literal::Primitive(iceberg::spec::PrimitiveLiteral::Int(m)) => Some(Month::from_ordinal(m)),
        _ => None,
    }
}

/// Where each partition spec of a table holds an `identity(tenant_id)` field: a file under
/// such a spec holds one tenant, its partition value.
pub(crate) struct IdentityTenant {
    /// (spec id, position of the field in the spec).
    specs: Vec<(i32, usize)>,
}

impl IdentityTenant {
    pub(crate) fn of<'a>(specs: impl IntoIterator<Item = &'a PartitionSpec>) -> IdentityTenant {
        let specs = specs
            .into_iter()
            .filter_map(|spec| {
                let at = spec.fields().iter().position(|f| {
                    f.transform == Transform::Identity && f.source_id == Column::TenantId.field_id()
                })?;
                Some((spec.spec_id(), at))
            })
            .collect();
        IdentityTenant { specs }
    }

    /// The tenant of a file of spec `spec_id` with partition tuple `partition`, when the spec
    /// partitions by `identity(tenant_id)` and the value is a string.
    pub(crate) fn value(&self, spec_id: i32, partition: &Struct) -> Option<std::sync::Arc<str>> {
        let &(_, at) = self.specs.iter().find(|(id, _)| *id == spec_id)?;
        match partition.fields().get(at)? {
            Some(Literal::Primitive(iceberg::spec::PrimitiveLiteral::String(t))) => {
                Some(t.as_str().into())
            }
            _ => None,
        }
    }
}

/// How a spec reads in a message: `[bucket[16](tenant_id) as tenant_id_bucket, …]`.
pub(crate) fn describe_spec(spec: &PartitionSpec, schema: &Schema) -> String {
    let shown: Vec<String> = spec
        .fields()
        .iter()
        .map(|f| describe_field(f, schema))
        .collect();
    format!("[{}]", shown.join(", "))
}

/// How a partition field reads: `month(sold_date) as sold_date_month`.
pub(crate) fn describe_field(f: &iceberg::spec::PartitionField, schema: &Schema) -> String {
    let source = schema
        .field_by_id(f.source_id)
        .map_or_else(|| format!("field {}", f.source_id), |s| s.name.clone());
    format!("{}({source}) as {}", f.transform, f.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_and_print() {
        for l in [
            Layout::Month,
            Layout::TenantMonth,
            Layout::TenantBucketMonth { buckets: 16 },
        ] {
            assert_eq!(l.to_string().parse::<Layout>().ok(), Some(l));
        }
        assert!(matches!(
            "bucket0-month".parse::<Layout>(),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            "tenant".parse::<Layout>(),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            "bucketx-month".parse::<Layout>(),
            Err(Error::Config { .. })
        ));
        assert!(Layout::tenant_buckets(0).is_err());
        assert!(Layout::tenant_buckets(MAX_TENANT_BUCKETS + 1).is_err());
        assert!(
            Layout::TenantBucketMonth { buckets: 0 }
                .partition_spec()
                .is_err()
        );
    }

    #[test]
    fn partition_paths_name_months_as_java_does() {
        let schema = crate::schema::iceberg_schema();
        let bind = |l: Layout| {
            iceberg::spec::PartitionSpec::builder(schema.clone())
                .add_unbound_fields(l.partition_spec().unwrap().fields().iter().cloned())
                .unwrap()
                .build()
                .unwrap()
        };
        let month = PartitionValue {
            tenant: None,
            month: Month::from_ordinal(650),
        };
        assert_eq!(
            partition_path(&bind(Layout::Month), &month.to_struct()).as_deref(),
            Some("sold_date_month=2024-03")
        );
        let tenant = PartitionValue {
            tenant: Some(TenantPart::Id("acme corp".into())),
            month: Month::from_ordinal(650),
        };
        assert_eq!(
            partition_path(&bind(Layout::TenantMonth), &tenant.to_struct()).as_deref(),
            Some("tenant_id=acme%20corp/sold_date_month=2024-03")
        );
        let spec = bind(Layout::TenantBucketMonth { buckets: 16 });
        assert_eq!(
            Layout::of(&spec),
            Some(Layout::TenantBucketMonth { buckets: 16 })
        );
        let bucket = PartitionValue {
            tenant: Some(TenantPart::Bucket(5)),
            month: Month::from_ordinal(650),
        };
        assert_eq!(
            partition_path(&spec, &bucket.to_struct()).as_deref(),
            Some("tenant_id_bucket=5/sold_date_month=2024-03")
        );
        assert_eq!(
            month_of(&bucket.to_struct()),
            Some(Month::from_ordinal(650))
        );
    }

    #[test]
    fn escape_keeps_readable_ids() {
        assert_eq!(escape("tenant-07_a.b"), "tenant-07_a.b");
        assert_eq!(escape("a/b c"), "a%2Fb%20c");
        assert_eq!(escape("é"), "%C3%A9");
    }
}
