//! Reading a `model.safetensors` file (or the shards a `model.safetensors.index.json` names,
//! or a GGUF file's tensors under their Hugging Face names) into burn layers, by Hugging Face
//! tensor name.
//!
//! Names are canonicalised once, so both key styles found on the hub load: with or without the
//! architecture's prefix (`transformer.` for GPT-2, `bert.` for BERT), and both LayerNorm
//! spellings (`weight`/`bias` and the older `gamma`/`beta`). Every tensor is shape-checked
//! before it becomes a parameter, and every tensor in the file must be consumed (or be a
//! known buffer) so a wrong checkpoint never half-loads.
//!
//! DTYPE: dense layers come out in the file's `dtype` (`with_dtype`), converted tensor by
//! tensor, so loading never holds more than one extra tensor in f32; an F16 or BF16
//! checkpoint packs into a half-precision dtype without passing through f32. So do the word
//! embeddings (GPT-2's tied `wte`, BERT's `word_embeddings`); everything else (position and
//! type embeddings, layer norms, biases) is widened to f32. GGUF's quantized tensors are
//! dequantized tensor by tensor the same way, except that Q4_0/Q4_1 tensors going into a 4-bit
//! dtype are kept as they are, bit for bit.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;

use super::dense::{Dense, Kernel};
use super::dtype::Dtype as ModelDtype;
use super::error::ModelError;
use super::gguf::quants::{self, GgmlType};
use super::gguf::{checkpoint, GgufFile};
use super::kernels::q4::{Activations, Q4Linear};
use super::kernels::{PackedLinear, SourceLayout};

/// How a tensor's bytes encode its values: a ggml type (safetensors' F32, F16 and BF16 are
/// ggml's too), or a type we cannot read, named for the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    Readable(GgmlType),
    Unreadable(Dtype),
}

impl Stored {
    fn of_safetensors(dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => Self::Readable(GgmlType::F32),
            Dtype::F16 => Self::Readable(GgmlType::F16),
            Dtype::BF16 => Self::Readable(GgmlType::Bf16),
            other => Self::Unreadable(other),
        }
    }
}

/// Where one tensor lives: which shard, and where inside it.
struct Entry {
    /// The name as written in the file, for error messages.
    original: String,
    /// Index into `WeightFile::shards`.
    shard: usize,
    stored: Stored,
    /// Hugging Face (row-major) order.
    shape: Vec<usize>,
    /// Byte range within the data section.
    start: usize,
    end: usize,
    /// GGUF q/k: `row_order[i]` is the stored row that is row `i` (see `gguf::checkpoint`).
    row_order: Option<Vec<usize>>,
}

/// An opened safetensors file whose tensors are taken one by one by canonical name.
///
/// MEMORY: the file is mapped, not read, and each tensor's pages are handed back to the
/// kernel once it is converted, so loading holds the model being built plus about one
/// tensor of the file, never the whole file (a 1.4 GB f32 gpt2-medium loads as int8 in
/// little more than its 0.36 GB).
pub struct WeightFile {
    /// The checkpoint as named: the safetensors file, the shards' index, or the GGUF file.
    path: PathBuf,
    /// One file, or every shard the index names.
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
    /// Canonical names handed out so far; what is left at `finish` is unexpected.
    taken: HashSet<String>,
    device: Device,
    /// What dense layers are kept in.
    dtype: ModelDtype,
    /// A GGUF file: errors name its tensors as it does (`blk.0.attn_q.weight`).
    gguf: bool,
}

impl WeightFile {
    /// Opens `path`, validating the header against the file size.
    ///
    /// `prefix` is the architecture's optional key prefix, stripped where present.
    pub fn open(path: &Path, prefix: &str, device: &Device) -> Result<Self, ModelError> {
        let shard = Shard::open(path)?;
        let entries = canonical_entries(&shard, 0, prefix, BTreeMap::new())?;
        Ok(Self::new(path, vec![shard], entries, device))
    }

