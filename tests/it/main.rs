//! The integration-test binary: one binary for every integration test.

mod builder;
mod debian;
mod e2e_umoci;
mod elf;
mod elfstub;
mod hostile;
mod layout_edit;
mod platform;
mod treecmp;
mod treeview;
