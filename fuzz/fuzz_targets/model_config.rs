//! Any bytes as a model folder's configuration files (`preprocessor_config.json`,
//! `config.json`, `tokenizer_config.json`, Immich's `preprocess_cfg.json`):
//! the folder is refused, or it opens and its preprocessing works.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgdb::fuzzing::open_model_folder(data);
});
