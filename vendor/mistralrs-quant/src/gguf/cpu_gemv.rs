//! Multithreaded CPU matrix-vector products (`y = x · Wᵀ`) for LLM decoding, computed
//! directly from ggml-quantized weight blocks (Q4_0, Q4_1, Q8_0) or from plain f32 weights.
//!
//! Design notes:
//! * Decoding with f32 weights is memory-bound: reading 0.56–1.06 bytes/weight from the
//!   quantized blocks instead of 4 bytes/weight is the main win. The price is the
//!   per-block decode (nibble split + int->f32 convert), which on small/old cores makes
//!   the quantized kernels compute-bound, so they are kept lean and parallelized.
//! * Numerics: unlike llama.cpp we never quantize `x`. Every product is done in f32 on the
//!   exact dequantized weight value, so the result equals an f32 matmul with the
//!   dequantized weights up to summation order / rounding (≈1e-6 relative).
//! * Dispatch: AVX2+FMA+F16C kernels are compiled via `#[target_feature]` only (the crate
//!   is built without `-C target-cpu`), selected at runtime once, with a portable fallback.
//! * Parallelism: rayon (current pool) over chunks of output features. Each task writes
//!   a disjoint `&mut` chunk of an output-feature-major buffer, so there is no shared
//!   mutable state.
//!
//! Only depends on `std`, `rayon` and `half`; the file is self-contained (it can be
//! dropped into another crate as `mod qgemv;`).

// `%`-based checks are kept for older toolchains (`is_multiple_of` needs Rust 1.87);
// indexed loops over small const-size register arrays read clearer than iterator zips.
#![allow(
    unknown_lints,
    clippy::manual_is_multiple_of,
    clippy::needless_range_loop
)]
// The F32 entry points and `dequantize` serve the kernel tests (summarize's tests/kernels.rs
// includes this file); the engine itself only calls `gemv_quant`.
#![allow(dead_code)]

use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// Elements per ggml quantization block.
const QK: usize = 32;

/// Below this many weight bytes a call runs on the calling thread: waking rayon workers
/// costs a few µs, which is more than the whole product for tiny matrices.
const PAR_MIN_BYTES: usize = 48 * 1024;
/// Output features (rows of W) per rayon task: small enough for load balancing on a
/// busy machine, large enough to amortize task overhead.
const MIN_TASK_ROWS: usize = 16;
const MAX_TASK_ROWS: usize = 64;

/// Storage format of the weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    F32,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl WeightKind {
    /// Number of weights per block (1 for F32).
    pub const fn block_elems(self) -> usize {
        match self {
            WeightKind::F32 => 1,
            _ => QK,
        }
    }

    /// Bytes per block (ggml layout, packed, little-endian).
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightKind::F32 => 4,
            WeightKind::Q4_0 => 2 + QK / 2,
            WeightKind::Q4_1 => 2 + 2 + QK / 2,
            WeightKind::Q8_0 => 2 + QK,
        }
    }

    /// Bytes of one row of `k` weights, or an error if `k` is not a whole number of blocks.
    pub fn row_bytes(self, k: usize) -> Result<usize, String> {
        let be = self.block_elems();
        if k % be != 0 {
            return Err(format!(
                "{self:?}: k = {k} is not a multiple of the block size {be}"
            ));
        }
        (k / be)
            .checked_mul(self.block_bytes())
            .ok_or_else(|| format!("{self:?}: row size overflows for k = {k}"))
    }
}

/// Instruction-set path used by the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Portable Rust written so that LLVM auto-vectorizes it for the baseline target.
    Scalar,
    /// x86/x86_64 with AVX2 + FMA + F16C, enabled per function via `#[target_feature]`.
    Avx2Fma,
}

/// 0 = not probed yet, 1 = Scalar, 2 = Avx2Fma.
static DETECTED: AtomicU8 = AtomicU8::new(0);

impl Backend {
    /// Best backend for this CPU; probed once and cached (a racy first probe is harmless,
    /// every thread computes the same answer).
    pub fn detect() -> Backend {
        match DETECTED.load(Ordering::Relaxed) {
            1 => Backend::Scalar,
            2 => Backend::Avx2Fma,
            _ => {
                let b = if Backend::Avx2Fma.is_available() {
                    Backend::Avx2Fma
                } else {
                    Backend::Scalar
                };
                DETECTED.store(if b == Backend::Avx2Fma { 2 } else { 1 }, Ordering::Relaxed);
                b
            }
        }
    }

