//! Image-classification directories in the torchvision `ImageFolder` layout:
//! `DIR/train/<class>/*.png|jpg|jpeg` and `DIR/test/<class>/...`.
//!
//! Images are decoded once (in parallel, results in sorted file order), converted to the
//! model's channel count, resized to its input size and kept as `u8` CHW like every other
//! dataset. Each split is then cached in `DIR/.twobit-cache/<split>-<c>x<h>x<w>.bin`, so that
//! later runs read the pixels back instead of decoding again; see [`cache_path`].
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use rayon::prelude::*;

use crate::{DataError, Dataset, Splits};

/// Most classes a folder dataset may have: labels are `u8`.
pub const MAX_CLASSES: usize = 256;

/// Directory, inside the dataset directory, that holds the decoded-pixel caches.
pub const CACHE_DIR: &str = ".twobit-cache";

/// File extensions read as images (compared case-insensitively). The content decides the
/// decoder, so a PNG named `.jpg` still loads.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// First bytes of a cache file.
const CACHE_MAGIC: [u8; 8] = *b"TWOBITIF";
/// Bumped whenever the cache layout or the decode / convert / resize pipeline changes, so
/// caches written by an older twobit are rebuilt.
const CACHE_VERSION: u32 = 1;
/// Deepest directory nesting followed inside a class directory.
const MAX_DEPTH: usize = 32;

/// Where the cache of `split` (`train` or `test`) at `shape` (`[channels, height, width]`)
/// lives: `dir/.twobit-cache/<split>-<c>x<h>x<w>.bin`.
///
/// The file holds a header (magic `TWOBITIF`, format version, shape, class names, image
/// count, a fingerprint of the split's file list: relative paths, labels, sizes and
/// modification times), then the labels, the `u8` CHW pixels and a checksum of both. A cache
/// whose header does not match the current directory listing exactly, or whose length or
/// checksum is wrong, is ignored and rewritten.
pub fn cache_path(dir: &Path, split: &str, shape: [usize; 3]) -> PathBuf {
    let [c, h, w] = shape;
    dir.join(CACHE_DIR).join(format!("{split}-{c}x{h}x{w}.bin"))
}

/// Loads a folder dataset for a model whose input is `shape` = `[channels, height, width]`.
/// Returns both splits and the class names; label `i` is class `names[i]`, so the number of
/// classes is `names.len()` (between 1 and [`MAX_CLASSES`]).
///
/// Layout (torchvision `ImageFolder`): `dir/train/<class>/...` and `dir/test/<class>/...`.
/// Classes are the subdirectories of `train`, sorted by name (byte order); `test` must have
/// exactly the same class directories (a test class may be empty, but not the whole split).
/// A class directory's images are every file with an extension in [`IMAGE_EXTENSIONS`],
/// also in subdirectories, in byte order of their path within the class. Names starting
/// with `.` are skipped at every level (e.g. `.ipynb_checkpoints`, macOS `._*` files);
/// symbolic links to class directories and to image files are followed, links to
/// directories inside a class are not.
///
/// Each image is decoded by content, converted to luma (`channels == 1`) or RGB
/// (`channels == 3`; alpha is dropped, as torchvision's `convert("RGB")`), and resized to
/// `height x width` with a triangle (bilinear, antialiased when shrinking) filter, aspect
/// ratio not kept. The result is cached (see [`cache_path`]); caching is skipped silently
/// when the directory is not writable.
///
/// # Errors
/// The `Folder*` variants of [`DataError`]: each names the directory or file at fault.
pub fn load_folder(dir: &Path, shape: [usize; 3]) -> Result<(Splits, Vec<String>), DataError> {
    let f = open(dir, shape, true)?;
    // List both splits before decoding anything, so listing errors come first.
    let train_files = list_split(&f.dir.join("train"), &f.classes, true)?;
    let test_files = list_split(&f.dir.join("test"), &f.classes, false)?;
    if test_files.is_empty() {
        return Err(DataError::FolderNoImages {
            dir: f.dir.join("test"),
        });
    }
    let train = load_split(&f.dir, "train", &train_files, &f.names, shape)?;
    let test = load_split(&f.dir, "test", &test_files, &f.names, shape)?;
    Ok((Splits { train, test }, f.names))
}

