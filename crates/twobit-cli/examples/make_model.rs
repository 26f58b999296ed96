//! Writes a LeNet-5-sized random safetensors model (fixed seed) for trying `twobit compress`:
//!
//! ```text
//! cargo run --release -p twobit-cli --example make_model -- model.safetensors
//! ```
//!
//! Weights are Laplace-distributed (scale 1/sqrt(fan_in)), like trained conv/linear weights;
//! dtypes are mixed (f32, f16, bf16, f64) and every layer has a bias.
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::process::ExitCode;

/// xorshift64*: reproducible without extra dependencies.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Laplace(0, b) by inverting the CDF.
    fn laplace(&mut self, b: f64) -> f64 {
        let u = self.uniform() - 0.5;
        -b * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-12).ln()
    }
}

fn encode(dtype: Dtype, v: &[f64]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f64(x).to_le_bytes())
            .collect(),
        Dtype::F32 => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        Dtype::F64 => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        _ => unreachable!("only float dtypes are generated"),
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: make_model OUT.safetensors");
        return ExitCode::FAILURE;
    };
    // (name, shape, dtype): LeNet-5 for 1x28x28 inputs (padding 2 on conv1).
    let layers: [(&str, Vec<usize>, Dtype); 5] = [
        ("conv1", vec![6, 1, 5, 5], Dtype::F32),
        ("conv2", vec![16, 6, 5, 5], Dtype::F16),
        ("fc1", vec![120, 400], Dtype::F32),
        ("fc2", vec![84, 120], Dtype::BF16),
        ("fc3", vec![10, 84], Dtype::F64),
    ];
    let mut rng = Rng(0x5EED_2B17_u64);
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape, dtype) in layers {
        let fan_in: usize = shape[1..].iter().product();
        let b = 1.0 / (fan_in as f64).sqrt();
        let n: usize = shape.iter().product();
        // a slight asymmetry (positive shift) so asymmetric schemes have something to find
        let w: Vec<f64> = (0..n).map(|_| rng.laplace(b) + 0.1 * b).collect();
        tensors.push((
            format!("{name}.weight"),
            dtype,
            shape.clone(),
            encode(dtype, &w),
        ));
        let bias: Vec<f64> = (0..shape[0]).map(|_| 0.1 * rng.laplace(b)).collect();
        tensors.push((
            format!("{name}.bias"),
            dtype,
            vec![shape[0]],
            encode(dtype, &bias),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, data)| {
            (
                n.clone(),
                TensorView::new(*d, s.clone(), data).expect("sizes match by construction"),
            )
        })
        .collect();
    let bytes = match safetensors::serialize(views, None) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot encode: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&path, &bytes) {
        eprintln!("error: cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    let params: usize = tensors
        .iter()
        .map(|(_, _, s, _)| s.iter().product::<usize>())
        .sum();
    println!(
        "wrote {path}: {} tensors, {params} parameters, {} bytes",
        tensors.len(),
        bytes.len()
    );
    ExitCode::SUCCESS
}
