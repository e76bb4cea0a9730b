//! Tests of the integer-dot entry points (`gemv_quant_q8*`, x quantized to Q8 like
//! llama.cpp) against
//! (1) an independent reference of the same scheme: ggml's `quantize_row_q8_{0,1}_ref`
//!     transcribed (with f32 `d`/`s`), exact integer block dots, f64 accumulation;
//! (2) the exact product with the dequantized weights (f64), to report what quantizing x
//!     costs.

use crate::gemv_common::*;
use crate::qgemv::{gemv_quant, gemv_quant_q8, gemv_quant_q8_with, Backend, WeightKind};

/// Kernel vs. the same-scheme reference, relative to Σ|w·x|: only f32 rounding of the
/// per-block scales and of the accumulation remains.
const TOL_SAME_SCHEME: f64 = 1e-6;
/// Kernel vs. the exact (unquantized-x) product: x quantization error, ≈1e-3 typical.
const TOL_EXACT: f64 = 1e-2;

/// One quantized activation block, as ggml's reference quantizer makes it.
struct RefQ8 {
    d: f32,
    s: f32,
    qs: [i8; 32],
}

/// ggml `quantize_row_q8_1_ref` (the Q8_0 one is the same without `s`), with f32 `d`, `s`.
fn ref_quantize(x: &[f32]) -> Vec<RefQ8> {
    x.chunks_exact(32)
        .map(|xb| {
            let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; 32];
            for (q, &v) in qs.iter_mut().zip(xb) {
                *q = (v * id).round() as i8; // roundf: half away from zero
            }
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            RefQ8 {
                d,
                s: sum as f32 * d,
                qs,
            }
        })
        .collect()
}

/// Integer quants of one weight block plus (d, m): Q4_0 → nibble − 8, Q4_1 → nibble,
/// Q8_0 → i8 (ggml nibble order: element j < 16 low nibble of qs[j], else high of qs[j-16]).
fn ref_weight_ints(kind: WeightKind, blk: &[u8]) -> ([i32; 32], f32, f32) {
    let f16 = |b: &[u8]| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    let nib = |qs: &[u8], j: usize| {
        (if j < 16 {
            qs[j] & 0x0F
        } else {
            qs[j - 16] >> 4
        }) as i32
    };
    let mut q = [0i32; 32];
    match kind {
        WeightKind::Q4_0 => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = nib(&blk[2..18], j) - 8;
            }
            (q, f16(&blk[0..2]), 0.0)
        }
        WeightKind::Q4_1 => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = nib(&blk[4..20], j);
            }
            (q, f16(&blk[0..2]), f16(&blk[2..4]))
        }
        WeightKind::Q8_0 => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = blk[2 + j] as i8 as i32;
            }
            (q, f16(&blk[0..2]), 0.0)
        }
        WeightKind::F32 => unreachable!(),
    }
}

/// The llama.cpp scheme in f64: Σ_blocks d_w·d_x·Σ q_w q_x (+ m_w·s_x for Q4_1). rows × n.
fn ref_gemv_q8(kind: WeightKind, w: &[u8], n: usize, k: usize, x: &[f32], rows: usize) -> Vec<f64> {
    let xq = ref_quantize(x);
    let nb = k / 32;
    let bb = kind.block_bytes();
    let mut y = vec![0f64; rows * n];
    for j in 0..n {
        for b in 0..nb {
            let blk = &w[(j * nb + b) * bb..(j * nb + b + 1) * bb];
            let (qw, d, m) = ref_weight_ints(kind, blk);
            for r in 0..rows {
                let xb = &xq[r * nb + b];
                let isum: i32 = qw.iter().zip(&xb.qs).map(|(&a, &b)| a * b as i32).sum();
                let mut v = d as f64 * xb.d as f64 * isum as f64;
                if kind == WeightKind::Q4_1 {
                    v += m as f64 * xb.s as f64;
                }
                y[r * n + j] += v;
            }
        }
    }
    y
}

