//! Folder (torchvision `ImageFolder`) datasets: layout, labels, pixel conversion, the decode
//! cache and every load error.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tempfile::TempDir;
use twobit_data::{cache_path, load_folder, DataError, DatasetKind, Splits, CACHE_DIR};

const RUST: [u8; 3] = [200, 100, 50];
/// Luma of [`RUST`]: 0.2126 * 200 + 0.7152 * 100 + 0.0722 * 50 = 117.65, rounded.
const RUST_LUMA: u8 = 118;
const GRAY: u8 = 77;
const RGBA: [u8; 4] = [10, 20, 30, 128];
const BLUE: [u8; 3] = [0, 0, 255];

fn solid_rgb(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    ImageBuffer::from_pixel(w, h, Rgb(c))
}

/// 8x8 image whose pixel (y, x) is (30x, 30y, x + y): checks the CHW layout without resizing.
fn gradient() -> RgbImage {
    ImageBuffer::from_fn(8, 8, |x, y| {
        Rgb([30 * x as u8, 30 * y as u8, (x + y) as u8])
    })
}

fn save(path: &Path, img: impl Into<image::DynamicImage>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.into().save(path).unwrap();
}

/// Classes `Zebra`, `ant`, `bee` (byte order puts the capital first, as torchvision does).
/// Train (in file order):
/// - `Zebra/a.png` solid RUST 10x6 RGB, `Zebra/b.PNG` solid GRAY 5x5 luma,
///   `Zebra/c.jpg` solid BLUE 16x16 JPEG, `Zebra/sub/deep.png` gradient 8x8
/// - `ant/x.jpeg` GRAY 12x12 luma JPEG, `ant/y.png` solid RGBA 8x8
/// - `bee/z.png` RUST 3x9
///
/// plus files that must be ignored: `Zebra/notes.txt`, `Zebra/._a.png` (garbage, hidden),
/// `train/.ipynb_checkpoints/` (hidden directory with an image), `train/readme.md`.
/// Test: `Zebra/t.png` gradient, `ant/u.jpg` RUST, `bee/` empty.
fn fixture() -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let train = d.join("train");
    save(&train.join("Zebra/a.png"), solid_rgb(10, 6, RUST));
    save(
        &train.join("Zebra/b.PNG"),
        GrayImage::from_pixel(5, 5, Luma([GRAY])),
    );
    save(&train.join("Zebra/c.jpg"), solid_rgb(16, 16, BLUE));
    save(&train.join("Zebra/sub/deep.png"), gradient());
    fs::write(train.join("Zebra/notes.txt"), "not an image").unwrap();
    fs::write(train.join("Zebra/._a.png"), "AppleDouble garbage").unwrap();
    save(
        &train.join("ant/x.jpeg"),
        GrayImage::from_pixel(12, 12, Luma([GRAY])),
    );
    save(
        &train.join("ant/y.png"),
        RgbaImage::from_pixel(8, 8, Rgba(RGBA)),
    );
    save(&train.join("bee/z.png"), solid_rgb(3, 9, RUST));
    save(&train.join(".ipynb_checkpoints/q.png"), gradient());
    fs::write(train.join("readme.md"), "hello").unwrap();
    let test = d.join("test");
    save(&test.join("Zebra/t.png"), gradient());
    save(&test.join("ant/u.jpg"), solid_rgb(8, 8, RUST));
    fs::create_dir_all(test.join("bee")).unwrap();
    tmp
}

