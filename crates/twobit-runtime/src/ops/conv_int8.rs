//! 2-bit convolution with int8 activations: each image quantized once (one scale per
//! image) into a zero-padded int8 copy, then either the int8 tile kernel reads it in place,
//! as the fp32 path reads its padded copy (see `conv::conv2d_packed`), or the int8 GEMM
//! im2col's tiles of it (`kernels::int8::gemm`); a runtime measures which is faster per
//! layer, against fp32 activations too ([`int8_conv_layer`]).
use super::ConvGeom;
use crate::kernels::int8::gemm::{self, im2col_range, im2col_tile, TW};
use crate::kernels::int8::perm::{self, PermInput, PW};
use crate::kernels::int8::{
    quantize_padded, row_scale, time_in_turns, ActScale, Affine8, ConvPath, GemmIsa, Int8Gemm,
    Int8Layer, Int8Offsets, Int8Perm, GEMV_BELOW,
};
use crate::kernels::{
    aligned, Kernel, PackedMatrix, RowOffsets, Scratch, SendPtr, TileInput, SCRATCH, TILE,
};
use rayon::prelude::*;

/// Values under which the quantization runs on the calling thread: waking the pool cost
/// more than the work in batch-1 networks (ResNet-20's layers: 16-64 Ki values).
const SMALL: usize = 1 << 16;

/// Multiply-adds under which a convolution's tasks run on the calling thread.
const SMALL_MACS: usize = 1 << 20;

thread_local! {
    // Kept between calls, as the fp32 path's padded copy: a fresh buffer per layer costs
    // page faults. Not in `Scratch`: the calling thread holds it across the parallel loop.
    static PADDED_I8: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on this thread's kept buffer in `key`, or on a fresh one where it is borrowed
/// already (a convolution called from inside another's task).
fn with_kept<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<i8>>>,
    f: impl FnOnce(&mut Vec<i8>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => f(&mut kept),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Quantizes every image of `x` with its scale into `dst` with the pads' zeros in place
/// (every element written); returns the padded height and width.
fn pad_quantize(g: &ConvGeom, x: &[f32], scales: &[f32], dst: &mut Vec<i8>) -> (usize, usize) {
    let (h, w) = (g.h, g.w);
    let [pt, pl, _, _] = g.pads;
    let (hp, wp) = g.padded();
    let len = scales.len() * g.cin * hp * wp;
    if dst.len() < len {
        dst.resize(len, 0);
    }
    let per_img = g.cin;
    let plane = |(i, (plane, src)): (usize, (&mut [i8], &[f32]))| {
        quantize_padded(src, w, scales[i / per_img], plane, wp, [pt, pl]);
    };
    if len < SMALL {
        dst[..len]
            .chunks_mut(hp * wp)
            .zip(x.chunks(h * w))
            .enumerate()
            .for_each(plane);
    } else {
        dst[..len]
            .par_chunks_mut(hp * wp)
            .zip(x.par_chunks(h * w))
            .enumerate()
            .for_each(plane);
    }
    (hp, wp)
}

/// [`super::conv2d_packed`] with int8 activations (one scale per image): same arguments
/// and output. Builds each group's [`Int8Offsets`] for this call.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8(
    m: &[PackedMatrix],
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    clamp: (f32, f32),
) -> Vec<f32> {
    let offs: Vec<_> = m.iter().map(|m| m.int8_offsets()).collect();
    conv2d_packed_i8_with(m, &offs, g, kernel, x, batch, scale, shift, clamp)
}

/// [`conv2d_packed_i8`] with each group's [`Int8Offsets`] given (`offs[i]` built from
/// `m[i]`; a runtime keeps them between calls).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8_with(
    m: &[PackedMatrix],
    offs: &[Int8Offsets],
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    clamp: (f32, f32),
) -> Vec<f32> {
    let act = ActScale::PerRow;
    conv_tile(m, offs, g, kernel, act, x, batch, scale, shift, clamp)
}

