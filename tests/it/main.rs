//! Integration tests, merged into one binary to keep link time low.

mod bad_input;
mod interop;
mod local;
mod support;
