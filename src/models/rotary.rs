//! Rotary position embeddings as transformers applies them to Hugging Face weights:
//! `rotate_half` (the first half of each head against the second), with the inverse
//! frequencies of the config's `rope_type` (`default`, or `llama3`'s banded rescale).
//!
//! The tables are computed on the host for exactly the positions a step needs (a few
//! hundred floats a token), so left-padded rows, each at its own position, cost nothing extra.

use burn::tensor::{Device, Tensor, TensorData};

/// How the inverse frequencies are derived from `rope_theta`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `theta^(-2i/d)`.
    Default,
    /// Llama 3.1+: wavelengths past `original_max_position_embeddings / low_freq_factor`
    /// divided by `factor`, those under `.. / high_freq_factor` kept, the band between
    /// interpolated.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Rotary {
    /// `[head_dim / 2]`, in f32 as transformers keeps them.
    inv_freq: Vec<f32>,
}

impl Rotary {
    pub fn new(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Self {
        let half = head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                // transformers: `1 / base ** (arange(0, d, 2).float() / d)`, in f32.
                let exponent = (2 * i) as f32 / head_dim as f32;
                let base = 1.0 / theta.powf(exponent as f64);
                match *scaling {
                    RopeScaling::Default => base as f32,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position_embeddings: original,
                    } => {
                        let base = base as f32 as f64;
                        let wavelength = 2.0 * std::f64::consts::PI / base;
                        let (low_wavelength, high_wavelength) =
                            (original / low_freq_factor, original / high_freq_factor);
                        let scaled = if wavelength > low_wavelength {
                            base / factor
                        } else if wavelength < high_wavelength {
                            base
                        } else {
                            let smooth = (original / wavelength - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * base / factor + smooth * base
                        };
                        scaled as f32
                    }
                }
            })
            .collect();
        Self { inv_freq }
    }

    /// Divides each frequency by its factor: how a GGUF of a Llama 3.1+ model carries its
    /// scaling (`rope_freqs.weight`, llama.cpp's per-frequency divisors) instead of parameters.
    pub fn with_factors(mut self, factors: &[f32]) -> Self {
        for (f, &factor) in self.inv_freq.iter_mut().zip(factors) {
            *f /= factor;
        }
        self
    }

    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// The cosines and sines of each token's position (`positions`: `[B·T]`), shaped to
    /// rotate `[B, T, H, D]` heads: computed once per step, used by every layer.
    pub fn tables(&self, positions: &[i64], [b, t]: [usize; 2], device: &Device) -> RotaryTables {
        let d = 2 * self.inv_freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(b * t * d), Vec::with_capacity(b * t * d));
        for &p in positions {
            // As transformers: the angle is an f32 product, its cosine and sine in f32.
            let angles: Vec<f32> = self.inv_freq.iter().map(|&f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        RotaryTables {
            cos: Tensor::from_data(TensorData::new(cos, [b, t, 1, d]), device),
            sin: Tensor::from_data(TensorData::new(sin, [b, t, 1, d]), device),
        }
    }
}

impl Rotary {
    /// The rotation of a step on the host: one position a row (a token).
    pub fn host_tables(&self, positions: &[i64]) -> HostRotation {
        let d = 2 * self.inv_freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(positions.len() * d), Vec::new());
        sin.reserve(positions.len() * d);
        for &p in positions {
            let angles: Vec<f32> = self.inv_freq.iter().map(|&f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        HostRotation { cos, sin, d }
    }
}

/// `RotaryTables` on the host, `[rows, D]` each.
pub struct HostRotation {
    cos: Vec<f32>,
    sin: Vec<f32>,
    d: usize,
}

impl HostRotation {
    /// `RotaryTables::apply` in place on `x`, `[rows, H, D]` (one token a row).
    pub fn apply(&self, x: &mut [f32], heads: usize) {
        let (d, half) = (self.d, self.d / 2);
        for (row, (cos, sin)) in x
            .chunks_exact_mut(heads * d)
            .zip(self.cos.chunks_exact(d).zip(self.sin.chunks_exact(d)))
        {
            for head in row.chunks_exact_mut(d) {
                for i in 0..half {
                    let (first, second) = (head[i], head[i + half]);
                    head[i] = first * cos[i] + -second * sin[i];
                    head[i + half] = second * cos[i + half] + first * sin[i + half];
                }
            }
        }
    }
}

/// One step's rotation, `[B, T, 1, D]` each, broadcast over heads.
pub struct RotaryTables {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl RotaryTables {
    /// `x · cos + rotate_half(x) · sin`, with `rotate_half(x) = [-x₂, x₁]`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, t, h, d] = x.dims();
        let first = x.clone().slice([0..b, 0..t, 0..h, 0..d / 2]);
        let second = x.clone().slice([0..b, 0..t, 0..h, d / 2..d]);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}
