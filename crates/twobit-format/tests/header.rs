//! What the header holds: magic, version, producer, manifest, provenance, sizes.
mod common;

use common::*;
use serde_json::Value;
use twobit_format::{
    FormatError, Model, Tensor, WriteOptions, GRAPH_FORMAT_VERSION, KEY_FORMAT, KEY_MANIFEST,
    KEY_PRODUCER, KEY_VERSION, MAX_HEADER_BYTES,
};
use twobit_quant::{Granularity, Scheme};

#[test]
fn metadata_keys_and_manifest() {
    let m = model(Scheme::Quat, Granularity::Channel);
    let bytes = m.to_bytes().unwrap();
    let (h, _) = split(&bytes);
    let meta = &h["__metadata__"];
    assert_eq!(meta[KEY_FORMAT], "twobit");
    assert_eq!(meta[KEY_VERSION], GRAPH_FORMAT_VERSION.to_string());
    assert!(meta[KEY_PRODUCER].as_str().unwrap().starts_with("twobit"));
    assert_eq!(meta["twobit.provenance.source"], "unit test");
    let manifest: Value = serde_json::from_str(meta[KEY_MANIFEST].as_str().unwrap()).unwrap();
    let conv = &manifest["tensors"]["conv1.weight"];
    assert_eq!(conv["kind"], "packed");
    assert_eq!(conv["scheme"], "quat");
    assert_eq!(conv["granularity"], "channel");
    assert_eq!(conv["shape"], serde_json::json!([6, 1, 5, 5]));
    assert_eq!(conv["origin_dtype"], "F16");
    assert_eq!(conv["groups"], 6);
    let bias = &manifest["tensors"]["fc1.bias"];
    assert_eq!(bias["kind"], "float");
    assert_eq!(bias["dtype"], "F64");
    assert_eq!(manifest["arch"]["name"], "lenet-mini");
    assert_eq!(manifest["arch"]["graph"], 1);
    assert_eq!(manifest["arch"]["nodes"][0]["op"], "conv");
    // the header is 8-byte aligned so data offsets stay aligned
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(n % 8, 0);
}

#[test]
fn a_model_without_arch_stores_null() {
    let mut m = model(Scheme::Twn, Granularity::Tensor);
    m.arch = None;
    let bytes = m.to_bytes().unwrap();
    let (h, _) = split(&bytes);
    let manifest: Value =
        serde_json::from_str(h["__metadata__"][KEY_MANIFEST].as_str().unwrap()).unwrap();
    assert!(manifest["arch"].is_null());
    assert_eq!(Model::from_bytes(&bytes).unwrap().arch, None);
}

#[test]
fn packed_size_is_ceil_n_over_4_plus_tables() {
    let mut rng = Rng(3);
    for (n, gran) in [
        (1usize, Granularity::Tensor),
        (4, Granularity::Tensor),
        (4097, Granularity::Tensor),
        (64 * 9, Granularity::Channel),
    ] {
        let shape = if gran == Granularity::Channel {
            vec![64, n / 64]
        } else {
            vec![n]
        };
        let p = packed(&mut rng, &shape, Scheme::Tern, gran);
        let groups = p.groups();
        let mut m = Model::default();
        m.tensors.insert("w".into(), Tensor::Packed(p.clone()));
        // version-1 layout: ceil(n/4) code bytes, f32 tables [g,4] + [g,3]
        let bytes = m.to_bytes_with(&WriteOptions::LEGACY).unwrap();
        let (_, data) = split(&bytes);
        let expected = n.div_ceil(4) + groups * (16 + 12);
        assert_eq!(data.len(), expected, "n={n}");
        assert_eq!(
            p.stored_size(&WriteOptions::LEGACY).unwrap().total(),
            expected
        );
        // default for ternary: base 3 (ceil(n/5) bytes), ternary tables [g,3] + [g,2]
        // (these levels are not exact f16s, so f32)
        let bytes = m.to_bytes().unwrap();
        let (_, data) = split(&bytes);
        let expected = n.div_ceil(5) + groups * (12 + 8);
        assert_eq!(data.len(), expected, "n={n}");
        assert_eq!(p.stored_bytes(), expected);
        let bpw = 8.0 * expected as f64 / n as f64;
        assert!((p.bits_per_weight() - bpw).abs() < 1e-12);
        // rounded to f16: half the table bytes
        let h = p.with_f16_tables().unwrap();
        assert_eq!(h.stored_bytes(), n.div_ceil(5) + groups * 10);
    }
}

#[test]
fn plain_safetensors_is_not_twobit() {
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let bytes = safetensors::serialize([("w", view)], None).unwrap();
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(FormatError::MissingMetadata("twobit.format"))
    ));
}

