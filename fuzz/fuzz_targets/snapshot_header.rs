//! Any bytes read as an index snapshot's header, with its checksum as found
//! and repaired: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::decode_snapshot_header(data);
});
