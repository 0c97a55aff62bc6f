//! Prints the least-privilege IAM policy (JSON) for a service using this crate on Glue + S3:
//! only the Glue and S3 actions the crate calls, on this stage's database, table and prefix.
//!
//! ```text
//! cargo run --example iam_policy -- --account 123456789012 --bucket analytics [--prefix iceberg] [--region eu-west-1] [--stage dev]
//! cargo run --example iam_policy -- --table-bucket-arn arn:aws:s3tables:eu-west-1:123456789012:bucket/pricing [--stage dev]
//! ```

#[path = "common/report.rs"]
mod report;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use sales_history::iam::{PolicyScope, policy, s3tables_policy};

/// Prints the least-privilege IAM policy (JSON) for a service that uses this crate on Glue +
/// S3: exactly the Glue and S3 actions the crate calls, on the Glue database
/// pricing_intelligence_STAGE, its sales_history table and the table's prefix in the
/// warehouse bucket. With --table-bucket-arn: the policy for S3 Tables instead (the s3tables:
/// actions on the table bucket and its tables, limited to the stage's namespace). Needs no AWS
/// access.
#[derive(Debug, Parser)]
#[command(name = "iam_policy", verbatim_doc_comment)]
struct Args {
    /// 12-digit AWS account id that owns the Glue catalog.
    #[arg(long, value_name = "ID", required_unless_present = "table_bucket_arn")]
    account: Option<String>,

    /// Warehouse bucket.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "table_bucket_arn"
    )]
    bucket: Option<String>,

    /// The S3 Tables table bucket's ARN: print the S3 Tables policy.
    #[arg(long, value_name = "ARN", conflicts_with_all = ["account", "bucket"])]
    table_bucket_arn: Option<String>,

    /// Warehouse prefix inside the bucket (the table is under
    /// PREFIX/pricing_intelligence_STAGE.db/sales_history/).
    #[arg(long, value_name = "P", default_value = "")]
    prefix: String,

    /// AWS region of the Glue catalog.
    #[arg(long, value_name = "R", default_value = "eu-west-1")]
    region: String,

    /// The database is pricing_intelligence_STAGE.
    #[arg(long, value_name = "S", default_value = "dev")]
    stage: String,
}

fn main() {
    let args = Args::parse();
    let doc = match &args.table_bucket_arn {
        Some(arn) => s3tables_policy(&args.stage, arn),
        None => policy(&PolicyScope::new(
            args.stage,
            args.region,
            args.account.unwrap_or_default(),
            args.bucket.unwrap_or_default(),
            args.prefix,
        )),
    };
    // A value the policy cannot be built from is a usage error (exit status 2), like any bad flag.
    let doc = doc.unwrap_or_else(|e| Args::command().error(ErrorKind::ValueValidation, e).exit());
    println!(
        "{}",
        report::exit_on_error(serde_json::to_string_pretty(&doc))
    );
}
