//! Correctness tests against an independent reference: dequantize per the ggml layout
//! spec (written separately from the library), then f64 dot products.

use crate::gemv_common::*;
use crate::qgemv::{dequantize, gemv_f32, gemv_f32_with, gemv_quant, gemv_quant_with, WeightKind};

const TOL: f64 = 1e-5;

#[test]
fn quant_all_shapes_all_backends() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut worst = [0f64; 3];
    for (ki, &kind) in KINDS.iter().enumerate() {
        // 300 output rows span several parallel chunks and a ragged tail; bigger shapes
        // only cost time in an unoptimised test build.
        for &n in &[1usize, 7, 64, 300] {
            for &k in &[32usize, 576, 1536] {
                let w = make_quant(kind, n, k, &mut rng);
                let wf = ref_dequant(kind, &w, n, k);
                for &rows in &[1usize, 2, 5] {
                    let x = rand_x(rows * k, &mut rng);
                    let (y, s) = ref_gemv(&wf, n, k, &x, rows);
                    let mut out = vec![f32::NAN; rows * n];
                    gemv_quant(kind, &w, n, k, &x, rows, &mut out).unwrap();
                    let e = max_err(&out, &y, &s);
                    assert!(
                        e < TOL,
                        "{kind:?} default n={n} k={k} rows={rows}: err {e:e}"
                    );
                    worst[ki] = worst[ki].max(e);
                    for be in backends() {
                        let mut out = vec![f32::NAN; rows * n];
                        gemv_quant_with(be, kind, &w, n, k, &x, rows, &mut out).unwrap();
                        let e = max_err(&out, &y, &s);
                        assert!(
                            e < TOL,
                            "{kind:?} {be:?} n={n} k={k} rows={rows}: err {e:e}"
                        );
                        worst[ki] = worst[ki].max(e);
                    }
                }
            }
        }
    }
    println!(
        "max |y - ref| / Σ|w x|: Q4_0 {:.2e}  Q4_1 {:.2e}  Q8_0 {:.2e}",
        worst[0], worst[1], worst[2]
    );
}

