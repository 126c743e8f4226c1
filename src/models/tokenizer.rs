//! Hugging Face `tokenizer.json` files through the `tokenizers` crate.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::ModelError;
use super::gguf::tokenizer::{tokenizer_from_gguf, GgufVocab};
use super::gguf::{GgufFile, Value};

/// One encoded text (or text pair), as a model consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// 0 for the first text's tokens, 1 for the second's.
    pub type_ids: Vec<u32>,
    /// Whether truncation dropped tokens.
    pub truncated: bool,
}

/// A tokenizer loaded from a model folder.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// For error messages.
    path: std::path::PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .finish()
    }
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "the model's tokenizer",
            });
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // Padding is the batch's to do, with a mask: a tokenizer.json that pads by itself
        // (all-MiniLM-L6-v2's pads every text to 128) would make the model read [PAD]s.
        inner.with_padding(None);
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The tokenizer a GGUF file's `tokenizer.ggml.*` metadata describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let path = file.path();
        let fail = |reason: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let get = |key: &str| file.get(&format!("tokenizer.ggml.{key}"));
        let array = |key: &str| get(key).and_then(Value::as_array);
        let strings = |key: &str| -> Result<Option<Vec<String>>, ModelError> {
            array(key)
                .map(|values| {
                    values
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            fail(format!("tokenizer.ggml.{key} is not a list of strings"))
                        })
                })
                .transpose()
        };
        let model = get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no tokenizer.ggml.model key".into()))?;
        let tokens = strings("tokens")?.ok_or_else(|| fail("no tokenizer.ggml.tokens".into()))?;
        let merges = strings("merges")?;
        let token_types: Option<Vec<i32>> = array("token_type").map(|values| {
            values
                .iter()
                .map(|v| v.as_u64().unwrap_or(1) as i32)
                .collect()
        });
        let scores: Option<Vec<f32>> = array("scores").map(|values| {
            values
                .iter()
                .map(|v| v.as_f64().unwrap_or(0.0) as f32)
                .collect()
        });
        let id = |key: &str| get(key).and_then(Value::as_u64).map(|v| v as u32);
        let flag = |key: &str| get(key).and_then(Value::as_bool);
        let vocab = GgufVocab {
            model,
            pre: get("pre").and_then(Value::as_str),
            tokens: &tokens,
            token_types: token_types.as_deref(),
            scores: scores.as_deref(),
            merges: merges.as_deref(),
            bos: id("bos_token_id"),
            eos: id("eos_token_id"),
            unk: id("unknown_token_id"),
            pad: id("padding_token_id"),
            add_bos: flag("add_bos_token"),
            add_eos: flag("add_eos_token"),
            add_space_prefix: flag("add_space_prefix"),
        };
        let mut inner = tokenizer_from_gguf(&vocab).map_err(fail)?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Truncate encodings to `max_length` tokens (special tokens included), longest text first.
    pub fn truncate_to(mut self, max_length: usize) -> Result<Self, ModelError> {
        let current = self.inner.get_truncation().cloned();
        let params = TruncationParams {
            max_length: current
                .as_ref()
                .map_or(max_length, |t| t.max_length.min(max_length)),
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        self.inner
            .with_truncation(Some(params))
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(self)
    }

    /// Truncate encodings to exactly `max_length` tokens, whatever tokenizer.json says (as
    /// sentence-transformers does with `max_seq_length`), longest text first.
    pub fn truncate_exactly(mut self, max_length: usize) -> Result<Self, ModelError> {
        self.inner
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        self.truncate_to(max_length)
    }

    /// The truncation limit in force, if any.
    pub fn max_length(&self) -> Option<usize> {
        self.inner.get_truncation().map(|t| t.max_length)
    }

    /// Encodes `text` (and `pair`, if given) with the tokenizer's special tokens.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded, ModelError> {
        let encoding = match pair {
            Some(pair) => self.inner.encode((text, pair), true),
            None => self.inner.encode(text, true),
        }
        .map_err(|e| ModelError::InvalidInput(format!("cannot tokenize: {e}")))?;
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }

    /// The id of `token` (a special token's text), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes a prompt a chat template rendered: it writes every special token itself (its
    /// BOS included), so the tokenizer adds none.
    pub fn encode_rendered(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::InvalidInput(format!("cannot tokenize: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The bytes each id `0..vocab_size` puts into a decoded text, `None` for ids that put
    /// none (special tokens, ids the tokenizer lacks): what constrained decoding walks. A
    /// byte-level vocabulary's pieces map back to bytes through GPT-2's byte alphabet; a
    /// SentencePiece one's have `▁` for a space and `<0xNN>` byte tokens.
    pub fn token_bytes(&self, vocab_size: usize) -> Vec<Option<Vec<u8>>> {
        let byte_level = self.inner.get_decoder().is_some_and(|decoder| {
            serde_json::to_string(decoder).is_ok_and(|json| json.contains("\"ByteLevel\""))
        });
        let byte_of: std::collections::HashMap<char, u8> =
            byte_alphabet().into_iter().map(|(b, c)| (c, b)).collect();
        let added = self.inner.get_added_tokens_decoder();
        (0..vocab_size as u32)
            .map(|id| {
                let bytes = match added.get(&id) {
                    Some(token) if token.special => return None,
                    Some(token) => token.content.as_bytes().to_vec(),
                    None => {
                        let piece = self.inner.id_to_token(id)?;
                        if byte_level {
                            piece
                                .chars()
                                .flat_map(|c| match byte_of.get(&c) {
                                    Some(&b) => vec![b],
                                    None => c.to_string().into_bytes(),
                                })
                                .collect()
                        } else {
                            sentencepiece_bytes(&piece)
                        }
                    }
                };
                (!bytes.is_empty()).then_some(bytes)
            })
            .collect()
    }

    /// Decodes `ids`, leaving out special tokens such as `<|endoftext|>`, as HF pipelines do.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::InvalidInput(format!("cannot decode: {e}")))
    }
}

/// GPT-2's printable stand-ins for bytes: printable Latin-1 bytes stand for themselves, the
/// others for U+0100 onwards, in byte order.
fn byte_alphabet() -> Vec<(u8, char)> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b, char::from(b))
            } else {
                shifted += 1;
                (b, char::from_u32(255 + shifted).expect("below U+0200"))
            }
        })
        .collect()
}

/// A SentencePiece piece's bytes: `<0xNN>` is byte NN, `▁` a space.
fn sentencepiece_bytes(piece: &str) -> Vec<u8> {
    let byte = piece
        .strip_prefix("<0x")
        .and_then(|rest| rest.strip_suffix('>'))
        .filter(|hex| hex.len() == 2)
        .and_then(|hex| u8::from_str_radix(hex, 16).ok());
    match byte {
        Some(byte) => vec![byte],
        None => piece.replace('\u{2581}', " ").into_bytes(),
    }
}
