//! Layer application of arbitrary zstd-compressed streams: nothing may be
//! written outside the rootfs (see bundlegen::fuzzing::layer).
#![no_main]

use bundlegen::fuzzing;
use bundlegen::image::spec::Compression;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::layer(data, Compression::Zstd, fuzzing::scratch_dir());
});
