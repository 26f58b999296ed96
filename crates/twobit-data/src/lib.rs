//! Dataset loaders with no ML-framework dependency: MNIST and Fashion-MNIST (IDX, gzip or
//! plain), CIFAR-10 (binary version) and image-classification directories of PNG / JPEG files
//! ([`DatasetKind::Folder`], loaded with [`load_folder`]). Images are kept as `u8` CHW;
//! batches are produced as normalised `f32` NCHW.
//!
//! # Folder datasets (bring your own data)
//!
//! `--dataset folder --data-dir DIR` reads the torchvision `ImageFolder` layout:
//!
//! ```text
//! DIR/train/<class>/*.png|*.jpg|*.jpeg   (extensions case-insensitive, subfolders allowed)
//! DIR/test/<class>/...                   (the same class directories)
//! ```
//!
//! Classes are the subdirectories of `train` sorted by name (byte order, as torchvision);
//! label `i` is the `i`-th of them, at most [`MAX_CLASSES`]. The shape is the model's input
//! `[channels, height, width]`: images are converted to grayscale (1 channel) or RGB (3) and
//! resized to `height x width`, so the shape and the class list are not properties of the
//! [`DatasetKind`] but arguments and results of [`load_folder`]:
//!
//! ```no_run
//! # fn main() -> Result<(), twobit_data::DataError> {
//! let (splits, class_names) = twobit_data::load_folder("my-data".as_ref(), [3, 32, 32])?;
//! let classes = class_names.len();
//! # let _ = (splits, classes); Ok(()) }
//! ```
//!
//! Decoding is done once: each split's pixels are cached in
//! `DIR/.twobit-cache/<split>-<c>x<h>x<w>.bin` ([`cache_path`]), keyed by a fingerprint of
//! the file list (paths, sizes, modification times), the shape and the class names. Adding,
//! removing, replacing or touching an image rebuilds the cache on the next load; a corrupt
//! or truncated cache is ignored and rebuilt; a read-only `DIR` just means no cache.
//!
//! Where data is looked for when no directory is given ([`DatasetKind::default_dir`]):
//! if the environment variable `TWOBIT_DATA_DIR` is set, `$TWOBIT_DATA_DIR/mnist`,
//! `$TWOBIT_DATA_DIR/fashion-mnist` and `$TWOBIT_DATA_DIR/cifar-10-batches-bin`; otherwise
//! `./data/mnist`, `/usr/share/datasets/fashion-mnist` (Debian package
//! `dataset-fashion-mnist`) and `./data/cifar-10-batches-bin`.
#![deny(missing_docs)]

mod batch;
pub mod cifar;
mod error;
mod folder;
mod idx;

use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use batch::{Augment, CROP_PADDING};
pub use error::DataError;
pub use folder::{
    cache_path, load_folder, load_folder_test, CACHE_DIR, IMAGE_EXTENSIONS, MAX_CLASSES,
};
use twobit_format::Normalize;

/// Environment variable that overrides the root of the default data directories.
pub const DATA_DIR_ENV: &str = "TWOBIT_DATA_DIR";

/// A supported dataset. Names: `mnist`, `fashion-mnist`, `cifar10`, `folder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    /// MNIST digits, 28x28x1.
    Mnist,
    /// Fashion-MNIST, 28x28x1.
    FashionMnist,
    /// CIFAR-10, 32x32x3.
    Cifar10,
    /// Your own images in the torchvision `ImageFolder` layout (see the crate docs). Its
    /// shape and classes are not fixed: load it with [`load_folder`], which takes the
    /// model's input shape and returns the class names. [`DatasetKind::shape`] is
    /// `[0, 0, 0]`, [`DatasetKind::classes`] is 0 and [`DatasetKind::load`] is an error.
    Folder,
}

/// One split: `n` images of shape `[c, h, w]` as u8, and labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Image shape (channels, height, width).
    pub shape: [usize; 3],
    /// `n * c * h * w` bytes, image-major, CHW within an image.
    pub images: Vec<u8>,
    /// `n` labels in `0..classes`.
    pub labels: Vec<u8>,
}

/// Train and test splits.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training split.
    pub train: Dataset,
    /// Test split.
    pub test: Dataset,
}

