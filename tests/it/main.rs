//! The integration-test binary: one binary for every integration test.

mod archive;
mod builder;
mod compat;
mod config;
mod debian;
mod elf;
mod elfstub;
mod hostile;
mod libmatch;
mod libmatch_host;
mod platform;
mod treeview;
