//! The integration-test binary: one binary for every integration test.

mod archive;
