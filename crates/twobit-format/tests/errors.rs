//! Broken files: each gives a specific error, none panics.
mod common;

use common::*;
use serde_json::{json, Value};
use twobit_format::{FormatError, Model, Node, Op, Tensor, WriteOptions, MAX_DIMS, MAX_TENSORS};
use twobit_quant::{Granularity, Scheme};

fn good() -> Vec<u8> {
    model(Scheme::Quat, Granularity::Channel)
        .to_bytes()
        .unwrap()
}

fn err(bytes: &[u8]) -> FormatError {
    match Model::from_bytes(bytes) {
        Ok(_) => panic!("a broken file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn truncated_at_every_offset() {
    let bytes = good();
    for cut in 0..bytes.len() {
        let e = err(&bytes[..cut]);
        if cut < 8 {
            assert!(
                matches!(e, FormatError::Truncated { needed: 8, .. }),
                "{cut}: {e}"
            );
        }
    }
    // and with bytes appended
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(err(&longer), FormatError::NotSafetensors(_)));
}

#[test]
fn every_single_byte_flip_is_handled() {
    let bytes = good();
    let mut rejected = 0;
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            // a flip inside float data or codes may still be a valid file; it must never panic
            if Model::from_bytes(&b).is_err() {
                rejected += 1;
            }
        }
    }
    assert!(rejected > bytes.len(), "only {rejected} flips rejected");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn thousands_of_random_mutations_never_panic() {
    // Stands in for the fuzz target on machines without nightly: mutate valid files by
    // byte writes, insertions, deletions and truncations.
    // Every encoding: the default (base 3 for ternary), the version-1 layout, rANS, and f16
    // tables.
    let entropy = WriteOptions {
        entropy: true,
        ..Default::default()
    };
    let seeds: Vec<Vec<u8>> = Scheme::ALL
        .iter()
        .flat_map(|&s| [Granularity::Tensor, Granularity::Channel].map(move |g| (s, g)))
        .flat_map(|(s, g)| {
            let m = model(s, g);
            let mut half = m.clone();
            for t in half.tensors.values_mut() {
                if let Tensor::Packed(p) = t {
                    *p = p.with_f16_tables().unwrap();
                }
            }
            [
                m.to_bytes().unwrap(),
                m.to_bytes_with(&WriteOptions::LEGACY).unwrap(),
                m.to_bytes_with(&entropy).unwrap(),
                half.to_bytes_with(&entropy).unwrap(),
            ]
        })
        .collect();
    let mut rng = Rng(0xDEAD_BEEF);
    let mut rejected = 0;
    let total = 20_000;
    for _ in 0..total {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                0 | 1 => {
                    let i = rng.below(b.len());
                    b[i] = rng.next_u64() as u8;
                }
                2 => {
                    let i = rng.below(b.len());
                    b.insert(i, rng.next_u64() as u8);
                }
                3 => {
                    let i = rng.below(b.len());
                    b.remove(i);
                }
                _ => {
                    let i = rng.below(b.len());
                    b.truncate(i.max(1));
                }
            }
        }
        if Model::from_bytes(&b).is_err() {
            rejected += 1;
        }
    }
    assert!(rejected > total / 2, "only {rejected} of {total} rejected");
}

#[test]
fn garbage_and_non_json_headers() {
    assert!(matches!(err(b""), FormatError::Truncated { .. }));
    assert!(matches!(
        err(b"hello, world! this is not a model"),
        FormatError::HeaderTooLarge { .. } | FormatError::Truncated { .. }
    ));
    let mut b = 8u64.to_le_bytes().to_vec();
    b.extend(b"not json");
    assert!(matches!(
        err(&b),
        FormatError::BadJson { what: "header", .. }
    ));
    let mut b = 8u64.to_le_bytes().to_vec();
    b.extend([0xFF; 8]); // not UTF-8
    assert!(matches!(
        err(&b),
        FormatError::BadJson { what: "header", .. }
    ));
    let bad = edit_header(&good(), |h| {
        h["__metadata__"]["twobit.manifest"] = "{not json".into()
    });
    assert!(matches!(
        err(&bad),
        FormatError::BadJson {
            what: "manifest",
            ..
        }
    ));
}

