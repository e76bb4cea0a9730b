//! Compares `attn::fast` against the verbatim original kernels in
//! `attn::reference`.
use crate::{fast, reference};
use rayon::ThreadPool;
use std::sync::LazyLock;

static POOL: LazyLock<ThreadPool> = LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
});

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        // xorshift64*, uniform in [-1, 1)
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * amp).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// (b, s, h, d) contiguous.
    Contiguous,
    /// Storage (b, h, s, d) viewed through transpose(1, 2), as mistralrs does.
    Transposed,
    /// Like Transposed but the storage has `cap > s` rows per head (a KV
    /// cache narrowed to its used length).
    TransposedCap(usize),
}

/// A (b, s, heads, d) tensor: data + strides.
struct T4 {
    data: Vec<f32>,
    shape: [usize; 4],
    stride: [usize; 4],
}

fn tensor(
    rng: &mut Rng,
    b: usize,
    s: usize,
    heads: usize,
    d: usize,
    layout: Layout,
    amp: f32,
) -> T4 {
    let (cap, stride) = match layout {
        Layout::Contiguous => (s, [s * heads * d, heads * d, d, 1]),
        Layout::Transposed => (s, [heads * s * d, d, s * d, 1]),
        Layout::TransposedCap(c) => (c, [heads * c * d, d, c * d, 1]),
    };
    T4 {
        data: rng.vec(b * heads * cap * d, amp),
        shape: [b, s, heads, d],
        stride,
    }
}

#[derive(Clone, Debug)]
struct Mask {
    data: Vec<f32>,
    dims: Vec<usize>,
}

/// Causal (q_len, kv_len) mask of 0 / -inf; queries sit at the end of kv.
fn causal(q_len: usize, kv_len: usize) -> Mask {
    let past = kv_len - q_len;
    let data = (0..q_len)
        .flat_map(|i| (0..kv_len).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Mask {
        data,
        dims: vec![q_len, kv_len],
    }
}

#[derive(Clone, Copy)]
enum Path {
    Auto,
    Portable,
}

struct Case {
    b: usize,
    h: usize,
    k_h: usize,
    v_h: usize,
    d: usize,
    q_len: usize,
    kv_len: usize,
    layout: Layout,
    softcap: f32,
    max_bias: f32,
    seed: u64,
}

impl Case {
    fn new(b: usize, h: usize, k_h: usize, d: usize, q_len: usize, kv_len: usize) -> Self {
        Case {
            b,
            h,
            k_h,
            v_h: k_h,
            d,
            q_len,
            kv_len,
            layout: Layout::Transposed,
            softcap: 0.0,
            max_bias: 0.0,
            seed: 42,
        }
    }
    fn v_heads(mut self, v_h: usize) -> Self {
        self.v_h = v_h;
        self
    }
    fn layout(mut self, l: Layout) -> Self {
        self.layout = l;
        self
    }
    fn softcap(mut self, s: f32) -> Self {
        self.softcap = s;
        self
    }
    fn max_bias(mut self, m: f32) -> Self {
        self.max_bias = m;
        self
    }
}

type Kernel = fn(
    &ThreadPool,
    &[f32],
    &[f32],
    &[f32],
    Option<&[f32]>,
    Option<&[usize]>,
    &[usize],
    &[usize],
    &[usize],
    &[usize],
    &[usize],
    &[usize],
    f32,
    f32,
    f32,
) -> Vec<f32>;

/// Runs `reference` and the fast kernel on the same inputs; returns
/// (max abs error / max |ref|, number of outputs).
fn compare(c: &Case, mask: Option<&Mask>, reference: Kernel, fast: Kernel) -> (f32, usize) {
    let mut rng = Rng(c.seed);
    let q = tensor(&mut rng, c.b, c.q_len, c.h, c.d, c.layout, 1.0);
    let k = tensor(&mut rng, c.b, c.kv_len, c.k_h, c.d, c.layout, 1.0);
    let v = tensor(&mut rng, c.b, c.kv_len, c.v_h, c.d, c.layout, 1.0);
    // A sharp-ish softmax (scores spread over ~±8) exercises the max logic.
    let scale = 8.0 / (c.d as f32).sqrt();
    let run = |f: Kernel| {
        f(
            &POOL,
            &q.data,
            &k.data,
            &v.data,
            mask.map(|m| m.data.as_slice()),
            mask.map(|m| m.dims.as_slice()),
            &q.shape,
            &k.shape,
            &v.shape,
            &q.stride,
            &k.stride,
            &v.stride,
            scale,
            c.max_bias,
            c.softcap,
        )
    };
    let want = run(reference);
    let got = run(fast);
    assert_eq!(want.len(), got.len());
    let max_ref = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |a, &x| a.max(x.abs()))
        .max(1e-30);
    let mut max_err = 0f32;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if w.is_nan() || g.is_nan() {
            assert!(
                w.is_nan() && g.is_nan(),
                "NaN mismatch at {i}: want {w}, got {g}"
            );
            continue;
        }
        max_err = max_err.max((w - g).abs());
    }
    (max_err / max_ref, want.len())
}

