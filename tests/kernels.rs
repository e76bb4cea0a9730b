//! The CPU kernels patched into the inference engine (vendor/README.md), compiled straight from
//! the vendored files and checked against reference implementations: the matrix-vector products
//! for decode (vendor/mistralrs-quant) against dequantize-then-f64-dot and against ggml's
//! 8-bit activation scheme, and the attention
//! kernels (vendor/mistralrs-core) against a line-for-line port of the original mistral.rs
//! kernels. Both the AVX2 and the portable paths run where the CPU has AVX2.

#[path = "../vendor/mistralrs-quant/src/gguf/cpu_gemv.rs"]
mod qgemv;

#[path = "../vendor/mistralrs-core/src/attention/backends/cpu/fast.rs"]
mod fast;

/// The original f32 kernels of mistralrs-core 0.8.1, ported to return a `Vec<f32>`.
#[path = "kernels/attention_reference.rs"]
mod reference;

#[path = "kernels/gemv_common.rs"]
mod gemv_common;

#[path = "kernels/gemv.rs"]
mod gemv_tests;

#[path = "kernels/gemv_q8.rs"]
mod gemv_q8_tests;

#[path = "kernels/attention.rs"]
mod attention_tests;
