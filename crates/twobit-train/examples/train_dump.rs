//! Trains a built-in model one epoch on synthetic data through [`twobit_train::train`] and
//! writes the per-epoch logs (without timings) and the file's bytes, to compare two builds.
//!
//! `cargo run --release -p twobit-train --example train_dump -- MODEL SCHEME OUT_DIR [CKPT [resume]]`
//! (with CKPT: two epochs, the first one only unless `resume`).
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twobit_data::{Dataset, DatasetKind, Splits};
use twobit_train::{NoProgress, RunOptions, TrainConfig, TrainData};

/// Random images whose label is the mean brightness (as the tests' `synthetic`).
fn synthetic(kind: DatasetKind, n_train: usize, n_test: usize, seed: u64) -> TrainData {
    let shape = kind.shape();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut make = |n: usize| {
        let len: usize = shape.iter().product();
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let label: u8 = rng.random_range(0..10);
            for _ in 0..len {
                images.push((label as u32 * 20 + rng.random_range(0..60u32)).min(255) as u8);
            }
            labels.push(label);
        }
        Dataset {
            shape,
            images,
            labels,
        }
    };
    let train = make(n_train);
    let test = make(n_test);
    TrainData::new(kind, Splits { train, test })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args[0].parse().expect("model");
    let scheme = args[1].parse().expect("scheme");
    let out = std::path::PathBuf::from(&args[2]);
    let (kind, n) = match args[0].as_str() {
        "mlp" | "lenet5" => (DatasetKind::FashionMnist, 256),
        _ => (DatasetKind::Cifar10, 32),
    };
    let data = synthetic(kind, n, 32, 3);
    let mut cfg = TrainConfig::new(model, scheme);
    cfg.epochs = 1;
    cfg.batch_size = 16;
    let mut opts = RunOptions::default();
    if let Some(ck) = args.get(3) {
        cfg.epochs = 2;
        opts.checkpoint = Some(ck.into());
        opts.resume = args.get(4).is_some_and(|a| a == "resume");
        opts.stop_after = (!opts.resume).then_some(1);
    }
    let o = match twobit_train::train(&cfg, &data, &opts, &mut NoProgress) {
        Ok(o) => o,
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1)
        }
    };
    let logs: Vec<String> = o
        .logs
        .iter()
        .map(|l| {
            format!(
                "epoch {} lr {:?} loss {:?} train_acc {:?} test_acc {:?}",
                l.epoch, l.lr, l.train_loss, l.train_accuracy, l.test_accuracy
            )
        })
        .collect();
    std::fs::create_dir_all(&out).expect("dir");
    let name = format!("{}-{}", args[0], args[1]);
    std::fs::write(out.join(format!("{name}.log")), logs.join("\n") + "\n").expect("log");
    std::fs::write(
        out.join(format!("{name}.twobit")),
        o.file.to_bytes().expect("bytes"),
    )
    .expect("file");
    println!("{name}: {}", logs.join("; "));
}
