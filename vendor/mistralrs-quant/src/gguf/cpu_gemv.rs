//! Multithreaded CPU matrix-vector products (`y = x · Wᵀ`) for LLM decoding, computed
//! directly from ggml-quantized weight blocks (Q4_0, Q4_1, Q8_0) or from plain f32 weights.
//!
//! Design notes:
//! * Decoding with f32 weights is memory-bound: reading 0.56–1.06 bytes/weight from the
//!   quantized blocks instead of 4 bytes/weight is the main win. The price is the
//!   per-block decode (nibble split + int->f32 convert), which on small/old cores makes
//!   the quantized kernels compute-bound, so they are kept lean and parallelized.
//! * Numerics, two families of entry points:
//!   - [`gemv_quant`] never quantizes `x`. Every product is done in f32 on the exact
//!     dequantized weight value, so the result equals an f32 matmul with the dequantized
//!     weights up to summation order / rounding (≈1e-6 relative).
//!   - [`gemv_quant_q8`] is llama.cpp's scheme: `x` is quantized once per call to 8-bit
//!     blocks (Q8_0 / Q8_1) and each block pair is dotted with integer multiply-adds
//!     (`maddubs` + `madd`), one f32 FMA per block. Cheaper per block (no int->f32
//!     convert per weight), at the cost of ≈1e-3 relative error from quantizing `x`.
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
// includes this file); the engine itself calls `gemv_quant_q8` and `gemv_quant`.
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

/// `out (rows × n, row-major) = x (rows × k, row-major) · Wᵀ`, llama.cpp style: each x
/// row is first quantized (once per call) to 8 bits per 32-element block, and every
/// weight block is then dotted with integer multiply-adds:
///
/// * Q4_1 weights · Q8_1 activations: `d_w·d_x · Σ q4_j q8_j + m_w · s_x`
/// * Q4_0 weights · Q8_0 activations: `d_w·d_x · Σ (q4_j − 8) q8_j`
/// * Q8_0 weights · Q8_0 activations: `d_w·d_x · Σ q8w_j q8x_j`
///
/// The activation quantization follows ggml's `quantize_row_q8_0_ref` /
/// `quantize_row_q8_1_ref`: `d = amax/127`, `q_j = roundf(x_j · (1/d))` (half away from
/// zero; `q = 0` when `d = 0`), `s = d · Σ q_j`. Unlike ggml, `d` and `s` are kept as f32
/// instead of being rounded to f16 (a ≤ 2⁻¹¹ relative difference per block, negligible
/// next to the 8-bit quantization of x itself).
///
/// Accuracy: the result is *not* the exact product with the dequantized weights (that is
/// [`gemv_quant`]); quantizing x costs about 1e-3 of Σ|w·x|, like llama.cpp. x must be
/// finite (non-finite values give unspecified, memory-safe results). For
/// `WeightKind::F32` there is no integer path: the call is forwarded to [`gemv_quant`].
/// Results do not depend on the thread count or on how many rows are batched together.
pub fn gemv_quant_q8(
    kind: WeightKind,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), String> {
    gemv_quant_q8_with(Backend::detect(), kind, w, n, k, x, rows, out)
}

/// Like [`gemv_quant_q8`] but with an explicit backend (errors if it is not available
/// here). The backends quantize x bit-identically; the dot products differ only in f32
/// summation order.
#[allow(clippy::too_many_arguments)]
pub fn gemv_quant_q8_with(
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
        return gemv_quant_with(backend, kind, w, n, k, x, rows, out);
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
    let xq = quantize_q8(backend, x);
    let kern = q8_kernel(backend, kind);
    let ctx = Q8Ctx { nb, rows, xq: &xq };
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

/// One 32-element block of a quantized activation row: ggml's `block_q8_1` (and, without
/// `s`, `block_q8_0`), with f32 instead of f16 `d` and `s`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct BlockQ8 {
    /// Scale: x_j ≈ d · qs[j].
    d: f32,
    /// d · Σ qs[j] (the Q8_1 sum); only read by the Q4_1 kernels.
    s: f32,
    /// Quants in element order, all within [-127, 127].
    qs: [i8; QK],
}

