//! Any bytes as a text query, through OpenAI CLIP's cleaning (the ftfy
//! port, HTML entities) and the tiny model's tokenizer
//! (`imgdb::fuzzing::text_query`): ids of the vocabulary between the start
//! and end tokens, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::text_query(data);
});
