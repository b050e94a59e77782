//! The integration-test binary: one binary for every integration test.

mod archive;
mod builder;
mod cases_57_60;
mod compat;
mod completions;
mod config;
mod debian;
mod e2e_umoci;
mod elf;
mod elfstub;
mod faults;
mod fuzz_replay;
mod generate;
mod hostile;
mod init_scope;
mod layout_edit;
mod libmatch;
mod libmatch_host;
mod platform;
mod prop_umoci;
mod stackgen;
mod treecmp;
mod treeview;
