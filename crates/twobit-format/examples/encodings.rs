//! Per packed tensor of a `.twobit` file: weights, code entropy, and bits per weight (tables
//! included) in the version-1 layout, the default layout, with f16 tables, and entropy coded
//! (rANS or enumerative, whichever is smaller);
//! the f16 rounding's largest relative level change; then totals and the rANS decode speed.
//!
//! `cargo run --release -p twobit-format --example encodings -- FILE.twobit [OUT_PREFIX]`
//! (with `OUT_PREFIX`, also writes `OUT_PREFIX-{v1,default,f16,rans}.twobit`, and checks that
//! each reads back to the model it was written from).
use std::time::Instant;
use twobit_format::{Model, PackedTensor, Tensor, WriteOptions};

fn bits(p: &PackedTensor, opts: &WriteOptions) -> (f64, usize) {
    let s = p.stored_size(opts).expect("encodable");
    (8.0 * s.total() as f64 / p.numel() as f64, s.total())
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: encodings FILE.twobit");
    let bytes = std::fs::read(&path).expect("readable");
    let (model, layout) = Model::from_bytes_with_layout(&bytes).expect("valid");
    let entropy = WriteOptions {
        entropy: true,
        ..Default::default()
    };
    println!(
        "{:<16} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>9} {:>9}",
        "tensor", "weights", "H", "v1", "default", "f16", "f16+ent.", "ent.-H", "f16 err", "file"
    );
    let mut half = model.clone();
    let mut rans = model.clone();
    for (name, t) in &model.tensors {
        let Tensor::Packed(p) = t else { continue };
        let h = p.with_f16_tables().expect("fits f16");
        let err = p
            .levels
            .iter()
            .zip(&h.levels)
            .flat_map(|(a, b)| a.values.iter().zip(b.values))
            .map(|(x, y)| if *x == 0.0 { 0.0 } else { ((x - y) / x).abs() })
            .fold(0.0f32, f32::max);
        let file = layout[name];
        // code bits with --entropy (rANS, enumerative, or the fixed packing: the smallest) over the
        // zero-order entropy
        let codes = p.stored_size(&entropy).map_or(f64::NAN, |s| {
            8.0 * s.code_bytes as f64 / p.numel() as f64 - p.code_entropy()
        });
        println!(
            "{:<16} {:>8} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>9.2e} {:>9}",
            name,
            p.numel(),
            p.code_entropy(),
            bits(p, &WriteOptions::LEGACY).0,
            bits(p, &WriteOptions::default()).0,
            bits(&h, &WriteOptions::default()).0,
            bits(&h, &entropy).0,
            codes,
            err,
            format!(
                "{}/{}",
                file.encoding.packing,
                file.encoding.table_dtype.name()
            ),
        );
        half.tensors.insert(name.clone(), Tensor::Packed(h.clone()));
        rans.tensors.insert(name.clone(), Tensor::Packed(h));
    }
    let fp32: usize = model
        .tensors
        .values()
        .map(|t| 4 * t.shape().iter().product::<usize>())
        .sum();
    let sizes = [
        ("this file", bytes.len()),
        (
            "v1 layout",
            model.to_bytes_with(&WriteOptions::LEGACY).unwrap().len(),
        ),
        ("default", model.to_bytes().unwrap().len()),
        ("f16 tables", half.to_bytes().unwrap().len()),
        ("f16+entropy", rans.to_bytes_with(&entropy).unwrap().len()),
    ];
    for (what, n) in sizes {
        println!(
            "{what:<11} {n:>9} bytes  {:>6.2}x smaller than fp32 ({fp32} bytes)",
            fp32 as f64 / n as f64
        );
    }
    if let Some(prefix) = std::env::args().nth(2) {
        for (what, m, opts) in [
            ("v1", &model, WriteOptions::LEGACY),
            ("default", &model, WriteOptions::default()),
            ("f16", &half, WriteOptions::default()),
            ("rans", &rans, entropy),
        ] {
            let path = format!("{prefix}-{what}.twobit");
            m.save_with(std::path::Path::new(&path), &opts).unwrap();
            assert_eq!(&Model::load(std::path::Path::new(&path)).unwrap(), m);
            println!("wrote {path}");
        }
    }
    let coded = rans.to_bytes_with(&entropy).unwrap();
    let weights: usize = model
        .tensors
        .values()
        .filter_map(|t| match t {
            Tensor::Packed(p) => Some(p.numel()),
            _ => None,
        })
        .sum();
    let t = Instant::now();
    let reps = 20;
    for _ in 0..reps {
        std::hint::black_box(Model::from_bytes(&coded).unwrap());
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "whole-file load with rANS codes: {:.2} ms, {:.0} M weights/s",
        s * 1e3,
        weights as f64 / s / 1e6
    );
}
