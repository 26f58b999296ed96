//! Unit tests of the QAT building blocks: straight-through forward exactness, TTQ
//! gradients, architecture export.
mod common;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twobit_format::{Arch, Tensor as FileTensor};
use twobit_quant::{Granularity, Scheme};
use twobit_train::layers::{tensor_values, TtqScales};
use twobit_train::models::QatModel;
use twobit_train::qat::{ste_forward, ttq_forward, QatPlan, QatState};
use twobit_train::{GraphNet, ModelKind, WeightScheme};

fn device() -> Device {
    twobit_train::default_device().autodiff()
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[test]
fn ste_forward_equals_fake_quantize_bit_for_bit_and_passes_gradient_through() {
    let dev = device();
    let shape = [6usize, 5, 3, 3];
    let n: usize = shape.iter().product();
    let w0 = random(n, 7);
    let c = random(n, 8);
    for scheme in [
        Scheme::Twn,
        Scheme::Atn,
        Scheme::Tern,
        Scheme::Quat,
        Scheme::QuatFree,
    ] {
        for gran in [Granularity::Tensor, Granularity::Channel] {
            let w = Tensor::<4>::from_data(TensorData::new(w0.clone(), shape), &dev).require_grad();
            let (fwd, levels) = ste_forward(w.clone(), scheme, gran, None, "w").unwrap();
            let mut expect = vec![0f32; n];
            let lv =
                twobit_quant::fake_quantize(&w0, &shape, scheme, gran, None, &mut expect).unwrap();
            assert_eq!(levels, lv);
            let got = tensor_values(fwd.clone());
            for (i, (a, b)) in got.iter().zip(&expect).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{scheme} {gran} weight {i}: {a} vs {b}"
                );
            }
            // d/dw sum(fwd * c) = c: the straight-through estimator is the identity.
            let ct = Tensor::<4>::from_data(TensorData::new(c.clone(), shape), &dev);
            let grads = (fwd * ct).sum().backward();
            let g = tensor_values(w.grad(&grads).unwrap());
            assert_eq!(g, c, "{scheme} {gran}: gradient is not the identity");
        }
    }
}

#[test]
fn qat_state_round_trips_through_bits_and_is_used_after_training_batches() {
    let dev = device();
    let m = GraphNet::builtin(ModelKind::Mlp, [1, 28, 28], 10, 1, &dev).unwrap();
    for (scheme, gran) in [
        (Scheme::Quat, Granularity::Channel),
        (Scheme::Tern, Granularity::Tensor), // ternary tables hold an infinite threshold
    ] {
        let plan = QatPlan::new(WeightScheme::Quant(scheme), gran, true, 3);
        let mut state = QatState::default();
        plan.train_weights(&m, &mut state).unwrap();
        for slot in 0..3 {
            assert!(state.prev(slot).is_some(), "{scheme}: slot {slot}");
        }
        let back = QatState::from_bits(&state.to_bits());
        for slot in 0..3 {
            let (a, b) = (state.prev(slot).unwrap(), back.prev(slot).unwrap());
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                let bits = |l: &twobit_quant::Levels| {
                    l.values
                        .iter()
                        .chain(&l.thresholds)
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(x), bits(y));
            }
        }
        // Evaluation quantizes after the training fits: the same codes as quantize_after.
        let valid = m.valid();
        let eval = plan.eval_weights(&valid, &state).unwrap();
        for (slot, (_, layer)) in valid.weight_layers().into_iter().enumerate() {
            let q = twobit_quant::quantize_after(
                &layer.weight_values(),
                &layer.shape(),
                scheme,
                gran,
                state.prev(slot),
            )
            .unwrap();
            assert_eq!(
                eval.quantized[slot].as_ref(),
                Some(&q),
                "{scheme} slot {slot}"
            );
        }
    }
}

/// The TTQ rule of docs/ttq.md computed by hand.
fn ttq_hand(
    w: &[f32],
    c: &[f32],
    groups: usize,
    wp: &[f32],
    wn: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let per = w.len() / groups;
    let (mut q, mut gw) = (vec![0f32; w.len()], vec![0f32; w.len()]);
    let (mut gp, mut gn) = (vec![0f32; groups], vec![0f32; groups]);
    for g in 0..groups {
        let ws = &w[g * per..(g + 1) * per];
        let t = 0.05 * ws.iter().fold(0f32, |m, x| m.max(x.abs()));
        for j in 0..per {
            let i = g * per + j;
            if w[i] > t {
                q[i] = wp[g];
                gp[g] += c[i];
                gw[i] = wp[g] * c[i];
            } else if w[i] <= -t {
                q[i] = -wn[g];
                gn[g] -= c[i];
                gw[i] = wn[g] * c[i];
            } else {
                gw[i] = c[i];
            }
        }
    }
    (q, gw, gp, gn)
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{what}[{i}]: autodiff {x}, hand rule {y}"
        );
    }
}