const TOL: f32 = 1e-4;

fn fast_prefill(p: Path) -> Kernel {
    match p {
        Path::Auto => fast::attn_prefill_f32,
        Path::Portable => fast::attn_prefill_f32_portable,
    }
}
fn fast_decode(p: Path) -> Kernel {
    match p {
        Path::Auto => fast::attn_decode_f32,
        Path::Portable => fast::attn_decode_f32_portable,
    }
}

fn check_prefill(c: &Case, mask: Option<&Mask>, path: Path) {
    let (err, n) = compare(c, mask, reference::flash_attn_cpu, fast_prefill(path));
    if std::env::var_os("ATTN_VERBOSE").is_some() {
        eprintln!(
            "prefill b={} h={} d={} q={} kv={} mask={} sc={}: rel err {err:.2e}",
            c.b,
            c.h,
            c.d,
            c.q_len,
            c.kv_len,
            mask.is_some(),
            c.softcap
        );
    }
    assert!(
        err <= TOL,
        "prefill b={} h={} d={} q={} kv={}: rel err {err:e}",
        c.b,
        c.h,
        c.d,
        c.q_len,
        c.kv_len
    );
    assert_eq!(n, c.b * c.h * c.q_len * c.d);
}

/// Decode vs. the original decode kernel (only meaningful where the original
/// is well defined: b == 1 and no -inf mask, see `decode_quirks`) and vs. the
/// original prefill kernel run with q_len == 1 (well defined everywhere).
fn check_decode(c: &Case, mask: Option<&Mask>, path: Path, vs_original_decode: bool) {
    assert_eq!(c.q_len, 1);
    let (err, _) = compare(c, mask, reference::flash_attn_cpu, fast_decode(path));
    if std::env::var_os("ATTN_VERBOSE").is_some() {
        eprintln!(
            "decode b={} h={} d={} kv={} mask={} sc={}: rel err {err:.2e}",
            c.b,
            c.h,
            c.d,
            c.kv_len,
            mask.is_some(),
            c.softcap
        );
    }
    assert!(
        err <= TOL,
        "decode(vs prefill ref) b={} kv={} d={}: rel err {err:e}",
        c.b,
        c.kv_len,
        c.d
    );
    if vs_original_decode {
        let (err, _) = compare(
            c,
            mask,
            reference::flash_attn_cpu_single_q,
            fast_decode(path),
        );
        assert!(
            err <= TOL,
            "decode(vs decode ref) b={} kv={} d={}: rel err {err:e}",
            c.b,
            c.kv_len,
            c.d
        );
    }
}

const PATHS: [Path; 2] = [Path::Auto, Path::Portable];

#[test]
fn reports_isa() {
    eprintln!("fast::uses_avx2() = {}", fast::uses_avx2());
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        fast::uses_avx2(),
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    );
}

#[test]
fn prefill_smollm_shapes() {
    // 300 crosses the 256-position kv chunk and many 16-row query blocks; the benchmark's 971
    // takes minutes in an unoptimised test build.
    for path in PATHS {
        for n in [1, 7, 64, 300] {
            let c = Case::new(1, 9, 3, 64, n, n);
            check_prefill(&c, None, path);
            check_prefill(&c, Some(&causal(n, n)), path);
        }
    }
}

#[test]
fn prefill_layouts() {
    for path in PATHS {
        for layout in [
            Layout::Contiguous,
            Layout::Transposed,
            Layout::TransposedCap(150),
        ] {
            let c = Case::new(2, 9, 3, 64, 33, 129).layout(layout);
            check_prefill(&c, None, path);
            check_prefill(&c, Some(&causal(33, 129)), path);
        }
    }
}

