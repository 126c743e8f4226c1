//! The post-LayerNorm transformer encoder that BERT, RoBERTa (and XLM-RoBERTa) and DistilBERT
//! share, and the sequence-classification model built on it.
//!
//! The families differ only where this module takes a parameter: their key names
//! (`EncoderKeys`), how positions are counted (`Positions`), whether token types are read
//! (`TokenTypes`), and the head's activation (`HeadActivation`); the computation is the same
//! (embeddings + LayerNorm, then per layer: attention, dense + residual + LayerNorm, GELU
//! feed-forward, dense + residual + LayerNorm). Each family's file (`bert`, `roberta`,
//! `distilbert`) reads its own `config.json` into an `EncoderShape` and names its keys.
//!
//! A batch is right-padded and masked, so each row computes exactly as it would alone.
//!
//! On flex the layers run on host buffers (`Layer::forward_on_host`): the dense layers on the
//! CPU kernels over the batch's real tokens alone (`Tokens`: a short input beside a long one
//! costs its own length), the attention in `kernels::attention::bidirectional_attention`,
//! norms and GELU as loops. wgpu runs them in burn (`Layer::forward`).

use burn::nn::{Embedding, LayerNorm};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::activation::gelu_erf;
use super::attention::{attend, attention_bias, merge_heads, side_by_side, split_heads, RealRows};
use super::dense::Dense;
use super::error::ModelError;
use super::kernels::activation::gelu_erf as gelu_erf_on_host;
use super::kernels::attention::{bidirectional_attention, CacheShape};
use super::kv_cache::runs_on_host;
use super::norm::HostedLayerNorm;
use super::weights::WeightFile;

/// The sizes every family's config comes down to.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// Rows of the token-type table; 0 when the family has none (DistilBERT).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub positions: Positions,
}

impl EncoderShape {
    /// Tokens one input may hold: RoBERTa's positions start past the padding index, so its
    /// first `padding_idx + 1` rows are never used.
    pub fn max_tokens(&self) -> usize {
        match self.positions {
            Positions::Absolute => self.max_position_embeddings,
            Positions::AfterPadding { padding_idx } => self
                .max_position_embeddings
                .saturating_sub(padding_idx as usize + 1),
        }
    }

    /// Parameters of the encoder (embeddings and layers, no head).
    pub fn parameter_count(&self) -> usize {
        let (d, f) = (self.hidden_size, self.intermediate_size);
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * d + 2 * d;
        let layer = 4 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d;
        embeddings + self.num_hidden_layers * layer
    }

    pub fn validate(&self, path: &std::path::Path) -> Result<(), ModelError> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: format!(
                    "the hidden size ({}) must be a multiple of the number of attention heads ({})",
                    self.hidden_size, self.num_attention_heads
                ),
            });
        }
        if self.max_tokens() < 2 {
            return Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: format!(
                    "max_position_embeddings ({}) leaves no room for an input",
                    self.max_position_embeddings
                ),
            });
        }
        Ok(())
    }
}

/// How position ids are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// `0..T` (BERT, DistilBERT).
    Absolute,
    /// RoBERTa's `cumsum(ids != padding_idx) + padding_idx` on non-padding tokens and
    /// `padding_idx` on padding ones: `padding_idx + 1 + t` for a text without `<pad>`.
    AfterPadding { padding_idx: u32 },
}

/// Which token types the embeddings add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypes {
    /// The tokenizer's segment ids (BERT: 0 for the first text, 1 for the second).
    Segments,
    /// Type 0 for every token: RoBERTa's tokenizers return no type ids, and its one-row table
    /// is added to every token.
    Zero,
    /// No token-type table (DistilBERT).
    None,
}

/// The tensor names of one family, relative to the optional prefix (`bert.`, ...).
pub struct EncoderKeys {
    pub word_embeddings: &'static str,
    pub position_embeddings: &'static str,
    /// `None` for a family without token types.
    pub token_type_embeddings: Option<&'static str>,
    pub embeddings_layer_norm: &'static str,
    /// Layer `i`'s prefix, e.g. `encoder.layer.{i}`.
    pub layer: fn(usize) -> String,
    /// Within a layer: query, key, value, attention output, its LayerNorm, feed-forward in,
    /// feed-forward out, its LayerNorm.
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_layer_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_layer_norm: &'static str,
}

