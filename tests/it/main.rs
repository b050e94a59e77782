//! The integration-test binary.

mod debian;
mod elf;
mod elfstub;
mod platform;
