//! Correctness tests against an independent reference: dequantize per the ggml layout
//! spec (written separately from the library), then f64 dot products.

use crate::qgemv::{
    dequantize, gemv_f32, gemv_f32_with, gemv_quant, gemv_quant_with, Backend, WeightKind,
};

/// xorshift64* — deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// uniform in [lo, hi)
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

const KINDS: [WeightKind; 3] = [WeightKind::Q4_0, WeightKind::Q4_1, WeightKind::Q8_0];

fn f16_bits(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random ggml blocks: d ∈ [0.01, 0.1), m ∈ [-0.05, 0), random nibbles / i8.
fn make_quant(kind: WeightKind, n: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..n * k / 32 {
        w.extend_from_slice(&f16_bits(rng.uniform(0.01, 0.1)));
        if kind == WeightKind::Q4_1 {
            w.extend_from_slice(&f16_bits(rng.uniform(-0.05, 0.0)));
        }
        let nq = if kind == WeightKind::Q8_0 { 32 } else { 16 };
        for _ in 0..nq {
            w.push(rng.byte());
        }
    }
    assert_eq!(w.len(), n * kind.row_bytes(k).unwrap());
    w
}

fn rand_x(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Independent dequantizer, straight from the layout description.
fn ref_dequant(kind: WeightKind, w: &[u8], n: usize, k: usize) -> Vec<f32> {
    let f16 = |b: &[u8]| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    let bb = kind.block_bytes();
    let mut out = vec![0f32; n * k];
    for (bi, blk) in w.chunks(bb).enumerate() {
        for j in 0..32 {
            let v = match kind {
                WeightKind::Q4_0 => {
                    let qs = &blk[2..18];
                    let q = if j < 16 {
                        qs[j] & 0x0F
                    } else {
                        qs[j - 16] >> 4
                    };
                    f16(&blk[0..2]) * (q as f32 - 8.0)
                }
                WeightKind::Q4_1 => {
                    let qs = &blk[4..20];
                    let q = if j < 16 {
                        qs[j] & 0x0F
                    } else {
                        qs[j - 16] >> 4
                    };
                    f16(&blk[0..2]) * q as f32 + f16(&blk[2..4])
                }
                WeightKind::Q8_0 => f16(&blk[0..2]) * (blk[2 + j] as i8) as f32,
                WeightKind::F32 => unreachable!(),
            };
            out[bi * 32 + j] = v;
        }
    }
    out
}

/// Returns (reference y, Σ|w x|) per (row, feature), both rows × n.
fn ref_gemv(wf: &[f32], n: usize, k: usize, x: &[f32], rows: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0f64; rows * n];
    let mut s = vec![0f64; rows * n];
    for r in 0..rows {
        for j in 0..n {
            let (mut a, mut b) = (0f64, 0f64);
            for t in 0..k {
                let p = wf[j * k + t] as f64 * x[r * k + t] as f64;
                a += p;
                b += p.abs();
            }
            y[r * n + j] = a;
            s[r * n + j] = b;
        }
    }
    (y, s)
}

/// Error relative to Σ|w_t x_t| (the natural scale of f32 dot-product rounding; plain
/// relative error is meaningless when the dot product cancels to ~0).
fn max_err(out: &[f32], y: &[f64], s: &[f64]) -> f64 {
    out.iter()
        .zip(y.iter().zip(s))
        .map(|(&o, (&y, &s))| {
            assert!(o.is_finite(), "non-finite output {o}");
            (o as f64 - y).abs() / s.max(1e-30)
        })
        .fold(0.0, f64::max)
}

const TOL: f64 = 1e-5;

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Scalar];
    if Backend::Avx2Fma.is_available() {
        b.push(Backend::Avx2Fma);
    } else {
        eprintln!("NOTE: AVX2+FMA+F16C not available, only the fallback path is tested");
    }
    b
}

#[test]
fn quant_all_shapes_all_backends() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut worst = [0f64; 3];
    for (ki, &kind) in KINDS.iter().enumerate() {
        for &n in &[1usize, 7, 64, 576, 1536] {
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
        for &n in &[1usize, 7, 64, 576, 1536] {
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