#[test]
fn wrong_codes_length() {
    let bytes = good();
    // tell the manifest the tensor is bigger than its codes
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["fc1.weight"]["shape"] = json!([7, 60])
    });
    assert!(
        matches!(err(&bad), FormatError::CodesLengthMismatch { .. }),
        "{}",
        err(&bad)
    );
    // or the codes tensor itself declares another shape (drop a byte from the data)
    let r = tensor_range(&bytes, "fc1.weight.codes");
    let mut data_cut = bytes.clone();
    data_cut.remove(r.start);
    let bad = edit_header(&data_cut, |h| {
        let shift = |v: &mut Value, d: i64| *v = json!(v.as_i64().unwrap() + d);
        let start = h["fc1.weight.codes"]["data_offsets"][0].as_i64().unwrap();
        for (k, t) in h.as_object_mut().unwrap().iter_mut() {
            if k == "__metadata__" {
                continue;
            }
            let offs = &mut t["data_offsets"];
            if offs[0].as_i64().unwrap() > start {
                shift(&mut offs[0], -1);
            }
            if offs[1].as_i64().unwrap() > start {
                shift(&mut offs[1], -1);
            }
        }
        h["fc1.weight.codes"]["shape"] = json!([94]);
    });
    assert!(
        matches!(err(&bad), FormatError::CodesLengthMismatch { .. }),
        "{}",
        err(&bad)
    );
}

#[test]
fn nonzero_padding_bits() {
    // fc1.weight has 378 weights: the last byte holds 2 codes and 4 padding bits
    let mut bytes = good();
    let r = tensor_range(&bytes, "fc1.weight.codes");
    bytes[r.end - 1] |= 0b1100_0000;
    assert!(matches!(err(&bytes), FormatError::CodesPadding { .. }));
}

fn set_f32(bytes: &mut [u8], tensor: &str, index: usize, v: f32) {
    let r = tensor_range(bytes, tensor);
    let at = r.start + 4 * index;
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn nan_inf_and_unordered_levels() {
    for (tensor, idx, v) in [
        ("fc1.weight.levels", 1, f32::NAN),
        ("fc1.weight.levels", 5, f32::INFINITY),
        ("conv1.weight.levels", 0, f32::NEG_INFINITY),
        ("fc1.weight.thresholds", 2, f32::NAN),
    ] {
        let mut b = good();
        set_f32(&mut b, tensor, idx, v);
        assert!(
            matches!(err(&b), FormatError::NonFiniteLevels { .. }),
            "{tensor}[{idx}]={v}"
        );
    }
    let mut b = good();
    set_f32(&mut b, "fc1.weight.levels", 0, 100.0);
    assert!(matches!(
        err(&b),
        FormatError::NonAscendingLevels {
            table: "levels",
            ..
        }
    ));
    let mut b = good();
    set_f32(&mut b, "fc1.weight.thresholds", 3, 100.0); // group 1, first threshold
    assert!(matches!(
        err(&b),
        FormatError::NonAscendingLevels {
            table: "thresholds",
            group: 1,
            ..
        }
    ));
}

#[test]
fn huge_shapes_and_ranks() {
    let bytes = good();
    for shape in [
        json!([1u64 << 40, 1u64 << 40]),
        json!([usize::MAX, 2]),
        json!([1u64 << 41]),
    ] {
        let bad = edit_manifest(&bytes, |m| {
            m["tensors"]["fc1.weight"]["shape"] = shape.clone()
        });
        assert!(
            matches!(err(&bad), FormatError::ShapeOverflow { .. }),
            "{shape}: {}",
            err(&bad)
        );
    }
    let deep = json!(vec![1; MAX_DIMS + 1]);
    let bad = edit_manifest(&bytes, |m| m["tensors"]["fc1.weight"]["shape"] = deep);
    assert!(matches!(err(&bad), FormatError::BadRank { .. }));
    let bad = edit_manifest(&bytes, |m| m["tensors"]["fc1.weight"]["shape"] = json!([]));
    assert!(matches!(err(&bad), FormatError::BadRank { dims: 0, .. }));
    // a huge shape in the safetensors header itself is caught by the container check
    let bad = edit_header(&bytes, |h| h["extra.f32"]["shape"] = json!([usize::MAX, 3]));
    assert!(matches!(err(&bad), FormatError::NotSafetensors(_)));
}

#[test]
fn level_table_shapes() {
    let bytes = good();
    let bad = edit_manifest(&bytes, |m| m["tensors"]["fc1.weight"]["groups"] = json!(9));
    assert!(matches!(err(&bad), FormatError::LevelTableShape { .. }));
    // the table itself reshaped ([7,4] -> [14,2], same bytes)
    let bad = edit_header(&bytes, |h| h["fc1.weight.levels"]["shape"] = json!([14, 2]));
    assert!(matches!(
        err(&bad),
        FormatError::LevelTableShape {
            table: "levels",
            ..
        }
    ));
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["fc1.weight"]["granularity"] = json!("tensor")
    });
    assert!(matches!(err(&bad), FormatError::LevelTableShape { .. }));
}

