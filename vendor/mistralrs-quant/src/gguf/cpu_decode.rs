//! summarize patch: when `GgufMatMul::forward` takes the matrix-vector kernels of `cpu_gemv`
//! (decode-sized f32 inputs on the CPU, Q4_0/Q4_1/Q8_0 weights). See vendor/README.md.
//!
//! By default the activations are quantized to 8 bits per block of 32 and multiplied with
//! integer instructions, as llama.cpp does (Q8_1 against Q4_1, Q8_0 against Q4_0/Q8_0).
//! `MISTRALRS_CPU_QGEMV=f32` keeps them in f32 (exact products with the dequantized weights,
//! about 1.5 times slower); `MISTRALRS_CPU_QGEMV=0` turns the kernels off.

use super::cpu_gemv::{gemv_quant, gemv_quant_q8, WeightKind};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Storage, Tensor};

/// Inputs of up to this many rows (decode, a few sequences at once) take the vector kernels;
/// longer ones (prefill) stay on the matrix-matrix path, which reuses each weight many times.
const MAX_DECODE_ROWS: usize = 8;

fn kind_of(dtype: GgmlDType) -> Option<WeightKind> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightKind::Q4_0),
        GgmlDType::Q4_1 => Some(WeightKind::Q4_1),
        GgmlDType::Q8_0 => Some(WeightKind::Q8_0),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Int8,
    F32,
}

/// `MISTRALRS_CPU_QGEMV`: unset = integer dots, `f32` = f32 activations, `0` = off.
fn mode() -> Mode {
    static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("MISTRALRS_CPU_QGEMV").as_deref() {
        Ok("0") => Mode::Off,
        Ok("f32") => Mode::F32,
        _ => Mode::Int8,
    })
}

fn enabled() -> bool {
    mode() != Mode::Off
}

/// The weights to keep for decode: a 2-D CPU tensor of a type the kernels read.
pub(crate) fn decode_weights(q: &std::sync::Arc<QTensor>) -> Option<std::sync::Arc<QTensor>> {
    let usable = enabled()
        && q.device().is_cpu()
        && kind_of(q.dtype()).is_some()
        && q.shape().dims().len() == 2
        && q.shape().dims()[1] % 32 == 0;
    usable.then(|| q.clone())
}

/// `x · Wᵀ` through the kernels when `x` is a decode-sized f32 CPU input, else `None`.
pub(crate) fn forward(q: &QTensor, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let Some(kind) = kind_of(q.dtype()) else {
        return Ok(None);
    };
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n, k) = q.shape().dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&k) {
        return Ok(None);
    }
    let rows = x.elem_count() / k;
    if rows == 0 || rows > MAX_DECODE_ROWS {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let xs = &cpu.as_slice::<f32>()?[layout.start_offset()..][..rows * k];
    let data = q.data()?;
    let mut out = vec![0f32; rows * n];
    let product = if mode() == Mode::F32 {
        gemv_quant
    } else {
        gemv_quant_q8
    };
    product(kind, &data, n, k, xs, rows, &mut out).map_err(candle_core::Error::msg)?;
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?))
}
