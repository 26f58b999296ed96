//! The numpy decoder printed in docs/format.md decodes every fixed encoding (base 2, base 3,
//! f32 and f16 tables, both table layouts) to exactly the values this crate decodes, and
//! refuses rANS streams with its documented message. Skipped when python3 with numpy is
//! missing.
mod common;

use common::*;
use std::process::Command;
use twobit_format::{IntDtype, IntTensor, Model, Packing, Tensor, WriteOptions};
use twobit_quant::{Granularity, Scheme};

fn decoder() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/format.md"))
        .expect("docs/format.md");
    let start = doc.find("```python\n").expect("a python block") + "```python\n".len();
    let len = doc[start..].find("```").expect("closed");
    doc[start..start + len].to_string()
}

fn has_numpy() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_documented_decoder_matches_the_reader() {
    if !has_numpy() {
        eprintln!("skipped: python3 with numpy is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("decode.py");
    std::fs::write(&script, decoder()).unwrap();
    let driver = r#"
import sys, runpy
import numpy as np
d = runpy.run_path(sys.argv[1])
path, out = sys.argv[2], sys.argv[3]
try:
    dec = d["decode"](path)
except NotImplementedError as e:
    open(out, "w").write("NotImplementedError: " + str(e))
    sys.exit(0)
with open(out, "wb") as f:
    for name in sorted(dec):
        f.write(np.ascontiguousarray(dec[name], dtype=np.float32).tobytes())
"#;
    let drv = dir.path().join("driver.py");
    std::fs::write(&drv, driver).unwrap();
    let entropy = WriteOptions {
        packing: Some(Packing::Rans),
        ..Default::default()
    };
    let mut cases = Vec::new();
    for scheme in [Scheme::Tern, Scheme::Quat] {
        for gran in [Granularity::Tensor, Granularity::Channel] {
            let m = model(scheme, gran);
            let mut half = m.clone();
            for t in half.tensors.values_mut() {
                if let Tensor::Packed(p) = t {
                    *p = p.with_f16_tables().unwrap();
                }
            }
            cases.push((
                format!("{scheme}-{gran}-default"),
                m.clone(),
                WriteOptions::default(),
            ));
            // Non-float tensors (format version 3) come back as their integers.
            let mut ints = m.clone();
            for (name, dtype, data) in [
                ("n.tracked", IntDtype::I64, (-5i64).to_le_bytes().to_vec()),
                ("n.mask", IntDtype::Bool, vec![1, 0, 1]),
                ("n.idx", IntDtype::U16, vec![1, 0, 255, 255, 7, 0]),
            ] {
                let len = data.len() / dtype.size();
                let shape = if dtype == IntDtype::I64 {
                    vec![]
                } else {
                    vec![len]
                };
                ints.tensors
                    .insert(name.into(), Tensor::Int(IntTensor { dtype, shape, data }));
            }
            cases.push((
                format!("{scheme}-{gran}-ints"),
                ints,
                WriteOptions::default(),
            ));
            cases.push((
                format!("{scheme}-{gran}-v1"),
                m.clone(),
                WriteOptions::LEGACY,
            ));
            cases.push((
                format!("{scheme}-{gran}-f16"),
                half,
                WriteOptions::default(),
            ));
            cases.push((format!("{scheme}-{gran}-rans"), m.clone(), entropy));
            let enumerative = WriteOptions {
                packing: Some(Packing::Enum),
                ..Default::default()
            };
            cases.push((format!("{scheme}-{gran}-enum"), m, enumerative));
        }
    }
    for (what, m, opts) in cases {
        let file = dir.path().join(format!("{what}.twobit"));
        let out = dir.path().join(format!("{what}.out"));
        m.save_with(&file, &opts).unwrap();
        let run = Command::new("python3")
            .arg(&drv)
            .arg(&script)
            .arg(&file)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let got = std::fs::read(&out).unwrap();
        if opts.packing == Some(Packing::Rans) {
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains("rans (use twobit decompress)"),
                "{what}: {text}"
            );
            continue;
        }
        let back = Model::load(&file).unwrap();
        let want: Vec<u8> = back
            .tensors
            .values()
            .flat_map(|t| t.to_f32())
            .flat_map(f32::to_le_bytes)
            .collect();
        assert_eq!(got, want, "{what}");
    }
}
