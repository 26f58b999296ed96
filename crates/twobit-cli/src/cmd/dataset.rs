//! `--dataset NAME [--data-dir DIR]` for the commands that read images: the built-in
//! datasets, or the user's own ImageFolder directory (`folder`), decoded to the network's
//! input shape.
use anyhow::{bail, Context};
use std::path::Path;
use twobit_data::{Dataset, DatasetKind, Splits};

/// A loaded dataset and what describes it.
pub struct Loaded {
    /// Train and test splits, images of the requested shape.
    pub splits: Splits,
    /// Number of classes (a folder's class directories).
    pub classes: usize,
}

/// The dataset for a command on `model` (read from `file`): `--dataset` when given (warning
/// when the file says it was trained on another), else the one in the file's provenance.
pub fn for_file(
    given: Option<&str>,
    model: &twobit_format::Model,
    file: &Path,
) -> anyhow::Result<DatasetKind> {
    let trained_on = model.provenance.get("dataset").map(String::as_str);
    let name = match (given, trained_on) {
        (Some(given), Some(on)) => {
            if given != on {
                eprintln!(
                    "warning: {} was trained on {on}, using --dataset {given}",
                    file.display()
                );
            }
            given
        }
        (Some(given), None) => given,
        (None, Some(on)) => on,
        (None, None) => bail!(
            "{} does not say which dataset it was trained on: pass --dataset",
            file.display()
        ),
    };
    kind(name)
}

/// Parses a `--dataset` name.
pub fn kind(name: &str) -> anyhow::Result<DatasetKind> {
    DatasetKind::from_name(name).with_context(|| {
        format!("unknown dataset `{name}`: expected one of mnist, fashion-mnist, cifar10, folder")
    })
}

/// Loads `kind` for a network whose input is `shape` (channels, height, width). Built-in
/// datasets must already have that shape; a folder's images are converted and resized to it.
pub fn load(kind: DatasetKind, dir: Option<&Path>, shape: [usize; 3]) -> anyhow::Result<Loaded> {
    if kind == DatasetKind::Folder {
        let dir = dir.map_or_else(|| kind.default_dir(), Path::to_path_buf);
        let (splits, names) = twobit_data::load_folder(&dir, shape)?;
        return Ok(Loaded {
            splits,
            classes: names.len(),
        });
    }
    check_shape(kind, shape)?;
    Ok(Loaded {
        splits: kind.load(dir)?,
        classes: kind.classes(),
    })
}

/// Like [`load`], the test split only (evaluation does not need the training files); with
/// the number of classes.
pub fn load_test(
    kind: DatasetKind,
    dir: Option<&Path>,
    shape: [usize; 3],
) -> anyhow::Result<(Dataset, usize)> {
    if kind == DatasetKind::Folder {
        let dir = dir.map_or_else(|| kind.default_dir(), Path::to_path_buf);
        let (test, names) = twobit_data::load_folder_test(&dir, shape)?;
        return Ok((test, names.len()));
    }
    check_shape(kind, shape)?;
    Ok((kind.load_test(dir)?, kind.classes()))
}

/// A built-in dataset's images must have the network's input shape.
fn check_shape(kind: DatasetKind, shape: [usize; 3]) -> anyhow::Result<()> {
    if kind.shape() != shape {
        bail!(
            "the network expects {}x{}x{} inputs but {} images are {}x{}x{}",
            shape[0],
            shape[1],
            shape[2],
            kind.name(),
            kind.shape()[0],
            kind.shape()[1],
            kind.shape()[2]
        );
    }
    Ok(())
}