impl DatasetKind {
    /// Every built-in dataset: those with a fixed shape and 10 classes, loaded by
    /// [`DatasetKind::load`]. [`DatasetKind::Folder`] is not listed.
    pub const ALL: [DatasetKind; 3] = [Self::Mnist, Self::FashionMnist, Self::Cifar10];

    /// Parses a CLI name (`mnist`, `fashion-mnist`, `cifar10`, `folder`; also
    /// `fashion_mnist`, `fmnist`, `cifar-10`, `imagefolder`, case-insensitive).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Some(Self::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fmnist" => {
                Some(Self::FashionMnist)
            }
            "cifar10" | "cifar-10" | "cifar_10" => Some(Self::Cifar10),
            "folder" | "imagefolder" | "image-folder" | "image_folder" => Some(Self::Folder),
            _ => None,
        }
    }
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
            Self::Folder => "folder",
        }
    }
    /// Default directory searched when `--data-dir` is not given; see the crate docs for
    /// the `TWOBIT_DATA_DIR` override. For [`DatasetKind::Folder`]: `./data/folder` (or
    /// `$TWOBIT_DATA_DIR/folder`), though a folder dataset is normally given explicitly.
    pub fn default_dir(self) -> PathBuf {
        let sub = match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar-10-batches-bin",
            Self::Folder => "folder",
        };
        match std::env::var_os(DATA_DIR_ENV) {
            Some(root) if !root.is_empty() => PathBuf::from(root).join(sub),
            _ => match self {
                Self::FashionMnist => PathBuf::from("/usr/share/datasets/fashion-mnist"),
                _ => Path::new("data").join(sub),
            },
        }
    }
    /// How to get the data, appended to every load error.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Mnist => {
                "get MNIST: download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
                 t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (from \
                 https://yann.lecun.com/exdb/mnist/ or a mirror) into DIR and pass \
                 --data-dir DIR (or put them in ./data/mnist, or set TWOBIT_DATA_DIR=ROOT \
                 to use ROOT/mnist)"
            }
            Self::FashionMnist => {
                "get Fashion-MNIST: install the Debian package (apt-get install \
                 dataset-fashion-mnist, into /usr/share/datasets/fashion-mnist), or pass \
                 --data-dir DIR holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
                 t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (from \
                 https://github.com/zalandoresearch/fashion-mnist), or set TWOBIT_DATA_DIR=ROOT \
                 to use ROOT/fashion-mnist"
            }
            Self::Cifar10 => {
                "get CIFAR-10: download the binary version cifar-10-binary.tar.gz from \
                 https://www.cs.toronto.edu/~kriz/cifar.html, extract it (tar xzf) and pass \
                 --data-dir .../cifar-10-batches-bin (holding data_batch_1.bin..data_batch_5.bin \
                 and test_batch.bin), or extract it under ./data, or set TWOBIT_DATA_DIR=ROOT \
                 to use ROOT/cifar-10-batches-bin"
            }
            Self::Folder => {
                "a folder dataset is --data-dir DIR holding DIR/train/<class>/*.png|*.jpg|*.jpeg \
                 and DIR/test/<class>/... with the same class directories (the torchvision \
                 ImageFolder layout)"
            }
        }
    }
    /// Standard per-channel normalisation for inputs in [0, 1].
    ///
    /// [`DatasetKind::Folder`] has no standard statistics and no fixed channel count: this
    /// returns an empty `Normalize` (which [`Dataset::try_fill_batch`] rejects); use
    /// [`DatasetKind::normalize_for`] with the channel count, or the user's own values.
    pub fn normalize(self) -> Normalize {
        let (mean, std) = match self {
            Self::Mnist => (vec![0.1307], vec![0.3081]),
            Self::FashionMnist => (vec![0.2860], vec![0.3530]),
            Self::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]),
            Self::Folder => (Vec::new(), Vec::new()),
        };
        Normalize { mean, std }
    }
    /// [`DatasetKind::normalize`] for images of `channels` channels: the standard statistics
    /// of a built-in dataset (`channels` is then ignored), and for [`DatasetKind::Folder`]
    /// the identity (mean 0, std 1 on each of the `channels` channels).
    pub fn normalize_for(self, channels: usize) -> Normalize {
        match self {
            Self::Folder => Normalize {
                mean: vec![0.0; channels],
                std: vec![1.0; channels],
            },
            _ => self.normalize(),
        }
    }
    /// Image shape (channels, height, width); `[0, 0, 0]` for [`DatasetKind::Folder`],
    /// whose shape is the model's (see [`load_folder`]).
    pub fn shape(self) -> [usize; 3] {
        match self {
            Self::Mnist | Self::FashionMnist => [1, 28, 28],
            Self::Cifar10 => [3, 32, 32],
            Self::Folder => [0, 0, 0],
        }
    }
    /// Number of classes; 0 for [`DatasetKind::Folder`], whose classes are the length of
    /// the class list [`load_folder`] returns.
    pub fn classes(self) -> usize {
        match self {
            Self::Folder => 0,
            _ => 10,
        }
    }
    /// Loads both splits from `dir` (or [`DatasetKind::default_dir`]).
    ///
    /// # Errors
    /// [`DataError::FolderNeedsShape`] for [`DatasetKind::Folder`]: use [`load_folder`].
    pub fn load(self, dir: Option<&Path>) -> Result<Splits, DataError> {
        let dir = self.existing_dir(dir)?;
        Ok(Splits {
            train: self.split(&dir, false)?,
            test: self.split(&dir, true)?,
        })
    }

    /// Loads only the test split (what evaluation needs: the training files may be absent).
    ///
    /// # Errors
    /// As [`Self::load`], for the test files only.
    pub fn load_test(self, dir: Option<&Path>) -> Result<Dataset, DataError> {
        let dir = self.existing_dir(dir)?;
        self.split(&dir, true)
    }

    /// `dir` (or the default), absolute, checked to exist; folders need [`load_folder`].
    fn existing_dir(self, dir: Option<&Path>) -> Result<PathBuf, DataError> {
        if self == Self::Folder {
            return Err(DataError::FolderNeedsShape);
        }
        let dir = dir.map_or_else(|| self.default_dir(), Path::to_path_buf);
        // Errors should show the full path, also for the relative defaults.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        if !dir.is_dir() {
            return Err(DataError::MissingDir { kind: self, dir });
        }
        Ok(dir)
    }

    /// The test or training split's files in `dir`.
    fn split(self, dir: &Path, test: bool) -> Result<Dataset, DataError> {
        match (self, test) {
            (Self::Mnist | Self::FashionMnist, true) => idx::load_split(self, dir, "t10k"),
            (Self::Mnist | Self::FashionMnist, false) => idx::load_split(self, dir, "train"),
            (Self::Cifar10, true) => cifar::load_files(dir, &[cifar::TEST_FILE]),
            (Self::Cifar10, false) => cifar::load_files(dir, &cifar::TRAIN_FILES),
            (Self::Folder, _) => Err(DataError::FolderNeedsShape),
        }
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        Self::from_name(s).ok_or_else(|| DataError::UnknownDataset(s.to_string()))
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Writes the images `indices` into `out` as normalised f32 NCHW
    /// (`out.len() == indices.len() * c * h * w`), optionally with CIFAR augmentation
    /// (random crop after 4-pixel zero padding, random horizontal flip) drawn from `rng`.
    /// The augmentation works at any image size (the padding stays [`CROP_PADDING`] pixels).
    ///
    /// # Panics
    /// On a wrong `out` length, an index past the end, or a `norm` without one finite
    /// mean and positive std per channel: these are caller bugs. Use
    /// [`Dataset::try_fill_batch`] to get them as errors.
    pub fn fill_batch(
        &self,
        indices: &[usize],
        norm: &Normalize,
        augment: Option<&mut rand::rngs::StdRng>,
        out: &mut [f32],
    ) {
        if let Err(e) = self.try_fill_batch(indices, norm, augment, out) {
            panic!("fill_batch: {e}");
        }
    }
    /// Keeps the first `n` images (for quick runs and tests); no-op if `n >= len`.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
    }
}

/// Rejects labels outside `0..classes`.
fn check_labels(kind: DatasetKind, path: &Path, labels: &[u8]) -> Result<(), DataError> {
    let classes = kind.classes();
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(index) => Err(DataError::BadLabel {
            kind,
            path: path.to_path_buf(),
            index,
            label: labels[index],
            classes,
        }),
        None => Ok(()),
    }
}