#[test]
fn unknown_names() {
    let bytes = good();
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["fc1.weight"]["scheme"] = json!("int3")
    });
    assert!(matches!(err(&bad), FormatError::UnknownScheme { .. }));
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["fc1.weight"]["granularity"] = json!("row")
    });
    assert!(matches!(err(&bad), FormatError::UnknownGranularity { .. }));
    let bad = edit_manifest(&bytes, |m| m["tensors"]["fc1.bias"]["dtype"] = json!("I64"));
    assert!(matches!(err(&bad), FormatError::UnsupportedDtype { .. }));
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["fc1.bias"]["kind"] = json!("sparse")
    });
    assert!(matches!(
        err(&bad),
        FormatError::BadJson {
            what: "manifest",
            ..
        }
    ));
}

#[test]
fn manifest_and_container_disagree() {
    let bytes = good();
    // missing: the manifest names a tensor that is not stored
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["ghost"] = json!({"kind": "float", "dtype": "F32", "shape": [1]})
    });
    assert!(matches!(err(&bad), FormatError::MissingTensor(n) if n == "ghost"));
    // unexpected: stored but not in the manifest
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"].as_object_mut().unwrap().remove("extra.f32");
    });
    assert!(matches!(err(&bad), FormatError::UnexpectedTensor(n) if n == "extra.f32"));
    // dtype: the manifest says F32, the bias is stored as F64
    let bad = edit_manifest(&bytes, |m| m["tensors"]["fc1.bias"]["dtype"] = json!("F32"));
    assert!(matches!(err(&bad), FormatError::DtypeMismatch { .. }));
    // shape: same element count, other shape
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["extra.f16"]["shape"] = json!([4, 3])
    });
    assert!(matches!(err(&bad), FormatError::ShapeMismatch { .. }));
    // codes stored with the wrong dtype
    let bad = edit_header(&bytes, |h| h["fc1.weight.codes"]["dtype"] = json!("I8"));
    assert!(matches!(err(&bad), FormatError::DtypeMismatch { .. }));
    // one stored tensor claimed twice: float "fc1.weight.codes" and packed "fc1.weight"
    let bad = edit_manifest(&bytes, |m| {
        m["tensors"]["fc1.weight.codes"] = json!({"kind": "float", "dtype": "F32", "shape": [93]})
    });
    assert!(matches!(
        err(&bad),
        FormatError::DtypeMismatch { .. } | FormatError::NameCollision(_)
    ));
}

