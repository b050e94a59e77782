//! Platform template, `_libs.json` and `.d` overlay parsing (see
//! bundlegen::fuzzing::platform for the input format).
#![no_main]

use bundlegen::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::platform(data, fuzzing::scratch_dir());
});
