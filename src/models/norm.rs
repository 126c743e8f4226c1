//! Root-mean-square normalisation (`LlamaRMSNorm`): `x / sqrt(mean(x²) + eps) · weight`,
//! over the last dimension, in f32 (the Llama family's norms, and Qwen3's per-head
//! `q_norm`/`k_norm`); and layer normalisation of rows on the host, for the steps of GPT-2 and
//! the encoders that run there.

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::kernels::PARALLEL_ELEMENTS;

/// `normalize` on each row of `d` values: on rayon's pool when there are enough of them (a
/// prompt's, an encoder input's), inline for a decode step's few.
fn each_row(x: &mut [f32], d: usize, normalize: impl Fn(&mut [f32]) + Sync) {
    if x.len() >= PARALLEL_ELEMENTS {
        x.par_chunks_mut(d).with_min_len(8).for_each(&normalize);
    } else {
        x.chunks_exact_mut(d).for_each(&normalize);
    }
}

/// `Σ f(v)` over `values` in eight lanes, so that the loop vectorises: one running sum is a
/// chain of dependent additions.
#[inline(always)]
fn sum_in_lanes(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for l in 0..8 {
            lanes[l] += f(chunk[l]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[derive(Debug)]
pub struct RmsNorm {
    /// `[d]`, the learned scale.
    weight: Tensor<1>,
    /// The same scale on the host, for decode steps computed there (`normalize_rows`).
    host_weight: Vec<f32>,
    eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor<1>, eps: f64) -> Self {
        let host_weight = weight
            .to_data()
            .try_to_vec::<f32>()
            .expect("a norm's weight is f32");
        Self {
            weight,
            host_weight,
            eps,
        }
    }

    /// `forward` over rows of `d` values on the host, in place: the same operations (the
    /// mean's sum in another order).
    pub fn normalize_rows(&self, x: &mut [f32]) {
        let d = self.host_weight.len();
        let eps = self.eps as f32;
        each_row(x, d, |row| {
            let mean_square = sum_in_lanes(row, |v| v * v) / d as f32;
            let inverse = 1.0 / (mean_square + eps).sqrt();
            for (v, w) in row.iter_mut().zip(&self.host_weight) {
                *v = *v * inverse * w;
            }
        });
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean_square = (x.clone() * x.clone()).mean_dim(D - 1);
        let normalised = x * mean_square.add_scalar(self.eps).sqrt().recip();
        normalised * self.weight.clone().unsqueeze::<D>()
    }
}

/// `nn.LayerNorm` over rows of `d` values on the host, for steps computed there:
/// `(x − mean) / sqrt(var + eps) · gamma + beta`, the variance biased, as burn's `LayerNorm`
/// computes it (the sums in another order).
#[derive(Debug)]
pub struct HostLayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl HostLayerNorm {
    /// The host's copy of `norm` (which has a bias, as every LayerNorm we load), at `eps`.
    pub fn of(norm: &burn::nn::LayerNorm, eps: f64) -> Self {
        let host = |t: Tensor<1>| {
            t.to_data()
                .try_to_vec::<f32>()
                .expect("a norm's weights are f32")
        };
        Self {
            gamma: host(norm.gamma.val()),
            beta: host(norm.beta.as_ref().expect("a LayerNorm with a bias").val()),
            eps: eps as f32,
        }
    }

    pub fn normalize_rows(&self, x: &mut [f32]) {
        let d = self.gamma.len();
        each_row(x, d, |row| {
            let mean = sum_in_lanes(row, |v| v) / d as f32;
            let variance = sum_in_lanes(row, |v| (v - mean) * (v - mean)) / d as f32;
            let inverse = 1.0 / (variance + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inverse * g + b;
            }
        });
    }
}

/// A LayerNorm for burn's steps (wgpu), and its host copy for the steps run on the host.
#[derive(Debug)]
pub struct HostedLayerNorm {
    pub tensor: burn::nn::LayerNorm,
    pub host: HostLayerNorm,
}

impl HostedLayerNorm {
    pub fn new(tensor: burn::nn::LayerNorm, eps: f64) -> Self {
        let host = HostLayerNorm::of(&tensor, eps);
        Self { tensor, host }
    }
}
