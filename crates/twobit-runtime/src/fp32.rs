//! fp32 GEMM through the `gemm` crate (what burn-flex uses), for kept-float layers and the
//! dequantized comparison path.

/// An fp32 GEMM output element: `f32`, or `MaybeUninit<f32>` for a buffer that has not been
/// written yet (the GEMM only writes its output, so it need not be zeroed first).
pub trait Out: sealed::Sealed {}
impl Out for f32 {}
impl Out for std::mem::MaybeUninit<f32> {}

mod sealed {
    /// Only `f32` and `MaybeUninit<f32>` (same layout) are GEMM outputs.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for std::mem::MaybeUninit<f32> {}
}

/// Row-major `c[m×n] = a[m×k] · b[k×n]`; `b_t` means `b` is given transposed (`[n×k]`).
/// `parallel` lets gemm use the rayon pool (use it when the caller is not parallel already).
/// All of `c[..m*n]` is written, never read.
#[allow(clippy::too_many_arguments)]
pub fn sgemm<C: Out>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    b_t: bool,
    c: &mut [C],
    parallel: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: `C` is `f32` or `MaybeUninit<f32>` (sealed), and all-zero bytes are 0.0.
        unsafe { std::ptr::write_bytes(c.as_mut_ptr() as *mut f32, 0, m * n) };
        return;
    }
    let (rhs_cs, rhs_rs) = if b_t {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    let par = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every index gemm touches with these strides; `C` has
    // `f32`'s layout (sealed); with `read_dst` false gemm only writes `c`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr() as *mut f32,
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
