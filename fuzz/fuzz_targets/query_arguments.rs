//! Any text as the `imgdb query` arguments the library parses (times and
//! format names): a value or nothing, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::parse_query_arguments(data);
});
