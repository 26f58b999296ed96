//! Loads a dataset and prints its sizes, or the load error: `cargo run -p twobit-data
//! --example load -- fashion-mnist [DIR]`.
use std::path::PathBuf;

use twobit_data::DatasetKind;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "fashion-mnist".into());
    let dir = args.next().map(PathBuf::from);
    let result = name
        .parse::<DatasetKind>()
        .and_then(|kind| kind.load(dir.as_deref()));
    match result {
        Ok(s) => println!(
            "{name}: train {} images, test {} images, shape {:?}",
            s.train.len(),
            s.test.len(),
            s.train.shape
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