fn load(dir: &Path, shape: [usize; 3]) -> (Splits, Vec<String>) {
    load_folder(dir, shape).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(dir: &Path, shape: [usize; 3]) -> DataError {
    match load_folder(dir, shape) {
        Ok(_) => panic!("loading {} at {shape:?} should fail", dir.display()),
        Err(e) => e,
    }
}

/// The error message names `path` (as an absolute path).
fn names_path(e: &DataError, path: &Path) {
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
}

fn assert_same(a: &Splits, b: &Splits) {
    for (x, y) in [(&a.train, &b.train), (&a.test, &b.test)] {
        assert_eq!(x.shape, y.shape);
        assert_eq!(x.labels, y.labels);
        assert!(x.images == y.images, "pixels differ");
    }
}

/// Every value of plane `c` of image `i` is `v` (within `tol`).
fn assert_plane(s: &twobit_data::Dataset, i: usize, c: usize, v: u8, tol: u8) {
    let [_, h, w] = s.shape;
    let plane = &s.image(i).unwrap()[c * h * w..][..h * w];
    assert!(
        plane.iter().all(|&p| p.abs_diff(v) <= tol),
        "image {i} channel {c}: want {v}±{tol}, got {plane:?}"
    );
}

#[test]
fn rgb_labels_order_and_pixels() {
    let tmp = fixture();
    let (s, names) = load(tmp.path(), [3, 8, 8]);
    assert_eq!(names, ["Zebra", "ant", "bee"]);
    assert_eq!(s.train.labels, [0, 0, 0, 0, 1, 1, 2]);
    assert_eq!(s.test.labels, [0, 1]);
    assert_eq!(s.train.shape, [3, 8, 8]);
    assert_eq!(s.test.shape, [3, 8, 8]);
    assert_eq!(s.train.images.len(), 7 * 192);
    assert_eq!(s.test.images.len(), 2 * 192);
    // Zebra/a.png: solid RGB, resized 10x6 -> 8x8, exact.
    for (c, &v) in RUST.iter().enumerate() {
        assert_plane(&s.train, 0, c, v, 0);
    }
    // Zebra/b.PNG: grayscale -> RGB replicates the value.
    for c in 0..3 {
        assert_plane(&s.train, 1, c, GRAY, 0);
    }
    // Zebra/c.jpg: JPEG is lossy, close to pure blue.
    for (c, &v) in BLUE.iter().enumerate() {
        assert_plane(&s.train, 2, c, v, 4);
    }
    // Zebra/sub/deep.png: 8x8, not resized: exact CHW layout.
    let img = s.train.image(3).unwrap();
    for y in 0..8 {
        for x in 0..8 {
            let want = [30 * x as u8, 30 * y as u8, (x + y) as u8];
            for (c, &v) in want.iter().enumerate() {
                assert_eq!(img[c * 64 + y * 8 + x], v, "pixel ({y}, {x}) channel {c}");
            }
        }
    }
    for c in 0..3 {
        assert_plane(&s.train, 4, c, GRAY, 2); // ant/x.jpeg, lossy
    }
    // ant/y.png: RGBA, alpha dropped.
    for (c, &v) in RGBA[..3].iter().enumerate() {
        assert_plane(&s.train, 5, c, v, 0);
    }
    for (c, &v) in RUST.iter().enumerate() {
        assert_plane(&s.train, 6, c, v, 0); // bee/z.png, 3x9 upscaled
        assert_plane(&s.test, 1, c, v, 4); // ant/u.jpg
    }
    assert_eq!(s.test.image(0), s.train.image(3));
}

#[test]
fn grayscale_and_non_square_shapes() {
    let tmp = fixture();
    let (s, names) = load(tmp.path(), [1, 8, 8]);
    assert_eq!(names.len(), 3);
    assert_eq!(s.train.shape, [1, 8, 8]);
    assert_eq!(s.train.images.len(), 7 * 64);
    assert_plane(&s.train, 0, 0, RUST_LUMA, 0);
    assert_plane(&s.train, 1, 0, GRAY, 0);
    assert_plane(&s.train, 6, 0, RUST_LUMA, 0);
    let img = s.train.image(3).unwrap();
    for y in 0..8u32 {
        for x in 0..8u32 {
            let (r, g, b) = ((30 * x) as f32, (30 * y) as f32, (x + y) as f32);
            let luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
            let got = f32::from(img[(y * 8 + x) as usize]);
            assert!((got - luma).abs() <= 1.0, "({y}, {x}): {got} vs {luma}");
        }
    }
    // Height and width are not swapped: 5 rows of 7.
    let (s, _) = load(tmp.path(), [3, 5, 7]);
    assert_eq!(s.train.shape, [3, 5, 7]);
    assert_eq!(s.train.images.len(), 7 * 3 * 35);
    for (c, &v) in RUST.iter().enumerate() {
        assert_plane(&s.train, 0, c, v, 0);
    }
    let (s, _) = load(tmp.path(), [1, 1, 1]);
    assert_eq!(s.train.images[..2], [RUST_LUMA, GRAY]);
}

#[test]
fn relative_paths_and_batches_with_augmentation() {
    let tmp = fixture();
    let (s, _) = load(tmp.path(), [3, 8, 8]);
    let norm = DatasetKind::Folder.normalize_for(3);
    let mut out = vec![f32::NAN; 2 * 192];
    s.train.fill_batch(&[0, 3], &norm, None, &mut out);
    assert_eq!(out[0], 200.0 / 255.0);
    assert_eq!(out[192 + 64 + 8 + 1], 30.0 / 255.0); // deep.png, G at (1, 1)
                                                     // Augmented 8x8 crops of the zero-padded solid image: each channel holds its colour or
                                                     // the pad (0), and over 20 draws some pad shows.
    let mut rng = StdRng::seed_from_u64(3);
    let mut out = vec![f32::NAN; 20 * 192];
    s.train
        .try_fill_batch(&[0; 20], &norm, Some(&mut rng), &mut out)
        .unwrap();
    for img in out.chunks_exact(192) {
        for (plane, &v) in img.chunks_exact(64).zip(&RUST) {
            let v = f32::from(v) / 255.0;
            assert!(plane.iter().all(|&p| p == v || p == 0.0), "{plane:?}");
        }
    }
    assert!(out.contains(&0.0));
    assert!(out.contains(&(200.0 / 255.0)));
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn cache_is_written_and_used_until_the_file_list_changes() {
    let tmp = fixture();
    let dir = tmp.path();
    let (first, names) = load(dir, [3, 8, 8]);
    let train_cache = cache_path(dir, "train", [3, 8, 8]);
    assert_eq!(
        train_cache,
        dir.join(CACHE_DIR).join("train-3x8x8.bin"),
        "documented location"
    );
    assert!(train_cache.is_file());
    assert!(cache_path(dir, "test", [3, 8, 8]).is_file());
    assert!(!cache_path(dir, "train", [1, 8, 8]).exists());

    // Corrupt an image but keep its size and modification time: the cache is trusted, so
    // the load still succeeds with the old pixels (proof that nothing was decoded).
    let a = dir.join("train/Zebra/a.png");
    let t = mtime(&a);
    let len = fs::metadata(&a).unwrap().len() as usize;
    fs::write(&a, vec![0xAB; len]).unwrap();
    set_mtime(&a, t);
    let (second, names2) = load(dir, [3, 8, 8]);
    assert_same(&first, &second);
    assert_eq!(names, names2);

    // A new modification time invalidates the cache: the corrupt file is decoded now.
    set_mtime(&a, t + Duration::from_secs(5));
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderBadImage { .. }), "{e:?}");
    names_path(&e, &a);

    // Back to a valid image; then an added file changes the list: 8 images.
    save(&a, solid_rgb(10, 6, RUST));
    let (third, _) = load(dir, [3, 8, 8]);
    assert_same(&first, &third);
    save(&dir.join("train/bee/w.png"), solid_rgb(4, 4, BLUE));
    let (fourth, _) = load(dir, [3, 8, 8]);
    assert_eq!(fourth.train.labels, [0, 0, 0, 0, 1, 1, 2, 2]);
    assert_plane(&fourth.train, 6, 2, 255, 0); // bee/w.png sorts before bee/z.png
    assert_plane(&fourth.train, 7, 0, RUST[0], 0);
    // Removing it again brings the original back (rebuilt, not the stale 8-image cache).
    fs::remove_file(dir.join("train/bee/w.png")).unwrap();
    let (fifth, _) = load(dir, [3, 8, 8]);
    assert_same(&first, &fifth);

    // A renamed class changes the labels' meaning: the cache must not be reused.
    fs::rename(dir.join("train/bee"), dir.join("train/Bee")).unwrap();
    fs::rename(dir.join("test/bee"), dir.join("test/Bee")).unwrap();
    let (sixth, names6) = load(dir, [3, 8, 8]);
    assert_eq!(names6, ["Bee", "Zebra", "ant"]);
    assert_eq!(sixth.train.labels, [0, 1, 1, 1, 1, 2, 2]);
    for (c, &v) in RUST.iter().enumerate() {
        assert_plane(&sixth.train, 0, c, v, 0); // Bee/z.png comes first now
    }
}