#[test]
fn wrong_magic_version_and_missing_manifest() {
    let good = model(Scheme::Atn, Granularity::Tensor).to_bytes().unwrap();
    let magic = edit_header(&good, |h| {
        h["__metadata__"][KEY_FORMAT] = "nottwobit".into()
    });
    assert!(matches!(
        Model::from_bytes(&magic),
        Err(FormatError::WrongMagic(_))
    ));
    for v in ["4", "0", "one", ""] {
        let bad = edit_header(&good, |h| h["__metadata__"][KEY_VERSION] = v.into());
        assert!(
            matches!(
                Model::from_bytes(&bad),
                Err(FormatError::UnsupportedVersion { .. })
            ),
            "{v}"
        );
    }
    let bad = edit_header(&good, |h| {
        h["__metadata__"]
            .as_object_mut()
            .unwrap()
            .remove(KEY_MANIFEST);
    });
    assert!(matches!(
        Model::from_bytes(&bad),
        Err(FormatError::MissingMetadata("twobit.manifest"))
    ));
    // editing the header (without changing meaning) still reads: the helper is faithful
    let same = edit_header(&good, |_| {});
    assert!(Model::from_bytes(&same).is_ok());
}

#[test]
fn header_length_limits() {
    let good = model(Scheme::Ttq, Granularity::Tensor).to_bytes().unwrap();
    for n in [u64::MAX, (MAX_HEADER_BYTES as u64) + 1, 1 << 40] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&n.to_le_bytes());
        assert!(
            matches!(
                Model::from_bytes(&bad),
                Err(FormatError::HeaderTooLarge { .. })
            ),
            "{n}"
        );
    }
    let mut past_end = good.clone();
    past_end[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert!(matches!(
        Model::from_bytes(&past_end),
        Err(FormatError::Truncated { .. })
    ));
    let mut short = good.clone();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap());
    short[..8].copy_from_slice(&(n - 1).to_le_bytes());
    assert!(Model::from_bytes(&short).is_err());
    let mut zero = good;
    zero[..8].copy_from_slice(&0u64.to_le_bytes());
    assert!(Model::from_bytes(&zero).is_err());
}

/// Version-1 files stored a layer list with nested residual blocks; they load as the
/// equivalent graph (the option-A shortcut split around the input's channels).
#[test]
fn version_1_layer_lists_load_as_graphs() {
    use twobit_format::Op;
    let good = model(Scheme::Tern, Granularity::Tensor)
        .to_bytes_with(&WriteOptions::LEGACY)
        .unwrap();
    let v1 = edit_header(&good, |h| {
        h["__metadata__"][KEY_VERSION] = "1".into();
        let mut m: serde_json::Value =
            serde_json::from_str(h["__metadata__"][KEY_MANIFEST].as_str().unwrap()).unwrap();
        let arch = m["arch"].as_object_mut().unwrap();
        for k in ["graph", "nodes", "output"] {
            arch.remove(k);
        }
        arch.insert(
            "layers".into(),
            serde_json::json!([
                {"op": "conv2d", "weight": "conv1.weight", "bias": "conv1.bias", "stride": 1, "padding": 0},
                {"op": "residual", "body": [{"op": "relu"}],
                 "shortcut": [{"op": "pad_subsample", "stride": 1, "out_channels": 4}]},
                {"op": "flatten"},
                {"op": "linear", "weight": "fc1.weight", "bias": "fc1.bias"}
            ]),
        );
        h["__metadata__"][KEY_MANIFEST] = m.to_string().into();
    });
    let m = match Model::from_bytes(&v1) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let arch = m.arch.unwrap();
    let ops: Vec<&str> = arch.nodes.iter().map(|n| n.op.name()).collect();
    // The fixture's conv has `c` output channels: stride-1 pad_subsample to 4 channels
    // needs 4 - c zero channels, split floor/ceil.
    let c = m.tensors["conv1.weight"].shape()[0];
    let pad = 4usize.saturating_sub(c);
    let mut expected = vec!["conv", "relu"];
    if pad > 0 {
        expected.push("pad_channels");
    }
    expected.extend(["add", "flatten", "linear"]);
    assert_eq!(ops, expected);
    if pad > 0 {
        let p = arch
            .nodes
            .iter()
            .find(|n| n.op.name() == "pad_channels")
            .unwrap();
        assert_eq!(
            p.op,
            Op::PadChannels {
                before: pad / 2,
                after: pad - pad / 2
            }
        );
    }
    let add = arch.nodes.iter().find(|n| n.op.name() == "add").unwrap();
    assert_eq!(add.inputs.len(), 2);
    assert_eq!(arch.output, arch.nodes.last().unwrap().output);
}