/// One tokenised input: ids, and segment ids (read only by `TokenTypes::Segments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInput {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

/// Which positions the last layer computes past its keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    /// Only the first (`[CLS]` / `<s>`): all a classification head reads.
    First,
}

#[derive(Debug)]
struct Embeddings {
    /// `[vocab, hidden]`, looked up by row, in the model's dtype (the largest matrix).
    word_embeddings: Dense,
    position_embeddings: Embedding,
    token_type_embeddings: Option<Embedding>,
    layer_norm: LayerNorm,
}

#[derive(Debug)]
struct SelfAttention {
    query: Dense,
    key: Dense,
    value: Dense,
    n_head: usize,
}

/// `dense` then `LayerNorm` over the residual sum (BERT's `BertSelfOutput` / `BertOutput`,
/// DistilBERT's `out_lin` + `sa_layer_norm` and `lin2` + `output_layer_norm`).
#[derive(Debug)]
struct Output {
    dense: Dense,
    layer_norm: HostedLayerNorm,
}

#[derive(Debug)]
struct Layer {
    self_attn: SelfAttention,
    attention_output: Output,
    intermediate: Dense,
    output: Output,
}

/// The embeddings and layers of an encoder, without a head.
#[derive(Debug)]
pub struct Encoder {
    shape: EncoderShape,
    token_types: TokenTypes,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    device: Device,
}

impl Encoder {
    pub fn load(
        shape: EncoderShape,
        token_types: TokenTypes,
        keys: &EncoderKeys,
        w: &mut WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
        shape.validate(w.path())?;
        let (d, f, eps) = (
            shape.hidden_size,
            shape.intermediate_size,
            shape.layer_norm_eps,
        );
        let token_type_embeddings = match (token_types, keys.token_type_embeddings) {
            (TokenTypes::None, _) | (_, None) => None,
            (_, Some(name)) => Some(w.embedding(name, shape.type_vocab_size, d)?),
        };
        let embeddings = Embeddings {
            word_embeddings: w.tied_embedding(
                &format!("{}.weight", keys.word_embeddings),
                shape.vocab_size,
                d,
            )?,
            position_embeddings: w.embedding(
                keys.position_embeddings,
                shape.max_position_embeddings,
                d,
            )?,
            token_type_embeddings,
            layer_norm: w.layer_norm(keys.embeddings_layer_norm, d, eps)?,
        };
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for i in 0..shape.num_hidden_layers {
            let p = (keys.layer)(i);
            layers.push(Layer {
                self_attn: SelfAttention {
                    query: w.linear(&format!("{p}.{}", keys.query), d, d)?,
                    key: w.linear(&format!("{p}.{}", keys.key), d, d)?,
                    value: w.linear(&format!("{p}.{}", keys.value), d, d)?,
                    n_head: shape.num_attention_heads,
                },
                attention_output: Output {
                    dense: w.linear(&format!("{p}.{}", keys.attention_output), d, d)?,
                    layer_norm: HostedLayerNorm::new(
                        w.layer_norm(&format!("{p}.{}", keys.attention_layer_norm), d, eps)?,
                        eps,
                    ),
                },
                intermediate: w.linear(&format!("{p}.{}", keys.intermediate), d, f)?,
                output: Output {
                    dense: w.linear(&format!("{p}.{}", keys.output), f, d)?,
                    layer_norm: HostedLayerNorm::new(
                        w.layer_norm(&format!("{p}.{}", keys.output_layer_norm), d, eps)?,
                        eps,
                    ),
                },
            });
        }
        Ok(Self {
            shape,
            token_types,
            embeddings,
            layers,
            device: device.clone(),
        })
    }