#[test]
fn corrupt_or_foreign_caches_are_ignored_and_rebuilt() {
    let tmp = fixture();
    let dir = tmp.path();
    let (first, _) = load(dir, [1, 8, 8]);
    let cache = cache_path(dir, "train", [1, 8, 8]);
    let good = fs::read(&cache).unwrap();
    let n = good.len();
    let mut flipped = good.clone();
    flipped[n - 20] ^= 0x40; // a pixel
    let mut label = good.clone();
    label[n - 8 - 7 * 64 - 1] = 1; // the last label, 2 in the file list
    let mut header = good.clone();
    header[9] ^= 1; // version
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("pixel flipped", flipped),
        ("label changed", label),
        ("header changed", header),
        ("truncated", good[..n - 1].to_vec()),
        ("extended", [good.as_slice(), &[0]].concat()),
        ("empty", Vec::new()),
        ("garbage", vec![0xFF; 64]),
        ("other shape's cache", {
            load(dir, [1, 4, 4]);
            fs::read(cache_path(dir, "train", [1, 4, 4])).unwrap()
        }),
    ];
    for (what, bytes) in variants {
        fs::write(&cache, &bytes).unwrap();
        let (again, _) = load(dir, [1, 8, 8]);
        assert_same(&first, &again);
        assert_eq!(fs::read(&cache).unwrap(), good, "{what}: cache rewritten");
    }
    // No temporary files are left behind.
    let left: Vec<_> = fs::read_dir(dir.join(CACHE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
}

#[test]
fn unwritable_cache_location_is_skipped() {
    let tmp = fixture();
    let dir = tmp.path();
    // A plain file where the cache directory should be: caching fails, loading does not.
    // (Works as root too, unlike a read-only permission bit.)
    fs::write(dir.join(CACHE_DIR), "in the way").unwrap();
    let (a, _) = load(dir, [3, 8, 8]);
    let (b, _) = load(dir, [3, 8, 8]);
    assert_same(&a, &b);
    assert_eq!(a.train.len(), 7);
    assert!(dir.join(CACHE_DIR).is_file());
}

#[test]
fn at_most_256_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pixel = GrayImage::from_pixel(1, 1, Luma([9]));
    for k in 0..256 {
        for split in ["train", "test"] {
            save(&dir.join(format!("{split}/c{k:03}/i.png")), pixel.clone());
        }
    }
    let (s, names) = load(dir, [1, 2, 2]);
    assert_eq!(names.len(), 256);
    assert_eq!(names[255], "c255");
    assert_eq!(s.train.labels, (0..=255).collect::<Vec<u8>>());
    assert!(s.test.images.iter().all(|&p| p == 9));

    save(&dir.join("train/c256/i.png"), pixel.clone());
    let e = load_err(dir, [1, 2, 2]);
    assert!(
        matches!(e, DataError::FolderTooManyClasses { found: 257, .. }),
        "{e:?}"
    );
    names_path(&e, &dir.join("train"));
    assert!(e.to_string().contains("257"), "{e}");
}

