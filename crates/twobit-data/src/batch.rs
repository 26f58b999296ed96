//! Batch assembly: `u8` CHW images to normalised `f32` NCHW, with optional augmentation.
//! Runs every training step, so pixels go through a 256-entry table per channel and nothing
//! is allocated per pixel or per image.
use rand::rngs::StdRng;
use rand::Rng;
use twobit_format::Normalize;

use crate::{DataError, Dataset};

/// Zero padding (in pixels, each side) before the random crop, as torchvision's
/// `RandomCrop(32, padding=4)` in the standard CIFAR recipe.
pub const CROP_PADDING: usize = 4;

/// `lut[c][p] = (p / 255 - mean[c]) / std[c]`.
fn tables(norm: &Normalize, channels: usize) -> Result<Vec<[f32; 256]>, DataError> {
    if norm.mean.len() != channels || norm.std.len() != channels {
        return Err(DataError::NormalizeChannels {
            channels,
            means: norm.mean.len(),
            stds: norm.std.len(),
        });
    }
    let mut luts = vec![[0f32; 256]; channels];
    for (c, lut) in luts.iter_mut().enumerate() {
        let (mean, std) = (norm.mean[c], norm.std[c]);
        if !mean.is_finite() || !std.is_finite() || std <= 0.0 {
            return Err(DataError::BadNormalize {
                channel: c,
                mean,
                std,
            });
        }
        for (p, v) in lut.iter_mut().enumerate() {
            *v = (p as f32 / 255.0 - mean) / std;
        }
    }
    Ok(luts)
}

/// Which random augmentations training applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Augment {
    /// Random crop after [`CROP_PADDING`] pixels of zero padding.
    pub crop: bool,
    /// Random horizontal flip.
    pub flip: bool,
}

impl Augment {
    /// Both (CIFAR-10's standard augmentation).
    pub const CROP_FLIP: Augment = Augment {
        crop: true,
        flip: true,
    };
    /// None.
    pub const NONE: Augment = Augment {
        crop: false,
        flip: false,
    };

    /// Whether any augmentation is on.
    pub fn any(self) -> bool {
        self.crop || self.flip
    }

    /// Parses `crop`, `flip`, `crop,flip` or `none`.
    pub fn parse(s: &str) -> Option<Augment> {
        let mut a = Augment::NONE;
        for part in s.split(',').map(str::trim) {
            match part {
                "crop" => a.crop = true,
                "flip" => a.flip = true,
                "none" => {}
                _ => return None,
            }
        }
        Some(a)
    }
}

impl Dataset {
    /// Bytes (and output floats) per image: `c * h * w`.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The `u8` CHW pixels of image `i`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.image_len();
        self.images.get(i * n..(i + 1) * n)
    }

    /// [`Dataset::fill_batch`] that reports bad arguments instead of panicking.
    ///
    /// With `augment`, each image is zero-padded by [`CROP_PADDING`] pixels on every side
    /// (the pad is a black pixel, i.e. the normalised value of 0, as torchvision pads the
    /// image before `Normalize`), randomly cropped back to `h x w`, then flipped
    /// horizontally with probability 0.5. Per image the draws are: crop row offset, crop
    /// column offset (each uniform in `0..=2*CROP_PADDING`), flip.
    pub fn try_fill_batch(
        &self,
        indices: &[usize],
        norm: &Normalize,
        augment: Option<&mut StdRng>,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        self.try_fill_batch_with(indices, norm, augment, Augment::CROP_FLIP, out)
    }

    /// [`Dataset::try_fill_batch`] with a choice of augmentations: the same random draws are
    /// made per image whatever `aug` says (so a run's data order does not depend on it), and
    /// a disabled crop takes the centre (no shift), a disabled flip never flips.
    pub fn try_fill_batch_with(
        &self,
        indices: &[usize],
        norm: &Normalize,
        augment: Option<&mut StdRng>,
        aug: Augment,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let [c, h, w] = self.shape;
        let per_image = self.image_len();
        let expected = indices.len() * per_image;
        if out.len() != expected {
            return Err(DataError::BatchSize {
                expected,
                found: out.len(),
                images: indices.len(),
                per_image,
            });
        }
        if let Some(&index) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        let luts = tables(norm, c)?;
        if per_image == 0 {
            return Ok(());
        }
        let images = indices
            .iter()
            .map(|&i| &self.images[i * per_image..][..per_image]);
        let outs = out.chunks_exact_mut(per_image);
        match augment {
            None => {
                for (src, dst) in images.zip(outs) {
                    for ((src, dst), lut) in src
                        .chunks_exact(h * w)
                        .zip(dst.chunks_exact_mut(h * w))
                        .zip(&luts)
                    {
                        for (o, &p) in dst.iter_mut().zip(src) {
                            *o = lut[p as usize];
                        }
                    }
                }
            }
            Some(rng) => {
                for (src, dst) in images.zip(outs) {
                    let dy = rng.random_range(0..=2 * CROP_PADDING);
                    let dx = rng.random_range(0..=2 * CROP_PADDING);
                    let flip = rng.random_bool(0.5) && aug.flip;
                    let (dy, dx) = if aug.crop {
                        (dy, dx)
                    } else {
                        (CROP_PADDING, CROP_PADDING)
                    };
                    for ((src, dst), lut) in src
                        .chunks_exact(h * w)
                        .zip(dst.chunks_exact_mut(h * w))
                        .zip(&luts)
                    {
                        crop_plane(src, dst, lut, [h, w], [dy, dx], flip);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes one `h x w` plane: output pixel `(y, x)` is padded-image pixel `(y + dy, x + dx)`,
/// i.e. source pixel `(y + dy - P, x + dx - P)` or the pad value outside the source; then the
/// row is mirrored if `flip`.
fn crop_plane(
    src: &[u8],
    dst: &mut [f32],
    lut: &[f32; 256],
    [h, w]: [usize; 2],
    [dy, dx]: [usize; 2],
    flip: bool,
) {
    let pad = lut[0];
    // Output columns x with a source column: x + dx - P in 0..w.
    let x0 = CROP_PADDING.saturating_sub(dx).min(w);
    let x1 = (w + CROP_PADDING).saturating_sub(dx).min(w).max(x0);
    for (y, row) in dst.chunks_exact_mut(w).enumerate() {
        let sy = (y + dy).checked_sub(CROP_PADDING).filter(|&sy| sy < h);
        match sy {
            None => row.fill(pad),
            Some(sy) => {
                row[..x0].fill(pad);
                row[x1..].fill(pad);
                if x1 > x0 {
                    let sx0 = x0 + dx - CROP_PADDING;
                    let src_row = &src[sy * w + sx0..][..x1 - x0];
                    for (o, &p) in row[x0..x1].iter_mut().zip(src_row) {
                        *o = lut[p as usize];
                    }
                }
                if flip {
                    row.reverse();
                }
            }
        }
    }
}
