//! index.json, manifest and image config parsing and validation
//! (see bundlegen::fuzzing::image_json for the input format).
#![no_main]

use bundlegen::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::image_json(data, fuzzing::scratch_dir());
});