/// The tile path with the activation scale from `act`.
#[allow(clippy::too_many_arguments)]
fn conv_tile(
    m: &[PackedMatrix],
    offs: &[Int8Offsets],
    g: &ConvGeom,
    kernel: Kernel,
    act: ActScale,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    assert_eq!(offs.len(), m.len(), "int8 offsets per group");
    assert_eq!(m.len(), g.group, "one matrix per group");
    assert!(m.iter().all(|m| m.cols() == g.k()), "conv weight columns");
    let og = m[0].rows();
    let koff_rows = m[0].stride * 8;
    run_tasks::<TILE>(g, og, koff_rows, act, x, batch, |t| {
        let input = TileInput::new(t.img, t.koff, t.idx);
        let mg = &m[t.gi];
        SCRATCH.with(|cell| {
            // No nested parallelism below, so this thread cannot re-enter the borrow.
            let Scratch {
                tables_i16, acc, ..
            } = &mut *cell.borrow_mut();
            let acc = aligned(acc, og * TILE);
            let rows = t.gi * og..(t.gi + 1) * og;
            let aff = t.affine(&scale[rows.clone()], &shift[rows], (lo, hi));
            // SAFETY: `run_tasks` gives this task positions `p0..p0 + width` of its group's
            // channels, written by no other task and inside the output's capacity.
            unsafe { mg.tile_i8_affine(kernel, &offs[t.gi], &input, tables_i16, acc, &aff) };
        })
    })
}

/// [`conv2d_packed_i8`] through the int8 GEMM (`gm[i]` is group `i`'s
/// [`PackedMatrix::int8_gemm`]): each task im2col's a tile of [`TW`] positions and
/// multiplies it with `vpdpbusd` where the CPU has it (see `kernels::int8::gemm`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8_gemm(
    gm: &[Int8Gemm],
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    clamp: (f32, f32),
) -> Vec<f32> {
    conv_gemm(
        gm,
        g,
        kernel,
        ActScale::PerRow,
        x,
        batch,
        scale,
        shift,
        clamp,
    )
}

/// The GEMM path with the activation scale from `act`.
#[allow(clippy::too_many_arguments)]
fn conv_gemm(
    gm: &[Int8Gemm],
    g: &ConvGeom,
    kernel: Kernel,
    act: ActScale,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    assert_eq!(gm.len(), g.group, "one matrix per group");
    assert!(gm.iter().all(|m| m.cols == g.k()), "conv weight columns");
    let isa = GemmIsa::of(kernel);
    let og = gm[0].rows;
    run_tasks::<TW>(g, og, gm[0].kq * 4, act, x, batch, |t| {
        let mg = &gm[t.gi];
        SCRATCH.with(|cell| {
            // No nested parallelism below, so this thread cannot re-enter the borrow.
            let Scratch { tile_u8, part, .. } = &mut *cell.borrow_mut();
            let b = aligned(tile_u8, mg.tile_len());
            let rows = t.gi * og..(t.gi + 1) * og;
            let aff = t.affine(&scale[rows.clone()], &shift[rows], (lo, hi));
            let (koff, idx) = (t.koff_slice(), &t.idx[..t.width]);
            if gemm::chunked(isa, mg) {
                // Each k chunk im2col'd just before the kernel reads it, from L1.
                for q0 in (0..mg.kq).step_by(gemm::KC) {
                    let qs = q0..mg.kq.min(q0 + gemm::KC);
                    im2col_range(mg, t.img, koff, idx, b, qs.clone());
                    // SAFETY: as in `conv2d_packed_i8_with`; the ISA is this CPU's; the
                    // chunks in order with one `part`.
                    unsafe { gemm::tile_chunks(isa, mg, b, part, &aff, qs) };
                }
            } else {
                im2col_tile(mg, t.img, koff, idx, b);
                // SAFETY: as above.
                unsafe { gemm::tile(isa, mg, b, part, &aff) };
            }
        })
    })
}

/// [`conv2d_packed_i8`] through the `vpermw` kernel (`w` is the matrix's
/// [`PackedMatrix::int8_perm`] for this geometry; one group): see `kernels::int8::perm`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8_perm(
    w: &Int8Perm,
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    clamp: (f32, f32),
) -> Vec<f32> {
    conv_perm(
        w,
        g,
        kernel,
        ActScale::PerRow,
        x,
        batch,
        scale,
        shift,
        clamp,
    )
}

