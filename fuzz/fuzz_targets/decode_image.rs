//! Any bytes given as an image file to ingest's preprocessors (the fixture
//! models', default decode limits): an error or a tensor of the model's
//! size, never a panic, a hang or an allocation beyond the decode limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::prepare_image(data);
});
