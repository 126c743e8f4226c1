//! Root-mean-square normalisation (`LlamaRMSNorm`): `x / sqrt(mean(x²) + eps) · weight`,
//! over the last dimension, in f32 (the Llama family's norms, and Qwen3's per-head
//! `q_norm`/`k_norm`); and layer normalisation of rows on the host, for GPT-2's decode steps.

use burn::tensor::Tensor;

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

    /// `forward` over rows of `d` values on the host, in place: the same operations in the
    /// same order (the mean's sum aside, which is sequential here).
    pub fn normalize_rows(&self, x: &mut [f32]) {
        let d = self.host_weight.len();
        let eps = self.eps as f32;
        for row in x.chunks_exact_mut(d) {
            let mean_square = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let inverse = 1.0 / (mean_square + eps).sqrt();
            for (v, w) in row.iter_mut().zip(&self.host_weight) {
                *v = *v * inverse * w;
            }
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean_square = (x.clone() * x.clone()).mean_dim(D - 1);
        let normalised = x * mean_square.add_scalar(self.eps).sqrt().recip();
        normalised * self.weight.clone().unsqueeze::<D>()
    }
}

/// `nn.LayerNorm` over rows of `d` values on the host, for decode steps computed there:
/// `(x − mean) / sqrt(var + eps) · gamma + beta`, the variance biased, as burn's `LayerNorm`
/// computes it (the sums aside, which are sequential here).
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
        for row in x.chunks_exact_mut(d) {
            let mean = row.iter().sum::<f32>() / d as f32;
            let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inverse = 1.0 / (variance + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inverse * g + b;
            }
        }
    }
}