thread_local! {
    // The channels-last copy, kept between calls as `PADDED_I8`.
    static HWC_I8: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes after each image of the channels-last copy: the kernel reads 8 bytes from a
/// group's first channel, up to 7 past the last pixel.
const HWC_SLACK: usize = 8;

/// Quantizes every image of `x` (`batch` images, as the caller checked) with its scale
/// (from `act`) into a zero-padded channels-last copy `[batch][hp·wp·cin + HWC_SLACK]`; returns the per-image length and
/// the scales. Each image's scale is measured just before it is quantized: the copy then
/// reads the image from L2, where a separate pass over the batch left it in memory.
fn hwc_quantize(
    g: &ConvGeom,
    kernel: Kernel,
    act: ActScale,
    x: &[f32],
    batch: usize,
    dst: &mut Vec<i8>,
) -> (usize, Vec<f32>) {
    let (h, w, c) = (g.h, g.w, g.cin);
    let [pt, pl, _, _] = g.pads;
    let (hp, wp) = g.padded();
    let img_len = hp * wp * c + HWC_SLACK;
    let len = batch * img_len;
    if dst.len() < len {
        dst.resize(len, 0);
    }
    let mut scales = vec![0f32; batch];
    let image = |((d, img), s): ((&mut [i8], &[f32]), &mut f32)| {
        let (body, slack) = d.split_at_mut(hp * wp * c);
        slack.fill(0);
        *s = act.of(img);
        perm::hwc_image(kernel, img, (c, h, w), *s, (pt, pl, wp), body);
    };
    let in_len = c * h * w;
    if len < SMALL {
        dst[..len]
            .chunks_mut(img_len)
            .zip(x.chunks(in_len))
            .zip(scales.iter_mut())
            .for_each(image);
    } else {
        dst[..len]
            .par_chunks_mut(img_len)
            .zip(x.par_chunks(in_len))
            .zip(scales.par_iter_mut())
            .for_each(image);
    }
    (img_len, scales)
}

/// The `vpermw` path with the activation scale from `act`.
#[allow(clippy::too_many_arguments)]
fn conv_perm(
    w: &Int8Perm,
    g: &ConvGeom,
    kernel: Kernel,
    act: ActScale,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    assert_eq!(g.group, 1, "the perm path takes one group");
    assert!(
        w.cin == g.cin && w.kh == g.kh && w.kw == g.kw,
        "perm weights of another geometry"
    );
    let in_len = g.cin * g.h * g.w;
    assert_eq!(x.len(), batch * in_len, "conv input size");
    // Offsets inside one image are `u32` (as the tile kernel's lane offsets).
    let (hp, wp) = g.padded();
    let img_len = hp.checked_mul(wp).and_then(|n| n.checked_mul(g.cin));
    assert!(
        img_len.is_some_and(|n| n + HWC_SLACK <= u32::MAX as usize),
        "perm input image too large"
    );
    with_kept(&HWC_I8, |buf| {
        let (img_len, scales) = hwc_quantize(g, kernel, act, x, batch, buf);
        let xq: &[i8] = buf;
        let goff = w.group_offsets(wp, g.dilations);
        let (o, positions, ow) = (w.rows, g.oh() * g.ow(), g.ow());
        // The kernels read 8 bytes from each group's start without bounds checks: the last
        // position's last group must leave them inside the image's slice.
        if positions > 0 {
            let [last] = corners(positions - 1, 1, (ow, wp), g.strides, g.cin);
            let reach = last as usize + goff.iter().copied().max().unwrap_or(0) as usize + 8;
            assert!(reach <= img_len, "perm input reads past its image");
        }
        let len = batch * o * positions;
        let tiles = positions.div_ceil(PW);
        let run = |t: usize, out: SendPtr| {
            let (b, t) = (t / tiles, t % tiles);
            let p0 = t * PW;
            let width = PW.min(positions - p0);
            let input = PermInput {
                img: &xq[b * img_len..(b + 1) * img_len],
                base: corners(p0, width, (ow, wp), g.strides, g.cin),
                goff: &goff,
            };
            let aff = Affine8 {
                scale,
                s: scales[b],
                shift,
                floor: lo,
                ceil: hi,
                dst: out.get().wrapping_add(b * o * positions + p0),
                stride: positions,
                width,
                stream: len * 4 >= STREAM_BYTES,
            };
            SCRATCH.with(|cell| {
                // No nested parallelism below, so this thread cannot re-enter the borrow.
                let Scratch { acc, .. } = &mut *cell.borrow_mut();
                // SAFETY: this task alone writes positions `p0..p0 + width` of image `b`'s
                // `o` channels, inside `y`'s capacity; `hwc_quantize` left `HWC_SLACK`
                // bytes after the image for the kernel's reads.
                unsafe { perm::run(kernel, w, &input, acc, &aff) };
            })
        };
        // SAFETY: each task writes its positions for all `o` channels: all `len` elements
        // between them.
        unsafe { written_by_tasks(len, batch * tiles, len * g.k() < SMALL_MACS, run) }
    })
}

/// One task's share of a convolution: image `b`, group `gi`, output positions
/// `p0..p0 + width` (at most `N`).
struct Task<'a, const N: usize> {
    b: usize,
    gi: usize,
    p0: usize,
    width: usize,
    /// The group's channels of the padded int8 image.
    img: &'a [i8],
    koff: &'a RowOffsets,
    /// Window corner of each position (lanes past `width` repeat the first).
    idx: [u32; N],
    s: f32,
    out: SendPtr,
    o: usize,
    og: usize,
    positions: usize,
    /// The whole output is at least [`STREAM_BYTES`].
    stream: bool,
}