#[test]
fn prefill_odd_head_dims() {
    for path in PATHS {
        for d in [80, 37, 8, 16, 128, 1, 3] {
            for (q, kv) in [(5, 5), (19, 300), (40, 40)] {
                let c = Case::new(1, 4, 2, d, q, kv);
                check_prefill(&c, None, path);
                check_prefill(&c, Some(&causal(q, kv)), path);
            }
        }
    }
}

#[test]
fn prefill_softcap() {
    for path in PATHS {
        for sc in [0.5, 5.0, 30.0] {
            let c = Case::new(1, 9, 3, 64, 97, 97).softcap(sc);
            check_prefill(&c, Some(&causal(97, 97)), path);
            let c = Case::new(1, 2, 1, 37, 3, 20).softcap(sc);
            check_prefill(&c, None, path);
        }
    }
}

#[test]
fn prefill_4d_batch_mask() {
    // (b, 1, q, kv): per-batch left padding (-inf) + causal + finite biases.
    let (b, q, kv) = (3, 37, 300);
    let mut rng = Rng(7);
    let mut data = vec![0f32; b * q * kv];
    for bi in 0..b {
        let pad = bi * 50;
        for i in 0..q {
            for j in 0..kv {
                data[(bi * q + i) * kv + j] = if j < pad || j > kv - q + i {
                    f32::NEG_INFINITY
                } else {
                    rng.next()
                };
            }
        }
    }
    let m = Mask {
        data,
        dims: vec![b, 1, q, kv],
    };
    for path in PATHS {
        let c = Case::new(b, 6, 2, 64, q, kv);
        check_prefill(&c, Some(&m), path);
        check_prefill(&c.softcap(10.0), Some(&m), path);
    }
}

