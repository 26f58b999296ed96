//! A small learnable dataset in CIFAR-10's binary format, for the CPU sanity preset.
use anyhow::Context;
use std::path::Path;
use twobit_data::cifar::{RECORD_BYTES, TEST_FILE, TRAIN_FILES};

/// Images per training file (5 files) and in the test file.
const PER_TRAIN_FILE: usize = 128;
const TEST_IMAGES: usize = 160;

/// Deterministic xorshift bytes (no dependency on a random crate's stream stability).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` records: label `i % 10`; each class has its own mean colour per channel and a bright
/// quadrant, plus noise, so a small network learns it in an epoch or two.
fn records(n: usize, rng: &mut XorShift) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * RECORD_BYTES);
    for i in 0..n {
        let label = (i % 10) as u8;
        out.push(label);
        for c in 0..3usize {
            let base = 40 + ((label as usize * 7 + c * 3) % 10) * 18;
            for y in 0..32usize {
                for x in 0..32usize {
                    let quadrant = (y / 16) * 2 + x / 16;
                    let bright = if quadrant == (label as usize + c) % 4 {
                        50
                    } else {
                        0
                    };
                    let noise = (rng.next() % 41) as usize;
                    out.push((base + bright + noise).min(255) as u8);
                }
            }
        }
    }
    out
}

/// Writes `data_batch_1..5.bin` and `test_batch.bin` into `dir` unless they are there.
pub fn write_cifar(dir: &Path) -> anyhow::Result<()> {
    if TRAIN_FILES
        .iter()
        .chain(std::iter::once(&TEST_FILE))
        .all(|f| dir.join(f).is_file())
    {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for f in TRAIN_FILES {
        crate::util::write_output(&dir.join(f), &records(PER_TRAIN_FILE, &mut rng))?;
    }
    crate::util::write_output(&dir.join(TEST_FILE), &records(TEST_IMAGES, &mut rng))?;
    Ok(())
}
