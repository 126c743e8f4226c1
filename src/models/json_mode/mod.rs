//! JSON mode (OpenAI's `response_format: {"type": "json_object"}`) and structured outputs
//! (`{"type": "json_schema"}`): a generation whose every token keeps its text a prefix of a
//! JSON object (of a schema's values), and which ends only once the value is whole.
//!
//! Invariants:
//! * Before each pick, every token whose bytes would take the text out of the grammar is set
//!   to −∞, and so are the end-of-sequence tokens until the value is whole; once it is
//!   closed, every token but those. The model's own log-probabilities (taken before) are
//!   untouched.
//! * The allowed tokens follow from the grammar's state alone (and the schema), so each
//!   state's set is computed once and shared by every sequence of the model (a long string
//!   value's steps all reuse one).
//! * A budget that runs out first leaves the text unfinished, as OpenAI's does
//!   (`finish_reason` "length").

mod grammar;
mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use grammar::JsonState;
pub use schema::{JsonSchema, SchemaState, MAX_CHOICES};

use super::tokenizer::TextTokenizer;

/// How many grammar states' allowed sets a vocabulary keeps (each is a bit a token: 19 KB for
/// a 152k vocabulary); past it the cache starts afresh.
const CACHED_STATES: usize = 256;

/// A model's tokens as bytes, sorted so that tokens sharing a prefix are walked once.
pub struct Vocabulary {
    /// Each id's bytes as a range of `bytes`; empty for ids that write no text.
    by_id: Vec<(u32, u32)>,
    bytes: Vec<u8>,
    /// Ids with text in byte order, each with the length of the prefix it shares with the one
    /// before it.
    sorted: Vec<(u32, u32)>,
    /// Allowed tokens of the grammar states seen so far, one bit an id.
    allowed: Mutex<HashMap<Place, Arc<Vec<u64>>>>,
}

/// A grammar state, as the cache of allowed tokens tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Place {
    Object(JsonState),
    /// A schema's (by its fingerprint); boxed, as a schema's state is some 300 bytes.
    Schema(u64, Box<SchemaState>),
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("tokens", &self.by_id.len())
            .field("with_text", &self.sorted.len())
            .finish()
    }
}

impl Vocabulary {
    /// The model's `vocab_size` ids as `tokenizer` writes them.
    pub fn new(tokenizer: &TextTokenizer, vocab_size: usize) -> Self {
        Self::from_token_bytes(tokenizer.token_bytes(vocab_size))
    }

    fn from_token_bytes(tokens: Vec<Option<Vec<u8>>>) -> Self {
        let mut bytes = Vec::new();
        let by_id: Vec<(u32, u32)> = tokens
            .iter()
            .map(|token| {
                let start = bytes.len() as u32;
                bytes.extend_from_slice(token.as_deref().unwrap_or_default());
                (start, bytes.len() as u32)
            })
            .collect();
        let mut ids: Vec<u32> = (0..tokens.len() as u32)
            .filter(|&id| tokens[id as usize].is_some())
            .collect();
        ids.sort_by(|&a, &b| tokens[a as usize].cmp(&tokens[b as usize]));
        let mut before: &[u8] = &[];
        let sorted = ids
            .into_iter()
            .map(|id| {
                let token = tokens[id as usize].as_deref().unwrap_or_default();
                let shared = token.iter().zip(before).take_while(|(a, b)| a == b).count();
                before = token;
                (id, shared as u32)
            })
            .collect();
        Self {
            by_id,
            bytes,
            sorted,
            allowed: Mutex::new(HashMap::new()),
        }
    }

    fn token(&self, id: u32) -> &[u8] {
        self.by_id.get(id as usize).map_or(&[], |&(start, end)| {
            &self.bytes[start as usize..end as usize]
        })
    }

