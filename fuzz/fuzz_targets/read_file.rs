//! Any byte string must give a model or an error, never a panic, and whatever parses must
//! serialise and re-parse to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twobit_format::Model;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Model::from_bytes(data) {
        let bytes = m
            .to_bytes()
            .expect("a model that was read must be writable");
        let back = Model::from_bytes(&bytes).expect("a written model must be readable");
        assert_eq!(back, m);
    }
});