/// Outputs from this size on are written with streaming stores where a kernel can: they do
/// not stay in this core's caches (vgg7's conv2 at batch 64 writes 32 MiB), while a batch-1
/// layer's output does and is read next.
const STREAM_BYTES: usize = 8 << 20;

impl<const N: usize> Task<'_, N> {
    fn koff_slice(&self) -> &[u32] {
        self.koff.offsets()
    }

    /// Where this task's outputs go, through the group's affine.
    fn affine<'s>(&self, scale: &'s [f32], shift: &'s [f32], (lo, hi): (f32, f32)) -> Affine8<'s> {
        Affine8 {
            scale,
            s: self.s,
            shift,
            floor: lo,
            ceil: hi,
            dst: self
                .out
                .get()
                .wrapping_add((self.b * self.o + self.gi * self.og) * self.positions + self.p0),
            stride: self.positions,
            width: self.width,
            stream: self.stream,
        }
    }
}

/// Quantizes `x` per image into the kept padded int8 copy and runs `task` in parallel over
/// (image, group, `N`-position tile); every task must write its positions of its group's
/// `og` channels (the output is not zeroed).
fn run_tasks<const N: usize>(
    g: &ConvGeom,
    og: usize,
    koff_rows: usize,
    act: ActScale,
    x: &[f32],
    batch: usize,
    task: impl Fn(Task<N>) + Sync,
) -> Vec<f32> {
    let in_len = g.cin * g.h * g.w;
    assert_eq!(x.len(), batch * in_len, "conv input size");
    let scales: Vec<f32> = match act {
        ActScale::Fixed(s) => vec![s; batch],
        ActScale::PerRow if x.len() < SMALL => x.chunks(in_len).map(row_scale).collect(),
        ActScale::PerRow => x.par_chunks(in_len).map(row_scale).collect(),
    };
    with_kept(&PADDED_I8, |buf| {
        let (hp, wp) = pad_quantize(g, x, &scales, buf);
        let xp: &[i8] = buf;
        let (o, positions, ow) = (og * g.group, g.oh() * g.ow(), g.ow());
        let cin_g = g.cin / g.group;
        let img_len = g.cin * hp * wp;
        let koff = g.row_offsets(koff_rows, hp, wp);
        let len = batch * o * positions;
        let tiles = positions.div_ceil(N);
        let per_img = g.group * tiles;
        let run = |t: usize, out: SendPtr| {
            let (b, gi, t) = (t / per_img, t % per_img / tiles, t % tiles);
            let p0 = t * N;
            let width = N.min(positions - p0);
            let idx = corners(p0, width, (ow, wp), g.strides, 1);
            let img = &xp[b * img_len..(b + 1) * img_len];
            task(Task {
                b,
                gi,
                p0,
                width,
                img: &img[gi * cin_g * hp * wp..],
                koff: &koff,
                idx,
                s: scales[b],
                out,
                o,
                og,
                positions,
                stream: len * 4 >= STREAM_BYTES,
            })
        };
        // SAFETY: each task writes its positions for all of its group's channels: all
        // `len` elements between them.
        unsafe { written_by_tasks(len, batch * per_img, len * koff_rows < SMALL_MACS, run) }
    })
}