/// x with per-block magnitudes spread over 10⁻²..10² (activations with outliers).
fn rand_x_spread(len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x = rand_x(len, rng);
    for xb in x.chunks_mut(32) {
        let scale = 10f32.powf(rng.uniform(-2.0, 2.0));
        xb.iter_mut().for_each(|v| *v *= scale);
    }
    x
}

/// Checks `out` against both references; returns (max err vs same scheme, max err vs
/// exact, mean err vs exact), errors relative to Σ|w·x| per output.
#[allow(clippy::too_many_arguments)]
fn check(
    what: &str,
    kind: WeightKind,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    out: &[f32],
) -> (f64, f64, f64) {
    let wf = ref_dequant(kind, w, n, k);
    let (y_exact, s) = ref_gemv(&wf, n, k, x, rows);
    let y_q8 = ref_gemv_q8(kind, w, n, k, x, rows);
    let e_same = max_err(out, &y_q8, &s);
    let e_exact = max_err(out, &y_exact, &s);
    assert!(
        e_same < TOL_SAME_SCHEME,
        "{what}: vs same-scheme reference {e_same:e}"
    );
    assert!(
        e_exact < TOL_EXACT,
        "{what}: vs exact reference {e_exact:e}"
    );
    let mean_exact = out
        .iter()
        .zip(y_exact.iter().zip(&s))
        .map(|(&o, (&y, &s))| (o as f64 - y).abs() / s.max(1e-30))
        .sum::<f64>()
        / out.len() as f64;
    (e_same, e_exact, mean_exact)
}

#[test]
fn q8_all_shapes_all_backends() {
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    // [kind][backend: default, Scalar, Avx2Fma] -> (worst same-scheme, worst exact,
    // Σ mean exact, count)
    let mut worst = [[(0f64, 0f64, 0f64, 0usize); 3]; 3];
    for (ki, &kind) in KINDS.iter().enumerate() {
        // 300 output rows span several parallel chunks and a ragged tail; bigger shapes
        // only cost time in an unoptimised test build.
        for &n in &[1usize, 7, 64, 300] {
            for &k in &[32usize, 576, 1536] {
                let w = make_quant(kind, n, k, &mut rng);
                for &rows in &[1usize, 2, 5] {
                    for spread in [false, true] {
                        let x = if spread {
                            rand_x_spread(rows * k, &mut rng)
                        } else {
                            rand_x(rows * k, &mut rng)
                        };
                        let what = format!("{kind:?} n={n} k={k} rows={rows} spread={spread}");
                        let mut out = vec![f32::NAN; rows * n];
                        gemv_quant_q8(kind, &w, n, k, &x, rows, &mut out).unwrap();
                        let mut runs = vec![(0, out)];
                        for be in backends() {
                            let mut out = vec![f32::NAN; rows * n];
                            gemv_quant_q8_with(be, kind, &w, n, k, &x, rows, &mut out).unwrap();
                            runs.push((if be == Backend::Scalar { 1 } else { 2 }, out));
                        }
                        for (bi, out) in runs {
                            let (a, b, c) = check(
                                &format!("{what} backend#{bi}"),
                                kind,
                                &w,
                                n,
                                k,
                                &x,
                                rows,
                                &out,
                            );
                            let wst = &mut worst[ki][bi];
                            *wst = (wst.0.max(a), wst.1.max(b), wst.2 + c, wst.3 + 1);
                        }
                    }
                }
            }
        }
    }
    for (ki, kind) in KINDS.iter().enumerate() {
        for (bi, be) in ["default", "Scalar", "Avx2Fma"].iter().enumerate() {
            let (a, b, c, cnt) = worst[ki][bi];
            let c = c / cnt as f64;
            println!("{kind:?} {be:<8} err / Σ|w x|: vs same-scheme ref max {a:.2e}; vs exact f32 ref max {b:.2e}, mean {c:.2e}");
        }
    }
}

