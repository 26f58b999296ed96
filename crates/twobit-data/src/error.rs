//! Load and batch errors. File errors name the full path and end with how to get the data,
//! so the CLI can print them as a single actionable line.
use std::path::PathBuf;

use crate::DatasetKind;

/// Why data could not be loaded: each message says where twobit looked and how to get the data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset name is not one of `mnist`, `fashion-mnist`, `cifar10`, `folder`.
    #[error("unknown dataset `{0}`: expected one of mnist, fashion-mnist, cifar10, folder")]
    UnknownDataset(String),

    /// The data directory does not exist (or is not a directory).
    #[error("{} data directory {} does not exist or is not a directory; {}", .kind.name(), .dir.display(), .kind.hint())]
    MissingDir {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// Directory that was searched.
        dir: PathBuf,
    },

    /// A required file is absent from the data directory.
    #[error("{} file not found: looked for {looked_for}; {}", .kind.name(), .kind.hint())]
    MissingFile {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// Every path that was tried, joined for display.
        looked_for: String,
    },

    /// The file exists but could not be read.
    #[error("cannot read {} file {}: {source}; {}", .kind.name(), .path.display(), .kind.hint())]
    Io {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },

    /// The gzip stream is corrupt (bad header or checksum, invalid deflate data).
    #[error("{} file {} is not valid gzip: {source}; {}", .kind.name(), .path.display(), .kind.hint())]
    Corrupt {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Decoder error.
        source: std::io::Error,
    },

    /// The IDX magic number is not the expected one (wrong file or not IDX).
    #[error(
        "{} file {} has magic number {found:#010x}, expected {expected:#010x}; {}",
        .kind.name(), .path.display(), .kind.hint()
    )]
    BadMagic {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Magic number in the file.
        found: u32,
        /// Magic number required.
        expected: u32,
    },

    /// The images do not have the dataset's height and width.
    #[error(
        "{} file {} holds {rows}x{cols} images, expected {expected_rows}x{expected_cols}; {}",
        .kind.name(), .path.display(), .kind.hint()
    )]
    BadDims {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Rows in the header.
        rows: u32,
        /// Columns in the header.
        cols: u32,
        /// Rows required.
        expected_rows: u32,
        /// Columns required.
        expected_cols: u32,
    },

    /// The file is shorter than its header (or record size) requires.
    #[error(
        "{} file {} is truncated: {found} bytes, expected {expected}; {}",
        .kind.name(), .path.display(), .kind.hint()
    )]
    Truncated {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Bytes required (decompressed).
        expected: u64,
        /// Bytes present (decompressed).
        found: u64,
    },

    /// The file is longer than its header says: probably not the file it claims to be.
    #[error(
        "{} file {} has trailing data: {found} bytes, expected {expected}; {}",
        .kind.name(), .path.display(), .kind.hint()
    )]
    TrailingData {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Bytes required (decompressed).
        expected: u64,
        /// Bytes present (decompressed).
        found: u64,
    },

    /// The file holds no images or labels.
    #[error("{} file {} holds no records; {}", .kind.name(), .path.display(), .kind.hint())]
    Empty {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
    },

    /// The images and labels files disagree on the number of items.
    #[error(
        "{} image file {} holds {n_images} images but label file {} holds {n_labels} labels; {}",
        .kind.name(), .images.display(), .labels.display(), .kind.hint()
    )]
    CountMismatch {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// Images file.
        images: PathBuf,
        /// Number of images.
        n_images: u64,
        /// Labels file.
        labels: PathBuf,
        /// Number of labels.
        n_labels: u64,
    },

    /// A label is outside `0..classes`.
    #[error(
        "{} file {} has label {label} at item {index}, expected 0..{classes}; {}",
        .kind.name(), .path.display(), .kind.hint()
    )]
    BadLabel {
        /// Dataset being loaded.
        kind: DatasetKind,
        /// File being read.
        path: PathBuf,
        /// Item index within the file.
        index: usize,
        /// The offending label.
        label: u8,
        /// Number of classes.
        classes: usize,
    },

    /// [`DatasetKind::load`] was called for [`DatasetKind::Folder`], whose image shape comes
    /// from the model: use [`crate::load_folder`].
    #[error(
        "the folder dataset has no fixed image shape: load it with load_folder(DIR, \
         [channels, height, width]) for the model's input shape, not DatasetKind::load; {}",
        DatasetKind::Folder.hint()
    )]
    FolderNeedsShape,

    /// The folder dataset directory does not exist (or is not a directory).
    #[error("folder dataset directory {} does not exist or is not a directory; {}", .dir.display(), DatasetKind::Folder.hint())]
    FolderMissingDir {
        /// Directory given.
        dir: PathBuf,
    },

    /// The `train` or `test` subdirectory is missing.
    #[error("folder dataset split directory {} does not exist or is not a directory; {}", .dir.display(), DatasetKind::Folder.hint())]
    FolderMissingSplit {
        /// The missing `DIR/train` or `DIR/test`.
        dir: PathBuf,
    },

    /// `DIR/train` has no class subdirectories.
    #[error("folder dataset directory {} has no class subdirectories; {}", .dir.display(), DatasetKind::Folder.hint())]
    FolderNoClasses {
        /// The `train` directory.
        dir: PathBuf,
    },

    /// `DIR/train` has more class subdirectories than `u8` labels can hold.
    #[error(
        "folder dataset directory {} has {found} class subdirectories, at most {} are supported",
        .dir.display(), crate::folder::MAX_CLASSES
    )]
    FolderTooManyClasses {
        /// The `train` directory.
        dir: PathBuf,
        /// Number of class directories found.
        found: usize,
    },

    /// A training class directory holds no image files.
    #[error(
        "folder dataset class directory {} holds no images (.png, .jpg or .jpeg files)",
        .dir.display()
    )]
    FolderEmptyClass {
        /// The class directory.
        dir: PathBuf,
    },

    /// The `test` directory holds no image files at all.
    #[error(
        "folder dataset test directory {} holds no images (.png, .jpg or .jpeg files)",
        .dir.display()
    )]
    FolderNoImages {
        /// The `test` directory.
        dir: PathBuf,
    },

    /// A class of `train` has no directory in `test`.
    #[error("folder dataset class `{class}` of the training split has no test directory: {} is missing", .dir.display())]
    FolderClassNotInTest {
        /// Class name.
        class: String,
        /// The missing test class directory.
        dir: PathBuf,
    },

    /// A class directory of `test` has no counterpart in `train`.
    #[error("folder dataset test class `{class}` is not a training class: {} is missing", .dir.display())]
    FolderClassNotInTrain {
        /// Class name.
        class: String,
        /// The missing training class directory.
        dir: PathBuf,
    },

    /// A directory or file of the folder dataset could not be listed or inspected.
    #[error("cannot read folder dataset entry {}: {source}", .path.display())]
    FolderIo {
        /// Directory or file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },

    /// An image file could not be read or decoded.
    #[error("cannot decode image {}: {reason}", .path.display())]
    FolderBadImage {
        /// Image file.
        path: PathBuf,
        /// The decoder's (or the file system's) message.
        reason: String,
    },

    /// The model's input channel count is neither 1 (luma) nor 3 (RGB).
    #[error("folder dataset images can be loaded with 1 (grayscale) or 3 (RGB) channels, not {channels}")]
    FolderChannels {
        /// Channels requested.
        channels: usize,
    },

    /// The requested image shape cannot be produced.
    #[error(
        "folder dataset image shape {}x{}x{} (channels x height x width) is invalid: {reason}",
        .shape[0], .shape[1], .shape[2]
    )]
    FolderShape {
        /// Shape requested: channels, height, width.
        shape: [usize; 3],
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `fill_batch`: the output buffer does not hold `indices.len()` images.
    #[error(
        "batch buffer holds {found} floats, expected {expected} ({images} images of {per_image})"
    )]
    BatchSize {
        /// Floats required.
        expected: usize,
        /// Floats in the buffer.
        found: usize,
        /// Images requested.
        images: usize,
        /// Floats per image.
        per_image: usize,
    },

    /// `fill_batch`: an index is past the end of the dataset.
    #[error("image index {index} out of range for a dataset of {len} images")]
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// Dataset length.
        len: usize,
    },

    /// `fill_batch`: the normalisation does not have one mean and one std per channel.
    #[error("normalisation has {means} means and {stds} stds, expected {channels} of each")]
    NormalizeChannels {
        /// Image channels.
        channels: usize,
        /// Means given.
        means: usize,
        /// Stds given.
        stds: usize,
    },

    /// `fill_batch`: a mean is not finite or a std is not finite and positive.
    #[error("normalisation channel {channel} has mean {mean} and std {std}: need finite mean, finite std > 0")]
    BadNormalize {
        /// Channel index.
        channel: usize,
        /// Its mean.
        mean: f32,
        /// Its std.
        std: f32,
    },
}