/// Read-only inputs shared by all tasks of one integer-dot call.
struct Q8Ctx<'a> {
    nb: usize,
    rows: usize,
    /// rows × nb quantized x blocks
    xq: &'a [BlockQ8],
}

/// Like [`QuantKernel`], for the integer-dot path.
type Q8Kernel = fn(w: &[u8], c: &Q8Ctx, out: &mut [f32]);

fn q8_kernel(backend: Backend, kind: WeightKind) -> Q8Kernel {
    match backend {
        Backend::Scalar => match kind {
            WeightKind::Q4_0 => scalar::q4_0_q8_rows,
            WeightKind::Q4_1 => scalar::q4_1_q8_rows,
            WeightKind::Q8_0 => scalar::q8_0_q8_rows,
            WeightKind::F32 => unreachable!("F32 is routed to gemv_quant_with"),
        },
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Backend::Avx2Fma => match kind {
            WeightKind::Q4_0 => q4_0_q8_rows_avx2,
            WeightKind::Q4_1 => q4_1_q8_rows_avx2,
            WeightKind::Q8_0 => q8_0_q8_rows_avx2,
            WeightKind::F32 => unreachable!("F32 is routed to gemv_quant_with"),
        },
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        Backend::Avx2Fma => unreachable!("is_available() is false off x86"),
    }
}

