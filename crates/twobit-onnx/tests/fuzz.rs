//! Hostile bytes never panic: truncations at many offsets and byte flips of valid models.
mod common;
use common::*;
use twobit_onnx::{import, ImportOptions};

#[test]
fn truncations_and_flips_do_not_panic() {
    let opts = ImportOptions::default();
    for name in ["lenet", "se_block", "opset10", "mobilenet_block"] {
        let b = bytes(&format!("{name}.onnx"));
        let step = (b.len() / 300).max(1);
        for cut in (0..b.len()).step_by(step) {
            let _ = import(&b[..cut], &opts);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut c = b.clone();
            let at = (state as usize) % c.len();
            c[at] ^= (state >> 32) as u8 | 1;
            // A second flip in the first 512 bytes (node/attribute structure).
            let at2 = ((state >> 16) as usize) % c.len().min(512);
            c[at2] = (state >> 40) as u8;
            if let Ok(m) = import(&c, &opts) {
                m.validate().unwrap();
            }
        }
    }
}
