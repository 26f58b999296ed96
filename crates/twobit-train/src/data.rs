//! Mini-batches as burn tensors.
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use twobit_data::{Augment, Dataset};
use twobit_format::Normalize;

/// The RNG of one epoch, derived from the run's seed and the epoch number, so a resumed run
/// draws exactly what an uninterrupted one would (no RNG state needs to be saved).
pub fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> StdRng {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(stream.wrapping_mul(0x94D0_49BB_1331_11EB));
    StdRng::seed_from_u64(mix)
}

/// A shuffled order of `0..n` for one epoch.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut epoch_rng(seed, epoch, 1));
    order
}

/// Turns dataset indices into tensors, reusing one host buffer.
pub struct Batcher {
    norm: Normalize,
    buf: Vec<f32>,
}

impl Batcher {
    /// A batcher normalising with `norm`.
    pub fn new(norm: Normalize) -> Self {
        Batcher {
            norm,
            buf: Vec::new(),
        }
    }

    /// Images `[n, c, h, w]` and labels `[n]` of `indices`; with `augment`, crop and flip
    /// drawn from it (see [`Batcher::batch_with`]).
    pub fn batch(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>, Vec<u8>) {
        match augment {
            Some(rng) => self.batch_with(data, indices, Augment::CROP_FLIP, rng, device),
            None => self.batch_with(
                data,
                indices,
                Augment::NONE,
                &mut StdRng::seed_from_u64(0),
                device,
            ),
        }
    }

    /// Images `[n, c, h, w]` and labels `[n]` of `indices`, with the augmentations `aug`
    /// drawn from `rng` (untouched when `aug` has none).
    pub fn batch_with(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        aug: Augment,
        rng: &mut StdRng,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>, Vec<u8>) {
        let [c, h, w] = data.shape;
        let len = indices.len() * c * h * w;
        self.buf.resize(len, 0.0);
        let rng = aug.any().then_some(rng);
        if let Err(e) = data.try_fill_batch_with(indices, &self.norm, rng, aug, &mut self.buf) {
            // The trainer builds indices and buffers itself: an error here is a bug.
            panic!("batch: {e}");
        }
        // The buffer moves into the tensor (no copy); it is re-allocated next batch.
        let x = Tensor::from_data(
            TensorData::new(std::mem::take(&mut self.buf), [indices.len(), c, h, w]),
            device,
        );
        let labels: Vec<u8> = indices.iter().map(|&i| data.labels[i]).collect();
        let y = Tensor::from_data(
            TensorData::new(
                labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                [indices.len()],
            ),
            device,
        );
        (x, y, labels)
    }
}
