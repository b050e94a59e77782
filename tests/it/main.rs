//! The one integration-test binary: each module is a group of tests or the
//! fixture support they share.

mod debian;
mod e2e_umoci;
mod layout_edit;
mod treecmp;
