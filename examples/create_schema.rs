//! Creates the Glue database / namespace and the `sales_history` table (idempotent), then
//! prints the names, location and schema. `--dry-run` prints what it would do, changing nothing.
//!
//! ```text
//! cargo run --example create_schema -- [--dry-run] [--embedding-dimension N] [--partitioning month|tenant-month|bucketN-month] [--codec snappy|zstd|zstd-N] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

use std::num::NonZeroUsize;

use clap::Parser;
use sales_history::schema::{COMPRESSION_CODEC_PROPERTY, EMBEDDING_DIMENSION_PROPERTY};
use sales_history::{Codec, Column, EnsurePlan, Layout, SalesHistory, TableOptions};

/// Creates the namespace (Glue database) pricing_intelligence_STAGE and the sales_history
/// table in it when missing, and adopts an existing table whose layout is compatible; never
/// changes an existing table. Prints the catalog, names, location, format and the schema.
/// With --dry-run it only says what it would do.
#[derive(Debug, Parser)]
#[command(name = "create_schema", verbatim_doc_comment)]
struct Args {
    /// Only print what would be created; change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Length of the embedding vectors of a new table (default: the crate's, 1024). An
    /// existing table keeps its own.
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    embedding_dimension: Option<NonZeroUsize>,

    /// Partitioning of a new table: month (the seed's month(sold_date), default),
    /// tenant-month (identity(tenant_id), month(sold_date)) or bucketN-month
    /// (bucket(N, tenant_id), month(sold_date)). An existing table keeps its own (move it
    /// with `maintain --evolve-to`).
    #[arg(long, value_name = "LAYOUT", value_parser = parse_layout)]
    partitioning: Option<Layout>,

    /// Compression codec of a new table's data files: snappy (the seed's, default), zstd
    /// (level 3) or zstd-N. An existing table keeps its own.
    #[arg(long, value_name = "CODEC", value_parser = parse_codec)]
    codec: Option<Codec>,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (catalog, stage) = (args.catalog.config(), args.catalog.stage.as_str());
    let namespace = sales_history::namespace_for_stage(stage)?;
    println!("catalog   {catalog}");
    println!("database  {namespace}  (Athena: {namespace}.sales_history)");

    let plan = SalesHistory::plan_ensure(&catalog, stage).await?;
    if args.dry_run {
        match &plan {
            EnsurePlan::CreateNamespaceAndTable => {
                println!("would create database {namespace} and table sales_history")
            }
            EnsurePlan::CreateTable => println!(
                "would create table {namespace}.sales_history partitioned {}",
                args.partitioning.unwrap_or_default().spec_text()
            ),
            EnsurePlan::UpToDate => println!("nothing to do: the table exists and matches"),
            EnsurePlan::Compatible(notes) => println!(
                "found an existing table that differs from the seed's layout in compatible ways only:\n  {}\nnothing would change: it is used as it is",
                notes.join("\n  ")
            ),
            EnsurePlan::Drifted(d) => {
                println!("the table exists but has drifted:\n  {}", d.join("\n  "))
            }
            _ => println!("{plan:?}"),
        }
        print_schema();
        return Ok(());
    }
    let mut options = TableOptions::default();
    if let Some(d) = args.embedding_dimension {
        options = options.embedding_dimension(d.get());
    }
    if let Some(layout) = args.partitioning {
        options = options.layout(layout);
    }
    if let Some(codec) = args.codec {
        options = options.codec(codec);
    }
    let table = SalesHistory::ensure_with(&catalog, stage, options).await?;
    let action = match plan {
        EnsurePlan::UpToDate => "exists (unchanged)",
        EnsurePlan::Compatible(notes) => {
            for n in &notes {
                println!("note      {n}");
            }
            "exists (adopted as it is, unchanged)"
        }
        _ => "created",
    };
    println!("table     {} {action}", table.name());
    println!("location  {}", table.location());
    let layout = table.layout()?;
    let codec = table
        .iceberg_table()
        .metadata()
        .properties()
        .get(COMPRESSION_CODEC_PROPERTY)
        .map_or_else(|| "snappy".to_string(), |c| c.to_ascii_lowercase());
    println!(
        "format    Iceberg v2, Parquet + {codec}, partitioned {layout} {}, {EMBEDDING_DIMENSION_PROPERTY}={}",
        layout.spec_text(),
        table.embedding_dimension()
    );
    if let Some(wanted) = args.codec.filter(|c| c.as_property() != codec) {
        println!(
            "note      the table exists with codec {codec}; --codec {wanted} applies to new tables only"
        );
    }
    if let Some(wanted) = args.partitioning.filter(|l| *l != layout) {
        println!(
            "note      the table exists with the {layout} layout; --partitioning {wanted} applies to new tables only (see maintain --evolve-to)"
        );
    }
    println!("snapshots {}", table.snapshots().await?.len());
    print_schema();
    Ok(())
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    s.parse::<Codec>().map_err(|e| e.to_string())
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse::<Layout>().map_err(|e| e.to_string())
}

fn print_schema() {
    println!("\n  id  column         Athena type     required");
    for c in Column::ALL {
        println!(
            "  {:>2}  {:<14} {:<15} {}",
            c.field_id(),
            c.name(),
            c.athena_type(),
            if c.is_required() { "yes" } else { "" }
        );
    }
}
