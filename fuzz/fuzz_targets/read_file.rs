//! Any byte string must give a model or an error, never a panic, and whatever parses must
//! serialise and re-parse to the same model in every encoding it allows: the default (base 3
//! for ternary codes, f16 tables when exact), the version-1 layout, and rANS-coded codes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twobit_format::{Model, WriteOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Model::from_bytes(data) {
        let entropy = WriteOptions {
            entropy: true,
            ..Default::default()
        };
        for opts in [WriteOptions::default(), WriteOptions::LEGACY, entropy] {
            let bytes = m
                .to_bytes_with(&opts)
                .expect("a model that was read must be writable");
            let back = Model::from_bytes(&bytes).expect("a written model must be readable");
            assert_eq!(back, m);
        }
    }
});
