//! The integration-test binary: one binary for every integration test.

mod archive;
mod builder;
mod compat;
mod config;
mod debian;
mod e2e_umoci;
mod elf;
mod elfstub;
mod fuzz_replay;
mod generate;
mod hostile;
mod layout_edit;
mod libmatch;
mod libmatch_host;
mod platform;
mod treecmp;
mod treeview;
