//! Plain reference: decode each weight from the file layout and multiply-add.
use twobit_quant::Levels;

/// `y[n, o] = Σ_k levels[o].values[code(o,k)]·x[n,k]` straight from file-layout codes
/// (`x` is `[batch, cols]`, `y` is `[batch, rows]`). Slow; the oracle for tests.
pub fn reference_matmul(
    rows: usize,
    cols: usize,
    codes: &[u8],
    levels: &[Levels],
    x: &[f32],
    batch: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; batch * rows];
    for b in 0..batch {
        for o in 0..rows {
            let l = &levels[if levels.len() == 1 { 0 } else { o }];
            let mut s = 0f64;
            for k in 0..cols {
                let i = o * cols + k;
                let c = (codes[i / 4] >> (2 * (i % 4))) & 3;
                s += l.values[c as usize] as f64 * x[b * cols + k] as f64;
            }
            y[b * rows + o] = s as f32;
        }
    }
    y
}

/// Int8 oracle: `y[n, o] = scales[n]·Σ_k levels[o].values[code(o,k)]·q[n,k]` straight from
/// file-layout codes, in f64 (`q` is `[batch, cols]`).
pub fn reference_matmul_i8(
    rows: usize,
    cols: usize,
    codes: &[u8],
    levels: &[Levels],
    q: &[i8],
    scales: &[f32],
) -> Vec<f32> {
    let x: Vec<f32> = q.iter().map(|&v| v as f32).collect();
    let y = reference_matmul(rows, cols, codes, levels, &x, scales.len());
    y.iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * scales[i / rows] as f64) as f32)
        .collect()
}
