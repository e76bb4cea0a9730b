//! Fast f32 CPU attention, a drop-in replacement for mistralrs-core's
//! `flash_attn_cpu` (prefill) and `flash_attn_cpu_single_q` (decode) for
//! `T = f32`.
//!
//! Self-contained: depends only on `std` and `rayon`. Meant to be included as
//! a submodule (e.g. `mod fast;` next to `cpu.rs`, or pasted inside
//! `mod fast { ... }`); it carries its own copy of `mask_offset` so that it
//! does not depend on private items of the parent. The rayon pool is a
//! parameter (pass `&FLASH_ATTN_POOL`).
//!
//! # Algorithm
//! Instead of the original per-element online softmax (scalar dot, scalar
//! `expf`, a rescale of the whole accumulator whenever the running max grows,
//! a `mask_offset` call per element) we process a *block of rows* against a
//! *chunk of kv positions* at a time (flash-attention style):
//!
//! 1. scores `S = Q·Kᵀ`: prefill transposes each K head once (`pack_keys`) so
//!    this is a register-tiled GEMM (`gemm`); decode, where a K row is used by
//!    only the few query heads of its GQA group, uses SIMD dot products (`qk`)
//!    that load every K row once for the whole group;
//! 2. `finalize`: scale / softcap / mask (vectorised), chunk max;
//! 3. `exp_sum`: `p = exp(s - m)` with a vectorised Cephes `expf`, row sums;
//! 4. `gemm` again: `acc += P·V`, register-tiled over 4 rows × 16 columns.
//!
//! The running max / sum are rescaled once per chunk and row instead of once
//! per element. The mask is resolved once per row (it is `base + kv` for every
//! mask rank), and rows whose mask is `-inf` on a prefix/suffix of the kv axis
//! (causal, sliding window, padding) only visit their live kv range.
//!
//! Prefill parallelises over (batch, head, block of `PREFILL_ROWS` query
//! rows). Decode parallelises over (batch, GQA group, kv split) so that even
//! a handful of groups keeps every thread busy, then merges the partial
//! softmax states.
//!
//! Every kernel exists twice: AVX2+FMA (`x86_64`, selected at runtime, as the
//! crate is built without `-C target-cpu`) and a portable version written so
//! that LLVM auto-vectorises it (fixed-width lane arrays, branch-free selects).
//!
//! # Semantics
//! Identical to the original prefill kernel up to float rounding (max
//! relative error ~1e-6), including: output (b, h, q_len, d); the mask read as
//! `slope * MaskInfo::value(..)` with all its broadcasting/clamping rules and
//! out-of-range reads as 0.0; positions whose masked value is `-inf` skipped;
//! `s = softcap * tanh(dot * (scale / softcap))`; ALiBi slope
//! `2^(-max_bias * (h + 1) / next_pow2(h))`; fully masked rows (and kv_len ==
//! 0) give NaN. Decode follows the same rules, where the original decode
//! kernel deviates only through its bugs (all batches get batch b-1's result;
//! NaN when a 16-wide kv tile starts with a `-inf` mask value).

// The `*_portable` entry points and `uses_avx2` serve the kernel tests (summarize's
// tests/kernels.rs includes this file); the engine calls the dispatching entry points.
#![allow(dead_code)]

use rayon::prelude::*;
use rayon::ThreadPool;
use std::sync::OnceLock;

/// Query rows per prefill task. Large enough that a K/V row fetched from L2
/// is reused by many rows, small enough that a causal block wastes little
/// work above the diagonal and that (b·h·q_len/16) tasks balance well.
const PREFILL_ROWS: usize = 16;
/// KV positions per online-softmax step. The score block (rows × chunk) and a
/// 16-column stripe of the V chunk stay in L1.
const KV_CHUNK: usize = 256;
/// Smallest kv range worth a separate decode task.
const DECODE_MIN_SPLIT: usize = 256;
/// Decode aims for this many tasks per pool thread (load balance vs. merge).
const DECODE_TASKS_PER_THREAD: usize = 4;
/// Column width of one GEMM register tile. Output rows are padded to it so
/// the tail tile can use plain loads/stores on the output.
const GEMM_COLS: usize = 16;
/// Prefill with at least this many query rows transposes K once up front and
/// computes scores as a GEMM; shorter ones use dot products.
const PACK_MIN_ROWS: usize = 16;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Prefill attention. Same contract as the original `flash_attn_cpu` for
/// `T = f32`: q is (b, q_len, h, d), k is (b, kv_len, k_h, d), v is
/// (b, kv_len, v_h, d), each addressed through its strides (the last stride
/// must be 1). Returns the output laid out as (b, h, q_len, d).
#[allow(clippy::too_many_arguments)]
pub fn attn_prefill_f32(
    pool: &ThreadPool,
    q_data: &[f32],
    k_data: &[f32],
    v_data: &[f32],
    mask_vec: Option<&[f32]>,
    mask_dims: Option<&[usize]>,
    qshape: &[usize],
    kshape: &[usize],
    vshape: &[usize],
    qstride: &[usize],
    kstride: &[usize],
    vstride: &[usize],
    scale: f32,
    max_bias: f32,
    logit_softcap: f32,
) -> Vec<f32> {
    let p = Problem::new(
        q_data,
        k_data,
        v_data,
        mask_vec,
        mask_dims,
        qshape,
        kshape,
        vshape,
        qstride,
        kstride,
        vstride,
        scale,
        max_bias,
        logit_softcap,
    );
    prefill(pool, kernels(), &p)
}

/// Decode attention (q_len == 1). Same contract as the original
/// `flash_attn_cpu_single_q` for `T = f32`; returns (b, h, d) (== (b, h, 1, d)).
#[allow(clippy::too_many_arguments)]
pub fn attn_decode_f32(
    pool: &ThreadPool,
    q_data: &[f32],
    k_data: &[f32],
    v_data: &[f32],
    mask_vec: Option<&[f32]>,
    mask_dims: Option<&[usize]>,
    qshape: &[usize],
    kshape: &[usize],
    vshape: &[usize],
    qstride: &[usize],
    kstride: &[usize],
    vstride: &[usize],
    scale: f32,
    max_bias: f32,
    logit_softcap: f32,
) -> Vec<f32> {
    let p = Problem::new(
        q_data,
        k_data,
        v_data,
        mask_vec,
        mask_dims,
        qshape,
        kshape,
        vshape,
        qstride,
        kstride,
        vstride,
        scale,
        max_bias,
        logit_softcap,
    );
    decode(pool, kernels(), &p)
}

/// [`attn_prefill_f32`] forced onto the portable kernels (tests / benchmarks).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn attn_prefill_f32_portable(
    pool: &ThreadPool,
    q_data: &[f32],
    k_data: &[f32],
    v_data: &[f32],
    mask_vec: Option<&[f32]>,
    mask_dims: Option<&[usize]>,
    qshape: &[usize],
    kshape: &[usize],
    vshape: &[usize],
    qstride: &[usize],
    kstride: &[usize],
    vstride: &[usize],
    scale: f32,
    max_bias: f32,
    logit_softcap: f32,
) -> Vec<f32> {
    let p = Problem::new(
        q_data,
        k_data,
        v_data,
        mask_vec,
        mask_dims,
        qshape,
        kshape,
        vshape,
        qstride,
        kstride,
        vstride,
        scale,
        max_bias,
        logit_softcap,
    );
    prefill(pool, &PORTABLE, &p)
}

/// [`attn_decode_f32`] forced onto the portable kernels (tests / benchmarks).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn attn_decode_f32_portable(
    pool: &ThreadPool,
    q_data: &[f32],
    k_data: &[f32],
    v_data: &[f32],
    mask_vec: Option<&[f32]>,
    mask_dims: Option<&[usize]>,
    qshape: &[usize],
    kshape: &[usize],
    vshape: &[usize],
    qstride: &[usize],
    kstride: &[usize],
    vstride: &[usize],
    scale: f32,
    max_bias: f32,
    logit_softcap: f32,
) -> Vec<f32> {
    let p = Problem::new(
        q_data,
        k_data,
        v_data,
        mask_vec,
        mask_dims,
        qshape,
        kshape,
        vshape,
        qstride,
        kstride,
        vstride,
        scale,
        max_bias,
        logit_softcap,
    );
    decode(pool, &PORTABLE, &p)
}

