//! Any bytes read back from the store as an image record, a failure record
//! (either format) or a tag score: an error, never a panic or a huge
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::decode_store_value(data);
});
