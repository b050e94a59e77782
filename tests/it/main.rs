//! The integration-test binary: one binary for every integration test.

mod archive;
mod builder;
mod cases_57_60;
mod compat;
mod config;
mod debian;
mod e2e_umoci;
mod elf;
mod elfstub;
mod faults;
mod fuzz_replay;
mod generate;
mod hostile;
mod issue11;
mod issue11_cli;
mod issue11_errors;
mod multi_platform;
mod layout_edit;
mod libmatch;
mod libmatch_host;
mod platform;
mod prop_umoci;
mod stackgen;
mod treecmp;
mod treeview;
