//! App metadata parsing (see bundlegen::fuzzing::appmeta).
#![no_main]

use bundlegen::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::appmeta(data);
});
