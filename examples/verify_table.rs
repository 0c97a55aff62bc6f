//! The seed's verification script, natively: one ✓/✗ line per check, `--json` for machines.
//! Exit status 0 when every check passes, 1 otherwise (or when the table cannot be read).
//! Read-only: it never creates the warehouse, the catalog or the table.
//!
//! ```text
//! cargo run --example verify_table -- [--json] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/report.rs"]
mod report;

use clap::Parser;
use sales_history::SalesHistory;

/// Checks the existing sales_history table and changes nothing: that it exists, its schema,
/// partition spec and format (Parquet + Snappy in the files themselves), that its data files
/// exist, rows per month, a sample query and data quality (and on Glue, the fields Athena
/// reads). Prints one ✓/✗ line per check; exits 0 when all pass, 1 when one fails or the table
/// cannot be read.
#[derive(Debug, Parser)]
#[command(name = "verify_table", verbatim_doc_comment)]
struct Args {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let report = report::exit_on_error(
        SalesHistory::verify(&args.catalog.config(), &args.catalog.stage).await,
    );
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
        if !report.rows_per_month.is_empty() {
            println!("\nrows per month:");
            for (m, n) in &report.rows_per_month {
                println!("  {m}  {n}");
            }
        }
    }
    std::process::exit(if report.passed() { 0 } else { 1 });
}