#[test]
fn error_missing_directories() {
    let tmp = fixture();
    let dir = tmp.path();
    let nowhere = dir.join("nowhere");
    let e = load_err(&nowhere, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderMissingDir { .. }), "{e:?}");
    names_path(&e, &nowhere);

    for split in ["test", "train"] {
        let path = dir.join(split);
        fs::rename(&path, dir.join("moved")).unwrap();
        let e = load_err(dir, [3, 8, 8]);
        assert!(matches!(e, DataError::FolderMissingSplit { .. }), "{e:?}");
        names_path(&e, &path);
        fs::rename(dir.join("moved"), &path).unwrap();
    }
    // A file named `test` is not a directory either.
    fs::rename(dir.join("test"), dir.join("moved")).unwrap();
    fs::write(dir.join("test"), "").unwrap();
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderMissingSplit { .. }), "{e:?}");
}

#[test]
fn error_no_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Only a loose image and a hidden directory: no classes.
    save(&dir.join("train/loose.png"), gradient());
    save(&dir.join("train/.hidden/a.png"), gradient());
    save(&dir.join("test/a/a.png"), gradient());
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderNoClasses { .. }), "{e:?}");
    names_path(&e, &dir.join("train"));
}

#[test]
fn error_empty_training_class() {
    let tmp = fixture();
    let dir = tmp.path();
    let ant = dir.join("train/ant");
    fs::remove_file(ant.join("x.jpeg")).unwrap();
    fs::remove_file(ant.join("y.png")).unwrap();
    fs::write(ant.join("labels.csv"), "x").unwrap();
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderEmptyClass { .. }), "{e:?}");
    names_path(&e, &ant);
}