/// A `len`-value output written by `tasks` calls of `run(task, out)`, in parallel (on the
/// calling thread when `small`: waking the pool cost more than LeNet-5's convolutions at
/// batch 1). The output is not zeroed first.
///
/// # Safety
/// The tasks must write all `len` elements behind `out`, each task its own.
unsafe fn written_by_tasks(
    len: usize,
    tasks: usize,
    small: bool,
    run: impl Fn(usize, SendPtr) + Sync,
) -> Vec<f32> {
    let mut y: Vec<f32> = Vec::with_capacity(len);
    let out = SendPtr(y.as_mut_ptr());
    if small {
        (0..tasks).for_each(|t| run(t, out));
    } else {
        (0..tasks).into_par_iter().for_each(|t| run(t, out));
    }
    // SAFETY: the caller's contract: the tasks wrote all `len` elements.
    unsafe { y.set_len(len) };
    y
}

/// The window corners of output positions `p0..p0 + width` (lanes past `width` repeat the
/// first), as offsets in units of `unit` values (1: channels-first planes; `cin`:
/// channels-last pixels) of a padded image `wp` wide with `ow` outputs per row.
fn corners<const N: usize>(
    p0: usize,
    width: usize,
    (ow, wp): (usize, usize),
    [sh, sw]: [usize; 2],
    unit: usize,
) -> [u32; N] {
    std::array::from_fn(|j| {
        let p = p0 + if j < width { j } else { 0 };
        (((p / ow) * sh * wp + (p % ow) * sw) * unit) as u32
    })
}

/// A convolution's int8 set-up (see [`Int8Layer`]): the fastest of the int8 tile kernel,
/// the int8 GEMM, the `vpermw` kernel (where the CPU and the layer allow it) and fp32
/// activations on this machine, measured on synthetic input (one image per thread, best of
/// 4 taking turns, the affine applied as in a network), keeping only what that path needs.
/// Which wins depends on the shape: the GEMM's fixed work per output (its epilogue, the
/// im2col) against the tables' per-group cost, and a first layer with few input channels
/// gains nothing from int8 at all.
pub fn int8_conv_layer(m: &[PackedMatrix], g: &ConvGeom, kernel: Kernel) -> Int8Layer {
    let offsets: Vec<_> = m.iter().map(|m| m.int8_offsets()).collect();
    let gemm: Vec<_> = m.iter().map(|m| m.int8_gemm()).collect();
    // Only measured where the AVX-512 kernel runs: not built for nothing elsewhere.
    let perm = Int8Perm::simd(kernel).then(|| perm_weights(m, g)).flatten();
    let batch = rayon::current_num_threads().max(1);
    let x: Vec<f32> = (0..batch * g.cin * g.h * g.w)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let o = m[0].rows() * g.group;
    let (sc, sh) = (vec![1f32; o], vec![0f32; o]);
    let relu = (0.0, f32::INFINITY);
    let sink = |y: Vec<f32>| {
        std::hint::black_box(y);
    };
    // The paths take turns (see `time_in_turns`); without perm weights its turn is empty.
    let times = time_in_turns(
        [
            &mut || {
                sink(conv2d_packed_i8_with(
                    m, &offsets, g, kernel, &x, batch, &sc, &sh, relu,
                ))
            },
            &mut || {
                sink(conv2d_packed_i8_gemm(
                    &gemm, g, kernel, &x, batch, &sc, &sh, relu,
                ))
            },
            &mut || {
                sink(super::conv2d_packed(
                    m, g, kernel, &x, batch, &sc, &sh, relu,
                ))
            },
            &mut || {
                if let Some(w) = &perm {
                    sink(conv2d_packed_i8_perm(
                        w, g, kernel, &x, batch, &sc, &sh, relu,
                    ))
                }
            },
        ],
        4,
    );
    // The GEMM holds 2-3 bytes per weight more: it must win by 5 %, not by noise.
    let perm_cost = if perm.is_some() {
        times[3]
    } else {
        f64::INFINITY
    };
    let cost = [times[0], times[1] * 1.05, times[2], perm_cost];
    let i = (0..4).fold(0, |b, i| if cost[i] < cost[b] { i } else { b });
    let conv = [
        ConvPath::Tile,
        ConvPath::Gemm,
        ConvPath::F32,
        ConvPath::Perm,
    ][i];
    layer(conv, offsets, gemm, perm)
}