    /// The ids whose bytes `feed` takes from `from` (at `place`), one bit each.
    fn allowed<S: Copy>(
        &self,
        place: Place,
        from: S,
        feed: impl Fn(&mut S, u8) -> bool,
    ) -> Arc<Vec<u64>> {
        let mut cache = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(allowed) = cache.get(&place) {
            return allowed.clone();
        }
        let allowed = Arc::new(self.walk(from, feed));
        if cache.len() == CACHED_STATES {
            cache.clear();
        }
        cache.insert(place, allowed.clone());
        allowed
    }

    /// Feeds every token to `from` in byte order, restarting each from the state at the
    /// prefix it shares with the one before: a depth-first walk of the vocabulary's trie.
    fn walk<S: Copy>(&self, from: S, feed: impl Fn(&mut S, u8) -> bool) -> Vec<u64> {
        let mut allowed = vec![0u64; self.by_id.len().div_ceil(64)];
        // `states[d]`: after the current token's first `d` bytes.
        let mut states = vec![from];
        // The previous token was refused at its byte `refused - 1`: tokens sharing that
        // prefix are refused too.
        let mut refused = usize::MAX;
        for &(id, shared) in &self.sorted {
            let shared = shared as usize;
            if shared >= refused {
                continue;
            }
            refused = usize::MAX;
            states.truncate(shared + 1);
            let token = self.token(id);
            for (at, &byte) in token.iter().enumerate().skip(shared) {
                let mut state = states[at];
                if !feed(&mut state, byte) {
                    refused = at + 1;
                    break;
                }
                states.push(state);
            }
            if refused == usize::MAX {
                allowed[id as usize / 64] |= 1 << (id % 64);
            }
        }
        allowed
    }
}

/// One sequence's place in its JSON text.
#[derive(Debug, Clone)]
pub struct JsonMode {
    vocabulary: Arc<Vocabulary>,
    grammar: Grammar,
}

#[derive(Debug, Clone)]
enum Grammar {
    /// Any JSON object.
    Object(JsonState),
    /// A value of the schema.
    Schema(Arc<JsonSchema>, Box<SchemaState>),
}

impl JsonMode {
    /// Any JSON object.
    pub fn object(vocabulary: Arc<Vocabulary>) -> Self {
        Self {
            vocabulary,
            grammar: Grammar::Object(JsonState::new()),
        }
    }

    /// A value of `schema`.
    pub fn schema(vocabulary: Arc<Vocabulary>, schema: Arc<JsonSchema>) -> Self {
        let state = Box::new(schema.start());
        Self {
            vocabulary,
            grammar: Grammar::Schema(schema, state),
        }
    }

    /// Sets the logit of every token that cannot come next to −∞; `eos` may come once the
    /// value is whole, and once it is closed nothing else may (unless `eos_banned`, as
    /// before `min_tokens`: then white space may, which keeps it JSON).
    pub fn restrict(&self, logits: &mut [f32], eos: &[u32], eos_banned: bool) {
        let (allowed, whole, closed) = match &self.grammar {
            Grammar::Object(state) => (
                self.vocabulary
                    .allowed(Place::Object(*state), *state, |s, b| s.feed(b)),
                state.is_whole(),
                state.is_whole(),
            ),
            Grammar::Schema(schema, state) => (
                self.vocabulary.allowed(
                    Place::Schema(schema.fingerprint(), state.clone()),
                    **state,
                    |s, b| s.feed(schema, b),
                ),
                state.is_whole(schema),
                state.is_closed(),
            ),
        };
        let ends: Vec<(usize, f32)> = eos
            .iter()
            .filter_map(|&id| logits.get(id as usize).map(|&l| (id as usize, l)))
            .collect();
        // A model may rather write white space than end (SmolLM2 does, after an object).
        let only_the_end = closed && !eos_banned;
        for (word, run) in logits.chunks_mut(64).enumerate() {
            let bits = match allowed.get(word) {
                Some(&bits) if !only_the_end => bits,
                _ => 0,
            };
            if bits == u64::MAX {
                continue;
            }
            for (bit, logit) in run.iter_mut().enumerate() {
                if bits >> bit & 1 == 0 {
                    *logit = f32::NEG_INFINITY;
                }
            }
        }
        // The end tokens write no text, so no walk allows them: they come back once the
        // value may end.
        if whole {
            for (id, logit) in ends {
                logits[id] = logit;
            }
        }
    }