/// Loads only the test split of a folder dataset (what evaluation needs), with the class
/// names. The classes are `train`'s subdirectories when `train` exists (checked against
/// `test` as in [`load_folder`]), otherwise `test`'s own, sorted the same way: a test-only
/// copy of a dataset labels its images as the full one does when every class has a test
/// directory.
///
/// # Errors
/// As [`load_folder`], except that a missing `train` directory is not one.
pub fn load_folder_test(
    dir: &Path,
    shape: [usize; 3],
) -> Result<(Dataset, Vec<String>), DataError> {
    let f = open(dir, shape, false)?;
    let test_dir = f.dir.join("test");
    let files = list_split(&test_dir, &f.classes, false)?;
    if files.is_empty() {
        return Err(DataError::FolderNoImages { dir: test_dir });
    }
    let test = load_split(&f.dir, "test", &files, &f.names, shape)?;
    Ok((test, f.names))
}

/// A checked folder dataset: its absolute directory and its classes.
struct Opened {
    dir: PathBuf,
    classes: Vec<OsString>,
    names: Vec<String>,
}

/// Checks the shape and the directory layout and finds the classes (see [`load_folder`]);
/// `train` may be missing unless `need_train`.
fn open(dir: &Path, shape: [usize; 3], need_train: bool) -> Result<Opened, DataError> {
    check_shape(shape)?;
    // Errors should show the full path, also for relative arguments.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !dir.is_dir() {
        return Err(DataError::FolderMissingDir { dir });
    }
    let (mut train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if !train_dir.is_dir() && !need_train {
        // Classes from the test split itself.
        train_dir = test_dir.clone();
    }
    for split_dir in [&train_dir, &test_dir] {
        if !split_dir.is_dir() {
            return Err(DataError::FolderMissingSplit {
                dir: split_dir.clone(),
            });
        }
    }
    let classes = class_dirs(&train_dir)?;
    if classes.is_empty() {
        return Err(DataError::FolderNoClasses { dir: train_dir });
    }
    if classes.len() > MAX_CLASSES {
        return Err(DataError::FolderTooManyClasses {
            dir: train_dir,
            found: classes.len(),
        });
    }
    let test_classes = class_dirs(&test_dir)?;
    if let Some(class) = classes.iter().find(|c| !test_classes.contains(c)) {
        return Err(DataError::FolderClassNotInTest {
            class: class.to_string_lossy().into_owned(),
            dir: test_dir.join(class),
        });
    }
    if let Some(class) = test_classes.iter().find(|c| !classes.contains(c)) {
        return Err(DataError::FolderClassNotInTrain {
            class: class.to_string_lossy().into_owned(),
            dir: train_dir.join(class),
        });
    }
    let names: Vec<String> = classes
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    Ok(Opened {
        dir,
        classes,
        names,
    })
}

/// Rejects shapes that cannot be produced: channels other than 1 or 3, a zero or too
/// large height or width.
fn check_shape(shape: [usize; 3]) -> Result<(), DataError> {
    let [c, h, w] = shape;
    if c != 1 && c != 3 {
        return Err(DataError::FolderChannels { channels: c });
    }
    let reason = if h == 0 || w == 0 {
        "height and width must be at least 1"
    } else if u32::try_from(h).is_err()
        || u32::try_from(w).is_err()
        || c.checked_mul(h).and_then(|x| x.checked_mul(w)).is_none()
    {
        "height and width are too large"
    } else {
        return Ok(());
    };
    Err(DataError::FolderShape { shape, reason })
}

/// Byte-order key of a file name (what torchvision's `sorted` does on Unix).
fn name_key(name: &OsStr) -> &[u8] {
    name.as_encoded_bytes()
}

fn hidden(name: &OsStr) -> bool {
    name_key(name).starts_with(b".")
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, DataError> {
    let io_err = |source| DataError::FolderIo {
        path: dir.to_path_buf(),
        source,
    };
    fs::read_dir(dir)
        .map_err(io_err)?
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_err)
}

/// The class directories of a split directory (following symbolic links, skipping hidden
/// names and plain files), sorted by name.
fn class_dirs(split_dir: &Path) -> Result<Vec<OsString>, DataError> {
    let mut classes: Vec<OsString> = read_dir(split_dir)?
        .into_iter()
        .map(|e| e.file_name())
        .filter(|name| !hidden(name) && split_dir.join(name).is_dir())
        .collect();
    classes.sort_by(|a, b| name_key(a).cmp(name_key(b)));
    Ok(classes)
}