#[test]
fn prefill_sliding_window_and_holes() {
    // Dead prefix + dead suffix + scattered -inf holes inside the live range.
    let (q, kv, w) = (64, 400, 100);
    let mut rng = Rng(9);
    let past = kv - q;
    let data = (0..q)
        .flat_map(|i| (0..kv).map(move |j| (i, j)))
        .map(|(i, j)| {
            let p = past + i;
            if j > p || j + w < p || rng.next() > 0.8 {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let m = Mask {
        data,
        dims: vec![q, kv],
    };
    for path in PATHS {
        check_prefill(&Case::new(1, 4, 4, 64, q, kv), Some(&m), path);
    }
}

#[test]
fn prefill_fully_masked_rows_are_nan_like_original() {
    let (q, kv) = (9, 40);
    let mut data = causal(q, kv).data;
    for j in 0..kv {
        data[3 * kv + j] = f32::NEG_INFINITY; // row 3 fully masked
    }
    let m = Mask {
        data,
        dims: vec![q, kv],
    };
    for path in PATHS {
        check_prefill(&Case::new(1, 2, 1, 16, q, kv), Some(&m), path);
    }
}

#[test]
fn prefill_mask_broadcast_variants() {
    let mut rng = Rng(11);
    let (b, h, q, kv) = (2, 6, 21, 50);
    let masks = vec![
        // scalar (empty dims)
        Mask {
            data: vec![0.25],
            dims: vec![],
        },
        // 1-D over kv
        Mask {
            data: rng.vec(kv, 1.0),
            dims: vec![kv],
        },
        // 2-D broadcast over q (q dim 1) and over kv (kv dim 1, clamped)
        Mask {
            data: rng.vec(kv, 1.0),
            dims: vec![1, kv],
        },
        Mask {
            data: rng.vec(q, 1.0),
            dims: vec![q, 1],
        },
        // 2-D with a kv dim shorter than kv_len (clamps to the last column)
        Mask {
            data: rng.vec(q * 30, 1.0),
            dims: vec![q, 30],
        },
        // 3-D: per batch, per head, per (b*h), and an unrelated leading dim
        Mask {
            data: rng.vec(b * q * kv, 1.0),
            dims: vec![b, q, kv],
        },
        Mask {
            data: rng.vec(h * q * kv, 1.0),
            dims: vec![h, q, kv],
        },
        Mask {
            data: rng.vec(b * h * q * kv, 1.0),
            dims: vec![b * h, q, kv],
        },
        Mask {
            data: rng.vec(5 * q * kv, 1.0),
            dims: vec![5, q, kv],
        },
        // 4-D: (b, h, q, kv), (1, h, q, kv), (b*h, 1, q, kv), (b, b, ...)
        Mask {
            data: rng.vec(b * h * q * kv, 1.0),
            dims: vec![b, h, q, kv],
        },
        Mask {
            data: rng.vec(h * q * kv, 1.0),
            dims: vec![1, h, q, kv],
        },
        Mask {
            data: rng.vec(b * h * q * kv, 1.0),
            dims: vec![b * h, 1, q, kv],
        },
        Mask {
            data: rng.vec(b * b * q * kv, 1.0),
            dims: vec![b, b, q, kv],
        },
        // 5-D
        Mask {
            data: rng.vec(b * h * q * kv, 1.0),
            dims: vec![b, h, 1, q, kv],
        },
        // data shorter than the dims claim: the original reads 0.0 there
        Mask {
            data: rng.vec(q * kv / 2 + 3, 1.0),
            dims: vec![b, 1, q, kv],
        },
        // zero-sized dim: mask_offset returns None -> 0.0 everywhere
        Mask {
            data: vec![],
            dims: vec![0, kv],
        },
        // -inf causal in a broadcastable 3-D (1, q, kv)
        Mask {
            data: causal(q, kv).data,
            dims: vec![1, q, kv],
        },
    ];
    for path in PATHS {
        for m in &masks {
            let c = Case::new(b, h, 3, 24, q, kv);
            let (err, _) = compare(&c, Some(m), reference::flash_attn_cpu, fast_prefill(path));
            assert!(err <= TOL, "mask dims {:?}: rel err {err:e}", m.dims);
        }
    }
}

#[test]
fn lookup_masks_over_several_chunks() {
    // Masks that cannot be read as a contiguous row (clamped kv dim, short
    // data) over kv_len spanning several KV chunks, including -inf.
    let mut rng = Rng(13);
    let (q, kv) = (5, 700);
    let mut clamped = rng.vec(q * 300, 1.0);
    clamped[299] = f32::NEG_INFINITY; // row 0: kv >= 299 all dead (clamping)
    let mut short = rng.vec(q * kv - 900, 1.0);
    short[10] = f32::NEG_INFINITY;
    let masks = [
        Mask {
            data: clamped,
            dims: vec![q, 300],
        },
        Mask {
            data: short,
            dims: vec![q, kv],
        },
    ];
    for path in PATHS {
        for m in &masks {
            check_prefill(&Case::new(1, 4, 2, 40, q, kv), Some(m), path);
            let m1 = Mask {
                data: m.data.clone(),
                dims: vec![1, m.dims[1]],
            };
            check_decode(&Case::new(1, 4, 2, 40, 1, kv), Some(&m1), path, false);
        }
    }
}

#[test]
fn prefill_alibi_slope() {
    // max_bias > 0: mask values are multiplied by a per-head slope.
    let (q, kv) = (30, 70);
    let data: Vec<f32> = (0..q)
        .flat_map(|i| {
            (0..kv).map(move |j| {
                if j > kv - q + i {
                    f32::NEG_INFINITY
                } else {
                    -((kv - j) as f32)
                }
            })
        })
        .collect();
    let m = Mask {
        data,
        dims: vec![q, kv],
    };
    for path in PATHS {
        check_prefill(&Case::new(1, 9, 3, 32, q, kv).max_bias(8.0), Some(&m), path);
        check_decode(
            &Case::new(1, 9, 3, 32, 1, kv).max_bias(8.0),
            Some(&Mask {
                data: m.data[..kv].to_vec(),
                dims: vec![1, kv],
            }),
            path,
            false,
        );
    }
}

#[test]
fn decode_smollm_shapes() {
    for path in PATHS {
        for kv in [1, 15, 16, 17, 1000, 4100] {
            let c = Case::new(1, 9, 3, 64, 1, kv);
            check_decode(&c, None, path, true);
            let c = Case::new(1, 9, 3, 64, 1, kv).layout(Layout::TransposedCap(kv + 13));
            check_decode(&c, None, path, true);
        }
    }
}

#[test]
fn decode_variants() {
    for path in PATHS {
        for d in [80, 37, 128, 5] {
            check_decode(&Case::new(1, 8, 2, d, 1, 333), None, path, true);
        }
        // softcap
        check_decode(
            &Case::new(1, 9, 3, 64, 1, 1000).softcap(20.0),
            None,
            path,
            true,
        );
        check_decode(
            &Case::new(1, 4, 4, 37, 1, 70).softcap(0.5),
            None,
            path,
            true,
        );
        // MHA, MQA, contiguous
        check_decode(&Case::new(1, 4, 4, 64, 1, 500), None, path, true);
        check_decode(
            &Case::new(1, 8, 1, 64, 1, 500).layout(Layout::Contiguous),
            None,
            path,
            true,
        );
        // finite bias mask (original decode is well defined)
        let mut rng = Rng(3);
        let m = Mask {
            data: rng.vec(600, 2.0),
            dims: vec![1, 600],
        };
        check_decode(&Case::new(1, 9, 3, 64, 1, 600), Some(&m), path, true);
        // batch > 1 and -inf masks: only vs. the prefill reference
        check_decode(&Case::new(3, 9, 3, 64, 1, 777), None, path, false);
        let mut data = rng.vec(2 * 777, 1.0);
        data[..100].fill(f32::NEG_INFINITY); // batch 0: left padding
        data[777 + 700..].fill(f32::NEG_INFINITY); // batch 1: dead tail
        let m = Mask {
            data,
            dims: vec![2, 1, 1, 777],
        };
        check_decode(&Case::new(2, 9, 3, 64, 1, 777), Some(&m), path, false);
    }
}

/// Documents where the ORIGINAL decode kernel is not well defined, which is
/// why `check_decode` compares against it only for b == 1 without -inf.
#[test]
fn decode_quirks_of_original() {
    let c = Case::new(2, 2, 1, 8, 1, 40);
    // b > 1: every batch gets batch b-1's result (scratch is indexed by
    // (tile, head) only).
    let mut rng = Rng(c.seed);
    let q = tensor(&mut rng, c.b, 1, c.h, c.d, c.layout, 1.0);
    let k = tensor(&mut rng, c.b, c.kv_len, c.k_h, c.d, c.layout, 1.0);
    let v = tensor(&mut rng, c.b, c.kv_len, c.k_h, c.d, c.layout, 1.0);
    let run = |f: Kernel, mask: Option<&Mask>| {
        f(
            &POOL,
            &q.data,
            &k.data,
            &v.data,
            mask.map(|m| m.data.as_slice()),
            mask.map(|m| m.dims.as_slice()),
            &q.shape,
            &k.shape,
            &v.shape,
            &q.stride,
            &k.stride,
            &v.stride,
            0.3,
            0.0,
            0.0,
        )
    };
    let orig = run(reference::flash_attn_cpu_single_q, None);
    let per_batch = c.h * c.d;
    assert_eq!(
        orig[..per_batch],
        orig[per_batch..],
        "original decode copies the last batch"
    );
    let fast = run(fast::attn_decode_f32, None);
    assert_ne!(fast[..per_batch], fast[per_batch..]);
    // A -inf at the start of a 16-wide tile makes the original decode NaN
    // (exp(-inf - -inf)); the original prefill (and fast) skip it.
    let mut data = vec![0f32; c.kv_len];
    data[16] = f32::NEG_INFINITY;
    let m = Mask {
        data,
        dims: vec![1, c.kv_len],
    };
    assert!(run(reference::flash_attn_cpu_single_q, Some(&m))
        .iter()
        .any(|x| x.is_nan()));
    assert!(run(fast::attn_decode_f32, Some(&m))
        .iter()
        .all(|x| x.is_finite()));
}

#[test]
fn empty_inputs() {
    let c = Case::new(1, 3, 3, 8, 0, 5);
    let (_, n) = compare(&c, None, reference::flash_attn_cpu, fast::attn_prefill_f32);
    assert_eq!(n, 0);
    // kv_len == 0: original prefill yields NaN (0 * 1/0); so do we.
    let c = Case::new(1, 3, 3, 8, 4, 0);
    compare(&c, None, reference::flash_attn_cpu, fast::attn_prefill_f32);
}

#[test]
fn different_k_and_v_head_counts() {
    for path in PATHS {
        let c = Case::new(1, 8, 2, 32, 40, 90).v_heads(4);
        check_prefill(&c, Some(&causal(40, 90)), path);
        check_prefill(&Case::new(1, 8, 4, 32, 5, 90).v_heads(2), None, path);
        check_decode(
            &Case::new(2, 8, 2, 32, 1, 600).v_heads(4),
            None,
            path,
            false,
        );
        check_decode(&Case::new(1, 8, 2, 32, 1, 600).v_heads(8), None, path, true);
    }
}
