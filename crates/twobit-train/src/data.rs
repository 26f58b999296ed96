//! Mini-batches as burn tensors.
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use twobit_data::Dataset;
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

    /// Images `[n, c, h, w]` and labels `[n]` of `indices`.
    pub fn batch(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>, Vec<u8>) {
        let [c, h, w] = data.shape;
        let len = indices.len() * c * h * w;
        self.buf.resize(len, 0.0);
        data.fill_batch(indices, &self.norm, augment, &mut self.buf);
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