/// Every x-row grouping (R = 4, 3, 2, 1 passes) and batch invariance: a row's result must
/// be bit-identical whether it is computed alone or inside a batch.
#[test]
fn quant_row_groupings_are_batch_invariant() {
    let mut rng = Rng(42);
    let (n, k) = (100, 576);
    for &kind in &KINDS {
        let w = make_quant(kind, n, k, &mut rng);
        let wf = ref_dequant(kind, &w, n, k);
        for be in backends() {
            for rows in 1..=8usize {
                let x = rand_x(rows * k, &mut rng);
                let mut out = vec![0f32; rows * n];
                gemv_quant_with(be, kind, &w, n, k, &x, rows, &mut out).unwrap();
                let (y, s) = ref_gemv(&wf, n, k, &x, rows);
                assert!(max_err(&out, &y, &s) < TOL, "{kind:?} {be:?} rows={rows}");
                for r in 0..rows {
                    let mut single = vec![0f32; n];
                    gemv_quant_with(be, kind, &w, n, k, &x[r * k..(r + 1) * k], 1, &mut single)
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

/// Results must not depend on the number of threads / task split (each output is
/// produced by exactly one kernel invocation in a fixed order).
#[test]
fn thread_count_does_not_change_results() {
    let mut rng = Rng(7);
    let (n, k, rows) = (4099, 576, 3); // odd n: ragged last chunk
    let pool1 = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let pool4 = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    for &kind in &KINDS {
        let w = make_quant(kind, n, k, &mut rng);
        let x = rand_x(rows * k, &mut rng);
        let mut a = vec![0f32; rows * n];
        let mut b = vec![0f32; rows * n];
        pool1
            .install(|| gemv_quant(kind, &w, n, k, &x, rows, &mut a))
            .unwrap();
        pool4
            .install(|| gemv_quant(kind, &w, n, k, &x, rows, &mut b))
            .unwrap();
        assert_eq!(a, b, "{kind:?}");
        let wf = ref_dequant(kind, &w, n, k);
        let (y, s) = ref_gemv(&wf, n, k, &x, rows);
        assert!(max_err(&b, &y, &s) < TOL);
    }
    let wf = rand_x(n * 37, &mut rng);
    let x = rand_x(rows * 37, &mut rng);
    let mut a = vec![0f32; rows * n];
    let mut b = vec![0f32; rows * n];
    pool1
        .install(|| gemv_f32(&wf, n, 37, &x, rows, &mut a))
        .unwrap();
    pool4
        .install(|| gemv_f32(&wf, n, 37, &x, rows, &mut b))
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn f32_all_backends() {
    let mut rng = Rng(99);
    let mut worst = 0f64;
    for &k in &[1usize, 7, 8, 31, 32, 33, 37, 576, 1000] {
        // 300 output rows span several parallel chunks and a ragged tail; bigger shapes
        // only cost time in an unoptimised test build.
        for &n in &[1usize, 7, 64, 300] {
            let w = rand_x(n * k, &mut rng);
            for &rows in &[1usize, 2, 3, 4, 5, 8] {
                let x = rand_x(rows * k, &mut rng);
                let (y, s) = ref_gemv(&w, n, k, &x, rows);
                let mut out = vec![f32::NAN; rows * n];
                gemv_f32(&w, n, k, &x, rows, &mut out).unwrap();
                let e = max_err(&out, &y, &s);
                assert!(e < TOL, "f32 default n={n} k={k} rows={rows}: {e:e}");
                worst = worst.max(e);
                for be in backends() {
                    let mut out = vec![f32::NAN; rows * n];
                    gemv_f32_with(be, &w, n, k, &x, rows, &mut out).unwrap();
                    let e = max_err(&out, &y, &s);
                    assert!(e < TOL, "f32 {be:?} n={n} k={k} rows={rows}: {e:e}");
                    worst = worst.max(e);
                }
                // Same through the byte entry point (Vec<f32> storage is 4-aligned).
                // SAFETY: f32 has no padding; the byte view covers exactly w's memory and
                // lives no longer than `w`.
                let wb =
                    unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), w.len() * 4) };
                let mut out2 = vec![f32::NAN; rows * n];
                gemv_quant(WeightKind::F32, wb, n, k, &x, rows, &mut out2).unwrap();
                let mut out1 = vec![f32::NAN; rows * n];
                gemv_f32(&w, n, k, &x, rows, &mut out1).unwrap();
                assert_eq!(out1, out2);
            }
        }
    }
    println!("f32: max |y - ref| / Σ|w x| = {worst:.2e}");
}

/// Unusual scales: f16 subnormal, zero, negative, large, and a few NaN-free extremes.
/// F16C and `half` must agree (the AVX2 path converts with F16C, the fallback with half).
#[test]
fn special_f16_scales() {
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
        let wf = ref_dequant(kind, &w, n, k);
        let x = rand_x(2 * k, &mut rng);
        let (y, s) = ref_gemv(&wf, n, k, &x, 2);
        for be in backends() {
            let mut out = vec![0f32; 2 * n];
            gemv_quant_with(be, kind, &w, n, k, &x, 2, &mut out).unwrap();
            let e = max_err(&out, &y, &s);
            println!("special scales {kind:?} {be:?}: max err / Σ|w x| = {e:.2e}");
            assert!(e < TOL, "{kind:?} {be:?}: {e:e}");
        }
        assert_eq!(
            dequantize(kind, &w, n, k).unwrap(),
            wf,
            "{kind:?} dequantize"
        );
    }
}

#[test]
fn bad_shapes_are_rejected() {
    let x = vec![0f32; 64];
    let mut out = vec![0f32; 2];
    for &kind in &KINDS {
        let bb = kind.block_bytes();
        let w = vec![0u8; 2 * 2 * bb]; // n=2, k=64
        assert!(gemv_quant(kind, &w, 2, 64, &x, 1, &mut out).is_ok());
        // k not a multiple of 32
        let x33 = vec![0f32; 33];
        assert!(gemv_quant(kind, &w, 2, 33, &x33, 1, &mut out).is_err());
        // wrong weight length
        assert!(gemv_quant(kind, &w[..w.len() - 1], 2, 64, &x, 1, &mut out).is_err());
        assert!(gemv_quant(kind, &w, 3, 64, &x, 1, &mut [0f32; 3]).is_err());
        // wrong x length
        assert!(gemv_quant(kind, &w, 2, 64, &x[..63], 1, &mut out).is_err());
        assert!(gemv_quant(kind, &w, 2, 64, &x, 2, &mut [0f32; 4]).is_err());
        // wrong out length
        assert!(gemv_quant(kind, &w, 2, 64, &x, 1, &mut [0f32; 3]).is_err());
        assert!(dequantize(kind, &w[1..], 2, 64).is_err());
    }
    let wf = vec![0f32; 2 * 37];
    assert!(gemv_f32(&wf, 2, 37, &x[..37], 1, &mut out).is_ok());
    assert!(gemv_f32(&wf, 2, 36, &x[..36], 1, &mut out).is_err());
    assert!(gemv_f32(&wf, 2, 37, &x[..36], 1, &mut out).is_err());
    assert!(gemv_f32(&wf, 2, 37, &x[..37], 1, &mut out[..1]).is_err());
    // F32 through the byte API: misaligned bytes are rejected, not read unaligned.
    let wb = vec![0f32; 2 * 37 + 1];
    // SAFETY: byte view of a live Vec<f32>, no padding.
    let bytes = unsafe { std::slice::from_raw_parts(wb.as_ptr().cast::<u8>(), wb.len() * 4) };
    assert!(gemv_quant(
        WeightKind::F32,
        &bytes[..2 * 37 * 4],
        2,
        37,
        &x[..37],
        1,
        &mut out
    )
    .is_ok());
    assert!(gemv_quant(
        WeightKind::F32,
        &bytes[1..1 + 2 * 37 * 4],
        2,
        37,
        &x[..37],
        1,
        &mut out
    )
    .is_err());
    assert!(gemv_quant(
        WeightKind::F32,
        &bytes[..2 * 37 * 4 - 1],
        2,
        37,
        &x[..37],
        1,
        &mut out
    )
    .is_err());
    // Degenerate but valid shapes.
    assert!(gemv_quant(WeightKind::Q4_1, &[], 0, 64, &x, 1, &mut []).is_ok());
    let mut o2 = vec![1f32; 2];
    assert!(gemv_quant(WeightKind::Q8_0, &[], 2, 0, &[], 1, &mut o2).is_ok());
    assert_eq!(o2, [0.0, 0.0]);
    assert!(gemv_quant(WeightKind::Q8_0, &[0u8; 68], 2, 32, &[], 0, &mut []).is_ok());
}
