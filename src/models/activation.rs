//! GELU in its two forms, shared by GPT-2 and BERT.
//!
//! On flex each runs in place on the activations' buffer (`kernels::activation`: no libm call
//! per element, vectorised); elsewhere as burn ops. Either way the result matches transformers'
//! to float tolerance (unit tests against f64, and the parity tests).

use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Tensor};

use super::kernels::activation as cpu;

/// `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, written as
/// `x·σ(2·√(2/π)·(x + 0.044715·x³))` (the same function, since `0.5·(1 + tanh(u)) = σ(2u)`).
///
/// Why not burn's `gelu_approximate`: on flex it computes `x³` with a scalar `powf` and `tanh`
/// with a scalar `tanhf`, ~5 ms of a 35 ms gpt2 batch-8 decode step.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let x = match in_place_on_flex(x, cpu::gelu_tanh) {
        Ok(y) => return y,
        Err(x) => x,
    };
    // 2u = C·x + C·0.044715·x³ = x·(C + C·0.044715·x²), in as few passes as possible.
    const C: f64 = 2.0 * 0.797_884_560_802_865_4;
    let two_u = (x.clone() * x.clone() * (C * 0.044715) + C) * x.clone();
    x * sigmoid(two_u)
}

/// `gelu`: the exact, erf-based `0.5·x·(1 + erf(x/√2))` (BERT's `hidden_act`).
pub fn gelu_erf<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    in_place_on_flex(x, cpu::gelu_erf).unwrap_or_else(gelu)
}

/// `f` over `x`'s values in place when `x` lives on flex; `x` back untouched elsewhere.
// The tensor is handed back, not boxed: this runs once per layer and step.
#[allow(clippy::result_large_err)]
fn in_place_on_flex<const D: usize>(
    x: Tensor<D>,
    f: fn(&mut [f32]),
) -> Result<Tensor<D>, Tensor<D>> {
    let device = x.device();
    if device != Device::flex() {
        return Err(x);
    }
    // Zero-copy: the input is a dense layer's fresh output, with no other owner.
    let mut data = x.into_data();
    f(data.as_mut_slice().expect("activations are f32"));
    Ok(Tensor::from_data(data, &device))
}