/// One image file of a split, with what the cache fingerprint covers.
struct Entry {
    path: PathBuf,
    /// Path relative to the split directory (`class/...`), as bytes.
    key: Vec<u8>,
    label: u8,
    size: u64,
    /// Modification time: sign (1 after the epoch, 2 before, 0 unknown), seconds, nanos.
    mtime: (u8, u64, u32),
}

fn is_image(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

fn mtime(modified: io::Result<SystemTime>) -> (u8, u64, u32) {
    match modified.map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(d)) => (1, d.as_secs(), d.subsec_nanos()),
        Ok(Err(e)) => (2, e.duration().as_secs(), e.duration().subsec_nanos()),
        Err(_) => (0, 0, 0),
    }
}

/// Every image of a split, sorted by label then by path within the class.
fn list_split(
    split_dir: &Path,
    classes: &[OsString],
    require_images: bool,
) -> Result<Vec<Entry>, DataError> {
    let mut out = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = split_dir.join(class);
        let start = out.len();
        // `classes.len() <= MAX_CLASSES`, checked by the caller.
        let label = u8::try_from(label).unwrap_or(u8::MAX);
        let mut prefix = name_key(class).to_vec();
        prefix.push(b'/');
        list_dir(&class_dir, &prefix, label, 0, &mut out)?;
        out[start..].sort_by(|a, b| a.key.cmp(&b.key));
        if require_images && out.len() == start {
            return Err(DataError::FolderEmptyClass { dir: class_dir });
        }
    }
    Ok(out)
}

fn list_dir(
    dir: &Path,
    prefix: &[u8],
    label: u8,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), DataError> {
    for entry in read_dir(dir)? {
        let name = entry.file_name();
        if hidden(&name) {
            continue;
        }
        let path = entry.path();
        let mut key = prefix.to_vec();
        key.extend_from_slice(name_key(&name));
        let file_type = entry.file_type().map_err(|source| DataError::FolderIo {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            if depth < MAX_DEPTH {
                key.push(b'/');
                list_dir(&path, &key, label, depth + 1, out)?;
            }
            continue;
        }
        if !is_image(&name) {
            continue;
        }
        // Follows a symbolic link; a broken one is reported, since it is named as an image.
        let meta = fs::metadata(&path).map_err(|source| DataError::FolderIo {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            continue;
        }
        out.push(Entry {
            path,
            key,
            label,
            size: meta.len(),
            mtime: mtime(meta.modified()),
        });
    }
    Ok(())
}

/// 64-bit FNV-1a, for the file-list fingerprint (a few bytes per file).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn u64(&mut self, x: u64) {
        self.write(&x.to_le_bytes());
    }
}

fn fingerprint(files: &[Entry]) -> u64 {
    let mut h = Fnv::new();
    for e in files {
        h.u64(e.key.len() as u64);
        h.write(&e.key);
        h.write(&[e.label, e.mtime.0]);
        h.u64(e.size);
        h.u64(e.mtime.1);
        h.u64(e.mtime.2.into());
    }
    h.0
}

/// Checksum of the cached labels and pixels, eight bytes at a time (it runs over every
/// pixel of every cache read, so it must be much cheaper than decoding).
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |x: u64| {
        h = (h ^ x).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 32;
    };
    for part in parts {
        let chunks = part.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            mix(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 60));
        mix(part.len() as u64);
    }
    h
}

