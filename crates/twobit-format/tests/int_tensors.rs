//! Non-float tensors (e.g. PyTorch's `num_batches_tracked`) are carried through exactly,
//! written as format version 3 only when present, and refused where they do not belong.
mod common;

use common::*;
use twobit_format::{
    FormatError, IntDtype, IntTensor, Model, Tensor, FORMAT_VERSION, GRAPH_FORMAT_VERSION,
    KEY_VERSION,
};
use twobit_quant::{Granularity, Scheme};

fn with_ints() -> Model {
    let mut m = model(Scheme::Tern, Granularity::Tensor);
    m.tensors.insert(
        "bn.num_batches_tracked".into(),
        Tensor::Int(IntTensor {
            dtype: IntDtype::I64,
            shape: vec![],
            data: (-3i64).to_le_bytes().to_vec(),
        }),
    );
    m.tensors.insert(
        "mask".into(),
        Tensor::Int(IntTensor {
            dtype: IntDtype::Bool,
            shape: vec![2, 2],
            data: vec![0, 1, 1, 0],
        }),
    );
    m.tensors.insert(
        "idx".into(),
        Tensor::Int(IntTensor {
            dtype: IntDtype::I16,
            shape: vec![3],
            data: [-1i16, 7, i16::MIN]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        }),
    );
    m
}

#[test]
fn round_trip_is_exact_and_version_3() {
    let m = with_ints();
    let bytes = m.to_bytes().unwrap();
    let (h, _) = split(&bytes);
    assert_eq!(h["__metadata__"][KEY_VERSION], FORMAT_VERSION.to_string());
    assert_eq!(h["bn.num_batches_tracked"]["dtype"], "I64");
    assert_eq!(h["mask"]["dtype"], "BOOL");
    let back = Model::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    let Tensor::Int(t) = &back.tensors["idx"] else {
        panic!("idx is not an int tensor");
    };
    assert_eq!(t.values(), vec![-1, 7, i128::from(i16::MIN)]);
    assert_eq!(back.tensors["bn.num_batches_tracked"].to_f32(), vec![-3.0]);
    // safetensors itself reads the integers back.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("bn.num_batches_tracked").unwrap().data(),
        (-3i64).to_le_bytes()
    );
}

#[test]
fn files_without_ints_stay_version_2() {
    let bytes = model(Scheme::Tern, Granularity::Tensor).to_bytes().unwrap();
    let (h, _) = split(&bytes);
    assert_eq!(
        h["__metadata__"][KEY_VERSION],
        GRAPH_FORMAT_VERSION.to_string()
    );
}

#[test]
fn int_entry_in_a_version_2_file_is_refused() {
    let bytes = with_ints().to_bytes().unwrap();
    let old = edit_header(&bytes, |h| {
        h["__metadata__"][KEY_VERSION] = "2".into();
    });
    let err = Model::from_bytes(&old).unwrap_err();
    assert!(
        matches!(err, FormatError::IntTensorVersion { version: 2, .. }),
        "{err}"
    );
}

#[test]
fn bad_bool_byte_is_refused() {
    let bytes = with_ints().to_bytes().unwrap();
    let mut bad = bytes.clone();
    let r = tensor_range(&bytes, "mask");
    bad[r.start + 1] = 2;
    let err = Model::from_bytes(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::BadBool {
                index: 1,
                value: 2,
                ..
            }
        ),
        "{err}"
    );
    // and the writer refuses the same model
    let mut m = with_ints();
    if let Some(Tensor::Int(t)) = m.tensors.get_mut("mask") {
        t.data[3] = 9;
    }
    assert!(matches!(
        m.to_bytes().unwrap_err(),
        FormatError::BadBool { index: 3, .. }
    ));
}

#[test]
fn wrong_dtype_or_length_is_refused() {
    let bytes = with_ints().to_bytes().unwrap();
    let unknown = edit_manifest(&bytes, |m| {
        m["tensors"]["idx"]["dtype"] = "I128".into();
    });
    assert!(matches!(
        Model::from_bytes(&unknown).unwrap_err(),
        FormatError::UnsupportedDtype { .. }
    ));
    let mismatch = edit_manifest(&bytes, |m| {
        m["tensors"]["idx"]["dtype"] = "U16".into();
    });
    assert!(matches!(
        Model::from_bytes(&mismatch).unwrap_err(),
        FormatError::DtypeMismatch { .. }
    ));
    let mut m = with_ints();
    if let Some(Tensor::Int(t)) = m.tensors.get_mut("idx") {
        t.data.pop();
    }
    assert!(matches!(
        m.to_bytes().unwrap_err(),
        FormatError::DataLength { .. }
    ));
}

#[test]
fn arch_cannot_use_an_int_tensor_as_weights() {
    let mut m = with_ints();
    let arch = m.arch.clone().expect("test model has an arch");
    let name = arch.nodes[0].op.tensors()[0].to_string();
    let shape = m.tensors[&name].shape().to_vec();
    let n: usize = shape.iter().product();
    m.tensors.insert(
        name.clone(),
        Tensor::Int(IntTensor {
            dtype: IntDtype::U8,
            shape,
            data: vec![0; n],
        }),
    );
    let err = m.to_bytes().unwrap_err();
    assert!(matches!(err, FormatError::ArchIntTensor { .. }), "{err}");
}