    /// Moves past the picked token.
    pub fn advance(&mut self, token: u32) {
        // `restrict` let only tokens the state takes through (or an end of sequence, which
        // writes nothing); a draw with every logit −∞ falls back to any token, and then
        // the state stays where it was.
        let bytes = self.vocabulary.token(token);
        match &mut self.grammar {
            Grammar::Object(state) => {
                let mut next = *state;
                if next.feed_all(bytes) {
                    *state = next;
                }
            }
            Grammar::Schema(schema, state) => {
                let mut next = **state;
                if bytes.iter().all(|&b| next.feed(schema, b)) {
                    **state = next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary(tokens: &[&str]) -> Vocabulary {
        Vocabulary::from_token_bytes(
            tokens
                .iter()
                .map(|t| (!t.is_empty()).then(|| t.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn allowed_tokens<'a>(tokens: &[&'a str], text: &str) -> Vec<&'a str> {
        allowed_tokens_with(tokens, text, false)
    }

    fn allowed_tokens_with<'a>(tokens: &[&'a str], text: &str, eos_banned: bool) -> Vec<&'a str> {
        let vocabulary = Arc::new(vocabulary(tokens));
        let mut state = JsonState::new();
        assert!(state.feed_all(text.as_bytes()), "{text:?}");
        let mode = JsonMode {
            vocabulary,
            grammar: Grammar::Object(state),
        };
        let mut logits = vec![0.0; tokens.len()];
        mode.restrict(&mut logits, &[0], eos_banned);
        (0..tokens.len())
            .filter(|&id| logits[id].is_finite())
            .map(|id| tokens[id])
            .collect()
    }

    const TOKENS: [&str; 14] = [
        "", "{", "{\"", "\"", "\":", "a", "ab", "}", " ", "1", "12}", "tr", "true", "\\",
    ];

    #[test]
    fn a_walk_allows_exactly_the_tokens_whose_every_byte_the_grammar_takes() {
        assert_eq!(allowed_tokens(&TOKENS, ""), ["{", "{\"", " "]);
        assert_eq!(allowed_tokens(&TOKENS, "{"), ["\"", "\":", "}", " "]);
        assert_eq!(
            allowed_tokens(&TOKENS, "{\"k"),
            ["{", "{\"", "\"", "\":", "a", "ab", "}", " ", "1", "12}", "tr", "true", "\\"]
        );
        assert_eq!(
            allowed_tokens(&TOKENS, "{\"k\":"),
            ["{", "{\"", "\"", "\":", " ", "1", "12}", "tr", "true"]
        );
        assert_eq!(allowed_tokens(&TOKENS, "{\"k\":1"), ["}", " ", "1", "12}"]);
    }

    #[test]
    fn the_end_of_sequence_comes_once_the_object_is_whole_and_then_nothing_else() {
        assert!(!allowed_tokens(&TOKENS, "{\"k\":1").contains(&""));
        assert_eq!(allowed_tokens(&TOKENS, "{\"k\":1}"), [""]);
        // Held back (`min_tokens`; the sampler bans the end itself), white space keeps it
        // JSON meanwhile.
        assert_eq!(allowed_tokens_with(&TOKENS, "{\"k\":1}", true), ["", " "]);
    }

    #[test]
    fn advancing_feeds_the_picked_tokens_bytes() {
        let mut mode = JsonMode::object(Arc::new(vocabulary(&TOKENS)));
        for id in [2, 5, 4, 10] {
            mode.advance(id);
        }
        assert!(matches!(mode.grammar, Grammar::Object(state) if state.is_whole()));
    }
}