    /// Opens the shards `index` (a `model.safetensors.index.json`) names, each checked to
    /// hold every tensor the index's `weight_map` puts in it.
    pub fn open_sharded(index: &Path, prefix: &str, device: &Device) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
        let invalid = |reason: String| ModelError::InvalidSafetensors {
            path: index.to_path_buf(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let weight_map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| invalid("no \"weight_map\" object".into()))?;
        let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tensor, file) in weight_map {
            let file = file
                .as_str()
                .filter(|f| !f.contains('/') && !f.contains('\\'))
                .ok_or_else(|| {
                    invalid(format!("tensor {tensor:?} maps to {file}, not a file name"))
                })?;
            by_file.entry(file).or_default().push(tensor);
        }
        let dir = index.parent().unwrap_or(Path::new("."));
        let (mut shards, mut entries) = (Vec::new(), BTreeMap::new());
        for (file, tensors) in by_file {
            let shard_path = dir.join(file);
            if !shard_path.is_file() {
                return Err(ModelError::MissingFile {
                    path: shard_path,
                    what: "a shard that model.safetensors.index.json names",
                });
            }
            let shard = Shard::open(&shard_path)?;
            let names = shard.names();
            if let Some(tensor) = tensors.iter().find(|t| !names.contains(**t)) {
                return Err(ModelError::MissingTensor {
                    path: shard_path,
                    tensor: tensor.to_string(),
                    hint: " (model.safetensors.index.json puts it in this shard)".into(),
                });
            }
            entries = canonical_entries(&shard, shards.len(), prefix, entries)?;
            shards.push(shard);
        }
        Ok(Self::new(index, shards, entries, device))
    }

    /// The tensors of a GGUF file, under their Hugging Face names (`gguf::checkpoint`).
    pub fn open_gguf(gguf: GgufFile, device: &Device) -> Result<Self, ModelError> {
        let mut entries = BTreeMap::new();
        for mapped in checkpoint::tensors(&gguf)? {
            let entry = Entry {
                original: mapped.tensor.name.clone(),
                shard: 0,
                stored: Stored::Readable(mapped.tensor.ty),
                shape: mapped.tensor.hf_shape(),
                start: mapped.tensor.start,
                end: mapped.tensor.end,
                row_order: mapped.row_order,
            };
            if let Some(previous) = entries.insert(mapped.name.clone(), entry) {
                return Err(ModelError::InvalidGguf {
                    path: gguf.path().to_path_buf(),
                    reason: format!(
                        "tensors {:?} and {:?} both name {:?}",
                        previous.original, mapped.tensor.name, mapped.name
                    ),
                });
            }
        }
        let path = gguf.path().to_path_buf();
        let shard = Shard {
            path: path.clone(),
            bytes: gguf.bytes,
            data_start: 0,
            tensors: Vec::new(),
        };
        let mut weights = Self::new(&path, vec![shard], entries, device);
        weights.gguf = true;
        Ok(weights)
    }

    fn new(
        path: &Path,
        shards: Vec<Shard>,
        entries: BTreeMap<String, Entry>,
        device: &Device,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            shards,
            entries,
            taken: HashSet::new(),
            device: device.clone(),
            dtype: ModelDtype::F32,
            gguf: false,
        }
    }

    /// Dense layers will come out in `dtype`; an error when the device cannot run it (every
    /// dtype runs on flex; wgpu runs f32, and f16 where the device has f16 shaders).
    pub fn with_dtype(mut self, dtype: ModelDtype) -> Result<Self, ModelError> {
        if self.device != Device::flex() {
            let refusal = match dtype {
                ModelDtype::F32 => None,
                ModelDtype::F16 if self.device.supports_dtype(FloatDType::F16) => None,
                ModelDtype::F16 => Some("this device has no f16 shader support (use f32)"),
                ModelDtype::Bf16
                | ModelDtype::Int8
                | ModelDtype::W8a8
                | ModelDtype::Q4
                | ModelDtype::W4a8 => Some(
                    "wgpu runs f32 and f16; bf16, int8, w8a8, q4 and w4a8 run on the CPU backend (backend = \"cpu\")",
                ),
            };
            if let Some(reason) = refusal {
                return Err(ModelError::DtypeUnsupported {
                    dtype: dtype.as_str(),
                    backend: "wgpu",
                    reason,
                });
            }
        }
        self.dtype = dtype;
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the layers it hands out live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the file holds `name` (canonical), without taking it.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The entry `name`, checked against `expected` shape, marked taken, and its bytes.
    fn take(&mut self, name: &str, expected: &[usize]) -> Result<(&Entry, &[u8]), ModelError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
                hint: match checkpoint::gguf_name(name).filter(|_| self.gguf) {
                    Some(gguf) => format!(" (GGUF name {gguf:?})"),
                    None => String::new(),
                },
            })?;
        let shard = &self.shards[entry.shard];
        if entry.shape != expected {
            return Err(ModelError::ShapeMismatch {
                path: shard.path.clone(),
                tensor: entry.original.clone(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        self.taken.insert(name.to_string());
        let raw = &shard.bytes[shard.data_start + entry.start..shard.data_start + entry.end];
        Ok((entry, raw))
    }

    /// Once `name` is converted, hands every mapped page of its shard back to the kernel, not
    /// only its own: a fault maps the page cache's neighbouring pages too (fault-around, whole
    /// large folios), so dropping each tensor's own range left pages of other tensors mapped,
    /// 45 MB of bert-base-uncased's file by its last layers. Pages still to be read fault back
    /// in from the page cache, correctly.
    fn release(&self, name: &str) {
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        let shard = &self.shards[entry.shard];
        drop_pages(&shard.bytes[shard.data_start..]);
    }

    /// The tensor `name` as F32 values (dequantized, rows in Hugging Face order), checked
    /// against `expected` shape.
    pub fn values(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        let shard = self.entries.get(name).map(|e| e.shard);
        let path = shard.map(|i| self.shards[i].path.clone());
        let (entry, raw) = self.take(name, expected)?;
        let ty = match entry.stored {
            Stored::Readable(ty) => ty,
            Stored::Unreadable(other) => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.expect("a taken tensor has a shard"),
                    tensor: entry.original.clone(),
                    dtype: format!("{other:?}"),
                    expected: "F32, F16 or BF16",
                })
            }
        };
        let mut values = vec![0f32; expected.iter().product()];
        match &entry.row_order {
            None => quants::dequantize(ty, raw, &mut values),
            Some(order) => {
                let row_bytes = raw.len() / order.len();
                let row_len = values.len() / order.len();
                for (row, &from) in values.chunks_exact_mut(row_len).zip(order) {
                    quants::dequantize(ty, &raw[from * row_bytes..][..row_bytes], row);
                }
            }
        }
        self.release(name);
        Ok(values)
    }

    /// A dense layer (weight `[d_in, d_out]` for `InOut`, `[d_out, d_in]` for `OutIn`) in the
    /// model's dtype: packed for the kernels on flex, a burn tensor on wgpu.
    fn dense(
        &mut self,
        weight: &str,
        bias: Option<&str>,
        [d_in, d_out]: [usize; 2],
        layout: SourceLayout,
    ) -> Result<Dense, ModelError> {
        let stored = match layout {
            SourceLayout::InOut => [d_in, d_out],
            SourceLayout::OutIn => [d_out, d_in],
        };
        let bias = bias.map(|b| self.values(b, &[d_out])).transpose()?;
        if self.device == Device::flex() {
            let dtype = self.dtype;
            if let Some(activations) = dtype.four_bit_activations() {
                return self.four_bit(weight, &stored, [d_in, d_out], layout, activations, bias);
            }
            // Packed straight from the mapped file where its bytes are the values (little
            // endian, aligned, rows in order): no f32 copy of the tensor, so the peak stays
            // near the final size. Half-precision checkpoints pack from their own bits, never
            // through f32.
            let half = [GgmlType::F16, GgmlType::Bf16].map(Stored::Readable);
            let packed = match self.take(weight, &stored)? {
                (entry, _) if entry.row_order.is_some() => None,
                (entry, raw) if half.contains(&entry.stored) => {
                    let bits: Vec<u16> = raw
                        .chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    Some(if entry.stored == half[0] {
                        PackedLinear::pack_f16_bits(&bits, d_in, d_out, layout, dtype)
                    } else {
                        PackedLinear::pack_bf16_bits(&bits, d_in, d_out, layout, dtype)
                    })
                }
                (entry, raw)
                    if entry.stored == Stored::Readable(GgmlType::F32)
                        && cfg!(target_endian = "little") =>
                {
                    // SAFETY: every bit pattern is a valid f32; `align_to` only hands out
                    // the aligned middle, and it is used only when that is all of `raw`.
                    let (head, values, tail) = unsafe { raw.align_to::<f32>() };
                    (head.is_empty() && tail.is_empty())
                        .then(|| PackedLinear::pack_f32(values, d_in, d_out, layout, dtype))
                }
                _ => None,
            };
            let packed = match packed {
                Some(packed) => packed,
                None if layout == SourceLayout::OutIn => self.packed_in_runs(
                    weight,
                    &stored,
                    d_in,
                    |values, rows| PackedLinear::pack_f32(values, d_in, rows, layout, dtype),
                    || PackedLinear::zeroed(d_in, d_out, dtype),
                    PackedLinear::fill_columns,
                )?,
                None => {
                    let values = self.values(weight, &stored)?;
                    PackedLinear::pack_f32(&values, d_in, d_out, layout, dtype)
                }
            };
            self.release(weight);
            return Ok(Dense::packed(Kernel::Linear(packed), bias, &self.device));
        }
        let values = self.values(weight, &stored)?;
        let values = match layout {
            SourceLayout::OutIn => values,
            SourceLayout::InOut => {
                let mut transposed = vec![0.0f32; values.len()];
                for (i, row) in values.chunks_exact(d_out).enumerate() {
                    for (o, &w) in row.iter().enumerate() {
                        transposed[o * d_in + i] = w;
                    }
                }
                transposed
            }
        };
        let mut tensor: Tensor<2> =
            Tensor::from_data(TensorData::new(values, [d_out, d_in]), &self.device);
        if self.dtype == ModelDtype::F16 {
            tensor = tensor.cast(FloatDType::F16);
        }
        let bias = bias.map(|b| Tensor::from_data(TensorData::new(b, [d_out]), &self.device));
        Ok(Dense::new(tensor, bias))
    }

    /// A dense layer in a 4-bit dtype. A GGUF's Q4_0/Q4_1 matrix is kept as it is, bit for
    /// bit; a Q8_0, Q5_K or Q6_K one (what llama.cpp's 4-bit files keep their embedding, head
    /// and a few sensitive layers in) goes to int8, the nearest dtype we run above 4 bits; a
    /// Q4_K one keeps its codes as Q4_1 blocks (`quants::q4_k_as_q4_1`); anything else is
    /// quantized at load.
    fn four_bit(
        &mut self,
        weight: &str,
        stored: &[usize],
        [d_in, d_out]: [usize; 2],
        layout: SourceLayout,
        activations: Activations,
        bias: Option<Vec<f32>>,
    ) -> Result<Dense, ModelError> {
        let kernel = match self.take(weight, stored)? {
            (entry, raw)
                if layout == SourceLayout::OutIn
                    && entry.stored == Stored::Readable(GgmlType::Q4_0) =>
            {
                let q4 = Q4Linear::from_q4_0(raw, d_in, d_out, entry.row_order.as_deref());
                Kernel::Q4(q4, activations)
            }
            (entry, raw)
                if layout == SourceLayout::OutIn
                    && entry.stored == Stored::Readable(GgmlType::Q4_1) =>
            {
                let q4 = Q4Linear::from_q4_1(raw, d_in, d_out, entry.row_order.as_deref());
                Kernel::Q4(q4, activations)
            }
            (entry, raw)
                if layout == SourceLayout::OutIn
                    && entry.stored == Stored::Readable(GgmlType::Q4K) =>
            {
                let blocks = quants::q4_k_as_q4_1(raw);
                let q4 = Q4Linear::from_q4_1(&blocks, d_in, d_out, entry.row_order.as_deref());
                Kernel::Q4(q4, activations)
            }
            (entry, _)
                if [GgmlType::Q8_0, GgmlType::Q5K, GgmlType::Q6K]
                    .map(Stored::Readable)
                    .contains(&entry.stored) =>
            {
                let int8 = match activations {
                    Activations::F32 => ModelDtype::Int8,
                    Activations::Int8 => ModelDtype::W8a8,
                };
                let pack =
                    |values: &[f32], rows| PackedLinear::pack_f32(values, d_in, rows, layout, int8);
                Kernel::Linear(if layout == SourceLayout::OutIn {
                    self.packed_in_runs(
                        weight,
                        stored,
                        d_in,
                        pack,
                        || PackedLinear::zeroed(d_in, d_out, int8),
                        PackedLinear::fill_columns,
                    )?
                } else {
                    pack(&self.values(weight, stored)?, d_out)
                })
            }
            _ => {
                let quantize =
                    |values: &[f32], rows| Q4Linear::quantize(values, d_in, rows, layout);
                let q4 = if layout == SourceLayout::OutIn {
                    self.packed_in_runs(
                        weight,
                        stored,
                        d_in,
                        quantize,
                        || Q4Linear::zeroed(d_in, d_out),
                        Q4Linear::fill_columns,
                    )?
                } else {
                    quantize(&self.values(weight, stored)?, d_out)
                };
                Kernel::Q4(q4, activations)
            }
        };
        self.release(weight);
        Ok(Dense::packed(kernel, bias, &self.device))
    }

    /// An `[out, in]` weight packed `RUN_ROWS` output rows at a time into `empty()`, a zeroed
    /// matrix of its size (`fill(&mut matrix, first row, values)`): converting a large tensor
    /// (a vocabulary's embedding) never holds it whole in f32 nor its runs beside the result,
    /// so loading peaks near the packed size plus one run. Rows a GGUF permuted are read whole
    /// (q/k, small: `pack(values, rows)`).
    fn packed_in_runs<P>(
        &mut self,
        weight: &str,
        stored: &[usize],
        d_in: usize,
        pack: impl Fn(&[f32], usize) -> P,
        empty: impl FnOnce() -> P,
        fill: impl Fn(&mut P, usize, &[f32]),
    ) -> Result<P, ModelError> {
        /// A multiple of both kernels' tile widths (8 and 16 columns), small enough that a
        /// run's f32 values stay a few MB (4096 rows of a 576-wide embedding were 9.4 MB at
        /// SmolLM2-135M's load-time peak), large enough that packing a run still spreads over
        /// the threads.
        const RUN_ROWS: usize = 1024;
        let d_out = stored[0];
        let (entry, raw) = self.take(weight, stored)?;
        let ty = match entry.stored {
            Stored::Readable(ty) if entry.row_order.is_none() => ty,
            _ => {
                let values = self.values(weight, stored)?;
                return Ok(pack(&values, d_out));
            }
        };
        let row_bytes = raw.len() / d_out;
        let mut values = vec![0f32; RUN_ROWS.min(d_out) * d_in];
        let mut packed = empty();
        for start in (0..d_out).step_by(RUN_ROWS) {
            let rows = RUN_ROWS.min(d_out - start);
            let run = &mut values[..rows * d_in];
            let bytes = &raw[start * row_bytes..][..rows * row_bytes];
            quants::dequantize(ty, bytes, run);
            fill(&mut packed, start, run);
            // Converted: its pages need not wait for the whole tensor to be handed back.
            drop_pages(bytes);
        }
        self.release(weight);
        Ok(packed)
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

    /// A GPT-2 `Conv1D`: the weight is stored `[in, out]`.
    pub fn conv1d(&mut self, prefix: &str, d_in: usize, d_out: usize) -> Result<Dense, ModelError> {
        let (weight, bias) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        self.dense(&weight, Some(&bias), [d_in, d_out], SourceLayout::InOut)
    }

    /// A PyTorch `nn.Linear`: the weight is stored `[out, in]`.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize) -> Result<Dense, ModelError> {
        let (weight, bias) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        self.dense(&weight, Some(&bias), [d_in, d_out], SourceLayout::OutIn)
    }

    /// A PyTorch `nn.Linear` with or without its bias (the Llama family's flags say which).
    pub fn linear_with(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Dense, ModelError> {
        let (weight, bias_name) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        let bias = bias.then_some(bias_name.as_str());
        self.dense(&weight, bias, [d_in, d_out], SourceLayout::OutIn)
    }

    /// A `[n, d]` matrix that is both looked up by row (an embedding) and, tied, the LM head
    /// (`d` in, `n` out, no bias): kept once, in the file's dtype.
    pub fn tied_embedding(&mut self, name: &str, n: usize, d: usize) -> Result<Dense, ModelError> {
        self.dense(name, None, [d, n], SourceLayout::OutIn)
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

/// Hands the heap's free pages back to the system (glibc; elsewhere nothing): what a loader
/// parsed and dropped (a GGUF's metadata, its vocabulary's tens of thousands of small strings)
/// leaves free pages between live allocations that glibc keeps until trimmed, and they would
/// sit under the weights' peak.
pub(crate) fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands the pages wholly inside `bytes`, a part of a read-only file mapping, back to the
/// kernel: they hold converted weights and are never read again (a later read would fault them
/// back in from the file, correctly).
fn drop_pages(bytes: &[u8]) {
    let page = 4096;
    let base = bytes.as_ptr() as usize;
    let (start, end) = (
        base.next_multiple_of(page),
        (base + bytes.len()) / page * page,
    );
    if end > start {
        // SAFETY: [start, end) lies inside the mapping `bytes` borrows; MADV_DONTNEED on a
        // read-only file mapping only drops pages, which are re-read on demand.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// One mapped safetensors file.
struct Shard {
    path: PathBuf,
    bytes: memmap2::Mmap,
    /// Offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
    /// Each tensor as the header lists it.
    tensors: Vec<Listed>,
}

/// A tensor as a shard's header lists it.
struct Listed {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range within the data section.
    offsets: (usize, usize),
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ModelError> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the mapping is read-only and lives as long as `self`; a model file being
        // rewritten while it loads is outside what a loader can guard against (reading it
        // would be as wrong).
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| ModelError::InvalidSafetensors {
                path: path.to_path_buf(),
                reason: describe_invalid(&bytes, &e),
            })?;
        let tensors = tensor_list(&metadata);
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            data_start: 8 + header_len,
            tensors,
        })
    }

    fn names(&self) -> HashSet<&str> {
        self.tensors.iter().map(|t| t.name.as_str()).collect()
    }
}

