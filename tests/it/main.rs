//! The one integration-test binary: fixture builders and test modules.

mod builder;
mod hostile;
mod treeview;