    pub fn shape(&self) -> &EncoderShape {
        &self.shape
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dense layers' weight dtype (`f32`, `f16`, `bf16` or `int8`).
    pub fn dtype(&self) -> &'static str {
        self.embeddings.word_embeddings.dtype()
    }

    /// The last hidden state `[B, T, hidden]` (`[B, 1, hidden]` with `Rows::First`), right
    /// padded to the longest input; padding rows hold numbers that mean nothing.
    pub fn forward(&self, inputs: &[EncoderInput], rows: Rows) -> Result<Tensor<3>, ModelError> {
        let shape = &self.shape;
        let longest = inputs.iter().map(|i| i.input_ids.len()).max().unwrap_or(0);
        if inputs.is_empty() || longest == 0 {
            return Err(ModelError::InvalidInput("nothing to encode".into()));
        }
        if longest > shape.max_tokens() {
            return Err(ModelError::InvalidInput(format!(
                "{longest} tokens exceed the model's {} (max_position_embeddings {})",
                shape.max_tokens(),
                shape.max_position_embeddings
            )));
        }
        for input in inputs {
            if let Some(&id) = input
                .input_ids
                .iter()
                .find(|&&i| i as usize >= shape.vocab_size)
            {
                return Err(ModelError::TokenOutOfVocabulary {
                    id,
                    vocab_size: shape.vocab_size,
                });
            }
            if self.token_types == TokenTypes::Segments {
                if input.token_type_ids.len() != input.input_ids.len() {
                    return Err(ModelError::InvalidInput(
                        "token_type_ids and input_ids differ in length".into(),
                    ));
                }
                if let Some(bad) = input
                    .token_type_ids
                    .iter()
                    .find(|&&i| i as usize >= shape.type_vocab_size)
                {
                    return Err(ModelError::InvalidInput(format!(
                        "token type {bad} is outside type_vocab_size ({})",
                        shape.type_vocab_size
                    )));
                }
            }
        }
        let (b, d) = (inputs.len(), shape.hidden_size);
        let int_tensor = |values: Vec<i64>| -> Tensor<2, Int> {
            Tensor::from_data(TensorData::new(values, [b, longest]), &self.device)
        };
        let ids: Vec<u32> = inputs
            .iter()
            .flat_map(|i| {
                let row = &i.input_ids;
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, longest - row.len()))
            })
            .collect();
        let positions: Vec<i64> = inputs
            .iter()
            .flat_map(|i| position_ids(&i.input_ids, shape.positions, longest))
            .collect();
        let e = &self.embeddings;
        let mut x = e.word_embeddings.rows(&ids).reshape([b, longest, d])
            + e.position_embeddings.forward(int_tensor(positions));
        if let Some(table) = &e.token_type_embeddings {
            let types: Vec<i64> = inputs
                .iter()
                .flat_map(|i| {
                    let row: &[u32] = match self.token_types {
                        TokenTypes::Segments => &i.token_type_ids,
                        TokenTypes::Zero | TokenTypes::None => &[],
                    };
                    row.iter()
                        .map(|&v| v as i64)
                        .chain(std::iter::repeat_n(0, longest - row.len()))
                })
                .collect();
            x = x + table.forward(int_tensor(types));
        }
        let mut x = e.layer_norm.forward(x);
        let lengths: Vec<usize> = inputs.iter().map(|i| i.input_ids.len()).collect();
        let last = self.layers.len() - 1;
        if runs_on_host(&self.device) {
            let tokens = Tokens::new(&lengths, longest);
            let padded = x
                .into_data()
                .try_into_vec::<f32>()
                .expect("activations are f32");
            let mut x = tokens.rows.gather(padded, d);
            for (i, layer) in self.layers.iter().enumerate() {
                let first_only = i == last && rows == Rows::First;
                x = layer.forward_on_host(x, &tokens, first_only);
            }
            let (x, t) = match rows {
                Rows::First => (x, 1),
                Rows::All => (tokens.rows.scatter(x, d), longest),
            };
            return Ok(Tensor::from_data(
                TensorData::new(x, [b, t, d]),
                &self.device,
            ));
        }
        let bias = lengths.iter().any(|&l| l < longest).then(|| {
            attention_bias(
                [b, 1, longest],
                |row, _, key| key < lengths[row],
                &self.device,
            )
        });
        for (i, layer) in self.layers.iter().enumerate() {
            let first_only = i == last && rows == Rows::First;
            x = layer.forward(x, bias.as_ref(), first_only);
        }
        Ok(x)
    }
}