#[test]
fn ttq_gradients_match_hand_rule() {
    let dev = device();
    for (gran, groups) in [(Granularity::Tensor, 1usize), (Granularity::Channel, 4)] {
        let shape = [4usize, 6];
        let mut w0 = random(24, 3);
        w0[5] = 0.01; // inside the dead zone
        let c = random(24, 4);
        let wp: Vec<f32> = (0..groups).map(|g| 0.7 + 0.1 * g as f32).collect();
        let wn: Vec<f32> = (0..groups).map(|g| 0.4 + 0.05 * g as f32).collect();
        let scales = TtqScales {
            pos: Param::from_tensor(
                Tensor::from_data(TensorData::new(wp.clone(), [groups]), &dev).require_grad(),
            ),
            neg: Param::from_tensor(
                Tensor::from_data(TensorData::new(wn.clone(), [groups]), &dev).require_grad(),
            ),
        };
        let w = Tensor::<2>::from_data(TensorData::new(w0.clone(), shape), &dev).require_grad();
        let fwd = ttq_forward(w.clone(), &scales, gran, "w").unwrap();
        let ct = Tensor::<2>::from_data(TensorData::new(c.clone(), shape), &dev);
        let grads = (fwd.clone() * ct).sum().backward();
        let (q, gw, gp, gn) = ttq_hand(&w0, &c, groups, &wp, &wn);
        // Forward is exactly the ternary weights.
        assert_eq!(tensor_values(fwd), q, "{gran}: forward");
        close(&tensor_values(w.grad(&grads).unwrap()), &gw, "dL/dw");
        close(
            &tensor_values(scales.pos.val().grad(&grads).unwrap()),
            &gp,
            "dL/dWp",
        );
        close(
            &tensor_values(scales.neg.val().grad(&grads).unwrap()),
            &gn,
            "dL/dWn",
        );
        // Sanity of the fixture: both regions are non-empty and the sum is not a mean.
        assert!(gp.iter().all(|&x| x != 0.0) && gn.iter().all(|&x| x != 0.0));
    }
}

/// Infers the graph's shapes against the file's tensors (every tensor a node names must exist
/// with a shape that fits), and checks every file tensor is referenced exactly once. Returns
/// the logits width.
fn check_arch(arch: &Arch, file: &twobit_format::Model) -> usize {
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = file
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let values = arch
        .shapes(|t| shapes.get(t).map(Vec::as_slice))
        .unwrap_or_else(|e| panic!("arch does not fit the file: {e}"));
    let mut used: Vec<String> = arch
        .nodes
        .iter()
        .flat_map(|n| n.op.tensors())
        .map(str::to_string)
        .collect();
    used.sort();
    let all: Vec<String> = file.tensors.keys().cloned().collect();
    assert_eq!(
        used, all,
        "file tensors not referenced exactly once by the arch"
    );
    let out = &values[&arch.output];
    assert_eq!(out.len(), 1);
    out[0]
}

#[test]
fn arch_export_matches_module_structure() {
    let dev = device();
    let norm = twobit_format::Normalize {
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    let cases: Vec<(&str, [usize; 3])> = vec![
        ("mlp", [1, 28, 28]),
        ("lenet5", [1, 28, 28]),
        ("lenet5", [3, 32, 32]),
        ("vgg7", [3, 32, 32]),
        ("vgg7", [1, 28, 28]),
        ("resnet20", [3, 32, 32]),
    ];
    for (name, input) in cases {
        let norm = twobit_format::Normalize {
            mean: norm.mean[..input[0]].to_vec(),
            std: norm.std[..input[0]].to_vec(),
        };
        let kind: ModelKind = name.parse().unwrap();
        let (out, n_weights) = export(GraphNet::builtin(kind, input, 10, 1, &dev).unwrap(), norm);
        assert_eq!(out, 10, "{name} {input:?}: logits width");
        let expected = match name {
            "mlp" => 3,
            "lenet5" => 4,
            "vgg7" => 8,
            _ => 20,
        };
        assert_eq!(n_weights, expected, "{name}: weight layers");
    }

    fn export<M: QatModel>(m: M, norm: twobit_format::Normalize) -> (usize, usize) {
        let plan = QatPlan::new(
            WeightScheme::Quant(Scheme::Quat),
            Granularity::Tensor,
            false,
            m.weight_layers().len(),
        );
        let valid = m.valid();
        let eval = plan
            .eval_weights(&valid, &twobit_train::qat::QatState::default())
            .unwrap();
        let file = twobit_train::export::to_file_model(&valid, &eval, 10, norm, Default::default());
        let arch = file.arch.clone().unwrap();
        let n = valid.weight_layers().len();
        // First and last weight layers stay float; the others are packed.
        for (i, (name, _)) in valid.weight_layers().into_iter().enumerate() {
            let packed = matches!(
                file.tensors.get(&format!("{name}.weight")),
                Some(FileTensor::Packed(_))
            );
            assert_eq!(packed, i != 0 && i + 1 != n, "{name}");
        }
        // The module's forward agrees with the arch on the logits width.
        let x = Tensor::<4>::zeros(
            [2, arch.input[0], arch.input[1], arch.input[2]],
            &valid
                .weight_layers()
                .first()
                .map(|(_, l)| match l {
                    twobit_train::layers::WeightLayer::Linear(l) => l.weight.val().device(),
                    twobit_train::layers::WeightLayer::Conv(c) => c.weight.val().device(),
                })
                .unwrap(),
        );
        let logits = valid.forward(x, &eval.forward);
        let out = check_arch(&arch, &file);
        assert_eq!(logits.dims(), [2, out]);
        (out, n)
    }
}