/// Quantizes x (a whole number of 32-element blocks) to Q8 blocks; both backends give
/// bit-identical blocks.
fn quantize_q8(backend: Backend, x: &[f32]) -> Vec<BlockQ8> {
    let mut xq = vec![
        BlockQ8 {
            d: 0.0,
            s: 0.0,
            qs: [0; QK]
        };
        x.len() / QK
    ];
    match backend {
        Backend::Scalar => {
            for (xb, yb) in x.chunks_exact(QK).zip(xq.iter_mut()) {
                quantize_block_q8(xb.try_into().expect("32-element chunk"), yb);
            }
        }
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Backend::Avx2Fma => {
            // SAFETY: the entry points reach this with `Backend::Avx2Fma` only after
            // `is_available()` confirmed avx2, fma and f16c at runtime.
            unsafe { avx2::quantize_q8(x, &mut xq) }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        Backend::Avx2Fma => unreachable!("is_available() is false off x86"),
    }
    xq
}

/// ggml `quantize_row_q8_1_ref` for one block (f32 `d` and `s`).
fn quantize_block_q8(xb: &[f32; QK], y: &mut BlockQ8) {
    // f32::max returns the non-NaN operand, so NaNs are ignored (as in the AVX2 path).
    let amax = xb.iter().fold(0f32, |a, &v| v.abs().max(a));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in y.qs.iter_mut().zip(xb) {
        *q = round_q8(v * id);
        sum += *q as i32;
    }
    y.d = d;
    y.s = sum as f32 * d;
}

/// `roundf(v)` (half away from zero) as i8, after clamping to [-127, 127] and mapping NaN
/// to 0. Neither binds for finite x with a normal `d` (|x·(1/d)| ≤ 127·(1 + 3ε)); they
/// only keep pathological inputs (subnormal `d`, whose 1/d is inf: 0·inf = NaN) in range
/// and away from -128, which the sign trick of the Q8_0 kernels could not negate.
/// Written without libm (`roundf` is a libcall on baseline x86_64): truncation and the
/// fractional part are exact for |v| ≤ 127.
#[inline(always)]
fn round_q8(v: f32) -> i8 {
    let v = if v.is_nan() {
        0.0
    } else {
        v.clamp(-127.0, 127.0)
    };
    let t = v as i32;
    let frac = v - t as f32;
    let r = if frac.abs() >= 0.5 {
        t + if v < 0.0 { -1 } else { 1 }
    } else {
        t
    };
    r as i8
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
    use super::{f16_le, Q8Ctx, QCtx, QK};

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

    /// Exact integer dot product of one block (|Σ| ≤ 32·128·127 < 2²⁴, so the later
    /// conversion to f32 is exact too).
    #[inline(always)]
    fn idot(a: &[i8; QK], b: &[i8; QK]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&a, &b)| a as i16 as i32 * b as i16 as i32)
            .sum()
    }

    /// Integer-dot driver: `decode(block)` fills the weight quants as i8 and returns
    /// (d, m); a block contributes `(d·d_x)·Σ q·q_x` (+ `m·s_x` when `HAS_M`, Q4_1).
    #[inline(always)]
    fn q8_rows_generic<const BB: usize, const HAS_M: bool>(
        w: &[u8],
        c: &Q8Ctx,
        out: &mut [f32],
        decode: impl Fn(&[u8], &mut [i8; QK]) -> (f32, f32),
    ) {
        let (nb, rows) = (c.nb, c.rows);
        let mut q = [0i8; QK];
        for (wrow, o) in w.chunks_exact(nb * BB).zip(out.chunks_exact_mut(rows)) {
            for (r, or) in o.iter_mut().enumerate() {
                let mut acc = 0f32;
                let mut macc = 0f32;
                for (blk, xb) in wrow.chunks_exact(BB).zip(&c.xq[r * nb..(r + 1) * nb]) {
                    let (d, m) = decode(blk, &mut q);
                    acc += (d * xb.d) * idot(&q, &xb.qs) as f32;
                    if HAS_M {
                        macc += m * xb.s;
                    }
                }
                *or = acc + macc;
            }
        }
    }

    pub(super) fn q4_0_q8_rows(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
        q8_rows_generic::<18, false>(w, c, out, |blk, q| {
            for j in 0..QK / 2 {
                q[j] = (blk[2 + j] & 0x0F) as i8 - 8;
                q[j + QK / 2] = (blk[2 + j] >> 4) as i8 - 8;
            }
            (f16_le(blk, 0), 0.0)
        })
    }

    pub(super) fn q4_1_q8_rows(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
        q8_rows_generic::<20, true>(w, c, out, |blk, q| {
            for j in 0..QK / 2 {
                q[j] = (blk[4 + j] & 0x0F) as i8;
                q[j + QK / 2] = (blk[4 + j] >> 4) as i8;
            }
            (f16_le(blk, 0), f16_le(blk, 2))
        })
    }

    pub(super) fn q8_0_q8_rows(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
        q8_rows_generic::<34, false>(w, c, out, |blk, q| {
            for j in 0..QK {
                q[j] = blk[2 + j] as i8;
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
// reachable through `quant_kernel`/`q8_kernel`/`gemv_f32_with` with `Backend::Avx2Fma`,
// which the public entry points hand out only after `Backend::is_available()` returned
// true.
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
fn q4_0_q8_rows_avx2(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::q8_rows::<{ avx2::Q4_0 }>(w, c, out) }
}
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn q4_1_q8_rows_avx2(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::q8_rows::<{ avx2::Q4_1 }>(w, c, out) }
}
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn q8_0_q8_rows_avx2(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
    // SAFETY: only called after runtime detection of avx2, fma and f16c (see above).
    unsafe { avx2::q8_rows::<{ avx2::Q8_0 }>(w, c, out) }
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
    use super::{BlockQ8, Q8Ctx, QCtx, QK};
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

    // ---- Integer-dot path: x quantized to Q8 blocks (llama.cpp's scheme) ----------------

    /// ggml `quantize_row_q8_1_ref` over whole blocks, vectorized. Bit-identical to
    /// `super::quantize_block_q8`: the same f32 operations in the same order (|x| max,
    /// amax/127, 1/d, x·(1/d), clamp, round half away from zero, Σq in i32, then ·d).
    /// (ggml's own AVX2 quantizer uses 127/amax and round-half-even, i.e. it deviates from
    /// its reference in the last bit; we follow the reference.)
    /// Safety: CPU must have avx2+fma. Length preconditions are checked here.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
        assert_eq!(x.len(), out.len() * QK);
        let sign = _mm256_set1_ps(-0.0);
        let (lim, neg_lim) = (_mm256_set1_ps(127.0), _mm256_set1_ps(-127.0));
        let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (xb, y) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let p = xb.as_ptr();
            // SAFETY: xb holds 32 floats, so the four unaligned 8-float loads are in bounds.
            let v = unsafe {
                [
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                    _mm256_loadu_ps(p.add(24)),
                ]
            };
            // max_ps(a, b) returns b when a is NaN: NaNs in x are skipped, as f32::max does.
            let mut m = _mm256_setzero_ps();
            for vi in v {
                m = _mm256_max_ps(_mm256_andnot_ps(sign, vi), m);
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            let mut qi = [_mm256_setzero_si256(); 4];
            for (q, vi) in qi.iter_mut().zip(v) {
                // Clamp to ±127 and NaN -> 0, as `round_q8` does.
                let t = _mm256_mul_ps(vi, id);
                let t = _mm256_and_ps(_mm256_cmp_ps::<_CMP_ORD_Q>(t, t), t);
                let t = _mm256_max_ps(_mm256_min_ps(t, lim), neg_lim);
                // roundf: truncate, then step one away from zero if |fraction| >= 0.5
                // (both exact for |t| <= 127).
                let tr = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
                let away =
                    _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, _mm256_sub_ps(t, tr)), half);
                let step = _mm256_or_ps(_mm256_and_ps(t, sign), one); // ±1 with t's sign
                *q = _mm256_cvtps_epi32(_mm256_add_ps(tr, _mm256_and_ps(away, step)));
            }
            let s = _mm256_add_epi32(
                _mm256_add_epi32(qi[0], qi[1]),
                _mm256_add_epi32(qi[2], qi[3]),
            );
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
            let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<1>(s)));
            // i32 -> i8 (no saturation: all within ±127). The packs work per 128-bit lane,
            // leaving 4-byte groups in order 0,2,4,6,1,3,5,7; the permute restores it.
            let q16a = _mm256_packs_epi32(qi[0], qi[1]);
            let q16b = _mm256_packs_epi32(qi[2], qi[3]);
            let q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), perm);
            // SAFETY: y.qs is 32 writable bytes; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(y.qs.as_mut_ptr().cast(), q8) };
            y.d = d;
            y.s = sum as f32 * d;
        }
    }

    /// Decodes one weight block for the integer dot into `(u, q, d, m)`, d in all 8 lanes:
    /// `q` the signed quants (ggml element order: low nibbles are elements 0..16, high
    /// nibbles 16..32) and `u` the unsigned first operand for `maddubs`. Q4_1: u = q =
    /// nibbles 0..15 (no sign trick needed). Q4_0 (q = nibble − 8) and Q8_0: u = |q|
    /// (|−128| = 128 as u8), and the activation gets q's sign (`_mm256_sign_epi8`), as in
    /// ggml's `mul_sum_i8_pairs_float`.
    /// Safety: `blk` must point to `block_bytes(KIND)` readable bytes; CPU must have
    /// avx2+fma+f16c.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode_i8<const KIND: u8>(blk: *const u8) -> (__m256i, __m256i, __m256, f32) {
        // SAFETY: all reads stay within the block_bytes(KIND) (≥ 18) bytes at `blk`
        // (4 header bytes, then 16 or 32 quant bytes at offset 2 or 4), which the caller
        // guarantees.
        let (dm_bits, q) = unsafe {
            // 4 bytes: (d, m) for Q4_1; (d, two quant bytes, ignored) otherwise.
            let h = i32::from_le_bytes(blk.cast::<[u8; 4]>().read_unaligned());
            if KIND == Q8_0 {
                (h, _mm256_loadu_si256(blk.add(2).cast()))
            } else {
                let qs = blk.add(if KIND == Q4_1 { 4 } else { 2 });
                // ggml bytes_from_nibbles_32: low nibbles in the low 128 bits, high
                // nibbles (shifted down) in the high 128 bits.
                let lo = _mm_loadu_si128(qs.cast());
                let both = _mm256_set_m128i(_mm_srli_epi16::<4>(lo), lo);
                (h, _mm256_and_si256(both, _mm256_set1_epi8(0x0F)))
            }
        };
        // d is returned broadcast (as ggml does): when only lane 0 of the conversion was
        // used, LLVM loaded the f16 with `vpinsrw` into an arbitrary register (the
        // accumulator), a false dependency that serialized the blocks; the broadcast
        // becomes `vpbroadcastw` + `vcvtph2ps`, which write whole registers.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dm_bits));
        let d = _mm256_broadcastss_ps(dm);
        let m = if KIND == Q4_1 {
            _mm_cvtss_f32(_mm_movehdup_ps(dm))
        } else {
            0.0
        };
        if KIND == Q4_1 {
            (q, q, d, m)
        } else {
            let q = if KIND == Q4_0 {
                _mm256_sub_epi8(q, _mm256_set1_epi8(8))
            } else {
                q
            };
            (_mm256_sign_epi8(q, q), q, d, m)
        }
    }

    /// Safety: CPU must have avx2+fma+f16c. All other preconditions are checked here.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q8_rows<const KIND: u8>(w: &[u8], c: &Q8Ctx, out: &mut [f32]) {
        let (nb, rows) = (c.nb, c.rows);
        let rb = nb * block_bytes(KIND);
        assert!(c.xq.len() == rows * nb);
        assert!(rb > 0 && w.len() % rb == 0 && out.len() == (w.len() / rb) * rows);
        for (wrow, o) in w.chunks_exact(rb).zip(out.chunks_exact_mut(rows)) {
            // x rows in groups of ≤4 sharing one decode of each weight block.
            let mut r0 = 0;
            while r0 < rows {
                let g = (rows - r0).min(MAX_XROWS_PER_PASS);
                let (xq, og) = (&c.xq[r0 * nb..(r0 + g) * nb], &mut o[r0..r0 + g]);
                // SAFETY: avx2+fma+f16c are guaranteed by our caller (q8_row_pass checks
                // its slice lengths itself).
                unsafe {
                    match g {
                        4 => q8_row_pass::<KIND, 4>(wrow, xq, og),
                        3 => q8_row_pass::<KIND, 3>(wrow, xq, og),
                        2 => q8_row_pass::<KIND, 2>(wrow, xq, og),
                        _ => q8_row_pass::<KIND, 1>(wrow, xq, og),
                    }
                }
                r0 += g;
            }
        }
    }

    /// One weight row (`wrow`, nb whole blocks) against R quantized x rows (`xq`, R × nb
    /// blocks); writes the R results to `o`. Blocks are accumulated in order into one
    /// __m256 per x row, so a row's result does not depend on R (batch invariance).
    /// Safety: CPU must have avx2+fma+f16c. Lengths are checked here.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_row_pass<const KIND: u8, const R: usize>(
        wrow: &[u8],
        xq: &[BlockQ8],
        o: &mut [f32],
    ) {
        let nb = wrow.len() / block_bytes(KIND);
        assert!(wrow.len() % block_bytes(KIND) == 0 && xq.len() == R * nb && o.len() == R);
        let xr: [&[BlockQ8]; R] = std::array::from_fn(|r| &xq[r * nb..(r + 1) * nb]);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut macc = [0f32; R];
        for (b, blk) in wrow.chunks_exact(block_bytes(KIND)).enumerate() {
            // SAFETY: blk is one whole block of block_bytes(KIND) bytes; features per our
            // contract.
            let (u, q, d, m) = unsafe { decode_i8::<KIND>(blk.as_ptr()) };
            for r in 0..R {
                let xb = &xr[r][b];
                // SAFETY: xb.qs is 32 readable bytes; loadu has no alignment requirement.
                let qx = unsafe { _mm256_loadu_si256(xb.qs.as_ptr().cast()) };
                // Sign trick: u · sign(qx, q) = |q|·sgn(q)·qx = q·qx (qx ≠ −128, so the
                // negation is exact).
                let sy = if KIND == Q4_1 {
                    qx
                } else {
                    _mm256_sign_epi8(qx, q)
                };
                // ggml mul_sum_us8_pairs_float: u8·i8 pair sums in i16 (|·| ≤ 2·128·127,
                // never saturates), pairs of those in i32 (exact), then 8 f32 lanes.
                let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, sy), ones));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb.d)), p, acc[r]);
                if KIND == Q4_1 {
                    // Σ (d q + m)·x ≈ d d_x Σ q q_x + m · (d_x Σ q_x) = ... + m · s_x.
                    macc[r] += m * xb.s;
                }
            }
        }
        for r in 0..R {
            // SAFETY: avx2+fma are guaranteed by our contract.
            o[r] = unsafe { hsum(acc[r]) } + macc[r];
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every multiple of 1/256 in [-127, 127] (all ties included) and both f32 neighbours.
    #[test]
    fn round_q8_is_roundf_and_clamps() {
        for i in -127 * 256..=127 * 256 {
            let v = i as f32 / 256.0;
            let nb = [
                v,
                f32::from_bits(v.to_bits() + 1),
                f32::from_bits(v.to_bits().saturating_sub(1)),
            ];
            for w in nb {
                if w.abs() <= 127.0 {
                    assert_eq!(round_q8(w), w.round() as i8, "{w:e}");
                }
            }
        }
        for (v, q) in [
            (127.4f32, 127i8),
            (127.6, 127),
            (1e30, 127),
            (-127.6, -127),
            (-1e30, -127),
        ] {
            assert_eq!(round_q8(v), q, "{v}");
        }
        assert_eq!(round_q8(f32::INFINITY), 127);
        assert_eq!(round_q8(f32::NEG_INFINITY), -127);
        assert_eq!(round_q8(f32::NAN), 0);
    }

    /// Test blocks: random at several scales, exact ties (d = 1, x = j/2), all-zero,
    /// subnormal-only, and blocks with ±inf / NaN.
    fn test_blocks() -> Vec<f32> {
        let mut st = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            (st >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut x = Vec::new();
        for scale in [1e-30f32, 1e-3, 1.0, 7.5, 1e3, 1e30] {
            for _ in 0..8 * QK {
                x.push(rnd() * scale);
            }
        }
        for sgn in [1.0f32, -1.0] {
            x.push(127.0 * sgn);
            x.extend((1..QK).map(|j| ((j as f32 * 7.3).sin() * 254.0).round() / 2.0));
        }
        x.extend([0.0f32; QK]);
        x.extend(
            (0..QK).map(|j| f32::from_bits(j as u32 * 977) * if j % 2 == 0 { 1.0 } else { -1.0 }),
        );
        for special in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            x.extend((0..QK).map(|j| if j == 5 { special } else { rnd() }));
        }
        x
    }

    /// The scalar quantizer against a literal transcription of ggml's reference.
    #[test]
    fn scalar_quantize_matches_ggml_reference() {
        let x = test_blocks();
        let xq = quantize_q8(Backend::Scalar, &x);
        for (xb, y) in x.chunks_exact(QK).zip(&xq) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            assert!(y.qs.iter().all(|&q| q != -128));
            if xb.iter().any(|v| !v.is_finite()) || d.is_subnormal() {
                // Undefined behaviour in the C reference (inf or NaN cast to int8_t).
                assert!(
                    xb.iter().any(|v| v.is_nan())
                        || y.qs.iter().zip(xb).all(|(&q, &v)| v != 0.0 || q == 0)
                );
                continue;
            }
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let qs: Vec<i8> = xb.iter().map(|&v| (v * id).round() as i8).collect();
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            assert_eq!((y.d, &y.qs[..]), (d, &qs[..]));
            assert_eq!(y.s.to_bits(), (sum as f32 * d).to_bits());
        }
    }

    #[test]
    fn avx2_quantize_is_bit_identical_to_scalar() {
        if !Backend::Avx2Fma.is_available() {
            eprintln!("NOTE: AVX2 not available, skipped");
            return;
        }
        let x = test_blocks();
        let a = quantize_q8(Backend::Scalar, &x);
        let b = quantize_q8(Backend::Avx2Fma, &x);
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(a.qs, b.qs, "block {i}");
            assert_eq!(
                (a.d.to_bits(), a.s.to_bits()),
                (b.d.to_bits(), b.s.to_bits()),
                "block {i}: {a:?} {b:?}"
            );
        }
    }
}