#[test]
fn error_empty_test_split() {
    let tmp = fixture();
    let dir = tmp.path();
    fs::remove_file(dir.join("test/Zebra/t.png")).unwrap();
    fs::remove_file(dir.join("test/ant/u.jpg")).unwrap();
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderNoImages { .. }), "{e:?}");
    names_path(&e, &dir.join("test"));
}

#[test]
fn error_class_sets_differ() {
    let tmp = fixture();
    let dir = tmp.path();
    fs::remove_dir(dir.join("test/bee")).unwrap();
    let e = load_err(dir, [3, 8, 8]);
    match &e {
        DataError::FolderClassNotInTest { class, .. } => assert_eq!(class, "bee"),
        other => panic!("{other:?}"),
    }
    names_path(&e, &dir.join("test/bee"));

    fs::create_dir(dir.join("test/bee")).unwrap();
    save(&dir.join("test/wasp/w.png"), gradient());
    let e = load_err(dir, [3, 8, 8]);
    match &e {
        DataError::FolderClassNotInTrain { class, .. } => assert_eq!(class, "wasp"),
        other => panic!("{other:?}"),
    }
    names_path(&e, &dir.join("train/wasp"));
}

#[test]
fn error_corrupt_images_name_the_first_file() {
    let tmp = fixture();
    let dir = tmp.path();
    // Garbage, and a PNG cut in half; the first in file order is reported, however the
    // parallel decode is scheduled.
    let bad = dir.join("train/ant/x.jpeg");
    fs::write(&bad, "this is not a JPEG").unwrap();
    let png = fs::read(dir.join("train/bee/z.png")).unwrap();
    fs::write(dir.join("train/bee/z.png"), &png[..png.len() / 2]).unwrap();
    for _ in 0..3 {
        let e = load_err(dir, [3, 8, 8]);
        match &e {
            DataError::FolderBadImage { path, reason } => {
                assert_eq!(path, &bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
        names_path(&e, &bad);
    }
    save(&bad, GrayImage::from_pixel(2, 2, Luma([1])));
    let e = load_err(dir, [3, 8, 8]);
    names_path(&e, &dir.join("train/bee/z.png"));
    // In the test split too.
    fs::write(dir.join("train/bee/z.png"), &png).unwrap();
    fs::write(dir.join("test/ant/u.jpg"), [0xFF, 0xD8, 0xFF]).unwrap();
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderBadImage { .. }), "{e:?}");
    names_path(&e, &dir.join("test/ant/u.jpg"));
}

#[cfg(unix)]
#[test]
fn error_unreadable_image_link() {
    let tmp = fixture();
    let dir = tmp.path();
    let link = dir.join("train/bee/gone.png");
    std::os::unix::fs::symlink(dir.join("does-not-exist.png"), &link).unwrap();
    let e = load_err(dir, [3, 8, 8]);
    assert!(matches!(e, DataError::FolderIo { .. }), "{e:?}");
    names_path(&e, &link);
    // A link to a real image is followed.
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(dir.join("train/bee/z.png"), &link).unwrap();
    let (s, _) = load(dir, [3, 8, 8]);
    assert_eq!(s.train.labels, [0, 0, 0, 0, 1, 1, 2, 2]);
}

#[test]
fn error_bad_shapes() {
    let tmp = fixture();
    let dir = tmp.path();
    for c in [0, 2, 4] {
        let e = load_err(dir, [c, 8, 8]);
        assert!(
            matches!(e, DataError::FolderChannels { channels } if channels == c),
            "{e:?}"
        );
        assert!(e.to_string().contains(&format!("not {c}")), "{e}");
    }
    for shape in [[3, 0, 8], [1, 8, 0]] {
        let e = load_err(dir, shape);
        assert!(matches!(e, DataError::FolderShape { .. }), "{e:?}");
        let [c, h, w] = shape;
        assert!(e.to_string().contains(&format!("{c}x{h}x{w}")), "{e}");
    }
    let e = load_err(dir, [3, 1 << 33, 8]);
    assert!(matches!(e, DataError::FolderShape { .. }), "{e:?}");
    let e = load_err(dir, [3, usize::MAX / 2, usize::MAX / 2]);
    assert!(matches!(e, DataError::FolderShape { .. }), "{e:?}");
    // Nothing was cached for a rejected shape.
    assert!(!dir.join(CACHE_DIR).exists());
}

#[test]
fn folder_kind() {
    let kind = DatasetKind::from_name("folder").unwrap();
    assert_eq!(kind, DatasetKind::Folder);
    assert_eq!(DatasetKind::from_name("ImageFolder"), Some(kind));
    assert_eq!(kind.name(), "folder");
    assert_eq!("folder".parse::<DatasetKind>().unwrap(), kind);
    assert!(!DatasetKind::ALL.contains(&kind));
    assert_eq!(kind.shape(), [0, 0, 0]);
    assert_eq!(kind.classes(), 0);
    assert!(kind.normalize().mean.is_empty());
    let id = kind.normalize_for(3);
    assert_eq!((id.mean, id.std), (vec![0.0; 3], vec![1.0; 3]));
    assert_eq!(
        DatasetKind::Cifar10.normalize_for(3),
        DatasetKind::Cifar10.normalize()
    );
    assert!(kind.hint().contains("train/<class>"), "{}", kind.hint());
    let tmp = fixture();
    let e = kind.load(Some(tmp.path())).unwrap_err();
    assert!(matches!(e, DataError::FolderNeedsShape), "{e:?}");
    assert!(e.to_string().contains("load_folder"), "{e}");
    let e = "imagenet".parse::<DatasetKind>().unwrap_err();
    assert!(e.to_string().contains("folder"), "{e}");
}

#[test]
fn error_messages_are_absolute_for_relative_arguments() {
    let e = load_err(Path::new("surely-missing-folder-dataset"), [3, 8, 8]);
    let abs: PathBuf = std::env::current_dir()
        .unwrap()
        .join("surely-missing-folder-dataset");
    names_path(&e, &abs);
}

#[test]
fn test_split_alone_loads_with_the_same_labels() {
    let tmp = fixture();
    let (full, names) = load(tmp.path(), [3, 8, 8]);
    // with train present: its classes, and exactly the test split load_folder gives
    let (test, test_names) = twobit_data::load_folder_test(tmp.path(), [3, 8, 8]).unwrap();
    assert_eq!(test_names, names);
    assert_eq!(test.labels, full.test.labels);
    assert!(test.images == full.test.images, "pixels differ");
    // without train: the test split's own classes (every class has a test directory here)
    fs::remove_dir_all(tmp.path().join("train")).unwrap();
    let (alone, alone_names) = twobit_data::load_folder_test(tmp.path(), [3, 8, 8]).unwrap();
    assert_eq!(alone_names, names);
    assert_eq!(alone.labels, full.test.labels);
    assert!(alone.images == full.test.images, "pixels differ");
    // while training still needs train/, said in one line
    let e = load_err(tmp.path(), [3, 8, 8]);
    assert!(matches!(e, DataError::FolderMissingSplit { .. }), "{e}");
    names_path(&e, &tmp.path().join("train"));
    // and no test split at all is the same error, naming test/
    fs::remove_dir_all(tmp.path().join("test")).unwrap();
    let e = twobit_data::load_folder_test(tmp.path(), [3, 8, 8]).unwrap_err();
    names_path(&e, &tmp.path().join("test"));
}
