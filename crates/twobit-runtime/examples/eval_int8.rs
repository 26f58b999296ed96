//! Test accuracy of a model file with fp32 and int8 activations, on raw IDX files (MNIST
//! format: `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, uncompressed), and the
//! predictions that change: `eval_int8 FILE IMAGES LABELS`.
use std::path::Path;
use twobit_runtime::{Activations, Runtime};

fn argmax(r: &[f32]) -> usize {
    (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut rt = Runtime::load(Path::new(&a[1])).unwrap();
    let images = std::fs::read(&a[2]).unwrap();
    let labels = std::fs::read(&a[3]).unwrap();
    let n = u32::from_be_bytes(labels[4..8].try_into().unwrap()) as usize;
    let per = rt.input_len();
    let x: Vec<f32> = images[16..16 + n * per]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    let mut preds = Vec::new();
    for act in [Activations::F32, Activations::Int8] {
        rt.set_activations(act);
        let mut p = Vec::with_capacity(n);
        for (i, chunk) in x.chunks(256 * per).enumerate() {
            let b = chunk.len() / per;
            let y = rt.forward_raw(chunk, b);
            p.extend(y.chunks(rt.arch().classes).map(argmax));
            let _ = i;
        }
        let correct = p
            .iter()
            .zip(&labels[8..8 + n])
            .filter(|(p, &l)| **p == l as usize)
            .count();
        println!(
            "{}: {correct}/{n} = {:.2} %",
            act.name(),
            100.0 * correct as f64 / n as f64
        );
        preds.push(p);
    }
    let changed: Vec<usize> = (0..n).filter(|&i| preds[0][i] != preds[1][i]).collect();
    let fixed = changed
        .iter()
        .filter(|&&i| preds[1][i] == labels[8 + i] as usize)
        .count();
    let broke = changed
        .iter()
        .filter(|&&i| preds[0][i] == labels[8 + i] as usize)
        .count();
    println!(
        "predictions changed: {} of {n} ({fixed} now right, {broke} now wrong, {} wrong both ways)",
        changed.len(),
        changed.len() - fixed - broke
    );
}
