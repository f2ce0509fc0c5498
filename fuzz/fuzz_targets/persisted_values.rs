//! Any bytes read back as a stored record, a snapshot header or a snapshot's
//! links: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::decode_persisted(data);
});
