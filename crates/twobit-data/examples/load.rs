//! Loads a dataset and prints its sizes, or the load error: `cargo run -p twobit-data
//! --example load -- fashion-mnist [DIR]`, or for a folder dataset
//! `cargo run -p twobit-data --example load -- folder DIR [CxHxW]` (default 3x32x32).
use std::path::PathBuf;

use twobit_data::{load_folder, DataError, DatasetKind, Splits};

/// Parses `CxHxW`.
fn parse_shape(s: &str) -> Option<[usize; 3]> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    dims.try_into().ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "fashion-mnist".into());
    let dir = args.next().map(PathBuf::from);
    let shape_arg = args.next().unwrap_or_else(|| "3x32x32".into());
    let result: Result<(Splits, Option<Vec<String>>), DataError> =
        name.parse::<DatasetKind>().and_then(|kind| match kind {
            DatasetKind::Folder => {
                let Some(shape) = parse_shape(&shape_arg) else {
                    eprintln!("error: shape `{shape_arg}` is not CxHxW");
                    std::process::exit(2);
                };
                let dir = dir.unwrap_or_else(|| kind.default_dir());
                load_folder(&dir, shape).map(|(s, names)| (s, Some(names)))
            }
            _ => kind.load(dir.as_deref()).map(|s| (s, None)),
        });
    match result {
        Ok((s, names)) => {
            println!(
                "{name}: train {} images, test {} images, shape {:?}",
                s.train.len(),
                s.test.len(),
                s.train.shape
            );
            if let Some(names) = names {
                println!("{} classes: {}", names.len(), names.join(", "));
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
