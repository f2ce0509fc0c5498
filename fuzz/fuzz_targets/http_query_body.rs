//! Any bytes as the JSON body of the daemon's `POST /v1/query`: the
//! nesting check, serde and the conversion into an `imgdb::Query`
//! (`imgdb_daemon::fuzzing::query_body`), without a server or a model.
//! Refused, or a query the library can run; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb_daemon::fuzzing::query_body(data);
});
