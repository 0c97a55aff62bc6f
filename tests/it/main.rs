//! Integration tests, merged into one binary to keep link time low.
//!
//! Plain `cargo test` runs every test that needs only Rust (the local SQLite catalog). Tests
//! that need the Python venv (moto's Glue + S3 emulator, pyiceberg, DuckDB) are behind the
//! `python-tests` feature (and `glue` for the emulator); `scripts/test.sh` enables them, builds
//! the venv, and fails if they did not run.

mod adopt;
mod ann;
mod appender;
mod bad_input;
mod commit_faults;
mod concurrency;
mod decode;
mod examples;
mod faults;
mod faulty_catalog;
#[cfg(all(feature = "python-tests", feature = "glue"))]
mod glue;
mod ingest;
#[cfg(feature = "python-tests")]
mod interop;
mod layout;
#[cfg(feature = "python-tests")]
mod layout_peer;
mod local;
mod longevity;
mod maintenance;
#[cfg(all(feature = "python-tests", feature = "glue"))]
mod moto;
mod rewrite;
#[cfg(all(feature = "python-tests", feature = "glue", feature = "s3tables"))]
mod s3tables;
mod scan;
mod service;
mod similarity;
#[cfg(all(feature = "python-tests", feature = "glue"))]
mod soak;
#[cfg(all(feature = "sql", feature = "python-tests"))]
mod sql_queries;
mod support;
mod tenant;
