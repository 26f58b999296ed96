//! Writes a `.twobit` file with random 2-bit weights and a full architecture manifest, for
//! trying `twobit bench` / `twobit eval` without a trained model (accuracy will be chance).
//!
//! `cargo run --release -p twobit-runtime --example random_model -- vgg7|resnet20|lenet5|mlp tern|quat OUT`
use std::collections::BTreeMap;
use twobit_format::{
    Arch, Builder, FloatDtype, FloatTensor, Model, Normalize, Op, PackedTensor, Tensor,
};
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
    /// conv 3x3 (padding 1, 2-bit weights) then batch norm.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        stride: usize,
        b: &mut Builder,
        x: String,
    ) -> String {
        let weight = self.packed(&format!("{name}.weight"), vec![cout, cin, 3, 3]);
        let x = b.then(Op::conv(weight, None, stride, 1), x);
        let bn = Op::BatchNorm {
            weight: self.float(&format!("{name}.bn.weight"), vec![cout], 0.8, 1.2),
            bias: self.float(&format!("{name}.bn.bias"), vec![cout], -0.1, 0.1),
            running_mean: self.float(&format!("{name}.bn.running_mean"), vec![cout], -0.1, 0.1),
            running_var: self.float(&format!("{name}.bn.running_var"), vec![cout], 0.5, 1.5),
            eps: 1e-5,
        };
        b.then(bn, x)
    }

    fn conv_bn_relu(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        b: &mut Builder,
        x: String,
    ) -> String {
        let x = self.conv_bn(name, cin, cout, 1, b, x);
        b.then(Op::Relu, x)
    }
}

/// CIFAR ResNet-20: three stages of three basic blocks, option-A shortcuts.
fn resnet20(g: &mut Gen, b: &mut Builder, x: String) -> String {
    let mut x = g.conv_bn_relu("conv1", 3, 16, b, x);
    let mut cin = 16;
    for (s, c) in [16, 32, 64].into_iter().enumerate() {
        for blk in 0..3 {
            let stride = if s > 0 && blk == 0 { 2 } else { 1 };
            let name = format!("layer{}.{blk}", s + 1);
            let r = g.conv_bn(&format!("{name}.conv1"), cin, c, stride, b, x.clone());
            let r = b.then(Op::Relu, r);
            let r = g.conv_bn(&format!("{name}.conv2"), c, c, 1, b, r);
            let sc = b.pad_subsample(x, stride, cin, c);
            x = b.push(Op::Add { constant: None }, vec![r, sc]);
            x = b.then(Op::Relu, x);
            cin = c;
        }
    }
    let x = b.then(Op::GlobalAvgPool, x);
    let x = b.then(Op::Flatten, x);
    let w = g.float("fc.weight", vec![10, 64], -0.1, 0.1);
    let bias = g.float("fc.bias", vec![10], -0.01, 0.01);
    b.then(
        Op::Linear {
            weight: w,
            bias: Some(bias),
        },
        x,
    )
}

/// LeNet-5 on 28x28: two 5x5 convolutions with max pooling, three linear layers.
fn lenet5(g: &mut Gen, b: &mut Builder, x: String) -> String {
    let w = g.packed("conv1.weight", vec![6, 1, 5, 5]);
    let bias = g.float("conv1.bias", vec![6], -0.1, 0.1);
    let x = b.then(Op::conv(w, Some(bias), 1, 2), x);
    let x = b.then(Op::Relu, x);
    let x = b.then(Op::max_pool(2, 2), x);
    let w = g.packed("conv2.weight", vec![16, 6, 5, 5]);
    let bias = g.float("conv2.bias", vec![16], -0.1, 0.1);
    let x = b.then(Op::conv(w, Some(bias), 1, 0), x);
    let x = b.then(Op::Relu, x);
    let x = b.then(Op::max_pool(2, 2), x);
    let mut x = b.then(Op::Flatten, x);
    for (i, (o, i_)) in [(120, 400), (84, 120)].into_iter().enumerate() {
        let w = g.packed(&format!("fc{}.weight", i + 1), vec![o, i_]);
        x = b.then(
            Op::Linear {
                weight: w,
                bias: None,
            },
            x,
        );
        x = b.then(Op::Relu, x);
    }
    let w = g.float("fc3.weight", vec![10, 84], -0.1, 0.1);
    b.then(
        Op::Linear {
            weight: w,
            bias: None,
        },
        x,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4
        || !["vgg7", "resnet20", "lenet5", "mlp"].contains(&args[1].as_str())
        || !["tern", "quat"].contains(&args[2].as_str())
    {
        eprintln!("usage: random_model vgg7|resnet20|lenet5|mlp tern|quat OUT.twobit");
        std::process::exit(2);
    }
    let mut g = Gen {
        s: 0x2545_F491_4F6C_DD1D,
        quat: args[2] == "quat",
        t: BTreeMap::new(),
    };
    let mut b = Builder::default();
    let x = twobit_format::graph::INPUT.to_string();
    let linear = |weight, bias| Op::Linear { weight, bias };
    let (name, input, normalize, output) = if args[1] == "vgg7" {
        let (mut cin, mut x) = (3, x);
        for (i, c) in [128, 128, 256, 256, 512, 512].into_iter().enumerate() {
            x = g.conv_bn_relu(&format!("conv{}", i + 1), cin, c, &mut b, x);
            cin = c;
            if i % 2 == 1 {
                x = b.then(Op::max_pool(2, 2), x);
            }
        }
        let x = b.then(Op::Flatten, x);
        let w = g.packed("fc1.weight", vec![1024, 512 * 4 * 4]);
        let x = b.then(linear(w, None), x);
        let x = b.then(Op::Relu, x);
        let w = g.float("fc2.weight", vec![10, 1024], -0.03, 0.03);
        let bias = g.float("fc2.bias", vec![10], -0.01, 0.01);
        let x = b.then(linear(w, Some(bias)), x);
        let normalize = Normalize {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        };
        ("vgg7", [3, 32, 32], normalize, x)
    } else if args[1] == "resnet20" {
        let x = resnet20(&mut g, &mut b, x);
        let normalize = Normalize {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        };
        ("resnet20", [3, 32, 32], normalize, x)
    } else if args[1] == "lenet5" {
        let x = lenet5(&mut g, &mut b, x);
        let normalize = Normalize {
            mean: vec![0.2860],
            std: vec![0.3530],
        };
        ("lenet5", [1, 28, 28], normalize, x)
    } else {
        let x = b.then(Op::Flatten, x);
        let w = g.packed("fc1.weight", vec![512, 784]);
        let x = b.then(linear(w, None), x);
        let x = b.then(Op::Relu, x);
        let w = g.float("fc2.weight", vec![10, 512], -0.05, 0.05);
        let x = b.then(linear(w, None), x);
        let normalize = Normalize {
            mean: vec![0.2860],
            std: vec![0.3530],
        };
        ("mlp", [1, 28, 28], normalize, x)
    };
    let arch = Arch {
        name: name.into(),
        input,
        classes: 10,
        normalize,
        nodes: b.nodes,
        output,
        input_ranges: Default::default(),
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