/// One row's position ids, padded to `longest` (padding's positions are never attended to).
fn position_ids(ids: &[u32], positions: Positions, longest: usize) -> Vec<i64> {
    let mut row: Vec<i64> = match positions {
        Positions::Absolute => (0..ids.len() as i64).collect(),
        Positions::AfterPadding { padding_idx } => {
            let mut seen = 0i64;
            ids.iter()
                .map(|&id| {
                    if id == padding_idx {
                        padding_idx as i64
                    } else {
                        seen += 1;
                        padding_idx as i64 + seen
                    }
                })
                .collect()
        }
    };
    row.resize(longest, 0);
    row
}

impl Layer {
    /// With `first_only` (the last layer of a classifier: its head reads nothing else), only
    /// the first position is computed past the keys and values: its output is the same, and
    /// the layer costs about a fifth of a full one.
    fn forward(&self, x: Tensor<3>, bias: Option<&Tensor<4>>, first_only: bool) -> Tensor<3> {
        let a = &self.self_attn;
        let [b, _, d] = x.dims();
        let scale = 1.0 / ((d / a.n_head) as f64).sqrt();
        let queries = if first_only {
            x.clone().slice([0..b, 0..1, 0..d])
        } else {
            x.clone()
        };
        let [q, k, v] = if first_only {
            let [k, v] = Dense::forward_fused([&a.key, &a.value], x);
            [a.query.forward(queries.clone()), k, v]
        } else {
            Dense::forward_fused([&a.query, &a.key, &a.value], x)
        };
        let [q, k, v] = [q, k, v].map(|t| split_heads(t, a.n_head));
        let context = merge_heads(attend(q, k, v, scale, bias));
        let x = self.attention_output.forward(context, queries);
        let hidden = gelu_erf(self.intermediate.forward(x.clone()));
        self.output.forward(hidden, x)
    }
}

/// The real tokens of a right-padded batch: input `b` holds the first `lengths[b]` of `t`
/// positions; `rows` picks them out of `[B·t, ·]` activations.
struct Tokens<'a> {
    lengths: &'a [usize],
    t: usize,
    rows: RealRows,
}

impl<'a> Tokens<'a> {
    fn new(lengths: &'a [usize], t: usize) -> Self {
        let real = lengths.iter().flat_map(|&l| (0..t).map(move |s| s < l));
        Self {
            lengths,
            t,
            rows: RealRows::new(real.collect()),
        }
    }

    /// Each input's first row among the real tokens' rows.
    fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        self.lengths.iter().scan(0, |start, &l| {
            let first = *start;
            *start += l;
            Some(first)
        })
    }
}