    /// Whether this backend can run on the current CPU.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            Backend::Avx2Fma => {
                #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
                {
                    is_x86_feature_detected!("avx2")
                        && is_x86_feature_detected!("fma")
                        && is_x86_feature_detected!("f16c")
                }
                #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
                {
                    false
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------

/// `out (rows × n, row-major) = x (rows × k, row-major) · Wᵀ` with W (n × k) given as raw
/// ggml bytes of `kind`. For `WeightKind::F32`, `w` must be 4-byte aligned little-endian
/// f32 data (prefer [`gemv_f32`]). Uses the best backend for this CPU.
pub fn gemv_quant(
    kind: WeightKind,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), String> {
    gemv_quant_with(Backend::detect(), kind, w, n, k, x, rows, out)
}

/// Like [`gemv_quant`] but with an explicit backend (errors if it is not available here).
#[allow(clippy::too_many_arguments)]
pub fn gemv_quant_with(
    backend: Backend,
    kind: WeightKind,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), String> {
    if kind == WeightKind::F32 {
        if cfg!(target_endian = "big") {
            return Err("F32 weight bytes are little-endian; use gemv_f32 on this target".into());
        }
        // SAFETY: every bit pattern is a valid f32, and align_to only yields the correctly
        // aligned middle part; a non-empty prefix means misaligned input, rejected below.
        let (pre, wf, _) = unsafe { w.align_to::<f32>() };
        if !pre.is_empty() {
            return Err("F32 weight bytes are not 4-byte aligned; use gemv_f32".into());
        }
        if w.len() % 4 != 0 {
            return Err(format!(
                "F32 weight byte length {} is not a multiple of 4",
                w.len()
            ));
        }
        return gemv_f32_with(backend, wf, n, k, x, rows, out);
    }
    if !backend.is_available() {
        return Err(format!("backend {backend:?} is not available on this CPU"));
    }
    let row_bytes = kind.row_bytes(k)?;
    check_shapes(w.len(), row_bytes, n, k, x.len(), rows, out.len())?;
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let nb = k / QK;
    // Q4_1 needs Σx per block (m · Σx term); it only depends on x, so compute it once per
    // call instead of once per output feature.
    let sx: Vec<f32> = if kind == WeightKind::Q4_1 {
        x.chunks_exact(QK).map(|b| b.iter().sum()).collect()
    } else {
        Vec::new()
    };
    let kern = quant_kernel(backend, kind);
    let ctx = QCtx {
        k,
        nb,
        rows,
        x,
        sx: &sx,
    };
    drive(n, rows, row_bytes, out, |j0, oc| {
        let cn = oc.len() / rows;
        kern(&w[j0 * row_bytes..(j0 + cn) * row_bytes], &ctx, oc);
    });
    Ok(())
}

/// `out (rows × n) = x (rows × k) · Wᵀ` for f32 weights W (n × k, row-major); any `k`.
pub fn gemv_f32(
    w: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), String> {
    gemv_f32_with(Backend::detect(), w, n, k, x, rows, out)
}

/// Like [`gemv_f32`] but with an explicit backend (errors if it is not available here).
pub fn gemv_f32_with(
    backend: Backend,
    w: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), String> {
    if !backend.is_available() {
        return Err(format!("backend {backend:?} is not available on this CPU"));
    }
    let row_bytes = k.checked_mul(4).ok_or("k overflows")?;
    check_shapes(
        w.len().saturating_mul(4),
        row_bytes,
        n,
        k,
        x.len(),
        rows,
        out.len(),
    )?;
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let kern: F32Kernel = match backend {
        Backend::Scalar => scalar::f32_rows,
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Backend::Avx2Fma => f32_rows_avx2,
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        Backend::Avx2Fma => unreachable!("is_available() is false off x86"),
    };
    drive(n, rows, row_bytes, out, |j0, oc| {
        let cn = oc.len() / rows;
        kern(&w[j0 * k..(j0 + cn) * k], k, x, rows, oc);
    });
    Ok(())
}

/// Dequantizes W (n × k) to f32 with exactly the per-element formula the kernels use
/// (`d*q + m`, `d*(q-8)`, `d*q`, all in f32). Handy for references and for fallbacks.
pub fn dequantize(kind: WeightKind, w: &[u8], n: usize, k: usize) -> Result<Vec<f32>, String> {
    let row_bytes = kind.row_bytes(k)?;
    let total = n.checked_mul(row_bytes).ok_or("size overflow")?;
    if w.len() != total {
        return Err(format!(
            "{kind:?}: expected {total} weight bytes for {n}x{k}, got {}",
            w.len()
        ));
    }
    let bb = kind.block_bytes();
    let mut v = Vec::with_capacity(n * k);
    match kind {
        WeightKind::F32 => v.extend(
            w.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        _ => {
            for blk in w.chunks_exact(bb) {
                let mut tmp = [0f32; QK];
                match kind {
                    WeightKind::Q4_0 => {
                        let d = f16_le(blk, 0);
                        for j in 0..QK {
                            tmp[j] = d * (nibble(&blk[2..], j) as f32 - 8.0);
                        }
                    }
                    WeightKind::Q4_1 => {
                        let (d, m) = (f16_le(blk, 0), f16_le(blk, 2));
                        for j in 0..QK {
                            tmp[j] = d * nibble(&blk[4..], j) as f32 + m;
                        }
                    }
                    WeightKind::Q8_0 => {
                        let d = f16_le(blk, 0);
                        for j in 0..QK {
                            tmp[j] = d * (blk[2 + j] as i8) as f32;
                        }
                    }
                    WeightKind::F32 => unreachable!(),
                }
                v.extend_from_slice(&tmp);
            }
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------------------

/// ggml nibble order: element j < 16 is the low nibble of qs[j], element j >= 16 the high
/// nibble of qs[j-16] (NOT interleaved lo/hi per byte).
#[inline(always)]
fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < QK / 2 {
        qs[j] & 0x0F
    } else {
        qs[j - QK / 2] >> 4
    }
}

#[inline(always)]
fn f16_le(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

fn check_shapes(
    w_bytes: usize,
    row_bytes: usize,
    n: usize,
    k: usize,
    x_len: usize,
    rows: usize,
    out_len: usize,
) -> Result<(), String> {
    let need_w = n.checked_mul(row_bytes).ok_or("n*k overflows")?;
    if w_bytes != need_w {
        return Err(format!(
            "weights: expected {need_w} bytes for n={n}, k={k}, got {w_bytes}"
        ));
    }
    let need_x = rows.checked_mul(k).ok_or("rows*k overflows")?;
    if x_len != need_x {
        return Err(format!(
            "x: expected rows*k = {rows}*{k} = {need_x} values, got {x_len}"
        ));
    }
    let need_out = rows.checked_mul(n).ok_or("rows*n overflows")?;
    if out_len != need_out {
        return Err(format!(
            "out: expected rows*n = {rows}*{n} = {need_out} values, got {out_len}"
        ));
    }
    Ok(())
}

/// Read-only inputs shared by all tasks of one quantized call.
struct QCtx<'a> {
    k: usize,
    nb: usize,
    rows: usize,
    /// rows × k
    x: &'a [f32],
    /// rows × nb block sums of x (Q4_1 only, else empty)
    sx: &'a [f32],
}

/// Computes a chunk of output features: `w` holds `cn` whole weight rows, `out` is
/// `cn × rows` (output-feature-major).
type QuantKernel = fn(w: &[u8], c: &QCtx, out: &mut [f32]);
type F32Kernel = fn(w: &[f32], k: usize, x: &[f32], rows: usize, out: &mut [f32]);

fn quant_kernel(backend: Backend, kind: WeightKind) -> QuantKernel {
    match backend {
        Backend::Scalar => match kind {
            WeightKind::Q4_0 => scalar::q4_0_rows,
            WeightKind::Q4_1 => scalar::q4_1_rows,
            WeightKind::Q8_0 => scalar::q8_0_rows,
            WeightKind::F32 => unreachable!("F32 is routed to gemv_f32_with"),
        },
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Backend::Avx2Fma => match kind {
            WeightKind::Q4_0 => q4_0_rows_avx2,
            WeightKind::Q4_1 => q4_1_rows_avx2,
            WeightKind::Q8_0 => q8_0_rows_avx2,
            WeightKind::F32 => unreachable!("F32 is routed to gemv_f32_with"),
        },
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        Backend::Avx2Fma => unreachable!("is_available() is false off x86"),
    }
}

/// Splits the n output features into chunks and runs `kernel(first_feature, out_chunk)`
/// on each, in parallel when worthwhile. Kernels write an output-feature-major buffer
/// (`n × rows`) so every chunk is one contiguous disjoint `&mut` slice; for rows > 1 it
/// is transposed into `out` (rows × n) at the end (n*rows floats, negligible).
fn drive<F>(n: usize, rows: usize, row_bytes: usize, out: &mut [f32], kernel: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let per = rows_per_task(n, row_bytes);
    let run = |buf: &mut [f32]| {
        if per >= n {
            kernel(0, buf);
        } else {
            buf.par_chunks_mut(per * rows)
                .enumerate()
                .for_each(|(i, c)| kernel(i * per, c));
        }
    };
    if rows == 1 {
        run(out);
    } else {
        let mut t = vec![0f32; n * rows];
        run(&mut t);
        for (j, tj) in t.chunks_exact(rows).enumerate() {
            for (r, &v) in tj.iter().enumerate() {
                out[r * n + j] = v;
            }
        }
    }
}

fn rows_per_task(n: usize, row_bytes: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || n.saturating_mul(row_bytes) < PAR_MIN_BYTES {
        return n.max(1);
    }
    // ~8 tasks per thread lets work stealing even out a loaded machine.
    n.div_ceil(threads * 8).clamp(MIN_TASK_ROWS, MAX_TASK_ROWS)
}

// ---------------------------------------------------------------------------------------
// Portable fallback. Written with fixed 8-lane arrays so LLVM vectorizes it with whatever
// the baseline target has (SSE2 on x86_64, NEON on aarch64); f32 summation order is
// lane-wise like the AVX2 path.
// ---------------------------------------------------------------------------------------
mod scalar {
    use super::{f16_le, QCtx, QK};

    #[inline(always)]
    fn hsum8(a: [f32; 8]) -> f32 {
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }

    /// Σ_j q_j x_j for one block, as 8 lane partial sums; `q` are the already-decoded
    /// integer values as f32 (exact).
    #[inline(always)]
    fn block_dot(q: &[f32; QK], xb: &[f32]) -> [f32; 8] {
        let mut bs = [0f32; 8];
        for (qc, xc) in q.chunks_exact(8).zip(xb.chunks_exact(8)) {
            for l in 0..8 {
                bs[l] += qc[l] * xc[l];
            }
        }
        bs
    }

    /// Generic driver: `decode(block) -> (d, m)` and fills the q values; the weight is
    /// d*q + m. `HAS_M` (Q4_1) adds the m·Σx term from the precomputed block sums.
    #[inline(always)]
    fn rows_generic<const BB: usize, const HAS_M: bool>(
        w: &[u8],
        c: &QCtx,
        out: &mut [f32],
        decode: impl Fn(&[u8], &mut [f32; QK]) -> (f32, f32),
    ) {
        let (k, nb, rows) = (c.k, c.nb, c.rows);
        let mut q = [0f32; QK];
        for (wrow, o) in w.chunks_exact(nb * BB).zip(out.chunks_exact_mut(rows)) {
            for (r, or) in o.iter_mut().enumerate() {
                let xr = &c.x[r * k..(r + 1) * k];
                let mut acc = [0f32; 8];
                let mut macc = 0f32;
                for (b, (blk, xb)) in wrow.chunks_exact(BB).zip(xr.chunks_exact(QK)).enumerate() {
                    let (d, m) = decode(blk, &mut q);
                    let bs = block_dot(&q, xb);
                    for l in 0..8 {
                        acc[l] += d * bs[l];
                    }
                    if HAS_M {
                        macc += m * c.sx[r * nb + b];
                    }
                }
                *or = hsum8(acc) + macc;
            }
        }
    }

    pub(super) fn q4_0_rows(w: &[u8], c: &QCtx, out: &mut [f32]) {
        rows_generic::<18, false>(w, c, out, |blk, q| {
            for j in 0..QK / 2 {
                q[j] = (blk[2 + j] & 0x0F) as f32 - 8.0;
                q[j + QK / 2] = (blk[2 + j] >> 4) as f32 - 8.0;
            }
            (f16_le(blk, 0), 0.0)
        })
    }

    pub(super) fn q4_1_rows(w: &[u8], c: &QCtx, out: &mut [f32]) {
        rows_generic::<20, true>(w, c, out, |blk, q| {
            for j in 0..QK / 2 {
                q[j] = (blk[4 + j] & 0x0F) as f32;
                q[j + QK / 2] = (blk[4 + j] >> 4) as f32;
            }
            (f16_le(blk, 0), f16_le(blk, 2))
        })
    }

    pub(super) fn q8_0_rows(w: &[u8], c: &QCtx, out: &mut [f32]) {
        rows_generic::<34, false>(w, c, out, |blk, q| {
            for j in 0..QK {
                q[j] = (blk[2 + j] as i8) as f32;
            }
            (f16_le(blk, 0), 0.0)
        })
    }

    pub(super) fn f32_rows(w: &[f32], k: usize, x: &[f32], rows: usize, out: &mut [f32]) {
        for (wrow, o) in w.chunks_exact(k).zip(out.chunks_exact_mut(rows)) {
            for (r, or) in o.iter_mut().enumerate() {
                let xr = &x[r * k..(r + 1) * k];
                let mut acc = [0f32; 8];
                let (wc, xc) = (wrow.chunks_exact(8), xr.chunks_exact(8));
                let (wt, xt) = (wc.remainder(), xc.remainder());
                for (a, b) in wc.zip(xc) {
                    for l in 0..8 {
                        acc[l] += a[l] * b[l];
                    }
                }
                let mut s = hsum8(acc);
                for (a, b) in wt.iter().zip(xt) {
                    s += a * b;
                }
                *or = s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// AVX2 + FMA + F16C kernels.
// ---------------------------------------------------------------------------------------

// Safe wrappers so the kernels fit the common fn-pointer types. They are private and only
// reachable through `quant_kernel`/`gemv_f32_with` with `Backend::Avx2Fma`, which the
// public entry points hand out only after `Backend::is_available()` returned true.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn q4_0_rows_avx2(w: &[u8], c: &QCtx, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::quant_rows::<{ avx2::Q4_0 }>(w, c, out) }
}
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn q4_1_rows_avx2(w: &[u8], c: &QCtx, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::quant_rows::<{ avx2::Q4_1 }>(w, c, out) }
}
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn q8_0_rows_avx2(w: &[u8], c: &QCtx, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::quant_rows::<{ avx2::Q8_0 }>(w, c, out) }
}
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn f32_rows_avx2(w: &[f32], k: usize, x: &[f32], rows: usize, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::f32_rows(w, k, x, rows, out) }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod avx2 {
    //! Written edition-agnostic: inside `unsafe fn`s, operations that are actually unsafe
    //! (raw-pointer arithmetic/loads, calls to other `unsafe fn`s) sit in explicit
    //! `unsafe {}` blocks, so the module is warning-free under both the 2021 and the
    //! 2024 (`unsafe_op_in_unsafe_fn`) editions. Arithmetic intrinsics are safe to call
    //! inside functions that enable their target features.
    use super::{QCtx, QK};
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// x rows handled together per decoded weight block (bounded by the 16 ymm registers).
    const MAX_XROWS_PER_PASS: usize = 4;

    // Kind tags as const generics so each kind gets its own fully specialised loop.
    pub const Q4_0: u8 = 0;
    pub const Q4_1: u8 = 1;
    pub const Q8_0: u8 = 2;

    const fn block_bytes(kind: u8) -> usize {
        match kind {
            Q4_0 => 18,
            Q4_1 => 20,
            _ => 34,
        }
    }

    /// Horizontal sum of 8 lanes. Safety: CPU must have avx2+fma.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Loads 8 bytes (unaligned) into the low half of an xmm register.
    /// Safety: `p..p+8` must be readable; CPU must have avx2.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8(p: *const u8) -> __m128i {
        // SAFETY: caller guarantees 8 readable bytes; movq has no alignment requirement.
        unsafe { _mm_loadl_epi64(p.cast()) }
    }

    /// Decodes one block at `blk` into its integer values as 4×8 f32 (elements 0..32 in
    /// order) plus (d, m). Integers up to ±128 convert to f32 exactly.
    ///
    /// Nibble trick: zero-extending 8 bytes to 8 i32 lanes (one shuffle) gives, per lane,
    /// a byte whose low nibble is element j and high nibble element j+16; `& 15` and
    /// `>> 4` on the 32-bit lanes then split them without further shuffles (2 shuffles
    /// per block instead of 6 for a byte-level unpack).
    ///
    /// Safety: `blk` must point to `block_bytes(KIND)` readable bytes; CPU must have
    /// avx2+fma+f16c.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode<const KIND: u8>(blk: *const u8) -> ([__m256; 4], __m256, f32) {
        // SAFETY: all reads below stay within the block_bytes(KIND) bytes at `blk`
        // (header 2 or 4 bytes, then 16 or 32 quant bytes), which the caller guarantees.
        let (dm_bits, qa, qb, qc, qd) = unsafe {
            if KIND == Q8_0 {
                let h = u16::from_le_bytes(blk.cast::<[u8; 2]>().read_unaligned()) as i32;
                let qs = blk.add(2);
                (
                    h,
                    load8(qs),
                    load8(qs.add(8)),
                    load8(qs.add(16)),
                    load8(qs.add(24)),
                )
            } else {
                let (h, qs) = if KIND == Q4_1 {
                    (
                        i32::from_le_bytes(blk.cast::<[u8; 4]>().read_unaligned()),
                        blk.add(4),
                    )
                } else {
                    (
                        u16::from_le_bytes(blk.cast::<[u8; 2]>().read_unaligned()) as i32,
                        blk.add(2),
                    )
                };
                let z = _mm_setzero_si128();
                (h, load8(qs), load8(qs.add(8)), z, z)
            }
        };
        // f16 scale (and min for Q4_1, upper half of the same u32): F16C converts exactly
        // like half::f16::to_f32 (subnormals included), in one instruction.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dm_bits));
        let d = _mm256_broadcastss_ps(dm);
        let m = if KIND == Q4_1 {
            _mm_cvtss_f32(_mm_movehdup_ps(dm))
        } else {
            0.0
        };
        let q = if KIND == Q8_0 {
            // Sign-extend 8 i8 per vector (LLVM folds the load into vpmovsxbd).
            [
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qa)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qb)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qc)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qd)),
            ]
        } else {
            let a = _mm256_cvtepu8_epi32(qa); // bytes 0..8
            let b = _mm256_cvtepu8_epi32(qb); // bytes 8..16
            let mask = _mm256_set1_epi32(0x0F);
            let mut v = [
                _mm256_and_si256(a, mask), // elements 0..8
                _mm256_and_si256(b, mask), // elements 8..16
                _mm256_srli_epi32::<4>(a), // elements 16..24
                _mm256_srli_epi32::<4>(b), // elements 24..32
            ];
            if KIND == Q4_0 {
                // q - 8 in integers: each weight is d*(q-8) exactly as dequantized, instead
                // of d*Σqx - 8d*Σx, which would cancel and lose precision.
                let eight = _mm256_set1_epi32(8);
                for e in v.iter_mut() {
                    *e = _mm256_sub_epi32(*e, eight);
                }
            }
            [
                _mm256_cvtepi32_ps(v[0]),
                _mm256_cvtepi32_ps(v[1]),
                _mm256_cvtepi32_ps(v[2]),
                _mm256_cvtepi32_ps(v[3]),
            ]
        };
        (q, d, m)
    }

    /// Safety: CPU must have avx2+fma+f16c. All other preconditions are checked here.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn quant_rows<const KIND: u8>(w: &[u8], c: &QCtx, out: &mut [f32]) {
        let rb = c.nb * block_bytes(KIND);
        // These checks establish `row_pass`'s contract for every call below.
        assert!(c.k == c.nb * QK && c.x.len() == c.rows * c.k);
        assert!(KIND != Q4_1 || c.sx.len() == c.rows * c.nb);
        assert!(rb > 0 && w.len() % rb == 0 && out.len() == (w.len() / rb) * c.rows);
        for (wrow, o) in w.chunks_exact(rb).zip(out.chunks_exact_mut(c.rows)) {
            // x rows in groups of ≤4 sharing one decode of each weight block.
            let mut r0 = 0;
            while r0 < c.rows {
                let g = (c.rows - r0).min(MAX_XROWS_PER_PASS);
                // SAFETY: features are guaranteed by our caller; wrow is one whole weight
                // row, r0 + g <= rows, and the asserts above give the length invariants.
                unsafe {
                    match g {
                        4 => row_pass::<KIND, 4>(wrow, c, r0, o),
                        3 => row_pass::<KIND, 3>(wrow, c, r0, o),
                        2 => row_pass::<KIND, 2>(wrow, c, r0, o),
                        _ => row_pass::<KIND, 1>(wrow, c, r0, o),
                    }
                }
                r0 += g;
            }
        }
    }

    /// One weight row against x rows r0..r0+R.
    /// Safety: avx2+fma+f16c; `wrow.len() == nb * block_bytes(KIND)`, `r0 + R <= rows`,
    /// `o.len() == rows`, and the length invariants asserted in `quant_rows`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_pass<const KIND: u8, const R: usize>(
        wrow: &[u8],
        c: &QCtx,
        r0: usize,
        o: &mut [f32],
    ) {
        debug_assert!(
            r0 + R <= c.rows && o.len() == c.rows && wrow.len() == c.nb * block_bytes(KIND)
        );
        let (k, nb) = (c.k, c.nb);
        let wp = wrow.as_ptr();
        // wrapping_add: plain address computation, in bounds anyway (r0 < rows, so
        // r0*k <= x.len(); sx may be empty for non-Q4_1 kinds and is then never read).
        let xp = c.x.as_ptr().wrapping_add(r0 * k);
        let sp = c.sx.as_ptr().wrapping_add(r0 * nb);
        // One accumulator set, blocks in order. (Splitting even/odd blocks into two sets
        // to shorten the loop-carried FMA chain measured no faster for R = 1 here and
        // spills registers for R = 4; the block order must not depend on R, so that a
        // row's result is bit-identical whether it is decoded alone or in a batch.)
        let mut acc = [_mm256_setzero_ps(); R];
        let mut macc = [0f32; R];
        for b in 0..nb {
            // SAFETY: b < nb, so block b lies inside wrow; x rows r0..r0+R are inside
            // c.x (r0 + R <= rows) with k = nb*32 floats each; for Q4_1, sx has rows*nb
            // sums so rows r0..r0+R (stride nb) are readable. Features: our contract.
            unsafe { block::<KIND, R>(wp, xp, sp, k, nb, b, &mut acc, &mut macc) };
        }
        for r in 0..R {
            // SAFETY: avx2+fma are guaranteed by our contract.
            o[r0 + r] = unsafe { hsum(acc[r]) } + macc[r];
        }
    }

    /// Accumulates weight block `b` of the row at `wp` against x rows at `xp`
    /// (stride k) into `acc`/`macc`.
    /// Safety: avx2+fma+f16c; b < nb; block b at `wp` is readable; x rows 0..R at `xp`
    /// have k = nb*32 readable floats each; for Q4_1, `sp` points at R rows (stride nb)
    /// of nb block sums.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const KIND: u8, const R: usize>(
        wp: *const u8,
        xp: *const f32,
        sp: *const f32,
        k: usize,
        nb: usize,
        b: usize,
        acc: &mut [__m256; R],
        macc: &mut [f32; R],
    ) {
        // SAFETY: the block is readable per the contract; features as well.
        let (q, d, m) = unsafe { decode::<KIND>(wp.add(b * block_bytes(KIND))) };
        for r in 0..R {
            // SAFETY: b*32 + 32 <= k, so the 32 floats read lie inside x row r; for Q4_1,
            // r*nb + b indexes the readable sums of row r.
            let (x0, x1, x2, x3, sxb) = unsafe {
                let xb = xp.add(r * k + b * QK);
                let sxb = if KIND == Q4_1 {
                    *sp.add(r * nb + b)
                } else {
                    0.0
                };
                (
                    _mm256_loadu_ps(xb),
                    _mm256_loadu_ps(xb.add(8)),
                    _mm256_loadu_ps(xb.add(16)),
                    _mm256_loadu_ps(xb.add(24)),
                    sxb,
                )
            };
            // Σ q_j x_j of this block in 8 lanes, then scaled by d once per block.
            let mut bs = _mm256_mul_ps(q[0], x0);
            bs = _mm256_fmadd_ps(q[1], x1, bs);
            bs = _mm256_fmadd_ps(q[2], x2, bs);
            bs = _mm256_fmadd_ps(q[3], x3, bs);
            acc[r] = _mm256_fmadd_ps(d, bs, acc[r]);
            if KIND == Q4_1 {
                // Σ (d q + m) x = d Σ q x + m Σ x, with Σx per block precomputed per call.
                macc[r] += m * sxb;
            }
        }
    }

    /// Safety: CPU must have avx2+fma. Length preconditions are checked here.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_rows(w: &[f32], k: usize, x: &[f32], rows: usize, out: &mut [f32]) {
        assert!(
            k > 0 && x.len() == rows * k && w.len() % k == 0 && out.len() == (w.len() / k) * rows
        );
        for (wrow, o) in w.chunks_exact(k).zip(out.chunks_exact_mut(rows)) {
            let mut r0 = 0;
            while r0 < rows {
                let g = (rows - r0).min(MAX_XROWS_PER_PASS);
                // Unroll U vectors per x row: 4 independent FMA chains hide FMA latency for
                // a single row; with more rows, fewer per row to stay within 16 registers.
                // SAFETY: features guaranteed by our caller; wrow.len() == k,
                // r0 + g <= rows, x.len() == rows*k and o.len() == rows (asserted above).
                unsafe {
                    match g {
                        4 => f32_pass::<4, 2>(wrow, x, k, r0, o),
                        3 => f32_pass::<3, 2>(wrow, x, k, r0, o),
                        2 => f32_pass::<2, 4>(wrow, x, k, r0, o),
                        _ => f32_pass::<1, 4>(wrow, x, k, r0, o),
                    }
                }
                r0 += g;
            }
        }
    }

    /// Safety: avx2+fma; `wrow.len() == k`, `(r0+R)*k <= x.len()`, `r0+R <= o.len()`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn f32_pass<const R: usize, const U: usize>(
        wrow: &[f32],
        x: &[f32],
        k: usize,
        r0: usize,
        o: &mut [f32],
    ) {
        debug_assert!(wrow.len() == k && (r0 + R) * k <= x.len() && r0 + R <= o.len());
        let wp = wrow.as_ptr();
        let xp = x.as_ptr().wrapping_add(r0 * k);
        let mut acc = [[_mm256_setzero_ps(); U]; R];
        let mut i = 0;
        while i + 8 * U <= k {
            for u in 0..U {
                // SAFETY: i + 8u + 8 <= k: the 8 floats lie inside the weight row and
                // inside x row r0 + r (r < R, (r0+R)*k <= x.len()).
                let wv = unsafe { _mm256_loadu_ps(wp.add(i + 8 * u)) };
                for r in 0..R {
                    // SAFETY: same bounds as the weight load, in x row r0 + r.
                    let xv = unsafe { _mm256_loadu_ps(xp.add(r * k + i + 8 * u)) };
                    acc[r][u] = _mm256_fmadd_ps(wv, xv, acc[r][u]);
                }
            }
            i += 8 * U;
        }
        while i + 8 <= k {
            // SAFETY: as above with i + 8 <= k.
            let wv = unsafe { _mm256_loadu_ps(wp.add(i)) };
            for r in 0..R {
                // SAFETY: same bounds as the weight load, in x row r0 + r.
                let xv = unsafe { _mm256_loadu_ps(xp.add(r * k + i)) };
                acc[r][0] = _mm256_fmadd_ps(wv, xv, acc[r][0]);
            }
            i += 8;
        }
        for r in 0..R {
            let mut v = acc[r][0];
            for u in 1..U {
                v = _mm256_add_ps(v, acc[r][u]);
            }
            // SAFETY: avx2+fma are guaranteed by our contract.
            let mut s = unsafe { hsum(v) };
            // Scalar tail (k % 8 elements), with ordinary bounds-checked indexing.
            for t in i..k {
                s += wrow[t] * x[(r0 + r) * k + t];
            }
            o[r0 + r] = s;
        }
    }
}
