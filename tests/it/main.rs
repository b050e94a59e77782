//! The integration-test binary: one binary for every integration test.

mod builder;
mod config;
mod debian;
mod elf;
mod elfstub;
mod hostile;
mod platform;
mod treeview;