impl Layer {
    /// `forward` on the host (`kv_cache::runs_on_host`) over the real tokens' rows `x`
    /// (`[Σ lengths, d]`); returns the same rows, or each input's first alone (`[B, d]`) with
    /// `first_only`.
    fn forward_on_host(&self, x: Vec<f32>, tokens: &Tokens, first_only: bool) -> Vec<f32> {
        let a = &self.self_attn;
        let (b, n) = (tokens.lengths.len(), tokens.rows.count());
        let d = x.len() / n;
        let shape = CacheShape {
            batch: b,
            query_heads: a.n_head,
            heads: a.n_head,
            capacity: tokens.t,
            head_dim: d / a.n_head,
        };
        let ([q, k, v], residual) = if first_only {
            // Every token's key and value, each input's first query alone (the other
            // queries are never read: zeros).
            let first: Vec<f32> = tokens
                .starts()
                .flat_map(|s| &x[s * d..(s + 1) * d])
                .copied()
                .collect();
            let [k, v] = Dense::forward_rows_fused([&a.key, &a.value], &x, n);
            let mut q = vec![0.0f32; n * d];
            let first_q = a.query.forward_rows(&first, b);
            for (s, query) in tokens.starts().zip(first_q.chunks_exact(d)) {
                q[s * d..(s + 1) * d].copy_from_slice(query);
            }
            ([q, k, v], first)
        } else {
            let qkv = Dense::forward_rows_fused([&a.query, &a.key, &a.value], &x, n);
            (qkv, x)
        };
        let qkv = tokens
            .rows
            .scatter(side_by_side([&q, &k, &v], [d; 3]), 3 * d);
        let queries = if first_only { 1 } else { tokens.t };
        let mut context = vec![0.0f32; b * queries * d];
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        bidirectional_attention(&qkv, shape, tokens.lengths, queries, scale, &mut context);
        let (context, rows) = if first_only {
            (context, b)
        } else {
            (tokens.rows.gather(context, d), n)
        };
        let x = self.attention_output.forward_on_host(&context, &residual);
        let mut hidden = self.intermediate.forward_rows(&x, rows);
        gelu_erf_on_host(&mut hidden);
        self.output.forward_on_host(&hidden, &x)
    }
}

impl Output {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .tensor
            .forward(self.dense.forward(x) + residual)
    }

    /// `forward` on the host: `x` is `[rows, in]`, `residual` `[rows, out]`.
    fn forward_on_host(&self, x: &[f32], residual: &[f32]) -> Vec<f32> {
        let rows = residual.len() / self.dense.out_features();
        let mut out = self.dense.forward_rows(x, rows);
        out.iter_mut().zip(residual).for_each(|(o, r)| *o += r);
        self.layer_norm.host.normalize_rows(&mut out);
        out
    }
}

/// The nonlinearity between a classification head's two dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadActivation {
    /// BERT's pooler, RoBERTa's `classifier.dense`.
    Tanh,
    /// DistilBERT's `pre_classifier`.
    Relu,
}

/// `out(activation(dense(h[first])))`: BERT's pooler + classifier, RoBERTa's
/// `RobertaClassificationHead`, DistilBERT's `pre_classifier` + classifier.
#[derive(Debug)]
pub struct ClassificationHead {
    pub dense: Dense,
    pub activation: HeadActivation,
    pub out: Dense,
}

/// How the head's logits become scores, as transformers' text-classification pipeline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    /// Softmax over the labels (single-label classification with two or more labels).
    Softmax,
    /// A sigmoid per label: one label (a cross-encoder reranker), or
    /// `problem_type = "multi_label_classification"`.
    Sigmoid,
}

impl ScoreFunction {
    /// The pipeline's choice for `num_labels` labels and the config's `problem_type`.
    pub fn of(num_labels: usize, problem_type: Option<&str>) -> Self {
        if num_labels == 1 || problem_type == Some("multi_label_classification") {
            Self::Sigmoid
        } else {
            Self::Softmax
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::Sigmoid => "sigmoid",
        }
    }
}

/// An encoder with a sequence-classification head, whichever family it comes from.
#[derive(Debug)]
pub struct EncoderForSequenceClassification {
    /// The `model_type` it was loaded as (`bert`, `roberta`, `xlm-roberta`, `distilbert`).
    architecture: &'static str,
    encoder: Encoder,
    head: ClassificationHead,
    labels: Vec<String>,
    score_function: ScoreFunction,
}

impl EncoderForSequenceClassification {
    pub fn new(
        architecture: &'static str,
        encoder: Encoder,
        head: ClassificationHead,
        labels: Vec<String>,
        score_function: ScoreFunction,
    ) -> Self {
        Self {
            architecture,
            encoder,
            head,
            labels,
            score_function,
        }
    }