/// The `vpermw` kernel's weights, where the layout applies (one group; see
/// `kernels::int8::perm`).
fn perm_weights(m: &[PackedMatrix], g: &ConvGeom) -> Option<Int8Perm> {
    match m {
        [m] if g.group == 1 => m.int8_perm(g.cin, g.kh, g.kw),
        _ => None,
    }
}

/// A convolution's int8 set-up on a given path, unmeasured (tests, reproducible runs:
/// [`crate::Runtime::set_int8_conv_path`]). [`ConvPath::Perm`] falls back to the tile
/// where its layout does not apply (grouped convolutions).
pub fn int8_conv_layer_on(m: &[PackedMatrix], g: &ConvGeom, conv: ConvPath) -> Int8Layer {
    let perm = match conv {
        ConvPath::Perm => perm_weights(m, g),
        _ => None,
    };
    let conv = match (conv, &perm) {
        (ConvPath::Perm, None) => ConvPath::Tile,
        _ => conv,
    };
    let offsets = match conv {
        ConvPath::Tile => m.iter().map(|m| m.int8_offsets()).collect(),
        _ => Vec::new(),
    };
    let gemm = match conv {
        ConvPath::Gemm => m.iter().map(|m| m.int8_gemm()).collect(),
        _ => Vec::new(),
    };
    layer(conv, offsets, gemm, perm)
}

/// The set-up of `conv`, keeping only what that path reads.
fn layer(
    conv: ConvPath,
    offsets: Vec<Int8Offsets>,
    gemm: Vec<Int8Gemm>,
    perm: Option<Int8Perm>,
) -> Int8Layer {
    let keep = |p: ConvPath| conv == p;
    Int8Layer {
        offsets: if keep(ConvPath::Tile) {
            offsets
        } else {
            Vec::new()
        },
        gemm: if keep(ConvPath::Gemm) {
            gemm
        } else {
            Vec::new()
        },
        perm: perm.filter(|_| keep(ConvPath::Perm)).into_iter().collect(),
        conv,
        gemv_below: GEMV_BELOW,
        f32_from: usize::MAX,
        act_scale: ActScale::PerRow,
    }
}

/// A convolution with int8 activations through its runtime set-up `l` (see
/// [`int8_conv_layer`]): same arguments and output as [`conv2d_packed_i8`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8_layer(
    m: &[PackedMatrix],
    l: &Int8Layer,
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    clamp: (f32, f32),
) -> Vec<f32> {
    let act = l.act_scale;
    match l.conv {
        ConvPath::Tile => conv_tile(m, &l.offsets, g, kernel, act, x, batch, scale, shift, clamp),
        ConvPath::Gemm => conv_gemm(&l.gemm, g, kernel, act, x, batch, scale, shift, clamp),
        ConvPath::F32 => super::conv2d_packed(m, g, kernel, x, batch, scale, shift, clamp),
        ConvPath::Perm => conv_perm(&l.perm[0], g, kernel, act, x, batch, scale, shift, clamp),
    }
}
