//! Dataset loaders with no ML-framework dependency: MNIST and Fashion-MNIST (IDX, gzip or
//! plain) and CIFAR-10 (binary version). Images are kept as `u8` CHW; batches are produced as
//! normalised `f32` NCHW.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use twobit_format::Normalize;

/// A supported dataset. Names: `mnist`, `fashion-mnist`, `cifar10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    /// MNIST digits, 28x28x1.
    Mnist,
    /// Fashion-MNIST, 28x28x1.
    FashionMnist,
    /// CIFAR-10, 32x32x3.
    Cifar10,
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

/// Why data could not be loaded: each message says where twobit looked and how to get the data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Filled in by the data work.
    #[error("{0}")]
    Other(String),
}

impl DatasetKind {
    /// Parses a CLI name.
    pub fn from_name(s: &str) -> Option<Self> {
        let _ = s;
        todo!("data work")
    }
    /// The CLI name.
    pub fn name(self) -> &'static str {
        todo!("data work")
    }
    /// Default directory searched when `--data-dir` is not given.
    pub fn default_dir(self) -> PathBuf {
        todo!("data work")
    }
    /// Standard per-channel normalisation for inputs in [0, 1].
    pub fn normalize(self) -> Normalize {
        todo!("data work")
    }
    /// Image shape (channels, height, width).
    pub fn shape(self) -> [usize; 3] {
        todo!("data work")
    }
    /// Number of classes.
    pub fn classes(self) -> usize {
        10
    }
    /// Loads both splits from `dir` (or [`DatasetKind::default_dir`]).
    pub fn load(self, dir: Option<&Path>) -> Result<Splits, DataError> {
        let _ = dir;
        todo!("data work")
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
    pub fn fill_batch(
        &self,
        indices: &[usize],
        norm: &Normalize,
        augment: Option<&mut rand::rngs::StdRng>,
        out: &mut [f32],
    ) {
        let _ = (indices, norm, augment, out);
        todo!("data work")
    }
    /// Keeps the first `n` images (for quick runs and tests).
    pub fn truncate(&mut self, n: usize) {
        let _ = n;
        todo!("data work")
    }
}
