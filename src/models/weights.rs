//! Reading a `model.safetensors` file into burn layers, by Hugging Face tensor name.
//!
//! Names are canonicalised once, so both key styles found on the hub load: with or without the
//! architecture's prefix (`transformer.` for GPT-2, `bert.` for BERT), and both LayerNorm
//! spellings (`weight`/`bias` and the older `gamma`/`beta`). Every tensor is shape-checked
//! before it becomes a parameter, F16 and BF16 are widened to F32, and every tensor in the
//! file must be consumed (or be a known buffer) so a wrong checkpoint never half-loads.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;

use super::dense::Dense;
use super::error::ModelError;

/// Where one tensor lives inside the file.
struct Entry {
    /// The name as written in the file, for error messages.
    original: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range within the data section.
    start: usize,
    end: usize,
}

/// An opened safetensors file whose tensors are taken one by one by canonical name.
pub struct WeightFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
    entries: BTreeMap<String, Entry>,
    /// Canonical names handed out so far; what is left at `finish` is unexpected.
    taken: HashSet<String>,
    device: Device,
}

impl WeightFile {
    /// Opens `path`, validating the header against the file size.
    ///
    /// `prefix` is the architecture's optional key prefix, stripped where present.
    pub fn open(path: &Path, prefix: &str, device: &Device) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| ModelError::InvalidSafetensors {
                path: path.to_path_buf(),
                reason: describe_invalid(&bytes, &e),
            })?;
        let entries = canonical_entries(path, &metadata, prefix)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            data_start: 8 + header_len,
            entries,
            taken: HashSet::new(),
            device: device.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file holds `name` (canonical), without taking it.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The tensor `name` as F32 values, checked against `expected` shape.
    pub fn values(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
                hint: String::new(),
            })?;
        if entry.shape != expected {
            return Err(ModelError::ShapeMismatch {
                path: self.path.clone(),
                tensor: entry.original.clone(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let raw = &self.bytes[self.data_start + entry.start..self.data_start + entry.end];
        let values = match entry.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: self.path.clone(),
                    tensor: entry.original.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        self.taken.insert(name.to_string());
        Ok(values)
    }

    pub fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, ModelError> {
        let values = self.values(name, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// A GPT-2 `Conv1D`: the weight is stored `[in, out]` and transposed here, once.
    pub fn conv1d(&mut self, prefix: &str, d_in: usize, d_out: usize) -> Result<Dense, ModelError> {
        let stored = self.values(&format!("{prefix}.weight"), &[d_in, d_out])?;
        let mut weight = vec![0.0f32; stored.len()];
        for (i, row) in stored.chunks_exact(d_out).enumerate() {
            for (o, &w) in row.iter().enumerate() {
                weight[o * d_in + i] = w;
            }
        }
        let weight = Tensor::from_data(TensorData::new(weight, [d_out, d_in]), &self.device);
        Ok(Dense::new(
            weight,
            self.tensor(&format!("{prefix}.bias"), [d_out])?,
        ))
    }

    /// A PyTorch `nn.Linear`: the weight is stored `[out, in]`, as `Dense` keeps it.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize) -> Result<Dense, ModelError> {
        Ok(Dense::new(
            self.tensor(&format!("{prefix}.weight"), [d_out, d_in])?,
            self.tensor(&format!("{prefix}.bias"), [d_out])?,
        ))
    }

    pub fn layer_norm(
        &mut self,
        prefix: &str,
        d: usize,
        eps: f64,
    ) -> Result<LayerNorm, ModelError> {
        let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(&self.device);
        norm.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [d])?);
        norm.beta = Some(Param::from_tensor(
            self.tensor(&format!("{prefix}.bias"), [d])?,
        ));
        Ok(norm)
    }

    pub fn embedding(&mut self, name: &str, n: usize, d: usize) -> Result<Embedding, ModelError> {
        Ok(Embedding {
            weight: Param::from_tensor(self.tensor(&format!("{name}.weight"), [n, d])?),
        })
    }

    /// Fails if the file holds tensors the model did not take, other than known buffers
    /// (`is_ignorable`), so that a checkpoint of another architecture is never half-used.
    pub fn finish(self, is_ignorable: impl Fn(&str) -> bool) -> Result<(), ModelError> {
        let unexpected: Vec<String> = self
            .entries
            .iter()
            .filter(|(name, _)| !self.taken.contains(*name) && !is_ignorable(name))
            .map(|(_, entry)| entry.original.clone())
            .collect();
        if unexpected.is_empty() {
            Ok(())
        } else {
            Err(ModelError::UnexpectedTensors {
                path: self.path,
                tensors: unexpected,
            })
        }
    }
}

/// Maps every tensor to its canonical name: prefix stripped, LayerNorm `gamma`/`beta` renamed.
fn canonical_entries(
    path: &Path,
    metadata: &Metadata,
    prefix: &str,
) -> Result<BTreeMap<String, Entry>, ModelError> {
    let mut entries = BTreeMap::new();
    for (original, info) in metadata.tensors() {
        let stripped = original.strip_prefix(prefix).unwrap_or(&original);
        let canonical = if let Some(base) = stripped.strip_suffix("LayerNorm.gamma") {
            format!("{base}LayerNorm.weight")
        } else if let Some(base) = stripped.strip_suffix("LayerNorm.beta") {
            format!("{base}LayerNorm.bias")
        } else {
            stripped.to_string()
        };
        let entry = Entry {
            original: original.clone(),
            dtype: info.dtype,
            shape: info.shape.clone(),
            start: info.data_offsets.0,
            end: info.data_offsets.1,
        };
        if let Some(previous) = entries.insert(canonical.clone(), entry) {
            return Err(ModelError::InvalidSafetensors {
                path: path.to_path_buf(),
                reason: format!(
                    "tensors {:?} and {original:?} both name {canonical:?}",
                    previous.original
                ),
            });
        }
    }
    Ok(entries)
}

/// Turns the safetensors crate's terse error into one a user can act on. A truncated
/// download is the common case, so it names the first tensor whose bytes are missing.
fn describe_invalid(bytes: &[u8], error: &safetensors::SafeTensorError) -> String {
    if !matches!(
        error,
        safetensors::SafeTensorError::MetadataIncompleteBuffer
    ) {
        return format!("{error:?}");
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte prefix")) as usize;
    let available = bytes.len().saturating_sub(8 + header_len);
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap_or_default();
    let mut cut: Vec<(usize, &str, &serde_json::Value)> = header
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, info)| {
            let end = info.get("data_offsets")?.get(1)?.as_u64()? as usize;
            (end > available).then_some((end, name.as_str(), info.get("shape")?))
        })
        .collect();
    cut.sort_by_key(|(end, ..)| *end);
    match cut.first() {
        Some((end, name, shape)) => format!(
            "file truncated: tensor {name:?} (shape {shape}) needs data up to byte {end}, \
             but the data section has only {available} bytes"
        ),
        None => {
            format!("file size does not match its header ({available} data bytes; trailing bytes?)")
        }
    }
}
