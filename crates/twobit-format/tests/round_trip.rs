//! Writing then reading gives back the same model, bit for bit.
mod common;

use common::*;
use twobit_format::{pack, FloatDtype, FloatTensor, Model, Tensor};
use twobit_quant::{Granularity, Scheme};

const GRANS: [Granularity; 2] = [Granularity::Tensor, Granularity::Channel];

#[test]
fn every_scheme_and_granularity_round_trips() {
    for scheme in Scheme::ALL {
        for gran in GRANS {
            let m = model(scheme, gran);
            let bytes = m.to_bytes().unwrap();
            let back = Model::from_bytes(&bytes).unwrap();
            assert_eq!(back, m, "{scheme} {gran}");
        }
    }
}

#[test]
fn dequantize_is_levels_of_codes_bit_exact() {
    let mut rng = Rng(7);
    for scheme in Scheme::ALL {
        for gran in GRANS {
            // 3*7*5 = 105 weights: not a multiple of 4, so the last byte is partial
            let shape = [3, 7, 5];
            let w = weights(&mut rng, 105);
            let q = quantize(&w, &shape, scheme, gran);
            let p = twobit_format::PackedTensor::from_quantized(&q);
            let mut m = Model::default();
            m.tensors.insert("w".into(), Tensor::Packed(p));
            let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
            let Tensor::Packed(p) = &back.tensors["w"] else {
                panic!("not packed")
            };
            assert_eq!(p.to_quantized(), q);
            let per = 105 / q.levels.len();
            let want: Vec<u32> = q
                .codes
                .iter()
                .enumerate()
                .map(|(i, &c)| q.levels[i / per].values[c as usize].to_bits())
                .collect();
            let got: Vec<u32> = p.dequantize().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{scheme} {gran}");
            // the dequantized tensor reproduces the quantizer's decision for every weight
            for (i, &x) in w.iter().enumerate() {
                let l = &q.levels[i / per];
                assert_eq!(got[i], l.value(l.code(x)).to_bits());
            }
        }
    }
}

#[test]
fn every_float_dtype_is_kept_byte_for_byte() {
    let mut rng = Rng(11);
    let vals = weights(&mut rng, 24);
    for dtype in FloatDtype::ALL {
        let mut m = Model::default();
        let t = FloatTensor::from_f32_as(dtype, vec![2, 3, 4], &vals);
        assert_eq!(t.data.len(), 24 * dtype.size());
        m.tensors.insert("t".into(), Tensor::Float(t.clone()));
        // scalars (rank 0) and empty tensors are legal safetensors float tensors
        m.tensors.insert(
            "scalar".into(),
            Tensor::Float(FloatTensor::from_f32_as(dtype, vec![], &[1.5])),
        );
        m.tensors.insert(
            "empty".into(),
            Tensor::Float(FloatTensor::from_f32_as(dtype, vec![0, 3], &[])),
        );
        let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back, m, "{dtype}");
        let Tensor::Float(f) = &back.tensors["t"] else {
            panic!()
        };
        assert_eq!(f.dtype, dtype);
        let got = f.to_f32();
        for (g, v) in got.iter().zip(&vals) {
            // f16/bf16 round; f32/f64 exact
            let tol = match dtype {
                FloatDtype::F16 => 1e-3,
                FloatDtype::BF16 => 4e-3,
                _ => 0.0,
            };
            assert!((g - v).abs() <= tol, "{dtype}: {g} vs {v}");
        }
    }
}

#[test]
fn save_and_load_through_a_file_leave_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.twobit");
    let m = model(Scheme::Quat, Granularity::Channel);
    m.save(&path).unwrap();
    assert_eq!(Model::load(&path).unwrap(), m);
    // overwrite in place with another model
    let m2 = model(Scheme::Tern, Granularity::Tensor);
    m2.save(&path).unwrap();
    assert_eq!(Model::load(&path).unwrap(), m2);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.twobit")]);
}

#[test]
fn failed_save_writes_nothing_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.twobit");
    let good = model(Scheme::Tern, Granularity::Tensor);
    good.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    if let Some(Tensor::Packed(p)) = bad.tensors.get_mut("fc1.weight") {
        p.levels[0].values[0] = f32::NAN;
    }
    assert!(bad.save(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // unwritable destination: a directory that does not exist (refused before writing)
    let missing = dir.path().join("no/such/dir/m.twobit");
    assert!(matches!(
        good.save(&missing),
        Err(twobit_format::FormatError::BadOutput { .. })
    ));
}

#[test]
fn any_safetensors_reader_lists_the_parts() {
    let m = model(Scheme::QuatFree, Granularity::Channel);
    let bytes = m.to_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(
        names,
        vec![
            "conv1.bias",
            "conv1.weight.codes",
            "conv1.weight.levels",
            "conv1.weight.thresholds",
            "extra.f16",
            "extra.f32",
            "fc1.bias",
            "fc1.weight.codes",
            "fc1.weight.levels",
            "fc1.weight.thresholds",
        ]
    );
    let codes = st.tensor("fc1.weight.codes").unwrap();
    assert_eq!(codes.shape(), [pack::packed_len(378)]);
    assert_eq!(codes.dtype(), safetensors::Dtype::U8);
    assert_eq!(st.tensor("fc1.weight.levels").unwrap().shape(), [7, 4]);
    assert_eq!(st.tensor("fc1.weight.thresholds").unwrap().shape(), [7, 3]);
    assert_eq!(
        st.tensor("conv1.bias").unwrap().dtype(),
        safetensors::Dtype::BF16
    );
    // the stored codes are the packed form of the model's codes
    let Tensor::Packed(p) = &m.tensors["fc1.weight"] else {
        panic!()
    };
    assert_eq!(codes.data(), p.codes.as_slice());
}

#[test]
fn real_quantizer_output_round_trips_bit_exact() {
    let mut rng = Rng(5);
    for scheme in Scheme::ALL {
        for gran in GRANS {
            let shape = [5, 3, 3, 3]; // 135 weights: last code byte is partial
            let w = weights(&mut rng, 135);
            let q = twobit_quant::quantize(&w, &shape, scheme, gran).unwrap();
            let mut m = Model::default();
            m.tensors.insert(
                "w".into(),
                Tensor::Packed(twobit_format::PackedTensor::from_quantized(&q)),
            );
            let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
            let Tensor::Packed(p) = &back.tensors["w"] else {
                panic!()
            };
            assert_eq!(p.to_quantized(), q, "{scheme} {gran}");
            let a: Vec<u32> = p.dequantize().iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = twobit_quant::dequantize(&q)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(a, b, "{scheme} {gran}");
            assert_eq!(p.sparsity(), twobit_quant::sparsity(&q));
        }
    }
}
