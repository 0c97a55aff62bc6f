//! The seed's verification script, natively: one ✓/✗ line per check, `--json` for machines.
//! Exit status 0 when every check passes, 1 otherwise.
//!
//! ```text
//! cargo run --example verify_table -- [--json] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/cli.rs"]
mod cli;

use sales_history::SalesHistory;

#[tokio::main]
async fn main() {
    let mut cli = cli::Cli::parse("usage: verify_table [--json]");
    let json = cli.flag("--json");
    let (catalog, stage) = (cli.catalog.clone(), cli.stage.clone());
    cli.finish();
    match SalesHistory::verify(&catalog, &stage).await {
        Ok(report) => {
            if json {
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
        Err(e) => {
            eprintln!("✗ cannot verify: {e}");
            std::process::exit(1);
        }
    }
}