/// Whether the AVX2+FMA kernels are in use on this CPU.
pub fn uses_avx2() -> bool {
    !std::ptr::eq(kernels(), &PORTABLE)
}

// ---------------------------------------------------------------------------
// Problem description and validation
// ---------------------------------------------------------------------------

/// Score transform shared by all rows: `s = softcap * tanh(dot * mul)` when
/// softcap is on (with `mul = scale / softcap`, exactly as the original
/// prefill computes it), `s = dot * mul` (`mul = scale`) otherwise.
#[derive(Clone, Copy)]
struct ScoreParams {
    mul: f32,
    softcap: f32,
}

struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: Option<(&'a [f32], &'a [usize])>,
    b: usize,
    q_len: usize,
    h: usize,
    d: usize,
    kv_len: usize,
    rk2: usize,
    rv2: usize,
    qs: [usize; 3],
    ks: [usize; 3],
    vs: [usize; 3],
    score: ScoreParams,
    max_bias: f32,
    n2: usize,
}

impl<'a> Problem<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        mask_vec: Option<&'a [f32]>,
        mask_dims: Option<&'a [usize]>,
        qshape: &[usize],
        kshape: &[usize],
        vshape: &[usize],
        qstride: &[usize],
        kstride: &[usize],
        vstride: &[usize],
        scale: f32,
        max_bias: f32,
        logit_softcap: f32,
    ) -> Self {
        assert!(qshape.len() == 4 && kshape.len() == 4 && vshape.len() == 4);
        assert!(qstride.len() == 4 && kstride.len() == 4 && vstride.len() == 4);
        assert_eq!(qstride[3], 1, "q must have contiguous rows");
        assert_eq!(kstride[3], 1, "k must have contiguous rows");
        assert_eq!(vstride[3], 1, "v must have contiguous rows");
        let (b, q_len, h, d) = (qshape[0], qshape[1], qshape[2], qshape[3]);
        let (kv_len, k_h, v_h) = (kshape[1], kshape[2], vshape[2]);
        // The original divides by these up front (and so panics on 0).
        assert!(k_h > 0 && v_h > 0, "k/v head counts must be non-zero");
        let (rk2, rv2) = (h / k_h, h / v_h);

        // Validate once that every row the kernels will touch is in bounds,
        // so the hot loops can slice without further checks failing.
        let last = |dims: [usize; 3], s: &[usize]| -> usize {
            dims.iter()
                .zip(s)
                .map(|(&n, &st)| n.saturating_sub(1) * st)
                .sum::<usize>()
                + d
        };
        if b * q_len * h * d > 0 {
            // The original divides head indices by these (panics on 0).
            assert!(rk2 > 0 && rv2 > 0, "more k/v heads than q heads");
            assert!(last([b, q_len, h], qstride) <= q.len(), "q out of bounds");
            if kv_len > 0 {
                assert!(
                    last([b, kv_len, (h - 1) / rk2 + 1], kstride) <= k.len(),
                    "k out of bounds"
                );
                assert!(
                    last([b, kv_len, (h - 1) / rv2 + 1], vstride) <= v.len(),
                    "v out of bounds"
                );
            }
        }

        let mul = if logit_softcap != 0.0 {
            scale / logit_softcap
        } else {
            scale
        };
        Problem {
            q,
            k,
            v,
            mask: mask_vec.zip(mask_dims),
            b,
            q_len,
            h,
            d,
            kv_len,
            rk2,
            rv2,
            qs: [qstride[0], qstride[1], qstride[2]],
            ks: [kstride[0], kstride[1], kstride[2]],
            vs: [vstride[0], vstride[1], vstride[2]],
            score: ScoreParams {
                mul,
                softcap: logit_softcap,
            },
            max_bias,
            // Same (slightly unusual) ALiBi base as the original: next power
            // of two >= h, computed through f32 log2 exactly like it.
            n2: 2_usize.pow((h as f32).log2().ceil() as u32),
        }
    }

    /// Per-head multiplier applied to the mask value (original semantics:
    /// `mv = slope * mask`, slope == 1 unless max_bias > 0).
    fn slope(&self, h_i: usize) -> f32 {
        if self.max_bias > 0.0 {
            2.0f32.powf(-self.max_bias * ((h_i + 1) as f32) / self.n2 as f32)
        } else {
            1.0
        }
    }

    fn q_row(&self, b_i: usize, q_pos: usize, h_i: usize) -> &'a [f32] {
        let off = b_i * self.qs[0] + q_pos * self.qs[1] + h_i * self.qs[2];
        &self.q[off..off + self.d]
    }

    /// Mask row for (b_i, h_i, q_pos) as a function of kv position.
    fn mask_row(&self, b_i: usize, h_i: usize, q_pos: usize) -> MaskRow<'a> {
        let Some((data, dims)) = self.mask else {
            return MaskRow::Zero;
        };
        // mask_offset is `row_base + clamp(kv_pos, last_dim)` for every rank,
        // so one call per row replaces one call per element.
        match mask_offset(dims, self.b, self.h, b_i, h_i, q_pos, 0) {
            None => MaskRow::Zero,
            Some(base) => {
                let kv_dim = dims.last().copied().unwrap_or(1);
                if kv_dim >= self.kv_len && base + self.kv_len <= data.len() {
                    MaskRow::Slice(&data[base..base + self.kv_len])
                } else {
                    // Broadcast kv dim, clamping, or out-of-range reads
                    // (which the original maps to 0.0): per-element lookup.
                    MaskRow::Lookup {
                        data,
                        base,
                        last: kv_dim - 1,
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Mask handling
// ---------------------------------------------------------------------------

/// The original `mask_offset`, lightly condensed (same results for every
/// input; kept private so this module does not depend on its parent).
#[inline]
fn mask_offset(
    dims: &[usize],
    b: usize,
    h: usize,
    b_i: usize,
    h_i: usize,
    q_pos: usize,
    kv_pos: usize,
) -> Option<usize> {
    #[inline]
    fn clamp_index(idx: usize, dim: usize) -> usize {
        if dim == 0 {
            0
        } else if idx >= dim {
            dim - 1
        } else {
            idx
        }
    }

    if dims.is_empty() {
        return Some(0);
    }
    match dims.len() {
        1 => {
            let kv_dim = dims[0];
            if kv_dim == 0 {
                None
            } else {
                Some(clamp_index(kv_pos, kv_dim))
            }
        }
        2 => {
            let (q_dim, kv_dim) = (dims[0], dims[1]);
            if q_dim == 0 || kv_dim == 0 {
                None
            } else {
                Some(clamp_index(q_pos, q_dim) * kv_dim + clamp_index(kv_pos, kv_dim))
            }
        }
        3 => {
            let (d0, d1, d2) = (dims[0], dims[1], dims[2]);
            if d0 == 0 || d1 == 0 || d2 == 0 {
                return None;
            }
            let q_idx = clamp_index(q_pos, d1);
            let kv_idx = clamp_index(kv_pos, d2);
            if d0 == b || d0 == 1 {
                let b_idx = if d0 == 1 { 0 } else { clamp_index(b_i, d0) };
                Some((b_idx * d1 + q_idx) * d2 + kv_idx)
            } else if d0 == h {
                Some((clamp_index(h_i, d0) * d1 + q_idx) * d2 + kv_idx)
            } else if d0 == b.saturating_mul(h) {
                Some((clamp_index(b_i * h + h_i, d0) * d1 + q_idx) * d2 + kv_idx)
            } else {
                Some(q_idx * d2 + kv_idx)
            }
        }
        4 => {
            let (d0, d1, d2, d3) = (dims[0], dims[1], dims[2], dims[3]);
            if d0 == 0 || d1 == 0 || d2 == 0 || d3 == 0 {
                return None;
            }
            let b_idx = if d0 == 1 {
                0
            } else if d0 == b {
                clamp_index(b_i, d0)
            } else if d0 == b.saturating_mul(h) {
                clamp_index(b_i * h + h_i, d0)
            } else {
                clamp_index(b_i, d0)
            };
            let h_idx = if d1 == 1 {
                0
            } else if d1 == h {
                clamp_index(h_i, d1)
            } else if d1 == b {
                clamp_index(b_i, d1)
            } else {
                clamp_index(h_i, d1)
            };
            let q_idx = clamp_index(q_pos, d2);
            let kv_idx = clamp_index(kv_pos, d3);
            Some(((b_idx * d1 + h_idx) * d2 + q_idx) * d3 + kv_idx)
        }
        _ => {
            let q_dim = *dims.get(dims.len().saturating_sub(2))?;
            let kv_dim = *dims.last()?;
            if q_dim == 0 || kv_dim == 0 {
                return None;
            }
            let q_idx = clamp_index(q_pos, q_dim);
            let kv_idx = clamp_index(kv_pos, kv_dim);
            let mut prefix_dim = 1usize;
            for &dim in &dims[..dims.len() - 2] {
                if dim == 0 {
                    return None;
                }
                prefix_dim = prefix_dim.saturating_mul(dim);
            }
            let combined_idx = if prefix_dim == 0 {
                0
            } else {
                (b_i * h + h_i).min(prefix_dim - 1)
            };
            Some((combined_idx * q_dim + q_idx) * kv_dim + kv_idx)
        }
    }
}

/// One query row of the mask, i.e. `MaskInfo::value(b_i, h_i, q_pos, ·)`.
#[derive(Clone, Copy)]
enum MaskRow<'a> {
    /// No mask, or `mask_offset` returned None: every value is 0.0.
    Zero,
    /// kv position `j` reads `slice[j]` (the common, contiguous case).
    Slice(&'a [f32]),
    /// kv position `j` reads `data[base + min(j, last)]`, 0.0 if out of range.
    Lookup {
        data: &'a [f32],
        base: usize,
        last: usize,
    },
}

impl<'a> MaskRow<'a> {
    #[inline]
    fn value(&self, j: usize) -> f32 {
        match *self {
            MaskRow::Zero => 0.0,
            MaskRow::Slice(s) => s[j],
            MaskRow::Lookup { data, base, last } => *data.get(base + j.min(last)).unwrap_or(&0.0),
        }
    }

    /// Whether both describe the same mask row (same kv -> value mapping).
    fn same_row(&self, other: &MaskRow) -> bool {
        match (*self, *other) {
            (MaskRow::Zero, MaskRow::Zero) => true,
            (MaskRow::Slice(a), MaskRow::Slice(b)) => std::ptr::eq(a, b),
            (MaskRow::Lookup { base: a, .. }, MaskRow::Lookup { base: b, .. }) => a == b,
            _ => false,
        }
    }

    /// Mask values for kv positions `j0..j0 + n` (None means all zero).
    fn chunk<'b>(&self, j0: usize, n: usize, buf: &'b mut [f32]) -> Option<&'b [f32]>
    where
        'a: 'b,
    {
        match *self {
            MaskRow::Zero => None,
            MaskRow::Slice(s) => Some(&s[j0..j0 + n]),
            MaskRow::Lookup { .. } => {
                for (jj, x) in buf[..n].iter_mut().enumerate() {
                    *x = self.value(j0 + jj);
                }
                Some(&buf[..n])
            }
        }
    }

    /// Smallest `[lo, hi)` outside which every position is skipped by the
    /// original (`slope * mask == -inf`); `lo == hi` if the row is dead.
    fn live_range(&self, kv_len: usize, slope: f32) -> (usize, usize) {
        let dead = |x: f32| slope * x == f32::NEG_INFINITY;
        match *self {
            MaskRow::Zero => (0, kv_len),
            MaskRow::Slice(s) => {
                // Causal rows have a long dead tail; scan it 16 at a time with
                // a branch-free fold that vectorises.
                const W: usize = 16;
                let all_dead = |c: &[f32]| c.iter().fold(true, |a, &x| a & dead(x));
                let mut hi = kv_len;
                while hi >= W && all_dead(&s[hi - W..hi]) {
                    hi -= W;
                }
                while hi > 0 && dead(s[hi - 1]) {
                    hi -= 1;
                }
                let mut lo = 0;
                while lo + W <= hi && all_dead(&s[lo..lo + W]) {
                    lo += W;
                }
                while lo < hi && dead(s[lo]) {
                    lo += 1;
                }
                (lo, hi)
            }
            MaskRow::Lookup { .. } => {
                let hi = (0..kv_len)
                    .rev()
                    .find(|&j| !dead(self.value(j)))
                    .map_or(0, |j| j + 1);
                let lo = (0..hi).find(|&j| !dead(self.value(j))).unwrap_or(hi);
                (lo, hi)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Driver (ISA independent)
// ---------------------------------------------------------------------------

/// Where the scores of a row block come from.
enum Keys<'a> {
    /// Dot products of the q rows with K rows (`k` starts at the K head's kv
    /// position 0, row stride `ks`). Used by decode and short prefills.
    Dot {
        q: Vec<&'a [f32]>,
        k: &'a [f32],
        ks: usize,
    },
    /// GEMM of q rows (uniform stride `qs`) with the K head pre-transposed to
    /// (d × kv_pad): no horizontal sums, so it runs at FMA throughput.
    Packed {
        q: &'a [f32],
        qs: usize,
        kt: &'a [f32],
        kv_pad: usize,
    },
}

/// Rows attended together. They share one K head; each has its own mask row,
/// slope and V head.
struct RowBlock<'a> {
    keys: Keys<'a>,
    mask: Vec<MaskRow<'a>>,
    slope: Vec<f32>,
    /// Offset of the row's V head at kv position 0.
    v_off: Vec<usize>,
}

/// Per-task scratch plus the online-softmax state of the rows in flight.
struct Scratch {
    /// Scores, then probabilities: rows × KV_CHUNK.
    s: Vec<f32>,
    /// Materialised mask chunk for `MaskRow::Lookup` rows.
    mask: Vec<f32>,
    /// Running max, running sum and un-normalised output (rows × d_pad).
    m: Vec<f32>,
    l: Vec<f32>,
    acc: Vec<f32>,
    d_pad: usize,
}

impl Scratch {
    fn new(rows: usize, d: usize) -> Self {
        let d_pad = d.next_multiple_of(GEMM_COLS);
        Scratch {
            s: vec![0.0; rows * KV_CHUNK],
            mask: vec![0.0; KV_CHUNK],
            m: vec![f32::NEG_INFINITY; rows],
            l: vec![0.0; rows],
            acc: vec![0.0; rows * d_pad],
            d_pad,
        }
    }
}

/// Online softmax of `rows` over kv positions `lo..hi`, starting from an
/// empty state; the result is left in `scr.{m, l, acc}`.
fn attend(kern: &Kernels, p: &Problem, rows: &RowBlock, lo: usize, hi: usize, scr: &mut Scratch) {
    let n_rows = rows.mask.len();
    let (d, d_pad) = (p.d, scr.d_pad);
    scr.m[..n_rows].fill(f32::NEG_INFINITY);
    scr.l[..n_rows].fill(0.0);
    scr.acc[..n_rows * d_pad].fill(0.0);

    let mut c0 = lo;
    while c0 < hi {
        let n = KV_CHUNK.min(hi - c0);
        let s = &mut scr.s[..n_rows * KV_CHUNK];
        // SAFETY (every `kern.*` call below): `kern` is PORTABLE or the AVX2
        // table, which `kernels()` only returns after detecting avx2+fma.
        match &rows.keys {
            Keys::Dot { q, k, ks } => unsafe {
                (kern.qk)(q, &k[c0 * ks..], *ks, n, d, s, KV_CHUNK)
            },
            Keys::Packed { q, qs, kt, kv_pad } => unsafe {
                (kern.gemm)(q, *qs, n_rows, d, &kt[c0..], *kv_pad, n, s, KV_CHUNK, false)
            },
        }

        for r in 0..n_rows {
            let srow = &mut s[r * KV_CHUNK..r * KV_CHUNK + n];
            let mrow = rows.mask[r].chunk(c0, n, &mut scr.mask);
            let cm = unsafe { (kern.finalize)(srow, mrow, rows.slope[r], &p.score) };
            let m_old = scr.m[r];
            let m_new = m_old.max(cm);
            if m_new == f32::NEG_INFINITY {
                // Everything so far is masked: contributes nothing.
                srow.fill(0.0);
                continue;
            }
            if m_new > m_old {
                let alpha = (m_old - m_new).exp();
                scr.l[r] *= alpha;
                for x in &mut scr.acc[r * d_pad..r * d_pad + d] {
                    *x *= alpha;
                }
                scr.m[r] = m_new;
            }
            scr.l[r] += unsafe { (kern.exp_sum)(srow, m_new) };
        }

        // acc += P · V, for each run of rows sharing a V head (all rows in
        // prefill; the GQA group in decode when k and v heads coincide).
        let mut r0 = 0;
        while r0 < n_rows {
            let v_off = rows.v_off[r0];
            let r1 = (r0..n_rows)
                .find(|&r| rows.v_off[r] != v_off)
                .unwrap_or(n_rows);
            let p_rows = &scr.s[r0 * KV_CHUNK..r1 * KV_CHUNK];
            let v = &p.v[v_off + c0 * p.vs[1]..];
            let acc = &mut scr.acc[r0 * d_pad..r1 * d_pad];
            unsafe {
                (kern.gemm)(
                    p_rows,
                    KV_CHUNK,
                    r1 - r0,
                    n,
                    v,
                    p.vs[1],
                    d,
                    acc,
                    d_pad,
                    true,
                )
            };
            r0 = r1;
        }
        c0 += n;
    }
}

/// K heads transposed to (d × kv_pad) per (b, K head), so prefill can compute
/// Q·Kᵀ as a plain GEMM. Costs one pass over K, amortised over all query
/// rows of the K head's group.
/// Runs on the current rayon pool (call inside `pool.install`).
fn pack_keys(p: &Problem) -> (Vec<f32>, usize) {
    let (d, kv_len) = (p.d, p.kv_len);
    let kv_pad = kv_len.next_multiple_of(GEMM_COLS);
    let n_kh = (p.h - 1) / p.rk2 + 1;
    let mut kt = vec![0f32; p.b * n_kh * d * kv_pad];
    kt.par_chunks_mut(d * kv_pad)
        .enumerate()
        .for_each(|(bg, dst)| {
            let base = (bg / n_kh) * p.ks[0] + (bg % n_kh) * p.ks[2];
            // 16 K rows (one L1-resident block) at a time.
            for j0 in (0..kv_len).step_by(16) {
                let j1 = (j0 + 16).min(kv_len);
                for c in 0..d {
                    for j in j0..j1 {
                        dst[c * kv_pad + j] = p.k[base + j * p.ks[1] + c];
                    }
                }
            }
        });
    (kt, kv_pad)
}

/// Live kv range of every (b, q, h) row, indexed `(b * q_len + q) * h + h`.
/// Computed once per distinct mask row: heads usually share the mask, and
/// scanning a causal row's dead tail is memory-bound.
/// Runs on the current rayon pool (call inside `pool.install`).
fn live_ranges(p: &Problem) -> Vec<(usize, usize)> {
    let (h, q_len) = (p.h, p.q_len);
    let mut live = vec![(0, 0); p.b * q_len * h];
    live.par_chunks_mut(h).enumerate().for_each(|(bq, heads)| {
        let (b_i, q_pos) = (bq / q_len, bq % q_len);
        let mut prev: Option<(MaskRow, f32, (usize, usize))> = None;
        for (h_i, out) in heads.iter_mut().enumerate() {
            let (m, slope) = (p.mask_row(b_i, h_i, q_pos), p.slope(h_i));
            *out = match prev {
                Some((pm, ps, r)) if ps == slope && pm.same_row(&m) => r,
                _ => m.live_range(p.kv_len, slope),
            };
            prev = Some((m, slope, *out));
        }
    });
    live
}

fn prefill(pool: &ThreadPool, kern: &'static Kernels, p: &Problem) -> Vec<f32> {
    let (b, h, q_len, d) = (p.b, p.h, p.q_len, p.d);
    let mut out = vec![0f32; b * h * q_len * d];
    if out.is_empty() {
        return out;
    }
    pool.install(|| {
        let packed = (q_len >= PACK_MIN_ROWS && p.kv_len > 0).then(|| pack_keys(p));
        let live = p.mask.is_some().then(|| live_ranges(p));
        let ctx = PrefillCtx {
            p,
            kern,
            packed: packed.as_ref().map(|(kt, pad)| (kt.as_slice(), *pad)),
            live: live.as_deref(),
        };
        out.par_chunks_mut(q_len * d)
            .enumerate()
            .for_each(|(bh, head_out)| {
                let (b_i, h_i) = (bh / h, bh % h);
                head_out
                    .par_chunks_mut(PREFILL_ROWS * d)
                    .enumerate()
                    .for_each_init(
                        || Scratch::new(PREFILL_ROWS, d),
                        |scr, (blk, out_rows)| {
                            ctx.block(scr, b_i, h_i, blk * PREFILL_ROWS, out_rows)
                        },
                    );
            });
    });
    out
}

struct PrefillCtx<'a> {
    p: &'a Problem<'a>,
    kern: &'a Kernels,
    packed: Option<(&'a [f32], usize)>,
    live: Option<&'a [(usize, usize)]>,
}

impl PrefillCtx<'_> {
    /// Rows `q0 .. q0 + out.len() / d` of head (b_i, h_i).
    fn block(&self, scr: &mut Scratch, b_i: usize, h_i: usize, q0: usize, out: &mut [f32]) {
        let p = self.p;
        let d = p.d;
        let n_rows = out.len() / d;
        let slope = p.slope(h_i);
        let k_head = h_i / p.rk2;
        let keys = match self.packed {
            Some((kt, kv_pad)) => {
                let n_kh = (p.h - 1) / p.rk2 + 1;
                let off = (b_i * n_kh + k_head) * d * kv_pad;
                let q_off = b_i * p.qs[0] + q0 * p.qs[1] + h_i * p.qs[2];
                Keys::Packed {
                    q: &p.q[q_off..],
                    qs: p.qs[1],
                    kt: &kt[off..off + d * kv_pad],
                    kv_pad,
                }
            }
            None => Keys::Dot {
                q: (0..n_rows).map(|r| p.q_row(b_i, q0 + r, h_i)).collect(),
                k: &p.k[b_i * p.ks[0] + k_head * p.ks[2]..],
                ks: p.ks[1],
            },
        };
        let rows = RowBlock {
            keys,
            mask: (0..n_rows).map(|r| p.mask_row(b_i, h_i, q0 + r)).collect(),
            slope: vec![slope; n_rows],
            v_off: vec![b_i * p.vs[0] + (h_i / p.rv2) * p.vs[2]; n_rows],
        };
        // Union of the rows' live ranges; positions dead for one row but
        // inside the union get probability exactly 0 through their -inf score.
        let (lo, hi) = match self.live {
            None => (0, p.kv_len),
            Some(live) => {
                let (mut lo, mut hi) = (usize::MAX, 0);
                for r in 0..n_rows {
                    let (l, h) = live[((b_i * p.q_len) + q0 + r) * p.h + h_i];
                    if l < h {
                        lo = lo.min(l);
                        hi = hi.max(h);
                    }
                }
                (lo.min(hi), hi)
            }
        };
        attend(self.kern, p, &rows, lo, hi, scr);

        for (r, o) in out.chunks_exact_mut(d).enumerate() {
            // Like the original: a fully masked row gives 0 * (1/0) = NaN.
            let inv = 1.0 / scr.l[r];
            for (o, a) in o.iter_mut().zip(&scr.acc[r * scr.d_pad..]) {
                *o = a * inv;
            }
        }
    }
}

fn decode(pool: &ThreadPool, kern: &'static Kernels, p: &Problem) -> Vec<f32> {
    let (b, h, d, kv_len) = (p.b, p.h, p.d, p.kv_len);
    let mut out = vec![0f32; b * h * d];
    if out.is_empty() {
        return out;
    }
    // Query heads h_i with the same h_i / rk2 share a K head: one task
    // streams that K head once for the whole group.
    let g_size = p.rk2;
    let n_groups = h.div_ceil(g_size);
    let d_pad = d.next_multiple_of(GEMM_COLS);

    let base_tasks = b * n_groups;
    let want = pool.current_num_threads() * DECODE_TASKS_PER_THREAD;
    let n_split = want
        .div_ceil(base_tasks)
        .min(kv_len / DECODE_MIN_SPLIT)
        .max(1);
    let split_len = kv_len.div_ceil(n_split).max(1);
    let n_tasks = base_tasks * n_split;

    // Partial softmax state per (b, group, split, row in group).
    let mut part_m = vec![f32::NEG_INFINITY; n_tasks * g_size];
    let mut part_l = vec![0f32; n_tasks * g_size];
    let mut part_acc = vec![0f32; n_tasks * g_size * d_pad];

    pool.install(|| {
        part_acc
            .par_chunks_mut(g_size * d_pad)
            .zip(part_m.par_chunks_mut(g_size))
            .zip(part_l.par_chunks_mut(g_size))
            .enumerate()
            .for_each_init(
                || Scratch::new(g_size, d),
                |scr, (t, ((acc, m), l))| {
                    let split = t % n_split;
                    let g = (t / n_split) % n_groups;
                    let b_i = t / (n_split * n_groups);
                    let lo = (split * split_len).min(kv_len);
                    let hi = (lo + split_len).min(kv_len);
                    let heads = g * g_size..((g + 1) * g_size).min(h);
                    let n_rows = heads.len();
                    let rows = RowBlock {
                        keys: Keys::Dot {
                            q: heads.clone().map(|h_i| p.q_row(b_i, 0, h_i)).collect(),
                            k: &p.k[b_i * p.ks[0] + g * p.ks[2]..],
                            ks: p.ks[1],
                        },
                        mask: heads.clone().map(|h_i| p.mask_row(b_i, h_i, 0)).collect(),
                        slope: heads.clone().map(|h_i| p.slope(h_i)).collect(),
                        v_off: heads
                            .map(|h_i| b_i * p.vs[0] + (h_i / p.rv2) * p.vs[2])
                            .collect(),
                    };
                    attend(kern, p, &rows, lo, hi, scr);
                    m[..n_rows].copy_from_slice(&scr.m[..n_rows]);
                    l[..n_rows].copy_from_slice(&scr.l[..n_rows]);
                    acc[..n_rows * d_pad].copy_from_slice(&scr.acc[..n_rows * d_pad]);
                },
            );
    });

    // Merge the kv splits of every (b, head): cheap, serial.
    let mut acc = vec![0f32; d];
    for b_i in 0..b {
        for h_i in 0..h {
            let (g, r) = (h_i / g_size, h_i % g_size);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            acc.fill(0.0);
            for split in 0..n_split {
                let slot = ((b_i * n_groups + g) * n_split + split) * g_size + r;
                let (mb, lb) = (part_m[slot], part_l[slot]);
                if mb == f32::NEG_INFINITY {
                    continue; // nothing live in this split
                }
                let accb = &part_acc[slot * d_pad..slot * d_pad + d];
                let m_new = m.max(mb);
                let (fa, fb) = ((m - m_new).exp(), (mb - m_new).exp());
                for (a, &x) in acc.iter_mut().zip(accb) {
                    *a = *a * fa + x * fb;
                }
                l = l * fa + lb * fb;
                m = m_new;
            }
            let inv = 1.0 / l;
            for (o, a) in out[(b_i * h + h_i) * d..][..d].iter_mut().zip(&acc) {
                *o = a * inv;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Kernel table and runtime dispatch
// ---------------------------------------------------------------------------

/// `out[r * os + j] = dot(q[r][..d], k[j * ks..][..d])` for j < n.
type QkFn =
    unsafe fn(q: &[&[f32]], k: &[f32], ks: usize, n: usize, d: usize, out: &mut [f32], os: usize);
/// `c[r * cs + j] (+)= sum_t a[r * as + t] * b[t * bs + j]` for r < rows,
/// t < kdim, j < ncols; overwrites unless `accumulate`. May also write
/// columns up to `ncols` rounded up to GEMM_COLS (but never reads `b` beyond
/// `ncols`).
type GemmFn = unsafe fn(
    a: &[f32],
    a_stride: usize,
    rows: usize,
    kdim: usize,
    b: &[f32],
    b_stride: usize,
    ncols: usize,
    c: &mut [f32],
    c_stride: usize,
    accumulate: bool,
);
/// Scale / softcap / mask raw dots in place; returns their max.
type FinalizeFn =
    unsafe fn(s: &mut [f32], mask: Option<&[f32]>, slope: f32, sp: &ScoreParams) -> f32;
/// `s = exp(s - m)` in place; returns the sum.
type ExpSumFn = unsafe fn(s: &mut [f32], m: f32) -> f32;

/// The hot kernels. They are `unsafe fn` only because the AVX2 ones may be
/// called solely on CPUs with avx2+fma; all of them check their slice
/// arguments themselves.
struct Kernels {
    qk: QkFn,
    gemm: GemmFn,
    finalize: FinalizeFn,
    exp_sum: ExpSumFn,
}

static PORTABLE: Kernels = Kernels {
    qk: portable::qk,
    gemm: portable::gemm,
    finalize: portable::finalize,
    exp_sum: portable::exp_sum,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernels = Kernels {
    qk: avx2::qk,
    gemm: avx2::gemm,
    finalize: avx2::finalize,
    exp_sum: avx2::exp_sum,
};

/// Best kernel table for this CPU (detected once).
fn kernels() -> &'static Kernels {
    static SELECTED: OnceLock<&'static Kernels> = OnceLock::new();
    SELECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return &AVX2;
        }
        &PORTABLE
    })
}

/// Checks shared by both `qk` implementations; after it, every pointer the
/// kernels form stays inside the slices.
fn check_qk(q: &[&[f32]], k: &[f32], ks: usize, n: usize, d: usize, out: &[f32], os: usize) {
    assert!(q.iter().all(|r| r.len() >= d));
    assert!(n == 0 || (n - 1) * ks + d <= k.len());
    assert!(n <= os && (q.is_empty() || (q.len() - 1) * os + n <= out.len()));
}

/// Checks shared by both `gemm` implementations (see `Kernels::gemm`).
#[allow(clippy::too_many_arguments)]
fn check_gemm(
    a: &[f32],
    a_s: usize,
    rows: usize,
    kdim: usize,
    b: &[f32],
    b_s: usize,
    ncols: usize,
    c: &[f32],
    c_s: usize,
) {
    let c_cols = ncols.next_multiple_of(GEMM_COLS);
    assert!(
        rows == 0 || ((rows - 1) * a_s + kdim <= a.len() && (rows - 1) * c_s + c_cols <= c.len())
    );
    assert!(kdim == 0 || (kdim - 1) * b_s + ncols <= b.len());
    assert!(c_cols <= c_s || rows <= 1);
}

// ---------------------------------------------------------------------------
// Scalar math shared by both paths (written as selects so loops over it
// auto-vectorise in the portable kernels; also used for AVX2 tails)
// ---------------------------------------------------------------------------

#[allow(clippy::excessive_precision)]
mod math {
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact (Cephes).
    pub const LN2_HI: f32 = 0.693_359_4;
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    // Cephes expf / tanhf minimax coefficients, kept as published.
    pub const EXP_P: [f32; 6] = [
        1.987_569_150_0e-4,
        1.398_199_950_7e-3,
        8.333_451_907_3e-3,
        4.166_579_589_4e-2,
        1.666_666_545_9e-1,
        5.000_000_120_1e-1,
    ];
    /// Below this exp() is subnormal; we flush to 0 (absolute error < 1.2e-38).
    pub const EXP_MIN_X: f32 = -87.33;
    /// Cephes tanhf: polynomial below this |x|, exp-based formula above.
    pub const TANH_SMALL: f32 = 0.625;
    pub const TANH_P: [f32; 5] = [
        -5.704_988_727_45e-3,
        2.063_908_879_54e-2,
        -5.373_971_555_31e-2,
        1.333_144_220_36e-1,
        -3.333_328_194_22e-1,
    ];
    /// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND_MAGIC: f32 = 12_582_912.0;

    /// Cephes-style expf for x <= 0 (softmax arguments): relative error
    /// ~2e-7, exp(-inf) == 0, NaN in -> NaN out.
    #[inline(always)]
    pub fn exp_neg(x: f32) -> f32 {
        let t = x * LOG2E + ROUND_MAGIC;
        let n = t - ROUND_MAGIC;
        // Integer n from the mantissa bits; plain wrapping integer ops so the
        // loop vectorises without a saturating float->int conversion.
        let pow2n = f32::from_bits(
            t.to_bits()
                .wrapping_sub(ROUND_MAGIC.to_bits())
                .wrapping_add(127)
                << 23,
        );
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = EXP_P[0];
        for c in &EXP_P[1..] {
            p = p * r + c;
        }
        let y = (p * r * r + r + 1.0) * pow2n;
        if x < EXP_MIN_X {
            0.0
        } else {
            y
        }
    }

    /// Cephes-style tanhf (relative error ~1e-7).
    #[inline(always)]
    pub fn tanh(x: f32) -> f32 {
        let ax = x.abs();
        let z = x * x;
        let mut p = TANH_P[0];
        for c in &TANH_P[1..] {
            p = p * z + c;
        }
        let small = p * z * x + x;
        let e = exp_neg(-2.0 * ax);
        let large = ((1.0 - e) / (1.0 + e)).copysign(x);
        if ax < TANH_SMALL {
            small
        } else {
            large
        }
    }

    /// One score, exactly the vector kernels' transform.
    #[inline(always)]
    pub fn score(
        raw: f32,
        mask: f32,
        slope: f32,
        mul: f32,
        softcap: f32,
        use_softcap: bool,
    ) -> f32 {
        let mut s = raw * mul;
        if use_softcap {
            s = softcap * tanh(s);
        }
        let mv = slope * mask;
        if mv == f32::NEG_INFINITY {
            f32::NEG_INFINITY
        } else {
            s + mv
        }
    }
}

// ---------------------------------------------------------------------------
// Portable kernels
// ---------------------------------------------------------------------------

mod portable {
    use super::{check_gemm, check_qk, math, ScoreParams};

    /// Independent partial sums: enough to hide FP add latency and to map
    /// onto two SSE (or one AVX / two NEON) registers.
    const LANES: usize = 8;

    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (x, y) in ac.zip(bc) {
            for i in 0..LANES {
                acc[i] += x[i] * y[i];
            }
        }
        let mut s = acc.iter().sum::<f32>();
        for (x, y) in ar.iter().zip(br) {
            s += x * y;
        }
        s
    }

    pub fn qk(q: &[&[f32]], k: &[f32], ks: usize, n: usize, d: usize, out: &mut [f32], os: usize) {
        check_qk(q, k, ks, n, d, out, os);
        // kv-outer so each K row is read once from cache for all rows.
        for j in 0..n {
            let krow = &k[j * ks..j * ks + d];
            for (r, qr) in q.iter().enumerate() {
                out[r * os + j] = dot(&qr[..d], krow);
            }
        }
    }

    pub fn finalize(s: &mut [f32], mask: Option<&[f32]>, slope: f32, sp: &ScoreParams) -> f32 {
        let use_sc = sp.softcap != 0.0;
        match mask {
            Some(m) => {
                for (x, &mv) in s.iter_mut().zip(m) {
                    *x = math::score(*x, mv, slope, sp.mul, sp.softcap, use_sc);
                }
            }
            None => {
                for x in s.iter_mut() {
                    *x = math::score(*x, 0.0, slope, sp.mul, sp.softcap, use_sc);
                }
            }
        }
        let mut mx = [f32::NEG_INFINITY; LANES];
        let chunks = s.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                mx[i] = if c[i] > mx[i] { c[i] } else { mx[i] };
            }
        }
        mx.iter()
            .chain(rest)
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
    }

    pub fn exp_sum(s: &mut [f32], m: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = s.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                c[i] = math::exp_neg(c[i] - m);
                acc[i] += c[i];
            }
        }
        let mut sum = acc.iter().sum::<f32>();
        for x in chunks.into_remainder() {
            *x = math::exp_neg(*x - m);
            sum += *x;
        }
        sum
    }

    /// Output columns per block: a 16 KiB stripe of `b` stays in L1.
    const COL_BLOCK: usize = 64;

    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        a: &[f32],
        a_s: usize,
        rows: usize,
        kdim: usize,
        b: &[f32],
        b_s: usize,
        ncols: usize,
        c: &mut [f32],
        c_s: usize,
        accumulate: bool,
    ) {
        check_gemm(a, a_s, rows, kdim, b, b_s, ncols, c, c_s);
        for c0 in (0..ncols).step_by(COL_BLOCK) {
            let c1 = (c0 + COL_BLOCK).min(ncols);
            for r in 0..rows {
                let crow = &mut c[r * c_s + c0..r * c_s + c1];
                if !accumulate {
                    crow.fill(0.0);
                }
                for (t, &x) in a[r * a_s..r * a_s + kdim].iter().enumerate() {
                    // Masked positions have p == 0 exactly: skipping them
                    // also never touches their V row, like the original.
                    if x != 0.0 {
                        for (y, &bv) in crow.iter_mut().zip(&b[t * b_s + c0..t * b_s + c1]) {
                            *y += x * bv;
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// AVX2 + FMA kernels
// ---------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
// Index loops over the register-tile arrays read better than iterator chains.
#[allow(clippy::needless_range_loop)]
mod avx2 {
    //! Every `unsafe fn` here may only run on a CPU with avx2 and fma (the
    //! `AVX2` kernel table is only selected after runtime detection). The
    //! private tile functions taking raw pointers list their extra
    //! preconditions; the public entry points check their slices themselves.
    use super::{check_gemm, check_qk, math, ScoreParams};
    use core::arch::x86_64::*;

    /// Lanes `i` with `i < rem` set (rem may be <= 0 or >= 8).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lane_mask(rem: isize) -> __m256i {
        let rem = rem.clamp(0, 8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rem),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(a: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hmax(a: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Horizontal sums of four vectors at once: [sum a0, sum a1, sum a2, sum a3].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum4(a: &[__m256; 4]) -> __m128 {
        let t0 = _mm256_hadd_ps(a[0], a[1]);
        let t1 = _mm256_hadd_ps(a[2], a[3]);
        let u = _mm256_hadd_ps(t0, t1);
        _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps::<1>(u))
    }

    /// Vector version of `math::exp_neg` (same polynomial and domain).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_neg(x: __m256) -> __m256 {
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(math::LOG2E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(math::LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(math::LN2_LO), r);
        let mut p = _mm256_set1_ps(math::EXP_P[0]);
        for &c in &math::EXP_P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_fmadd_ps(
            _mm256_mul_ps(p, r),
            r,
            _mm256_add_ps(r, _mm256_set1_ps(1.0)),
        );
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(math::EXP_MIN_X));
        _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2n))
    }

    /// Vector version of `math::tanh`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tanh(x: __m256) -> __m256 {
        let sign = _mm256_set1_ps(-0.0);
        let ax = _mm256_andnot_ps(sign, x);
        let z = _mm256_mul_ps(x, x);
        let mut p = _mm256_set1_ps(math::TANH_P[0]);
        for &c in &math::TANH_P[1..] {
            p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(c));
        }
        let small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
        // SAFETY: same target features as this function.
        let e = unsafe { exp_neg(_mm256_mul_ps(_mm256_set1_ps(-2.0), ax)) };
        let one = _mm256_set1_ps(1.0);
        let t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
        let large = _mm256_or_ps(t, _mm256_and_ps(sign, x));
        let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ax, _mm256_set1_ps(math::TANH_SMALL));
        _mm256_blendv_ps(large, small, is_small)
    }

    /// Dot products of MR q rows with NJ consecutive K rows (register tile).
    ///
    /// Safety: avx2+fma available; `q[r]` readable for d floats, `k` for
    /// NJ rows of d floats at stride `ks`, `out[r]` writable for NJ floats.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn qk_tile<const MR: usize, const NJ: usize>(
        q: [*const f32; MR],
        k: *const f32,
        ks: usize,
        d: usize,
        tail: __m256i,
        out: [*mut f32; MR],
    ) {
        let mut acc = [[_mm256_setzero_ps(); NJ]; MR];
        let full = d & !7;
        let mut c = 0;
        // SAFETY (whole body): c + 8 <= d for the plain loads; the masked
        // loads read only lanes < d (masked lanes never fault); per caller.
        unsafe {
            while c < full {
                let mut qv = [_mm256_setzero_ps(); MR];
                for r in 0..MR {
                    qv[r] = _mm256_loadu_ps(q[r].add(c));
                }
                for j in 0..NJ {
                    let kv = _mm256_loadu_ps(k.add(j * ks + c));
                    for r in 0..MR {
                        acc[r][j] = _mm256_fmadd_ps(qv[r], kv, acc[r][j]);
                    }
                }
                c += 8;
            }
            if c < d {
                let mut qv = [_mm256_setzero_ps(); MR];
                for r in 0..MR {
                    qv[r] = _mm256_maskload_ps(q[r].add(c), tail);
                }
                for j in 0..NJ {
                    let kv = _mm256_maskload_ps(k.add(j * ks + c), tail);
                    for r in 0..MR {
                        acc[r][j] = _mm256_fmadd_ps(qv[r], kv, acc[r][j]);
                    }
                }
            }
            for r in 0..MR {
                if let Ok(a4) = <&[__m256; 4]>::try_from(&acc[r][..]) {
                    _mm_storeu_ps(out[r], hsum4(a4));
                } else {
                    for j in 0..NJ {
                        *out[r].add(j) = hsum(acc[r][j]);
                    }
                }
            }
        }
    }

    /// # Safety
    /// The CPU must support avx2 and fma.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn qk(
        q: &[&[f32]],
        k: &[f32],
        ks: usize,
        n: usize,
        d: usize,
        out: &mut [f32],
        os: usize,
    ) {
        check_qk(q, k, ks, n, d, out, os);
        // SAFETY: same target features as this function.
        let tail = unsafe { lane_mask((d % 8) as isize) };
        let rows = q.len();
        let (kp, op) = (k.as_ptr(), out.as_mut_ptr());
        // SAFETY: check_qk bounds every q row (d), k row (j < n) and out
        // element (r < rows, j < n) addressed below.
        unsafe {
            // kv-outer: four K rows stay in L1 while all query rows use them;
            // tiles of 3 rows so a GQA group of 3 loads each K row once.
            let mut j = 0;
            while j < n {
                let kj = kp.add(j * ks);
                let qr = |r: usize| q[r].as_ptr();
                let or = |r: usize| op.add(r * os + j);
                if j + 4 <= n {
                    let mut r = 0;
                    while r + 3 <= rows {
                        qk_tile::<3, 4>(
                            [qr(r), qr(r + 1), qr(r + 2)],
                            kj,
                            ks,
                            d,
                            tail,
                            [or(r), or(r + 1), or(r + 2)],
                        );
                        r += 3;
                    }
                    match rows - r {
                        2 => {
                            qk_tile::<2, 4>([qr(r), qr(r + 1)], kj, ks, d, tail, [or(r), or(r + 1)])
                        }
                        1 => qk_tile::<1, 4>([qr(r)], kj, ks, d, tail, [or(r)]),
                        _ => {}
                    }
                    j += 4;
                } else {
                    for r in 0..rows {
                        qk_tile::<1, 1>([qr(r)], kj, ks, d, tail, [or(r)]);
                    }
                    j += 1;
                }
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finalize_impl<const SOFTCAP: bool, const MASK: bool>(
        s: &mut [f32],
        mask: &[f32],
        slope: f32,
        sp: &ScoreParams,
    ) -> f32 {
        let n = s.len();
        debug_assert!(!MASK || mask.len() >= n);
        let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
        let (mul, cap, slv) = (
            _mm256_set1_ps(sp.mul),
            _mm256_set1_ps(sp.softcap),
            _mm256_set1_ps(slope),
        );
        let mut mx = neg_inf;
        let mut i = 0;
        // SAFETY: i + 8 <= n for every access; mask.len() >= n when MASK.
        unsafe {
            while i + 8 <= n {
                let mut x = _mm256_mul_ps(_mm256_loadu_ps(s.as_ptr().add(i)), mul);
                if SOFTCAP {
                    x = _mm256_mul_ps(cap, tanh(x));
                }
                if MASK {
                    let mv = _mm256_mul_ps(slv, _mm256_loadu_ps(mask.as_ptr().add(i)));
                    let dead = _mm256_cmp_ps::<_CMP_EQ_OQ>(mv, neg_inf);
                    x = _mm256_blendv_ps(_mm256_add_ps(x, mv), neg_inf, dead);
                }
                _mm256_storeu_ps(s.as_mut_ptr().add(i), x);
                mx = _mm256_max_ps(mx, x);
                i += 8;
            }
        }
        // SAFETY: same target features as this function.
        let mut m = unsafe { hmax(mx) };
        for j in i..n {
            let mv = if MASK { mask[j] } else { 0.0 };
            s[j] = math::score(s[j], mv, slope, sp.mul, sp.softcap, SOFTCAP);
            m = m.max(s[j]);
        }
        m
    }

    /// # Safety
    /// The CPU must support avx2 and fma.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn finalize(
        s: &mut [f32],
        mask: Option<&[f32]>,
        slope: f32,
        sp: &ScoreParams,
    ) -> f32 {
        if let Some(m) = mask {
            assert!(m.len() >= s.len());
        }
        // SAFETY: avx2+fma per this function's contract; mask length checked.
        unsafe {
            match (sp.softcap != 0.0, mask) {
                (false, None) => finalize_impl::<false, false>(s, &[], slope, sp),
                (true, None) => finalize_impl::<true, false>(s, &[], slope, sp),
                (false, Some(m)) => finalize_impl::<false, true>(s, m, slope, sp),
                (true, Some(m)) => finalize_impl::<true, true>(s, m, slope, sp),
            }
        }
    }

    /// # Safety
    /// The CPU must support avx2 and fma.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_sum(s: &mut [f32], m: f32) -> f32 {
        let n = s.len();
        let mv = _mm256_set1_ps(m);
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: every access is within i + 16 <= n or i + 8 <= n.
        unsafe {
            let p = s.as_mut_ptr();
            while i + 16 <= n {
                let e0 = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
                let e1 = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(p.add(i + 8)), mv));
                _mm256_storeu_ps(p.add(i), e0);
                _mm256_storeu_ps(p.add(i + 8), e1);
                a0 = _mm256_add_ps(a0, e0);
                a1 = _mm256_add_ps(a1, e1);
                i += 16;
            }
            if i + 8 <= n {
                let e0 = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
                _mm256_storeu_ps(p.add(i), e0);
                a0 = _mm256_add_ps(a0, e0);
                i += 8;
            }
        }
        // SAFETY: same target features as this function.
        let mut sum = unsafe { hsum(_mm256_add_ps(a0, a1)) };
        for x in &mut s[i..] {
            *x = math::exp_neg(*x - m);
            sum += *x;
        }
        sum
    }

    /// C tile (MR rows × 8·NV columns) (+)= A[MR × kdim] · B[kdim × 8·NV]:
    /// broadcast one A element per row, FMA it with the B row segment.
    ///
    /// Safety: avx2+fma available; `a[r]` readable for kdim floats; B rows
    /// `b + t*bs` readable on the lanes enabled in `bmask` (all lanes when
    /// !MASKED); `c[r]` readable (if ACC) and writable for 8·NV floats.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gemm_tile<const MR: usize, const NV: usize, const MASKED: bool, const ACC: bool>(
        a: [*const f32; MR],
        b: *const f32,
        bs: usize,
        kdim: usize,
        bmask: [__m256i; NV],
        c: [*mut f32; MR],
    ) {
        // SAFETY (whole body): per the function contract above.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); NV]; MR];
            if ACC {
                for r in 0..MR {
                    for v in 0..NV {
                        acc[r][v] = _mm256_loadu_ps(c[r].add(8 * v));
                    }
                }
            }
            for t in 0..kdim {
                let mut ab = [_mm256_setzero_ps(); MR];
                for r in 0..MR {
                    ab[r] = _mm256_broadcast_ss(&*a[r].add(t));
                }
                let bt = b.add(t * bs);
                for v in 0..NV {
                    let x = if MASKED {
                        _mm256_maskload_ps(bt.add(8 * v), bmask[v])
                    } else {
                        _mm256_loadu_ps(bt.add(8 * v))
                    };
                    for r in 0..MR {
                        acc[r][v] = _mm256_fmadd_ps(ab[r], x, acc[r][v]);
                    }
                }
            }
            for r in 0..MR {
                for v in 0..NV {
                    _mm256_storeu_ps(c[r].add(8 * v), acc[r][v]);
                }
            }
        }
    }

    /// All rows of one 16-column stripe, in register tiles of up to 4 rows.
    ///
    /// Safety: as `gemm_tile`, for every row < rows.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_stripe<const MASKED: bool, const ACC: bool>(
        a: *const f32,
        a_s: usize,
        rows: usize,
        kdim: usize,
        b: *const f32,
        b_s: usize,
        bmask: [__m256i; 2],
        c: *mut f32,
        c_s: usize,
    ) {
        // SAFETY: rows r < `rows` only, per the contract.
        unsafe {
            let ar = |r: usize| a.add(r * a_s);
            let cr = |r: usize| c.add(r * c_s);
            let mut r = 0;
            while r + 4 <= rows {
                let (a4, c4) = (
                    [ar(r), ar(r + 1), ar(r + 2), ar(r + 3)],
                    [cr(r), cr(r + 1), cr(r + 2), cr(r + 3)],
                );
                gemm_tile::<4, 2, MASKED, ACC>(a4, b, b_s, kdim, bmask, c4);
                r += 4;
            }
            match rows - r {
                3 => gemm_tile::<3, 2, MASKED, ACC>(
                    [ar(r), ar(r + 1), ar(r + 2)],
                    b,
                    b_s,
                    kdim,
                    bmask,
                    [cr(r), cr(r + 1), cr(r + 2)],
                ),
                2 => gemm_tile::<2, 2, MASKED, ACC>(
                    [ar(r), ar(r + 1)],
                    b,
                    b_s,
                    kdim,
                    bmask,
                    [cr(r), cr(r + 1)],
                ),
                1 => gemm_tile::<1, 2, MASKED, ACC>([ar(r)], b, b_s, kdim, bmask, [cr(r)]),
                _ => {}
            }
        }
    }

    /// # Safety
    /// The CPU must support avx2 and fma.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        a: &[f32],
        a_s: usize,
        rows: usize,
        kdim: usize,
        b: &[f32],
        b_s: usize,
        ncols: usize,
        c: &mut [f32],
        c_s: usize,
        accumulate: bool,
    ) {
        check_gemm(a, a_s, rows, kdim, b, b_s, ncols, c, c_s);
        let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        let stripe = |c0: usize, masked: bool| {
            let rem = (ncols - c0) as isize;
            // SAFETY: avx2+fma per this function's contract. check_gemm
            // bounds A rows (kdim), B rows (columns < ncols: full stripes end
            // at or before ncols, the tail stripe only loads lanes < ncols)
            // and C rows (ncols rounded up to 16).
            unsafe {
                let bmask = [lane_mask(rem), lane_mask(rem - 8)];
                let (b0, c0p) = (bp.add(c0), cp.add(c0));
                match (masked, accumulate) {
                    (false, false) => {
                        gemm_stripe::<false, false>(ap, a_s, rows, kdim, b0, b_s, bmask, c0p, c_s)
                    }
                    (false, true) => {
                        gemm_stripe::<false, true>(ap, a_s, rows, kdim, b0, b_s, bmask, c0p, c_s)
                    }
                    (true, false) => {
                        gemm_stripe::<true, false>(ap, a_s, rows, kdim, b0, b_s, bmask, c0p, c_s)
                    }
                    (true, true) => {
                        gemm_stripe::<true, true>(ap, a_s, rows, kdim, b0, b_s, bmask, c0p, c_s)
                    }
                }
            }
        };
        // Stripe-outer: the B stripe (kdim × 64 B) stays in L1 while every
        // row group streams over it.
        let mut c0 = 0;
        while c0 + 16 <= ncols {
            stripe(c0, false);
            c0 += 16;
        }
        if c0 < ncols {
            stripe(c0, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MaskRow` (one `mask_offset` call per row) must agree with the
    /// original per-element `MaskInfo::value` for every rank and broadcast.
    #[test]
    fn mask_row_matches_per_element_lookup() {
        let data: Vec<f32> = (0..4000).map(|i| i as f32).collect();
        let (b, h, q_len) = (2, 3, 5);
        let dims_list: &[&[usize]] = &[
            &[],
            &[7],
            &[0],
            &[5, 7],
            &[1, 9],
            &[5, 1],
            &[2, 5, 7],
            &[3, 5, 7],
            &[6, 5, 7],
            &[4, 5, 7],
            &[1, 1, 7],
            &[2, 3, 5, 7],
            &[1, 3, 5, 7],
            &[6, 1, 5, 7],
            &[2, 2, 5, 7],
            &[3, 2, 5, 4],
            &[2, 3, 0, 7],
            &[2, 3, 1, 5, 7],
            &[2, 3, 1, 5, 700],
            &[9, 9, 9, 9, 9, 9],
        ];
        for dims in dims_list {
            for kv_len in [1, 6, 7, 8, 30] {
                for data in [&data[..], &data[..40]] {
                    let p = Problem {
                        q: &[],
                        k: &[],
                        v: &[],
                        mask: Some((data, dims)),
                        b,
                        q_len,
                        h,
                        d: 1,
                        kv_len,
                        rk2: 1,
                        rv2: 1,
                        qs: [0; 3],
                        ks: [0; 3],
                        vs: [0; 3],
                        score: ScoreParams {
                            mul: 1.0,
                            softcap: 0.0,
                        },
                        max_bias: 0.0,
                        n2: 4,
                    };
                    for (b_i, h_i, q_pos) in (0..b)
                        .flat_map(|x| (0..h).flat_map(move |y| (0..q_len).map(move |z| (x, y, z))))
                    {
                        let row = p.mask_row(b_i, h_i, q_pos);
                        for kv in 0..kv_len {
                            let want = mask_offset(dims, b, h, b_i, h_i, q_pos, kv)
                                .map_or(0.0, |i| *data.get(i).unwrap_or(&0.0));
                            assert_eq!(
                                row.value(kv),
                                want,
                                "dims {dims:?} ({b_i},{h_i},{q_pos},{kv})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn exp_and_tanh_accuracy() {
        let mut worst_exp = 0f64;
        let mut worst_tanh = 0f64;
        for i in 0..=200_000 {
            let x = -90.0 + 90.0 * i as f32 / 200_000.0;
            let e = math::exp_neg(x) as f64;
            let want = (x as f64).exp();
            if want > 1e-37 {
                worst_exp = worst_exp.max(((e - want) / want).abs());
            }
            let t = 20.0 * (i as f32 / 100_000.0 - 1.0);
            let want = (t as f64).tanh();
            if want != 0.0 {
                worst_tanh = worst_tanh.max(((math::tanh(t) as f64 - want) / want).abs());
            }
        }
        assert!(worst_exp < 1e-6, "exp rel err {worst_exp:e}");
        assert!(worst_tanh < 1e-6, "tanh rel err {worst_tanh:e}");
        assert_eq!(math::exp_neg(f32::NEG_INFINITY), 0.0);
        assert!(math::exp_neg(f32::NAN).is_nan());
        assert_eq!(math::tanh(f32::INFINITY), 1.0);
        assert_eq!(math::tanh(f32::NEG_INFINITY), -1.0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_exp_and_tanh_match_scalar() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let xs: Vec<f32> = (0..4096)
            .map(|i| -95.0 + 100.0 * i as f32 / 4096.0)
            .collect();
        let mut v = xs.clone();
        // SAFETY: avx2+fma detected above.
        let sum = unsafe { avx2::exp_sum(&mut v, 0.0) };
        let mut want_sum = 0f64;
        for (x, e) in xs.iter().zip(&v) {
            let want = (*x as f64).exp();
            want_sum += want;
            if want > 1e-37 {
                assert!(
                    ((*e as f64 - want) / want).abs() < 1e-6,
                    "exp({x}) = {e}, want {want}"
                );
            } else {
                assert!(*e as f64 <= 1.01e-37, "exp({x}) = {e}");
            }
        }
        assert!(((sum as f64 - want_sum) / want_sum).abs() < 1e-5);
        // softcap path of finalize: s = cap * tanh(x * mul)
        let mut s = xs.clone();
        let sp = ScoreParams {
            mul: 0.05,
            softcap: 2.0,
        };
        // SAFETY: avx2+fma detected above.
        unsafe { avx2::finalize(&mut s, None, 1.0, &sp) };
        for (x, y) in xs.iter().zip(&s) {
            let want = 2.0 * ((*x as f64) * 0.05).tanh();
            assert!(
                (*y as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "tanh mismatch at {x}"
            );
        }
    }
}
