//! Creates the Glue database / namespace and the `sales_history` table (idempotent), then
//! prints the names, location and schema. `--dry-run` prints what it would do, changing nothing.
//!
//! ```text
//! cargo run --example create_schema -- [--dry-run] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/cli.rs"]
mod cli;

use sales_history::schema::{EMBEDDING_DIMENSION_PROPERTY, PARTITION_FIELD_NAME};
use sales_history::{Column, EnsurePlan, SalesHistory, TableOptions};

const USAGE: &str = "usage: create_schema [--dry-run] [--embedding-dimension N]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cli = cli::Cli::parse(USAGE);
    let dry_run = cli.flag("--dry-run");
    let dimension: Option<usize> = cli.value("--embedding-dimension");
    let (catalog, stage) = (cli.catalog.clone(), cli.stage.clone());
    cli.finish();
    let namespace = sales_history::namespace_for_stage(&stage)?;
    println!("catalog   {catalog}");
    println!("database  {namespace}  (Athena: {namespace}.sales_history)");

    let plan = SalesHistory::plan_ensure(&catalog, &stage).await?;
    if dry_run {
        match &plan {
            EnsurePlan::CreateNamespaceAndTable => {
                println!("would create database {namespace} and table sales_history")
            }
            EnsurePlan::CreateTable => println!("would create table {namespace}.sales_history"),
            EnsurePlan::UpToDate => println!("nothing to do: the table exists and matches"),
            EnsurePlan::Drifted(d) => {
                println!("the table exists but has drifted:\n  {}", d.join("\n  "))
            }
            _ => println!("{plan:?}"),
        }
        print_schema();
        return Ok(());
    }
    let mut options = TableOptions::default();
    if let Some(d) = dimension {
        options = options.with_embedding_dimension(d);
    }
    let table = SalesHistory::ensure_with(&catalog, &stage, options).await?;
    let action = match plan {
        EnsurePlan::UpToDate => "exists (unchanged)",
        _ => "created",
    };
    println!("table     {} {action}", table.name());
    println!("location  {}", table.location());
    println!(
        "format    Iceberg v2, Parquet + Snappy, partitioned by month(sold_date) as {PARTITION_FIELD_NAME}, {EMBEDDING_DIMENSION_PROPERTY}={}",
        table.embedding_dimension()
    );
    println!("snapshots {}", table.snapshots().len());
    print_schema();
    Ok(())
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