    pub fn architecture(&self) -> &'static str {
        self.architecture
    }

    pub fn shape(&self) -> &EncoderShape {
        self.encoder.shape()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn score_function(&self) -> ScoreFunction {
        self.score_function
    }

    /// Parameters as loaded: the encoder and the head.
    pub fn parameter_count(&self) -> usize {
        let (d, n) = (self.shape().hidden_size, self.labels.len());
        self.shape().parameter_count() + (d * d + d) + (d * n + n)
    }

    /// The dense layers' weight dtype (`f32`, `f16`, `bf16` or `int8`).
    pub fn dtype(&self) -> &'static str {
        self.head.out.dtype()
    }

    pub fn device(&self) -> &Device {
        self.encoder.device()
    }

    /// Class logits for each input, `[B, num_labels]`. Inputs may differ in length.
    pub fn logits(&self, inputs: &[EncoderInput]) -> Result<Tensor<2>, ModelError> {
        let x = self.encoder.forward(inputs, Rows::First)?;
        let [b, _, d] = x.dims();
        let first = x.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        let hidden = self.head.dense.forward(first);
        let hidden = match self.head.activation {
            HeadActivation::Tanh => hidden.tanh(),
            HeadActivation::Relu => relu(hidden),
        };
        Ok(self.head.out.forward(hidden))
    }

    /// The scores of `logits`, by this model's score function.
    pub fn scores(&self, logits: Tensor<2>) -> Tensor<2> {
        match self.score_function {
            ScoreFunction::Softmax => softmax(logits, 1),
            ScoreFunction::Sigmoid => sigmoid(logits),
        }
    }
}

/// The label fields of a classifier's `config.json`, the same in every family.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LabelConfig {
    /// Label names by class index; transformers writes it as a map with string keys.
    #[serde(default)]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
    /// Used only when `id2label` is absent.
    #[serde(default, alias = "_num_labels")]
    pub num_labels: Option<usize>,
    /// `multi_label_classification` makes the scores a sigmoid per label.
    #[serde(default)]
    pub problem_type: Option<String>,
}

impl LabelConfig {
    /// Label names in class order: `id2label` when given, else `LABEL_0..` as transformers does.
    pub fn labels(&self, path: &std::path::Path) -> Result<Vec<String>, ModelError> {
        let Some(map) = &self.id2label else {
            let n = self.num_labels.unwrap_or(2);
            return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
        };
        let mut labels = vec![None; map.len()];
        for (key, name) in map {
            let index = key
                .parse::<usize>()
                .ok()
                .filter(|&i| i < map.len())
                .ok_or_else(|| ModelError::InvalidConfig {
                    path: path.to_path_buf(),
                    reason: format!(
                        "id2label key {key:?} is not a class index below {}",
                        map.len()
                    ),
                })?;
            labels[index] = Some(name.clone());
        }
        Ok(labels
            .into_iter()
            .map(|l| l.expect("keys are distinct indices"))
            .collect())
    }

    pub fn score_function(&self, num_labels: usize) -> ScoreFunction {
        ScoreFunction::of(num_labels, self.problem_type.as_deref())
    }
}

/// Fails unless the checkpoint has `tensor`, a classification head's output layer.
pub fn require_head(w: &WeightFile, tensor: &str, architecture: &str) -> Result<(), ModelError> {
    if w.contains(tensor) {
        return Ok(());
    }
    Err(ModelError::MissingTensor {
        path: w.path().to_path_buf(),
        tensor: tensor.into(),
        hint: format!(
            ": this checkpoint has no sequence-classification head (a plain or pre-training \
             {architecture}); use a fine-tuned ...ForSequenceClassification folder, or serve it \
             as role = \"embedder\""
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::{position_ids, Positions};

    #[test]
    fn roberta_positions_skip_pad_tokens_as_transformers_cumsum_does() {
        // transformers: cumsum(ids != pad) * (ids != pad) + pad, here with a <pad> (1) inside
        // the text; the row is then padded to 7 (padding's positions are never attended to).
        let after_padding = Positions::AfterPadding { padding_idx: 1 };
        assert_eq!(
            position_ids(&[0, 5, 1, 7, 2], after_padding, 7),
            [2, 3, 1, 4, 5, 0, 0]
        );
        assert_eq!(
            position_ids(&[101, 7, 102], Positions::Absolute, 4),
            [0, 1, 2, 0]
        );
    }
}
