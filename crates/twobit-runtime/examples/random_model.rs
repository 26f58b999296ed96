//! Writes a `.twobit` file with random 2-bit weights and a full architecture manifest, for
//! trying `twobit bench` / `twobit eval` without a trained model (accuracy will be chance).
//!
//! `cargo run --release -p twobit-runtime --example random_model -- vgg7|mlp tern|quat OUT`
use std::collections::BTreeMap;
use twobit_format::{Arch, FloatDtype, FloatTensor, Layer, Model, Normalize, PackedTensor, Tensor};
use twobit_quant::{Granularity, Levels, Scheme};

struct Gen {
    s: u64,
    quat: bool,
    t: BTreeMap<String, Tensor>,
}

impl Gen {
    fn next(&mut self) -> f32 {
        self.s ^= self.s << 13;
        self.s ^= self.s >> 7;
        self.s ^= self.s << 17;
        (self.s >> 40) as f32 / (1u64 << 24) as f32
    }
    fn packed(&mut self, name: &str, shape: Vec<usize>) -> String {
        let n: usize = shape.iter().product();
        let fan_in = (n / shape[0]) as f32;
        let mut codes = vec![0u8; n.div_ceil(4)];
        for i in 0..n {
            let c = (self.next() * if self.quat { 4.0 } else { 3.0 }) as u8;
            codes[i / 4] |= c.min(3) << (2 * (i % 4));
        }
        let a = 1.5 / fan_in.sqrt();
        let levels = (0..shape[0])
            .map(|_| {
                let (p, m) = (a * (0.5 + self.next()), a * (0.5 + self.next()));
                if self.quat {
                    Levels {
                        values: [-m, 0.0, p, 2.0 * p],
                        thresholds: [-m / 2.0, p / 2.0, 1.5 * p],
                    }
                } else {
                    Levels {
                        values: [-m, 0.0, p, p],
                        thresholds: [-m / 2.0, p / 2.0, f32::INFINITY],
                    }
                }
            })
            .collect();
        let scheme = if self.quat {
            Scheme::Quat
        } else {
            Scheme::Tern
        };
        self.t.insert(
            name.into(),
            Tensor::Packed(PackedTensor {
                scheme,
                granularity: Granularity::Channel,
                shape,
                codes,
                levels,
                origin_dtype: FloatDtype::F32,
            }),
        );
        name.into()
    }
    fn float(&mut self, name: &str, shape: Vec<usize>, lo: f32, hi: f32) -> String {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| lo + (hi - lo) * self.next()).collect();
        self.t
            .insert(name.into(), Tensor::Float(FloatTensor::from_f32(shape, &v)));
        name.into()
    }
    fn conv_bn_relu(&mut self, name: &str, cin: usize, cout: usize, layers: &mut Vec<Layer>) {
        let weight = self.packed(&format!("{name}.weight"), vec![cout, cin, 3, 3]);
        layers.push(Layer::Conv2d {
            weight,
            bias: None,
            stride: 1,
            padding: 1,
        });
        layers.push(Layer::BatchNorm {
            weight: self.float(&format!("{name}.bn.weight"), vec![cout], 0.8, 1.2),
            bias: self.float(&format!("{name}.bn.bias"), vec![cout], -0.1, 0.1),
            running_mean: self.float(&format!("{name}.bn.running_mean"), vec![cout], -0.1, 0.1),
            running_var: self.float(&format!("{name}.bn.running_var"), vec![cout], 0.5, 1.5),
            eps: 1e-5,
        });
        layers.push(Layer::Relu);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4
        || !["vgg7", "mlp"].contains(&args[1].as_str())
        || !["tern", "quat"].contains(&args[2].as_str())
    {
        eprintln!("usage: random_model vgg7|mlp tern|quat OUT.twobit");
        std::process::exit(2);
    }
    let mut g = Gen {
        s: 0x2545_F491_4F6C_DD1D,
        quat: args[2] == "quat",
        t: BTreeMap::new(),
    };
    let mut layers = Vec::new();
    let arch = if args[1] == "vgg7" {
        let mut cin = 3;
        for (i, c) in [128, 128, 256, 256, 512, 512].into_iter().enumerate() {
            g.conv_bn_relu(&format!("conv{}", i + 1), cin, c, &mut layers);
            cin = c;
            if i % 2 == 1 {
                layers.push(Layer::MaxPool2d {
                    kernel: 2,
                    stride: 2,
                });
            }
        }
        layers.push(Layer::Flatten);
        let w = g.packed("fc1.weight", vec![1024, 512 * 4 * 4]);
        layers.push(Layer::Linear {
            weight: w,
            bias: None,
        });
        layers.push(Layer::Relu);
        let w = g.float("fc2.weight", vec![10, 1024], -0.03, 0.03);
        let b = g.float("fc2.bias", vec![10], -0.01, 0.01);
        layers.push(Layer::Linear {
            weight: w,
            bias: Some(b),
        });
        Arch {
            name: "vgg7".into(),
            input: [3, 32, 32],
            classes: 10,
            normalize: Normalize {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            },
            layers,
        }
    } else {
        layers.push(Layer::Flatten);
        let w = g.packed("fc1.weight", vec![512, 784]);
        layers.push(Layer::Linear {
            weight: w,
            bias: None,
        });
        layers.push(Layer::Relu);
        let w = g.float("fc2.weight", vec![10, 512], -0.05, 0.05);
        layers.push(Layer::Linear {
            weight: w,
            bias: None,
        });
        Arch {
            name: "mlp".into(),
            input: [1, 28, 28],
            classes: 10,
            normalize: Normalize {
                mean: vec![0.2860],
                std: vec![0.3530],
            },
            layers,
        }
    };
    let model = Model {
        tensors: g.t,
        arch: Some(arch),
        provenance: BTreeMap::new(),
    };
    if let Err(e) = model.save(std::path::Path::new(&args[3])) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
