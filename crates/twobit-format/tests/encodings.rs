//! The stored encodings (base 2, base 3, rANS; f32/f16 tables; full/ternary table layout):
//! every one round-trips exactly, the writer picks the smallest lossless one, and each broken
//! variant is its own error.
mod common;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use twobit_format::{
    FormatError, Model, PackedTensor, Packing, TableDtype, TableLayout, Tensor, WriteOptions,
};
use twobit_quant::{Granularity, Scheme};

const GRANS: [Granularity; 2] = [Granularity::Tensor, Granularity::Channel];

fn options() -> Vec<WriteOptions> {
    let mut v = vec![
        WriteOptions::default(),
        WriteOptions::LEGACY,
        WriteOptions {
            entropy: true,
            ..Default::default()
        },
        WriteOptions {
            packing: Some(Packing::Rans),
            ..Default::default()
        },
        WriteOptions {
            packing: Some(Packing::Enum),
            ..Default::default()
        },
    ];
    v.push(WriteOptions {
        packing: Some(Packing::Base2),
        table_dtype: Some(TableDtype::F32),
        ..Default::default()
    });
    v
}

/// The model with its packed tensors' tables rounded to f16.
fn f16_model(scheme: Scheme, gran: Granularity) -> Model {
    let mut m = model(scheme, gran);
    for t in m.tensors.values_mut() {
        if let Tensor::Packed(p) = t {
            *p = p.with_f16_tables().unwrap();
        }
    }
    m
}

