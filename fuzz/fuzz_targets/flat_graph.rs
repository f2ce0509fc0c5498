//! Any bytes read as a snapshot's flat graph: refused, or a graph whose
//! walk stays inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::decode_flat_graph(data);
});
