//! ELF parsing of arbitrary files (see bundlegen::fuzzing::elf).
#![no_main]

use bundlegen::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::elf(data, fuzzing::scratch_dir());
});