/// Exact ties: blocks with amax = 127 give d = 1 and x·(1/d) = x, so x = j/2 hits every
/// rounding tie (roundf rounds them away from zero; round-half-even would be caught:
/// one quant off by 1 is an error ≈ d_w / (32·Σ|w x|/k), far above the tolerance).
/// Also all-zero blocks (d = 0).
#[test]
fn q8_rounding_ties_and_zero_blocks() {
    let mut rng = Rng(3);
    let (n, k, rows) = (33, 128, 2);
    let mut x = Vec::new();
    for b in 0..rows * k / 32 {
        if b % 4 == 3 {
            x.extend([0f32; 32]);
            continue;
        }
        x.push(if b % 2 == 0 { 127.0 } else { -127.0 });
        x.extend((1..32).map(|_| (rng.uniform(-254.0, 254.0).round() / 2.0).clamp(-126.5, 126.5)));
    }
    assert!(x.iter().filter(|v| v.fract() != 0.0).count() > 50);
    for &kind in &KINDS {
        let w = make_quant(kind, n, k, &mut rng);
        for be in backends() {
            let mut out = vec![f32::NAN; rows * n];
            gemv_quant_q8_with(be, kind, &w, n, k, &x, rows, &mut out).unwrap();
            let (a, b, _) = check(
                &format!("ties {kind:?} {be:?}"),
                kind,
                &w,
                n,
                k,
                &x,
                rows,
                &out,
            );
            println!("ties {kind:?} {be:?}: vs same-scheme {a:.2e}, vs exact {b:.2e}");
        }
    }
}

/// Unusual weight scales (f16 subnormal, zero, negative, large), like the f32-activation
/// test: F16C (AVX2 path) and `half` (fallback) must agree.
#[test]
fn q8_special_f16_scales() {
    let mut rng = Rng(5);
    let scales: [u16; 8] = [
        0x0001, 0x03FF, 0x0000, 0x8000, 0xBC00, 0x7BFF, 0x3C00, 0x1234,
    ];
    let (n, k) = (scales.len() * scales.len(), 64);
    for &kind in &KINDS {
        let mut w = Vec::new();
        for i in 0..n * k / 32 {
            let (d, m) = (scales[i % 8], scales[(i / 8) % 8]);
            w.extend_from_slice(&d.to_le_bytes());
            if kind == WeightKind::Q4_1 {
                w.extend_from_slice(&m.to_le_bytes());
            }
            for _ in 0..(if kind == WeightKind::Q8_0 { 32 } else { 16 }) {
                w.push(rng.byte());
            }
        }
        let x = rand_x(2 * k, &mut rng);
        for be in backends() {
            let mut out = vec![0f32; 2 * n];
            gemv_quant_q8_with(be, kind, &w, n, k, &x, 2, &mut out).unwrap();
            let (a, b, _) = check(
                &format!("special scales {kind:?} {be:?}"),
                kind,
                &w,
                n,
                k,
                &x,
                2,
                &out,
            );
            println!("special scales {kind:?} {be:?}: vs same-scheme {a:.2e}, vs exact {b:.2e}");
        }
    }
}