#[test]
fn every_encoding_round_trips_exactly() {
    for scheme in Scheme::ALL {
        for gran in GRANS {
            for m in [model(scheme, gran), f16_model(scheme, gran)] {
                for opts in options() {
                    let bytes = m.to_bytes_with(&opts).unwrap();
                    let (back, layout) = Model::from_bytes_with_layout(&bytes).unwrap();
                    assert_eq!(back, m, "{scheme} {gran} {opts:?}");
                    for (name, size) in &layout {
                        let Tensor::Packed(p) = &m.tensors[name] else {
                            panic!("{name}")
                        };
                        // what the reader saw is what the writer said it would write
                        assert_eq!(p.stored_size(&opts).unwrap(), *size, "{name} {opts:?}");
                        if let Some(k) = opts.packing {
                            assert_eq!(size.encoding.packing, k);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_default_is_the_smallest_lossless_fixed_layout() {
    for gran in GRANS {
        let m = f16_model(Scheme::Tern, gran);
        let (_, layout) = Model::from_bytes_with_layout(&m.to_bytes().unwrap()).unwrap();
        for s in layout.values() {
            assert_eq!(s.encoding.packing, Packing::Base3);
            assert_eq!(s.encoding.table_dtype, TableDtype::F16);
            assert_eq!(s.encoding.table_layout, TableLayout::Ternary);
        }
        // quat uses code 3: base 2 and full tables; levels not exact f16s: f32
        let m = model(Scheme::Quat, gran);
        let (_, layout) = Model::from_bytes_with_layout(&m.to_bytes().unwrap()).unwrap();
        for s in layout.values() {
            assert_eq!(s.encoding.packing, Packing::Base2);
            assert_eq!(s.encoding.table_dtype, TableDtype::F32);
            assert_eq!(s.encoding.table_layout, TableLayout::Full);
        }
    }
}

#[test]
fn impossible_forced_encodings_are_refused() {
    let m = model(Scheme::Quat, Granularity::Tensor);
    for opts in [
        WriteOptions {
            packing: Some(Packing::Base3),
            ..Default::default()
        },
        WriteOptions {
            table_dtype: Some(TableDtype::F16),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            m.to_bytes_with(&opts),
            Err(FormatError::EncodingUnsupported { .. })
        ));
    }
    // a tensor of one repeated code is too dense for a rANS stream past 512 weights
    let mut p = packed(&mut Rng(1), &[40, 40], Scheme::Tern, Granularity::Tensor);
    p.codes = twobit_format::pack::pack(&vec![1u8; 1600]);
    let mut m = Model::default();
    m.tensors.insert("w".into(), Tensor::Packed(p.clone()));
    let forced = WriteOptions {
        packing: Some(Packing::Rans),
        ..Default::default()
    };
    assert!(matches!(
        m.to_bytes_with(&forced),
        Err(FormatError::EncodingUnsupported { .. })
    ));
    // ...so `entropy` takes the enumerative code: the histogram alone, 3 bytes
    let entropy = WriteOptions {
        entropy: true,
        ..Default::default()
    };
    let s = p.stored_size(&entropy).unwrap();
    assert_eq!(s.encoding.packing, Packing::Enum);
    assert!(s.code_bytes <= 3, "{}", s.code_bytes);
    assert_eq!(
        Model::from_bytes(&m.to_bytes_with(&entropy).unwrap()).unwrap(),
        m
    );
    // past enumerative::MAX_WEIGHTS neither entropy code applies: base 3
    let n = twobit_format::enumerative::MAX_WEIGHTS + 4;
    let mut big = packed(&mut Rng(2), &[4, n / 4], Scheme::Tern, Granularity::Tensor);
    big.codes = twobit_format::pack::pack(&vec![1u8; n]);
    assert_eq!(
        big.stored_size(&entropy).unwrap().encoding.packing,
        Packing::Base3
    );
    let forced = WriteOptions {
        packing: Some(Packing::Enum),
        ..Default::default()
    };
    assert!(matches!(
        big.stored_size(&forced),
        Err(FormatError::EncodingUnsupported { .. })
    ));
    // and a ternary tensor holding code 3 (valid, decodes to levels[2]) has no ternary
    // enumerative code
    let mut odd = p.clone();
    odd.codes[0] |= 3;
    assert!(matches!(
        odd.stored_size(&forced),
        Err(FormatError::EncodingUnsupported { .. })
    ));
}

#[test]
fn broken_enum_streams() {
    let opts = WriteOptions {
        packing: Some(Packing::Enum),
        ..Default::default()
    };
    for scheme in [Scheme::Tern, Scheme::Quat] {
        let good = file(scheme, &opts);
        assert_eq!(split(&good).0["__metadata__"]["twobit.version"], "3");
        let r = tensor_range(&good, "fc1.weight.codes");
        // every single-byte change is an error or another valid stream; never a panic
        for i in r.clone() {
            for mask in [1u8, 0x40, 0xFF] {
                let mut b = good.clone();
                b[i] ^= mask;
                match Model::from_bytes(&b) {
                    Err(FormatError::EnumCorrupt { .. }) | Ok(_) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }
        // a stream too long for its (now smaller) tensor
        let b = edit_manifest(&good, |m| {
            m["tensors"]["fc1.weight"]["shape"] = json!([1, 3])
        });
        assert!(
            matches!(
                err(&b),
                FormatError::EnumCorrupt { .. } | FormatError::LevelTableShape { .. }
            ),
            "{}",
            err(&b)
        );
        // a huge tensor is refused before any work
        let b = edit_manifest(&good, |m| {
            m["tensors"]["fc1.weight"]["shape"] = json!([7, 1 << 30])
        });
        assert!(
            matches!(
                err(&b),
                FormatError::EnumCorrupt { .. } | FormatError::LevelTableShape { .. }
            ),
            "{}",
            err(&b)
        );
        // the packing in a version-2 file
        let b = edit_header(&good, |h| h["__metadata__"]["twobit.version"] = json!("2"));
        assert!(
            matches!(err(&b), FormatError::EncodingNeedsVersion3 { .. }),
            "{}",
            err(&b)
        );
    }
}

#[test]
fn f16_tables_round_within_half_precision() {
    let m = model(Scheme::Quat, Granularity::Channel);
    for t in m.tensors.values() {
        let Tensor::Packed(p) = t else { continue };
        let h = p.with_f16_tables().unwrap();
        for (a, b) in p.levels.iter().zip(&h.levels) {
            for (x, y) in a.values.iter().zip(&b.values) {
                assert!((x - y).abs() <= x.abs() * 2f32.powi(-11), "{x} {y}");
            }
        }
        assert_eq!(h.codes, p.codes);
    }
    // a value beyond f16's range cannot be rounded
    let mut p = packed(&mut Rng(2), &[8, 8], Scheme::Quat, Granularity::Tensor);
    p.levels[0].values[3] = 1e6;
    assert_eq!(p.with_f16_tables(), None);
}

fn file(scheme: Scheme, opts: &WriteOptions) -> Vec<u8> {
    f16_model(scheme, Granularity::Tensor)
        .to_bytes_with(opts)
        .unwrap()
}

fn err(bytes: &[u8]) -> FormatError {
    match Model::from_bytes(bytes) {
        Ok(_) => panic!("a broken file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn broken_base3_codes() {
    // fc1.weight: 7x54 = 378 weights, ceil(378/5) = 76 bytes, last byte holds 3 digits
    let good = file(Scheme::Tern, &WriteOptions::default());
    let r = tensor_range(&good, "fc1.weight.codes");
    assert_eq!(r.len(), 76);
    let mut b = good.clone();
    b[r.start + 10] = 243;
    assert!(
        matches!(
            err(&b),
            FormatError::Base3ByteRange {
                index: 10,
                byte: 243,
                ..
            }
        ),
        "{}",
        err(&b)
    );
    let mut b = good.clone();
    b[r.end - 1] = 27; // a fourth digit past the last weight
    assert!(
        matches!(err(&b), FormatError::CodesPadding { .. }),
        "{}",
        err(&b)
    );
    // the manifest says more weights than the bytes hold
    let b = edit_manifest(&good, |m| {
        m["tensors"]["fc1.weight"]["shape"] = json!([7, 60])
    });
    assert!(
        matches!(
            err(&b),
            FormatError::CodesLengthMismatch { expected: 84, .. }
        ),
        "{}",
        err(&b)
    );
    // a quat code stream declared base 3 (bytes >= 243 somewhere, or wrong length)
    let quat = model(Scheme::Quat, Granularity::Tensor).to_bytes().unwrap();
    let b = edit_manifest(&quat, |m| {
        m["tensors"]["fc1.weight"]["packing"] = json!("base3")
    });
    assert!(matches!(err(&b), FormatError::CodesLengthMismatch { .. }));
}

#[test]
fn broken_rans_streams() {
    let opts = WriteOptions {
        packing: Some(Packing::Rans),
        ..Default::default()
    };
    for scheme in [Scheme::Tern, Scheme::Quat] {
        let good = file(scheme, &opts);
        let r = tensor_range(&good, "fc1.weight.codes");
        // every single-byte change of the stream is an error or (rarely) another valid
        // stream; never a panic
        let mut rejected = 0;
        for i in r.clone() {
            for mask in [1u8, 0x40, 0xFF] {
                let mut b = good.clone();
                b[i] ^= mask;
                match Model::from_bytes(&b) {
                    Err(
                        FormatError::RansCorrupt { .. }
                        | FormatError::RansHeader { .. }
                        | FormatError::RansState { .. },
                    ) => rejected += 1,
                    Err(e) => panic!("unexpected {e}"),
                    Ok(_) => {}
                }
            }
        }
        assert!(rejected * 10 >= 9 * 3 * r.len(), "{scheme}: {rejected}");
        // reserved header bits
        let mut b = good.clone();
        b[r.start] |= 0x80;
        assert!(matches!(err(&b), FormatError::RansHeader { .. }));
        // a tiny stream claiming a huge tensor is refused before allocating
        let b = edit_manifest(&good, |m| {
            m["tensors"]["fc1.weight"]["shape"] = json!([7, 1 << 30])
        });
        assert!(
            matches!(err(&b), FormatError::RansTooDense { .. }),
            "{}",
            err(&b)
        );
        // a base-2 stream declared rANS
        let plain = file(scheme, &WriteOptions::LEGACY);
        let b = edit_manifest(&plain, |m| {
            m["tensors"]["fc1.weight"]["packing"] = json!("rans")
        });
        assert!(
            matches!(
                err(&b),
                FormatError::RansCorrupt { .. }
                    | FormatError::RansHeader { .. }
                    | FormatError::RansState { .. }
            ),
            "{}",
            err(&b)
        );
    }
}

#[test]
fn manifest_encoding_fields_are_checked() {
    let good = file(Scheme::Tern, &WriteOptions::default());
    for (field, value) in [
        ("packing", "base4"),
        ("table_dtype", "BF16"),
        ("table_layout", "half"),
    ] {
        let b = edit_manifest(&good, |m| m["tensors"]["fc1.weight"][field] = json!(value));
        assert!(
            matches!(&err(&b), FormatError::UnknownEncoding { field: f, .. } if *f == field),
            "{}",
            err(&b)
        );
    }
    // the stored table dtype must be the declared one
    let b = edit_manifest(&good, |m| {
        m["tensors"]["fc1.weight"]["table_dtype"] = json!("F32")
    });
    assert!(
        matches!(err(&b), FormatError::DtypeMismatch { .. }),
        "{}",
        err(&b)
    );
    // and the table shape the declared layout's
    let b = edit_manifest(&good, |m| {
        m["tensors"]["fc1.weight"]["table_layout"] = json!("full")
    });
    assert!(
        matches!(err(&b), FormatError::LevelTableShape { .. }),
        "{}",
        err(&b)
    );
    // absent fields mean the version-1 layout
    let b = edit_manifest(&good, |m| {
        let e = m["tensors"]["fc1.weight"].as_object_mut().unwrap();
        e.remove("packing");
    });
    assert!(matches!(
        err(&b),
        FormatError::CodesLengthMismatch { expected: 95, .. }
    ));
    // version 1 knows only base 2 with full f32 tables
    let b = edit_header(&good, |h| h["__metadata__"]["twobit.version"] = json!("1"));
    assert!(
        matches!(err(&b), FormatError::EncodingNeedsVersion2 { .. }),
        "{}",
        err(&b)
    );
    let legacy = file(Scheme::Tern, &WriteOptions::LEGACY);
    let b = edit_header(&legacy, |h| {
        h["__metadata__"]["twobit.version"] = json!("1")
    });
    assert!(Model::from_bytes(&b).is_ok());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn random_mutations_of_every_encoding_never_panic() {
    let mut seeds = Vec::new();
    for scheme in Scheme::ALL {
        for opts in options() {
            seeds.push(file(scheme, &opts));
        }
    }
    let mut rng = Rng(0xC0FF_EE11);
    let mut rejected = 0;
    let total = 20_000;
    for _ in 0..total {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len());
            match rng.below(4) {
                0 | 1 => b[i] = rng.next_u64() as u8,
                2 => b.insert(i, rng.next_u64() as u8),
                _ => {
                    b.remove(i);
                }
            }
        }
        if let Ok(m) = Model::from_bytes(&b) {
            // whatever parses re-encodes to the same model, in every encoding it allows
            assert_eq!(Model::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
        } else {
            rejected += 1;
        }
    }
    assert!(rejected > total / 2, "only {rejected} of {total} rejected");
}

/// Code bytes of the only tensor `w` under `opts`.
fn code_bytes(m: &Model, opts: &WriteOptions) -> usize {
    match &m.tensors["w"] {
        Tensor::Packed(p) => p.stored_size(opts).unwrap().code_bytes,
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn ragged_tensors_round_trip_in_every_packing(
        rows in 1usize..9, cols in 1usize..40, seed in any::<u64>(), quat in any::<bool>()
    ) {
        let scheme = if quat { Scheme::Quat } else { Scheme::Tern };
        let mut rng = Rng(seed | 1);
        let mut m = Model::default();
        let p: PackedTensor = packed(&mut rng, &[rows, cols], scheme, Granularity::Channel);
        m.tensors.insert("w".into(), Tensor::Packed(p));
        for opts in options() {
            // the rANS density limit may refuse a forced stream; anything written reads back
            if let Ok(bytes) = m.to_bytes_with(&opts) {
                prop_assert_eq!(&Model::from_bytes(&bytes).unwrap(), &m);
            } else {
                prop_assert_eq!(opts.packing, Some(Packing::Rans));
            }
            // with `entropy`, the stored codes are never larger than the fixed packing's
            let e = WriteOptions { entropy: true, ..Default::default() };
            prop_assert!(code_bytes(&m, &e) <= code_bytes(&m, &WriteOptions::default()));
        }
    }
}
