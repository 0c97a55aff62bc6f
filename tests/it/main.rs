//! Integration tests, merged into one binary to keep link time low.
//!
//! The Glue tests start moto's server from the test venv (see `moto.rs`); the interop tests
//! run pyiceberg from the same venv. Both are built by `scripts/venv.sh` on first use.

mod bad_input;
mod concurrency;
mod examples;
mod faults;
mod faulty_catalog;
mod glue;
mod interop;
mod local;
mod maintenance;
mod moto;
mod scan;
mod similarity;
mod soak;
#[cfg(feature = "sql")]
mod sql_queries;
mod support;
