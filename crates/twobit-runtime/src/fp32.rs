//! fp32 GEMM through the `gemm` crate (what burn-flex uses), for kept-float layers and the
//! dequantized comparison path.

/// Row-major `c[m×n] = a[m×k] · b[k×n]`; `b_t` means `b` is given transposed (`[n×k]`).
/// `parallel` lets gemm use the rayon pool (use it when the caller is not parallel already).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    b_t: bool,
    c: &mut [f32],
    parallel: bool,
) {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and initialised values may be
    // overwritten through it.
    let c = unsafe { &mut *(c as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
    sgemm_uninit(m, n, k, a, b, b_t, c, parallel)
}

/// [`sgemm`] into possibly uninitialised memory: all of `c[..m*n]` is written (never read),
/// so an output buffer need not be zeroed first.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_uninit(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    b_t: bool,
    c: &mut [std::mem::MaybeUninit<f32>],
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
        c[..m * n].fill(std::mem::MaybeUninit::new(0.0));
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
    // SAFETY: the asserts above bound every index gemm touches with these strides; with
    // `read_dst` false gemm only writes `c`.
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
