//! Root-mean-square normalisation (`LlamaRMSNorm`): `x / sqrt(mean(x²) + eps) · weight`,
//! over the last dimension, in f32 (the Llama family's norms, and Qwen3's per-head
//! `q_norm`/`k_norm`).

use burn::tensor::Tensor;

#[derive(Debug)]
pub struct RmsNorm {
    /// `[d]`, the learned scale.
    weight: Tensor<1>,
    eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor<1>, eps: f64) -> Self {
        Self { weight, eps }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean_square = (x.clone() * x.clone()).mean_dim(D - 1);
        let normalised = x * mean_square.add_scalar(self.eps).sqrt().recip();
        normalised * self.weight.clone().unsqueeze::<D>()
    }
}
