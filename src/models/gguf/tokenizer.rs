//! A Hugging Face [`Tokenizer`] rebuilt from the tokenizer metadata of a GGUF file.
//!
//! A GGUF carries no `tokenizer.json`, only llama.cpp's `tokenizer.ggml.*` keys: the token list,
//! token types, SentencePiece scores or BPE merges, special ids and a few flags. What the model's
//! own `tokenizer.json` did besides (normalizer, pre-tokenizer, decoder) is implied by
//! `tokenizer.ggml.model` and `tokenizer.ggml.pre`. The aim is the ids of Hugging Face's tokenizer
//! (llama.cpp's test vectors are HF ids), so the layouts below follow the hub's tokenizer.json
//! files and transformers' GGUF converter (`integrations/gguf/gguf_tokenizer_mapping.py`), not
//! llama.cpp's own regexes, which are rewritten approximations of the same splits.
//!
//! * `gpt2` (byte-level BPE). Every token, special ones included, goes into the BPE vocabulary at
//!   its own index, so ids are the file's ids whatever their order (SmolLM2 puts its specials at
//!   0..16) and nothing is appended past the model's vocabulary. By `tokenizer.ggml.pre`:
//!   - `llama3`, `llama-v3`, `llama-bpe` (Llama 3): Split(Llama 3 regex, isolated) +
//!     ByteLevel(no regex), BPE with `ignore_merges: true` (HF's Llama 3 tokenizer looks a whole
//!     pre-token up before merging: without it e.g. "Cửa Việt" gets other ids), bos added by
//!     default as llama.cpp and HF do.
//!   - `qwen2` (Qwen1.5/2/2.5/3): NFC normalizer, Split(Qwen2 regex: digits one by one) +
//!     ByteLevel(no regex), no bos.
//!   - `smollm`, `starcoder`, `refact`: Digits(individual) + ByteLevel(GPT-2 regex): digits one by
//!     one, then GPT-2's split (llama.cpp's `\p{N}` + GPT-2 regex pair). No bos.
//!   - `gpt-2`, `default` (and no `pre` at all, as llama.cpp reads it): GPT-2's ByteLevel split.
//! * `llama` (SentencePiece BPE: scores, `<0xNN>` byte tokens; Llama 2, TinyLlama, Mistral v0.1):
//!   laid out like the hub's Llama 2 / Phi-3 tokenizer.json, not transformers' `LlamaTokenizer`
//!   (whose Metaspace pre-tokenizer gives other ids for text starting with spaces): normalizer
//!   Prepend("▁") + Replace(" " → "▁"), no pre-tokenizer, BPE with byte fallback whose merges are
//!   recovered from the scores (a SentencePiece GGUF has none), decoder Replace("▁" → " ") +
//!   ByteFallback + Fuse + Strip(one leading space). With `add_space_prefix` false neither the
//!   Prepend nor the Strip is there. bos added by default (llama.cpp's SentencePiece default).
//!   `tokenizer.ggml.pre` is ignored, as llama.cpp ignores it for this model.
//!
//! For both, tokens typed control (3) or unknown (2) become special added tokens and user-defined
//! ones (4) plain added tokens, all matched whole in the raw text as llama.cpp does; decode skips
//! the special ones when asked. `add_bos`/`add_eos` become a template post-processor
//! (`bos $A eos`, pair `bos $A eos bos:1 $B:1 eos:1`, as transformers builds it).
//!
//! Not covered: Gemma's SentencePiece files also say `llama`, but need the architecture to be
//! told apart (their scores do not give the merge order), which this metadata does not carry.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::template::{
    Piece, Sequence as TemplateSequence, SpecialToken, Template, TemplateProcessing,
};
use tokenizers::{
    AddedToken, DecoderWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

/// The tokenizer metadata of a GGUF file (`tokenizer.ggml.*` keys), borrowed from the reader.
pub struct GgufVocab<'a> {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE).
    pub model: &'a str,
    /// `tokenizer.ggml.pre`: "llama-bpe", "qwen2", "smollm", "gpt-2", "default", ...
    pub pre: Option<&'a str>,
    /// `tokenizer.ggml.tokens`
    pub tokens: &'a [String],
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)
    pub token_types: Option<&'a [i32]>,
    /// `tokenizer.ggml.scores` (SentencePiece)
    pub scores: Option<&'a [f32]>,
    /// `tokenizer.ggml.merges` ("a b" strings; BPE)
    pub merges: Option<&'a [String]>,
    /// `tokenizer.ggml.bos_token_id`
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`
    pub unk: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`: not used here (a tokenizer.json pads nothing by itself).
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`
    pub add_space_prefix: Option<bool>,
}

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The Llama 3 split, as in Meta's tokenizer.json.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: the Llama 3 one with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level vocabulary splits text before BPE (`tokenizer.ggml.pre`).
#[derive(Clone, Copy, PartialEq)]
enum ByteLevelPre {
    Llama3,
    Qwen2,
    DigitsThenGpt2,
    Gpt2,
}

/// The `tokenizer.ggml.pre` values understood for `gpt2` vocabularies.
const BYTE_LEVEL_PRES: &[(&str, ByteLevelPre)] = &[
    ("llama3", ByteLevelPre::Llama3),
    ("llama-v3", ByteLevelPre::Llama3),
    ("llama-bpe", ByteLevelPre::Llama3),
    ("qwen2", ByteLevelPre::Qwen2),
    ("smollm", ByteLevelPre::DigitsThenGpt2),
    ("starcoder", ByteLevelPre::DigitsThenGpt2),
    ("refact", ByteLevelPre::DigitsThenGpt2),
    ("gpt-2", ByteLevelPre::Gpt2),
    ("default", ByteLevelPre::Gpt2),
];

/// A tokenizer equivalent to the model's Hugging Face tokenizer.json (see the module doc).
pub fn tokenizer_from_gguf(vocab: &GgufVocab) -> Result<Tokenizer, String> {
    check_lengths(vocab)?;
    let mut tokenizer = match vocab.model {
        "gpt2" => {
            let pre = byte_level_pre(vocab.pre)?;
            let add_bos = vocab.add_bos.unwrap_or(pre == ByteLevelPre::Llama3);
            byte_level_tokenizer(vocab, pre, add_bos)?
        }
        "llama" => sentencepiece_tokenizer(vocab, vocab.add_bos.unwrap_or(true))?,
        other => {
            return Err(format!(
                "unsupported tokenizer.ggml.model \"{other}\" (supported: gpt2, llama)"
            ))
        }
    };
    add_typed_tokens(&mut tokenizer, vocab)?;
    Ok(tokenizer)
}

fn check_lengths(vocab: &GgufVocab) -> Result<(), String> {
    let n = vocab.tokens.len();
    if n == 0 {
        return Err("tokenizer.ggml.tokens is empty".into());
    }
    if u32::try_from(n).is_err() {
        return Err(format!(
            "tokenizer.ggml.tokens has {n} entries, more than u32 ids"
        ));
    }
    let lengths = [
        (
            "tokenizer.ggml.token_type",
            vocab.token_types.map(<[i32]>::len),
        ),
        ("tokenizer.ggml.scores", vocab.scores.map(<[f32]>::len)),
    ];
    for (key, len) in lengths {
        if let Some(len) = len.filter(|&len| len != n) {
            return Err(format!("{key} has {len} entries for {n} tokens"));
        }
    }
    Ok(())
}

fn byte_level_pre(pre: Option<&str>) -> Result<ByteLevelPre, String> {
    let pre = pre.unwrap_or("default");
    BYTE_LEVEL_PRES
        .iter()
        .find(|(name, _)| *name == pre)
        .map(|&(_, kind)| kind)
        .ok_or_else(|| {
            let known: Vec<&str> = BYTE_LEVEL_PRES.iter().map(|(name, _)| *name).collect();
            format!(
                "unsupported tokenizer.ggml.pre \"{pre}\" (supported: {})",
                known.join(", ")
            )
        })
}

/// The file's token list as a vocabulary, ids = positions. A duplicated string keeps its last id,
/// as in llama.cpp's token-to-id map and transformers' converter.
fn token_ids(vocab: &GgufVocab) -> Vocab {
    (0u32..)
        .zip(vocab.tokens)
        .map(|(id, token)| (token.clone(), id))
        .collect()
}

fn byte_level_tokenizer(
    vocab: &GgufVocab,
    pre: ByteLevelPre,
    add_bos: bool,
) -> Result<Tokenizer, String> {
    let merges = vocab
        .merges
        .ok_or("tokenizer.ggml.merges is missing (a gpt2 vocabulary needs its merges)")?
        .iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(left, right)| (left.to_owned(), right.to_owned()))
                .ok_or_else(|| format!("tokenizer.ggml.merges entry \"{merge}\" is not \"a b\""))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(token_ids(vocab), merges)
        .ignore_merges(pre == ByteLevelPre::Llama3)
        .build()
        .map_err(|e| format!("byte-level BPE from tokenizer.ggml.tokens/merges: {e}"))?;

    // The regex splits run first and ByteLevel only maps bytes; GPT-2's own split is ByteLevel's.
    let byte_level_after_split = |regex: &str| -> Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("pre-tokenizer regex: {e}"))?;
        Ok(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])
        .into())
    };
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        ByteLevelPre::Llama3 => byte_level_after_split(LLAMA3_SPLIT)?,
        ByteLevelPre::Qwen2 => byte_level_after_split(QWEN2_SPLIT)?,
        ByteLevelPre::DigitsThenGpt2 => PreTokenizerSequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        ByteLevelPre::Gpt2 => ByteLevel::new(false, true, true).into(),
    };

    let mut tokenizer = Tokenizer::new(bpe);
    if pre == ByteLevelPre::Qwen2 {
        tokenizer
            .with_normalizer(Some(NFC))
            .map_err(|e| format!("normalizer: {e}"))?;
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    // ByteLevel as post-processor only keeps offsets byte-accurate; the template adds bos/eos.
    let offsets = ByteLevel::new(false, false, true).into();
    let post_processor: PostProcessorWrapper = match special_template(vocab, add_bos)? {
        Some(template) => ProcessorSequence::new(vec![offsets, template.into()]).into(),
        None => offsets,
    };
    tokenizer.with_post_processor(Some(post_processor));
    // Maps the byte alphabet back to bytes; an incomplete UTF-8 sequence becomes U+FFFD.
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

fn sentencepiece_tokenizer(vocab: &GgufVocab, add_bos: bool) -> Result<Tokenizer, String> {
    let scores = vocab
        .scores
        .ok_or("tokenizer.ggml.scores is missing (a llama vocabulary needs its scores)")?;
    let ids = token_ids(vocab);
    let merges = merges_from_scores(vocab.tokens, scores, &ids);
    let mut builder = BPE::builder()
        .vocab_and_merges(ids, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk_token(vocab)? {
        builder = builder.unk_token(unk.to_owned());
    }
    let bpe = builder
        .build()
        .map_err(|e| format!("SentencePiece BPE from tokenizer.ggml.tokens/scores: {e}"))?;

    let add_space_prefix = vocab.add_space_prefix.unwrap_or(true);
    let space = Replace::new(" ", "\u{2581}").map_err(|e| format!("normalizer: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let normalizer = if add_space_prefix {
        NormalizerSequence::new(vec![Prepend::new("\u{2581}".into()).into(), space.into()])
    } else {
        NormalizerSequence::new(vec![space.into()])
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| format!("normalizer: {e}"))?;

    let unspace = Replace::new("\u{2581}", " ").map_err(|e| format!("decoder: {e}"))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        unspace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        // Takes off the space the normalizer put in front.
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    tokenizer.with_post_processor(special_template(vocab, add_bos)?);
    Ok(tokenizer)
}

/// SentencePiece BPE merges recovered from the piece scores, as transformers' `generate_merges`
/// does: every split of a piece into two pieces of the vocabulary is a merge ranked by the whole
/// piece's score (best first), ties by longer left then longer right part, then by file order
/// (pieces in token order, a piece's splits by the ids of their parts).
fn merges_from_scores(tokens: &[String], scores: &[f32], ids: &Vocab) -> Vec<(String, String)> {
    struct Candidate<'t> {
        left: &'t str,
        right: &'t str,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut candidates = Vec::new();
    for (piece, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<Candidate> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(left, right)| ids.contains_key(*left) && ids.contains_key(*right))
            .map(|(left, right)| Candidate {
                left,
                right,
                score,
                left_chars: left.chars().count(),
                right_chars: right.chars().count(),
            })
            .collect();
        local.sort_by_key(|c| (ids[c.left], ids[c.right]));
        candidates.extend(local);
    }
    // Stable, so equal keys keep the order above.
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    candidates
        .into_iter()
        .map(|c| (c.left.to_owned(), c.right.to_owned()))
        .collect()
}

/// The unknown piece: `tokenizer.ggml.unknown_token_id`, else the token typed unknown.
fn unk_token<'v>(vocab: &GgufVocab<'v>) -> Result<Option<&'v str>, String> {
    let typed = || {
        vocab
            .token_types?
            .iter()
            .position(|&t| t == TOKEN_TYPE_UNKNOWN)
    };
    match vocab.unk {
        Some(id) => token(vocab, id, "tokenizer.ggml.unknown_token_id").map(Some),
        None => Ok(typed().map(|index| vocab.tokens[index].as_str())),
    }
}

fn token<'v>(vocab: &GgufVocab<'v>, id: u32, key: &str) -> Result<&'v str, String> {
    vocab
        .tokens
        .get(id as usize)
        .map(String::as_str)
        .ok_or_else(|| format!("{key} {id} is out of range ({} tokens)", vocab.tokens.len()))
}

/// `bos $A eos` / `bos $A eos bos:1 $B:1 eos:1`, with bos and eos present as the flags say;
/// `None` when neither is added.
fn special_template(
    vocab: &GgufVocab,
    add_bos: bool,
) -> Result<Option<TemplateProcessing>, String> {
    let add_eos = vocab.add_eos.unwrap_or(false);
    let bos = add_bos
        .then(|| {
            let id = vocab
                .bos
                .ok_or("adding bos, but tokenizer.ggml.bos_token_id is missing")?;
            token(vocab, id, "tokenizer.ggml.bos_token_id").map(|t| (t, id))
        })
        .transpose()?;
    let eos = add_eos
        .then(|| {
            let id = vocab.eos.ok_or(
                "tokenizer.ggml.add_eos_token is set, but tokenizer.ggml.eos_token_id is missing",
            )?;
            token(vocab, id, "tokenizer.ggml.eos_token_id").map(|t| (t, id))
        })
        .transpose()?;
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }

    let sequence = |type_id: u32| {
        let special = |t: Option<(&str, u32)>| {
            t.map(|(content, _)| Piece::SpecialToken {
                id: content.to_owned(),
                type_id,
            })
        };
        let input = Piece::Sequence {
            id: if type_id == 0 {
                TemplateSequence::A
            } else {
                TemplateSequence::B
            },
            type_id,
        };
        special(bos).into_iter().chain([input]).chain(special(eos))
    };
    let single: Vec<Piece> = sequence(0).collect();
    let pair: Vec<Piece> = sequence(0).chain(sequence(1)).collect();
    let specials: Vec<SpecialToken> = bos
        .into_iter()
        .chain(eos)
        .map(|(content, id)| SpecialToken::from((content, id)))
        .collect();
    TemplateProcessing::builder()
        .single(template(single)?)
        .pair(template(pair)?)
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| format!("bos/eos template: {e}"))
}

/// A template from its pieces. `Template`'s own constructors parse `"<s>:0"`-style strings, which a
/// token containing ':' or ' ' would break; its serde form is the plain piece list.
fn template(pieces: Vec<Piece>) -> Result<Template, String> {
    serde_json::to_value(pieces)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("bos/eos template: {e}"))
}

/// Control and unknown tokens become special added tokens, user-defined ones plain added tokens;
/// both are matched whole in the raw text, before normalization, as llama.cpp matches them.
fn add_typed_tokens(tokenizer: &mut Tokenizer, vocab: &GgufVocab) -> Result<(), String> {
    let Some(types) = vocab.token_types else {
        return Ok(());
    };
    let typed = |wanted: &[i32], special: bool| -> Vec<AddedToken> {
        vocab
            .tokens
            .iter()
            .zip(types)
            .filter(|(_, t)| wanted.contains(t))
            .map(|(token, _)| AddedToken::from(token.as_str(), special).normalized(false))
            .collect()
    };
    tokenizer
        .add_special_tokens(typed(&[TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN], true))
        .map_err(|e| format!("special tokens: {e}"))?;
    tokenizer
        .add_tokens(typed(&[TOKEN_TYPE_USER_DEFINED], false))
        .map_err(|e| format!("user-defined tokens: {e}"))?;
    Ok(())
}