/// The exact header a valid cache for this listing must start with.
fn cache_header(shape: [usize; 3], names: &[String], files: &[Entry]) -> Vec<u8> {
    let mut out = CACHE_MAGIC.to_vec();
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    for d in shape {
        // `check_shape` keeps every dimension within u32.
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for name in names {
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    out.extend_from_slice(&fingerprint(files).to_le_bytes());
    out
}

/// Reads a cache back if it matches `header` and `labels` exactly, is of the right length
/// and passes its checksum; `None` otherwise (missing, stale, truncated or corrupt).
fn read_cache(path: &Path, header: &[u8], labels: &[u8], pixel_len: usize) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    let expected_len = (header.len() as u64)
        .checked_add(labels.len() as u64)?
        .checked_add(pixel_len as u64)?
        .checked_add(8)?;
    // Checked before allocating anything from the file.
    if file.metadata().ok()?.len() != expected_len {
        return None;
    }
    let mut found = vec![0u8; header.len()];
    file.read_exact(&mut found).ok()?;
    if found != header {
        return None;
    }
    let mut found_labels = vec![0u8; labels.len()];
    file.read_exact(&mut found_labels).ok()?;
    if found_labels != labels {
        return None;
    }
    let mut pixels = vec![0u8; pixel_len];
    file.read_exact(&mut pixels).ok()?;
    let mut sum = [0u8; 8];
    file.read_exact(&mut sum).ok()?;
    (u64::from_le_bytes(sum) == checksum(&[labels, &pixels])).then_some(pixels)
}

/// Writes the cache atomically (temporary file in the same directory, then rename). Best
/// effort: any failure (read-only directory, full disk) leaves no file behind and is
/// otherwise ignored, since the data is already in memory.
fn write_cache(path: &Path, header: &[u8], labels: &[u8], pixels: &[u8]) {
    let (Some(cache_dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    if fs::create_dir_all(cache_dir).is_err() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = cache_dir.join(format!(
        ".{}.{}.{nanos}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> io::Result<()> {
        let file = File::options().write(true).create_new(true).open(&tmp)?;
        let mut out = BufWriter::new(file);
        out.write_all(header)?;
        out.write_all(labels)?;
        out.write_all(pixels)?;
        out.write_all(&checksum(&[labels, pixels]).to_le_bytes())?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        fs::rename(&tmp, path)
    };
    if write().is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

/// One split: from the cache when it is valid, else decoded and cached.
fn load_split(
    dir: &Path,
    split: &str,
    files: &[Entry],
    names: &[String],
    shape: [usize; 3],
) -> Result<Dataset, DataError> {
    let per_image: usize = shape.iter().product();
    let labels: Vec<u8> = files.iter().map(|e| e.label).collect();
    let pixel_len = files
        .len()
        .checked_mul(per_image)
        .ok_or(DataError::FolderShape {
            shape,
            reason: "the split's pixels do not fit in memory at this size",
        })?;
    let header = cache_header(shape, names, files);
    let path = cache_path(dir, split, shape);
    if let Some(images) = read_cache(&path, &header, &labels, pixel_len) {
        return Ok(Dataset {
            shape,
            images,
            labels,
        });
    }
    let mut images = vec![0u8; pixel_len];
    // Every image is decoded; the first failure in file order is reported, so the error
    // does not depend on thread timing.
    let first_error = images
        .par_chunks_mut(per_image)
        .zip(files.par_iter())
        .enumerate()
        .filter_map(|(i, (dst, e))| decode(&e.path, shape, dst).err().map(|err| (i, err)))
        .min_by_key(|(i, _)| *i);
    if let Some((_, err)) = first_error {
        return Err(err);
    }
    write_cache(&path, &header, &labels, &images);
    Ok(Dataset {
        shape,
        images,
        labels,
    })
}

/// Decodes one image into `dst` (`c * h * w` bytes, CHW).
fn decode(path: &Path, [c, h, w]: [usize; 3], dst: &mut [u8]) -> Result<(), DataError> {
    // Decoder messages may hold line breaks; the error stays one line.
    let bad = |reason: String| DataError::FolderBadImage {
        path: path.to_path_buf(),
        reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let img: DynamicImage = ImageReader::open(path)
        .map_err(|e| bad(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?
        .decode()
        .map_err(|e| bad(e.to_string()))?;
    // `check_shape` keeps both within u32.
    let (h32, w32) = (h as u32, w as u32);
    let filter = FilterType::Triangle;
    if c == 1 {
        let mut luma = img.to_luma8();
        if luma.dimensions() != (w32, h32) {
            luma = image::imageops::resize(&luma, w32, h32, filter);
        }
        dst.copy_from_slice(luma.as_raw());
    } else {
        let mut rgb = img.to_rgb8();
        if rgb.dimensions() != (w32, h32) {
            rgb = image::imageops::resize(&rgb, w32, h32, filter);
        }
        // HWC (interleaved) to CHW (planes).
        let (r, rest) = dst.split_at_mut(h * w);
        let (g, b) = rest.split_at_mut(h * w);
        for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            r[i] = px[0];
            g[i] = px[1];
            b[i] = px[2];
        }
    }
    Ok(())
}