fn tensor_list(metadata: &Metadata) -> Vec<Listed> {
    metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| Listed {
            name,
            dtype: info.dtype,
            shape: info.shape.clone(),
            offsets: info.data_offsets,
        })
        .collect()
}

/// Adds every tensor of `shard` to `entries` under its canonical name: prefix stripped,
/// LayerNorm `gamma`/`beta` renamed. Two tensors with one name (in one shard or two) are
/// refused.
fn canonical_entries(
    shard: &Shard,
    index: usize,
    prefix: &str,
    mut entries: BTreeMap<String, Entry>,
) -> Result<BTreeMap<String, Entry>, ModelError> {
    for Listed {
        name: original,
        dtype,
        shape,
        offsets: (start, end),
    } in &shard.tensors
    {
        let stripped = original.strip_prefix(prefix).unwrap_or(original);
        let canonical = if let Some(base) = stripped.strip_suffix("LayerNorm.gamma") {
            format!("{base}LayerNorm.weight")
        } else if let Some(base) = stripped.strip_suffix("LayerNorm.beta") {
            format!("{base}LayerNorm.bias")
        } else {
            stripped.to_string()
        };
        let entry = Entry {
            original: original.clone(),
            shard: index,
            stored: Stored::of_safetensors(*dtype),
            shape: shape.clone(),
            start: *start,
            end: *end,
            row_order: None,
        };
        if let Some(previous) = entries.insert(canonical.clone(), entry) {
            return Err(ModelError::InvalidSafetensors {
                path: shard.path.clone(),
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
