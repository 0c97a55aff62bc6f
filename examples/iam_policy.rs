//! Prints the least-privilege IAM policy (JSON) for a service using this crate on Glue + S3:
//! only the Glue and S3 actions the crate calls, on this stage's database, table and prefix.
//!
//! ```text
//! cargo run --example iam_policy -- --account 123456789012 --bucket analytics [--prefix iceberg] [--region eu-west-1] [--stage dev]
//! ```

use sales_history::iam::{PolicyScope, policy};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut stage, mut region, mut account, mut bucket, mut prefix) = (
        "dev".to_string(),
        "eu-west-1".to_string(),
        None,
        None,
        String::new(),
    );
    while let Some(a) = args.next() {
        let mut v = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--stage" => stage = v(),
            "--region" => region = v(),
            "--account" => account = Some(v()),
            "--bucket" => bucket = Some(v()),
            "--prefix" => prefix = v(),
            "-h" | "--help" => {
                println!(
                    "usage: iam_policy --account ID --bucket NAME [--prefix P] [--region R] [--stage S]"
                );
                return;
            }
            other => fail(&format!("unknown option {other}")),
        }
    }
    let account = account.unwrap_or_else(|| fail("--account is required"));
    let bucket = bucket.unwrap_or_else(|| fail("--bucket is required"));
    match policy(&PolicyScope::new(stage, region, account, bucket, prefix)) {
        Ok(doc) => match serde_json::to_string_pretty(&doc) {
            Ok(text) => println!("{text}"),
            Err(e) => fail(&e.to_string()),
        },
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}