/// Each output is produced by one kernel invocation in a fixed block order, so neither
/// the thread count nor batching rows together may change a single bit.
#[test]
fn q8_thread_count_and_batching_do_not_change_results() {
    let mut rng = Rng(7);
    let (n, k, rows) = (4099, 576, 3); // odd n: ragged last chunk
    let pools: Vec<_> = [1, 2, 3, 4]
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect();
    for &kind in &KINDS {
        let w = make_quant(kind, n, k, &mut rng);
        let x = rand_x_spread(rows * k, &mut rng);
        let mut first = vec![0f32; rows * n];
        pools[0]
            .install(|| gemv_quant_q8(kind, &w, n, k, &x, rows, &mut first))
            .unwrap();
        for p in &pools[1..] {
            let mut o = vec![0f32; rows * n];
            p.install(|| gemv_quant_q8(kind, &w, n, k, &x, rows, &mut o))
                .unwrap();
            assert_eq!(first, o, "{kind:?} threads={}", p.current_num_threads());
        }
        check(
            &format!("threads {kind:?}"),
            kind,
            &w,
            n,
            k,
            &x,
            rows,
            &first,
        );
    }
    // Batch invariance over all x-row groupings (passes of 4, 3, 2, 1 rows).
    let (n, k) = (100, 576);
    for &kind in &KINDS {
        let w = make_quant(kind, n, k, &mut rng);
        for be in backends() {
            for rows in 1..=8usize {
                let x = rand_x(rows * k, &mut rng);
                let mut out = vec![0f32; rows * n];
                gemv_quant_q8_with(be, kind, &w, n, k, &x, rows, &mut out).unwrap();
                for r in 0..rows {
                    let mut single = vec![0f32; n];
                    gemv_quant_q8_with(be, kind, &w, n, k, &x[r * k..(r + 1) * k], 1, &mut single)
                        .unwrap();
                    assert_eq!(
                        &out[r * n..(r + 1) * n],
                        &single[..],
                        "{kind:?} {be:?} rows={rows} r={r}"
                    );
                }
            }
        }
    }
}

#[test]
fn q8_bad_shapes_are_rejected() {
    let x = vec![0.5f32; 64];
    let mut out = vec![0f32; 2];
    for &kind in &KINDS {
        let bb = kind.block_bytes();
        let w = vec![0u8; 2 * 2 * bb]; // n=2, k=64
        assert!(gemv_quant_q8(kind, &w, 2, 64, &x, 1, &mut out).is_ok());
        let x33 = vec![0f32; 33];
        assert!(
            gemv_quant_q8(kind, &w, 2, 33, &x33, 1, &mut out).is_err(),
            "k % 32 != 0"
        );
        assert!(gemv_quant_q8(kind, &w[..w.len() - 1], 2, 64, &x, 1, &mut out).is_err());
        assert!(gemv_quant_q8(kind, &w, 3, 64, &x, 1, &mut [0f32; 3]).is_err());
        assert!(gemv_quant_q8(kind, &w, 2, 64, &x[..63], 1, &mut out).is_err());
        assert!(gemv_quant_q8(kind, &w, 2, 64, &x, 2, &mut [0f32; 4]).is_err());
        assert!(gemv_quant_q8(kind, &w, 2, 64, &x, 1, &mut [0f32; 3]).is_err());
        for be in backends() {
            assert!(gemv_quant_q8_with(be, kind, &w, 2, 64, &x[..32], 1, &mut out).is_err());
        }
    }
    // Degenerate but valid shapes.
    assert!(gemv_quant_q8(WeightKind::Q4_1, &[], 0, 64, &x, 1, &mut []).is_ok());
    let mut o2 = vec![1f32; 2];
    assert!(gemv_quant_q8(WeightKind::Q8_0, &[], 2, 0, &[], 1, &mut o2).is_ok());
    assert_eq!(o2, [0.0, 0.0]);
    assert!(gemv_quant_q8(WeightKind::Q4_0, &[0u8; 36], 2, 32, &[], 0, &mut []).is_ok());
    // F32 weights have no integer path: forwarded to gemv_quant (exact, same result).
    let mut rng = Rng(11);
    let wf = rand_x(3 * 40, &mut rng);
    let wb: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
    let xf = rand_x(40, &mut rng);
    let (mut a, mut b) = (vec![0f32; 3], vec![0f32; 3]);
    // Vec<u8> may be misaligned for f32: then both must fail the same way.
    let ra = gemv_quant_q8(WeightKind::F32, &wb, 3, 40, &xf, 1, &mut a);
    let rb = gemv_quant(WeightKind::F32, &wb, 3, 40, &xf, 1, &mut b);
    assert_eq!(ra.is_ok(), rb.is_ok());
    assert_eq!(a, b);
}
