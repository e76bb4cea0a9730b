//! Test helpers shared by the integration tests: deterministic data and an independent
//! reference (ggml layout spec, written separately from the library, f64 dot products).
#![allow(dead_code)] // each test crate uses a different subset

use crate::qgemv::{Backend, WeightKind};

/// xorshift64* — deterministic, no dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// uniform in [lo, hi)
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

pub const KINDS: [WeightKind; 3] = [WeightKind::Q4_0, WeightKind::Q4_1, WeightKind::Q8_0];

pub fn f16_bits(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random ggml blocks: d ∈ [0.01, 0.1), m ∈ [-0.05, 0), random nibbles / i8.
pub fn make_quant(kind: WeightKind, n: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
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

pub fn rand_x(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Independent dequantizer, straight from the layout description.
pub fn ref_dequant(kind: WeightKind, w: &[u8], n: usize, k: usize) -> Vec<f32> {
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
pub fn ref_gemv(wf: &[f32], n: usize, k: usize, x: &[f32], rows: usize) -> (Vec<f64>, Vec<f64>) {
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
pub fn max_err(out: &[f32], y: &[f64], s: &[f64]) -> f64 {
    out.iter()
        .zip(y.iter().zip(s))
        .map(|(&o, (&y, &s))| {
            assert!(o.is_finite(), "non-finite output {o}");
            (o as f64 - y).abs() / s.max(1e-30)
        })
        .fold(0.0, f64::max)
}

pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Scalar];
    if Backend::Avx2Fma.is_available() {
        b.push(Backend::Avx2Fma);
    } else {
        eprintln!("NOTE: AVX2+FMA+F16C not available, only the fallback path is tested");
    }
    b
}
