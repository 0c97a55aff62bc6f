//! Command-line options shared by every example: which catalog, which stage.
//!
//! - `--warehouse DIR`: the embedded local catalog in DIR (default `./warehouse`);
//! - `--catalog URI`: any catalog in the crate's string form, e.g.
//!   `glue://?region=eu-west-1&warehouse=s3://bucket/prefix` (or `SALES_HISTORY_CATALOG`);
//! - `--stage STAGE`: the namespace is `pricing_intelligence_{STAGE}` (default `dev`).
//!
//! Include it with `#[path = "common/cli.rs"] mod cli;`.

#![allow(dead_code)]

use std::str::FromStr;

use sales_history::{CATALOG_ENV, CatalogConfig};

/// Parsed arguments: the catalog, the stage, and the example's own flags.
pub struct Cli {
    /// Where the table lives.
    pub catalog: CatalogConfig,
    /// The stage (`pricing_intelligence_{stage}`).
    pub stage: String,
    rest: Vec<String>,
    usage: String,
}

const COMMON_USAGE: &str = "  --warehouse DIR   local catalog in DIR (default ./warehouse)
  --catalog URI     catalog string, e.g. glue://?region=eu-west-1&warehouse=s3://bucket/prefix
                    (default: $SALES_HISTORY_CATALOG, else the local ./warehouse)
  --stage STAGE     namespace pricing_intelligence_STAGE (default dev)";

impl Cli {
    /// Parses `std::env::args()`; exits with the usage on `-h`/`--help` or a bad option.
    pub fn parse(usage: &str) -> Cli {
        match Cli::try_parse(std::env::args().skip(1).collect(), usage) {
            Ok(cli) => cli,
            Err(e) => {
                eprintln!("error: {e}\n\n{usage}\n{COMMON_USAGE}");
                std::process::exit(2);
            }
        }
    }

    /// Parses the given arguments (without the program name).
    pub fn try_parse(args: Vec<String>, usage: &str) -> Result<Cli, String> {
        let mut warehouse = None;
        let mut uri = None;
        let mut stage = "dev".to_string();
        let mut rest = Vec::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--warehouse" => {
                    warehouse = Some(it.next().ok_or("--warehouse needs a directory")?)
                }
                "--catalog" => uri = Some(it.next().ok_or("--catalog needs a URI")?),
                "--stage" => stage = it.next().ok_or("--stage needs a value")?,
                "-h" | "--help" => {
                    println!("{usage}\n{COMMON_USAGE}");
                    std::process::exit(0);
                }
                _ => rest.push(arg),
            }
        }
        let catalog = match (warehouse, uri) {
            (Some(_), Some(_)) => {
                return Err("give either --warehouse or --catalog, not both".into());
            }
            (Some(dir), None) => CatalogConfig::local(dir),
            (None, Some(uri)) => CatalogConfig::from_str(&uri).map_err(|e| e.to_string())?,
            (None, None) => match std::env::var(CATALOG_ENV) {
                Ok(uri) => {
                    CatalogConfig::from_str(&uri).map_err(|e| format!("{CATALOG_ENV}: {e}"))?
                }
                Err(_) => CatalogConfig::local("./warehouse"),
            },
        };
        sales_history::namespace_for_stage(&stage).map_err(|e| e.to_string())?;
        Ok(Cli {
            catalog,
            stage,
            rest,
            usage: usage.to_string(),
        })
    }

    /// Removes `--name` from the remaining flags; `true` when it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        self.rest.len() != before
    }

    /// Removes `--name VALUE` and parses VALUE; `None` when absent. Exits on a bad value.
    pub fn value<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let pos = self.rest.iter().position(|a| a == name)?;
        if pos + 1 >= self.rest.len() {
            self.fail(&format!("{name} needs a value"));
        }
        let raw = self.rest.remove(pos + 1);
        self.rest.remove(pos);
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => self.fail(&format!("{name} {raw}: {e}")),
        }
    }

    /// Remaining positional arguments; exits if an unknown `--flag` is left.
    pub fn finish(self) -> Vec<String> {
        if let Some(f) = self.rest.iter().find(|a| a.starts_with("--")) {
            self.fail(&format!("unknown option {f}"));
        }
        self.rest
    }

    fn fail(&self, msg: &str) -> ! {
        eprintln!("error: {msg}\n\n{}\n{COMMON_USAGE}", self.usage);
        std::process::exit(2);
    }
}
