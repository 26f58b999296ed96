//! Any byte string given to the ONNX importer must give a model or an error, never a panic;
//! whatever imports must be a valid twobit model that exports and re-imports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twobit_onnx::{export, import, ExportOptions, ImportOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = import(data, &ImportOptions::default()) {
        m.validate().expect("an imported model is valid");
        let bytes = export(&m, &ExportOptions::default()).expect("an imported model exports");
        import(&bytes, &ImportOptions::default()).expect("an exported model imports");
    }
});