#[test]
fn arch_must_match_the_tensors() {
    let bytes = good();
    let bad = edit_manifest(&bytes, |m| {
        m["arch"]["nodes"][3]["weight"] = json!("fc9.weight")
    });
    assert!(matches!(err(&bad), FormatError::ArchMissingTensor { .. }));
    // conv layer pointing at a 2-D weight
    let bad = edit_manifest(&bytes, |m| {
        m["arch"]["nodes"][0]["weight"] = json!("fc1.weight")
    });
    assert!(matches!(err(&bad), FormatError::ArchInvalid(_)));
    // bias of the wrong length
    let bad = edit_manifest(&bytes, |m| {
        m["arch"]["nodes"][3]["bias"] = json!("conv1.bias")
    });
    assert!(matches!(err(&bad), FormatError::ArchInvalid(_)));
    let bad = edit_manifest(&bytes, |m| m["arch"]["nodes"][0]["strides"] = json!([0, 1]));
    assert!(matches!(err(&bad), FormatError::ArchInvalid(_)));
    let bad = edit_manifest(&bytes, |m| m["arch"]["normalize"]["std"] = json!([0.0]));
    assert!(matches!(err(&bad), FormatError::ArchInvalid(_)));
    let bad = edit_manifest(&bytes, |m| m["arch"]["nodes"][1] = json!({"op": "softmax"}));
    assert!(matches!(
        err(&bad),
        FormatError::BadJson {
            what: "manifest",
            ..
        }
    ));
    // deeply nested residuals: the JSON depth limit answers, no stack overflow
    let mut deep = json!({"op": "relu"});
    for _ in 0..300 {
        deep = json!({"op": "residual", "body": [deep], "shortcut": []});
    }
    let bad = edit_manifest(&bytes, |m| m["arch"]["nodes"][1] = deep);
    assert!(matches!(err(&bad), FormatError::BadJson { .. }));
    // the writer refuses the same mistakes
    let mut m = model(Scheme::Tern, Granularity::Tensor);
    if let Some(a) = m.arch.as_mut() {
        a.nodes.push(Node {
            name: "extra".into(),
            op: Op::Linear {
                weight: "missing".into(),
                bias: None,
            },
            inputs: vec![a.output.clone()],
            output: "extra".into(),
        });
    }
    assert!(matches!(
        m.to_bytes(),
        Err(FormatError::ArchMissingTensor { .. })
    ));
}

#[test]
fn writer_rejects_invalid_models() {
    let mut m = model(Scheme::Tern, Granularity::Tensor);
    let Some(Tensor::Packed(p)) = m.tensors.get_mut("fc1.weight") else {
        panic!()
    };
    p.codes.pop();
    assert!(matches!(
        m.to_bytes(),
        Err(FormatError::CodesLengthMismatch { .. })
    ));
    let mut m = model(Scheme::Tern, Granularity::Tensor);
    let Some(Tensor::Float(f)) = m.tensors.get_mut("fc1.bias") else {
        panic!()
    };
    f.data.push(0);
    assert!(matches!(m.to_bytes(), Err(FormatError::DataLength { .. })));
    // name collision between a packed tensor's parts and a float tensor
    let mut m = model(Scheme::Tern, Granularity::Tensor);
    m.tensors.insert(
        "fc1.weight.levels".into(),
        Tensor::Float(twobit_format::FloatTensor::from_f32(vec![1], &[0.0])),
    );
    assert!(matches!(m.to_bytes(), Err(FormatError::NameCollision(_))));
    let mut m = model(Scheme::Tern, Granularity::Tensor);
    m.tensors.insert(
        "__metadata__".into(),
        Tensor::Float(twobit_format::FloatTensor::from_f32(vec![1], &[0.0])),
    );
    assert!(matches!(m.to_bytes(), Err(FormatError::NameCollision(_))));
}

#[test]
fn too_many_tensors() {
    // A header listing MAX_TENSORS+1 empty tensors (each 0 bytes of data).
    let mut h = serde_json::Map::new();
    for i in 0..=MAX_TENSORS {
        h.insert(
            format!("t{i}"),
            json!({"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}),
        );
    }
    let bytes = join(&Value::Object(h), &[]);
    assert!(
        matches!(err(&bytes), FormatError::TooManyTensors { .. }),
        "{}",
        err(&bytes)
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let e = Model::load(std::path::Path::new("/nonexistent/dir/x.twobit")).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }));
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.twobit");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Model::load(&empty),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn offsets_summing_past_usize_max() {
    // Eight tensors of 2^61-1 bytes each: every size is representable, their sum is not
    // once the header length is added. Must be an error, not an arithmetic overflow.
    let big = (1u64 << 61) - 1;
    let mut h = serde_json::Map::new();
    for k in 0..8u64 {
        h.insert(
            format!("t{k}"),
            json!({"dtype": "U8", "shape": [big], "data_offsets": [k * big, (k + 1) * big]}),
        );
    }
    let bytes = join(&Value::Object(h), &[0; 16]);
    let e = err(&bytes);
    assert!(
        matches!(
            e,
            FormatError::Truncated { .. } | FormatError::NotSafetensors(_)
        ),
        "{e}"
    );
}
