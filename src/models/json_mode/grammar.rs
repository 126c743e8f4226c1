//! JSON text as bytes arrive: which byte may come next, and whether the text is whole.
//!
//! Invariants:
//! * A state accepts a byte exactly when the bytes so far plus it are a prefix of some JSON
//!   text (RFC 8259) whose top-level value is an object, as OpenAI's JSON mode asks for (or
//!   any value, for a schema's free-form parts).
//! * The state is `Copy` and a few bytes large: a mask over a 150k-token vocabulary feeds it
//!   hundreds of thousands of bytes a step, from copies taken at shared prefixes.
//! * Inside strings any byte from 0x20 up is taken except `"` and `\` (which end or escape):
//!   a byte sequence that is not UTF-8 decodes to U+FFFD, which is still a JSON string's.
//! * White space between parts is taken up to `MAX_SPACES` bytes in a row.

/// Containers nest at most this deep (one bit each of `JsonState::stack`).
pub const MAX_DEPTH: u8 = 64;

/// White space between a text's parts, at most this many bytes in a row: enough for a
/// pretty-printed line's indent, and a model that would rather write spaces than JSON cannot
/// spend its whole budget on them.
pub const MAX_SPACES: u8 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JsonState {
    /// The open containers, innermost in bit 0: 1 an object, 0 an array.
    stack: u64,
    depth: u8,
    at: Expect,
    /// White-space bytes just read between parts.
    spaces: u8,
}

/// What the next byte may be, besides whitespace where JSON allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Expect {
    /// Before the top-level object.
    Start,
    /// Before a top-level value of any kind.
    StartValue,
    /// Just after `{`: a key or `}`.
    KeyOrClose,
    /// After a comma in an object.
    Key,
    /// After a key.
    Colon,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// After `:` or a comma in an array.
    Value,
    /// After a value inside a container.
    CommaOrClose,
    /// Inside a string; `key` says what follows its end.
    String {
        key: bool,
        escape: Escape,
    },
    Number(Number),
    /// Inside `true`, `false` or `null`: the bytes still to come.
    Literal {
        word: Word,
        at: u8,
    },
    /// The top-level object is closed: only whitespace may follow.
    Done,
}

/// Where a string's escape stands (the schema grammar's strings are these too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Escape {
    None,
    /// After `\`.
    Started,
    /// Inside `\uXXXX`, with this many hex digits still to come.
    Hex(u8),
    /// Inside a multi-byte UTF-8 character: `left` bytes still to come, the next from `low`
    /// to `high` (which rules out overlong forms and surrogates, as UTF-8 does).
    Utf8 {
        left: u8,
        low: u8,
        high: u8,
    },
}

impl Escape {
    /// Where the escape stands after `byte` inside a string, `Ok(None)` if the byte ends it,
    /// `Err` if no string has it here.
    pub(super) fn then(self, byte: u8) -> Result<Option<Escape>, ()> {
        Ok(Some(match (self, byte) {
            (Escape::None, b'"') => return Ok(None),
            (Escape::None, b'\\') => Escape::Started,
            (Escape::None, 0x20..0x80) => Escape::None,
            // A string is text: its bytes are UTF-8, which a lossy decode would otherwise
            // turn into U+FFFD.
            (Escape::None, 0xC2..=0xDF) => Escape::continuation(1, 0x80, 0xBF),
            (Escape::None, 0xE0) => Escape::continuation(2, 0xA0, 0xBF),
            (Escape::None, 0xED) => Escape::continuation(2, 0x80, 0x9F),
            (Escape::None, 0xE1..=0xEF) => Escape::continuation(2, 0x80, 0xBF),
            (Escape::None, 0xF0) => Escape::continuation(3, 0x90, 0xBF),
            (Escape::None, 0xF1..=0xF3) => Escape::continuation(3, 0x80, 0xBF),
            (Escape::None, 0xF4) => Escape::continuation(3, 0x80, 0x8F),
            (Escape::Utf8 { left, low, high }, _) if (low..=high).contains(&byte) => {
                if left == 1 {
                    Escape::None
                } else {
                    Escape::continuation(left - 1, 0x80, 0xBF)
                }
            }
            (Escape::Started, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                Escape::None
            }
            (Escape::Started, b'u') => Escape::Hex(4),
            (Escape::Hex(left), b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                if left == 1 {
                    Escape::None
                } else {
                    Escape::Hex(left - 1)
                }
            }
            _ => return Err(()),
        }))
    }

    fn continuation(left: u8, low: u8, high: u8) -> Escape {
        Escape::Utf8 { left, low, high }
    }
}

/// Where in `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` a number is (the schema
/// grammar's numbers are these too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Number {
    Minus,
    Zero,
    Integer,
    Point,
    Fraction,
    Exponent,
    ExponentSign,
    ExponentDigits,
}

impl Number {
    /// A number's first byte, if it can start one.
    pub(super) fn start(byte: u8) -> Option<Number> {
        match byte {
            b'-' => Some(Number::Minus),
            b'0' => Some(Number::Zero),
            b'1'..=b'9' => Some(Number::Integer),
            _ => None,
        }
    }

    /// Whether no fraction or exponent has begun.
    pub(super) fn integral(self) -> bool {
        matches!(self, Number::Minus | Number::Zero | Number::Integer)
    }

    /// Whether the number may end here.
    pub(super) fn whole(self) -> bool {
        matches!(
            self,
            Number::Zero | Number::Integer | Number::Fraction | Number::ExponentDigits
        )
    }

    pub(super) fn then(self, byte: u8) -> Option<Number> {
        use Number::*;
        Some(match (self, byte) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Integer,
            (Integer, b'0'..=b'9') => Integer,
            (Zero | Integer, b'.') => Point,
            (Point | Fraction, b'0'..=b'9') => Fraction,
            (Zero | Integer | Fraction, b'e' | b'E') => Exponent,
            (Exponent, b'+' | b'-') => ExponentSign,
            (Exponent | ExponentSign | ExponentDigits, b'0'..=b'9') => ExponentDigits,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Word {
    True,
    False,
    Null,
}

impl Word {
    fn bytes(self) -> &'static [u8] {
        match self {
            Word::True => b"true",
            Word::False => b"false",
            Word::Null => b"null",
        }
    }
}

/// JSON's white space.
pub(super) fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

impl Default for JsonState {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonState {
    /// Nothing read yet.
    pub const fn new() -> Self {
        Self {
            stack: 0,
            depth: 0,
            at: Expect::Start,
            spaces: 0,
        }
    }

    /// Nothing read yet, and any value may come.
    pub const fn any_value() -> Self {
        Self {
            stack: 0,
            depth: 0,
            at: Expect::StartValue,
            spaces: 0,
        }
    }

    /// Whether the bytes so far are a whole JSON object (trailing whitespace allowed).
    pub fn is_whole(&self) -> bool {
        self.at == Expect::Done
    }

    /// Whether the value may end here: it is whole, or a top-level number that the next
    /// byte (not its own) would end.
    pub fn may_end(&self) -> bool {
        match self.at {
            Expect::Done => true,
            Expect::Number(number) => self.depth == 0 && number.whole(),
            _ => false,
        }
    }

    /// Takes `bytes` one by one; false (and a state to drop) at the first that no JSON text
    /// could have there.
    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(b))
    }

    /// Takes `byte`; false (and a state to drop) when no JSON text could have it here.
    pub fn feed(&mut self, byte: u8) -> bool {
        let between_parts = is_space(byte) && !matches!(self.at, Expect::String { .. });
        if !self.step(byte) {
            return false;
        }
        self.spaces = if between_parts { self.spaces + 1 } else { 0 };
        self.spaces <= MAX_SPACES
    }

    fn step(&mut self, byte: u8) -> bool {
        match self.at {
            Expect::String { key, escape } => self.in_string(key, escape, byte),
            Expect::Number(number) => match number.then(byte) {
                Some(next) => {
                    self.at = Expect::Number(next);
                    true
                }
                // The byte ends the number and belongs to what follows it.
                None if number.whole() => {
                    self.value_ended();
                    self.step(byte)
                }
                None => false,
            },
            Expect::Literal { word, at } => {
                let bytes = word.bytes();
                if bytes[at as usize] != byte {
                    return false;
                }
                if at as usize + 1 == bytes.len() {
                    self.value_ended();
                } else {
                    self.at = Expect::Literal { word, at: at + 1 };
                }
                true
            }
            _ if is_space(byte) => true,
            Expect::Start => byte == b'{' && self.open(true),
            Expect::StartValue => self.start_value(byte),
            Expect::Done => false,
            Expect::KeyOrClose | Expect::Key => match byte {
                b'"' => {
                    self.at = Expect::String {
                        key: true,
                        escape: Escape::None,
                    };
                    true
                }
                b'}' if self.at == Expect::KeyOrClose => self.close(),
                _ => false,
            },
            Expect::Colon => {
                self.at = Expect::Value;
                byte == b':'
            }
            Expect::ValueOrClose if byte == b']' => self.close(),
            Expect::ValueOrClose | Expect::Value => self.start_value(byte),
            Expect::CommaOrClose => match byte {
                b',' => {
                    self.at = if self.in_object() {
                        Expect::Key
                    } else {
                        Expect::Value
                    };
                    true
                }
                b'}' if self.in_object() => self.close(),
                b']' if !self.in_object() => self.close(),
                _ => false,
            },
        }
    }

    fn in_object(&self) -> bool {
        self.stack & 1 == 1
    }

    fn start_value(&mut self, byte: u8) -> bool {
        self.at = match byte {
            b'{' => return self.open(true),
            b'[' => return self.open(false),
            b'"' => Expect::String {
                key: false,
                escape: Escape::None,
            },
            b'-' | b'0'..=b'9' => match Number::start(byte) {
                Some(number) => Expect::Number(number),
                None => return false,
            },
            b't' => Expect::Literal {
                word: Word::True,
                at: 1,
            },
            b'f' => Expect::Literal {
                word: Word::False,
                at: 1,
            },
            b'n' => Expect::Literal {
                word: Word::Null,
                at: 1,
            },
            _ => return false,
        };
        true
    }

    fn in_string(&mut self, key: bool, escape: Escape, byte: u8) -> bool {
        match escape.then(byte) {
            Ok(Some(escape)) => self.at = Expect::String { key, escape },
            Ok(None) if key => self.at = Expect::Colon,
            Ok(None) => self.value_ended(),
            Err(()) => return false,
        }
        true
    }

    fn open(&mut self, object: bool) -> bool {
        if self.depth == MAX_DEPTH {
            return false;
        }
        self.stack = (self.stack << 1) | u64::from(object);
        self.depth += 1;
        self.at = if object {
            Expect::KeyOrClose
        } else {
            Expect::ValueOrClose
        };
        true
    }

    fn close(&mut self) -> bool {
        self.stack >>= 1;
        self.depth -= 1;
        self.value_ended();
        true
    }

    fn value_ended(&mut self) {
        self.at = if self.depth == 0 {
            Expect::Done
        } else {
            Expect::CommaOrClose
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<JsonState> {
        let mut state = JsonState::new();
        state.feed_all(text.as_bytes()).then_some(state)
    }

    #[test]
    fn every_prefix_of_a_json_object_is_taken_and_only_the_whole_is_whole() {
        let text = r#" { "a" : [1, -0.5e+3, 20E2, true, false, null, {}, [], "x\"\\\u00e9y"],
            "b": {"c": "é ü 中"}, "d": -0 }
"#;
        serde_json::from_str::<serde_json::Value>(text).unwrap();
        let closed = text.rfind('}').unwrap();
        let mut state = JsonState::new();
        for (i, &byte) in text.as_bytes().iter().enumerate() {
            assert_eq!(state.is_whole(), i > closed, "at {i}");
            assert!(state.feed(byte), "refused byte {i} of {text:?}");
        }
        assert!(state.is_whole());
    }

    #[test]
    fn what_no_json_object_can_hold_is_refused_at_the_first_wrong_byte() {
        for bad in [
            "[1]",
            "\"a\"",
            "1",
            "{,",
            "{\"a\" 1",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":nul1",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g",
            "{\"a\":\"\n",
            "{\"a\":[}",
            "{\"a\":[1}",
            "{}}",
            "{} x",
            "{'a':1}",
        ] {
            assert!(read(bad).is_none(), "took {bad:?}");
            // Every strict prefix that serde_json calls merely unfinished is taken.
            for end in 0..bad.len() {
                let prefix = &bad[..end];
                let unfinished =
                    serde_json::from_str::<serde_json::Value>(prefix).is_err_and(|e| e.is_eof());
                if unfinished && prefix.trim_start().starts_with('{') {
                    assert!(read(prefix).is_some(), "refused {prefix:?}");
                }
            }
        }
    }

    #[test]
    fn a_number_ends_at_the_byte_after_it_which_then_counts() {
        let state = read("{\"a\": 12").unwrap();
        assert!(!state.is_whole());
        assert!(read("{\"a\": 12}").unwrap().is_whole());
        assert!(read("{\"a\": 12 }").unwrap().is_whole());
        assert!(read("{\"a\": 12,\"b\":0}").unwrap().is_whole());
        assert!(read("{\"a\": 12]").is_none());
    }

    #[test]
    fn white_space_between_parts_runs_at_most_max_spaces_bytes_and_within_strings_any_length() {
        let most = " ".repeat(MAX_SPACES as usize);
        assert!(read(&format!("{most}{{{most}\"a\"{most}:{most}1{most}}}{most}")).is_some());
        assert!(read(&format!("{{\"a\":{most} ")).is_none());
        assert!(read(&format!("{{\"a\":{most}1 }}{most} ")).is_none());
        assert!(read(&format!("{{\"a\": \"{most}{most}\"}}")).is_some());
        assert!(read(&format!(
            "{{\"a\": 1{}}}",
            " ".repeat(MAX_SPACES as usize + 1)
        ))
        .is_none());
    }

    #[test]
    fn strings_hold_only_utf_8_whose_every_byte_is_checked_as_it_comes() {
        let bytes = |tail: &[u8]| {
            let mut state = JsonState::new();
            state
                .feed_all(&[b"{\"a\": \"".as_slice(), tail].concat())
                .then_some(state)
        };
        for good in ["é", "中", "😀", "\u{7FF}", "\u{FFFF}", "\u{10FFFF}"] {
            assert!(bytes(good.as_bytes()).is_some(), "{good:?}");
            // Cut anywhere, it is a character still to finish.
            for cut in 1..good.len() {
                assert!(
                    bytes(&good.as_bytes()[..cut]).is_some(),
                    "{good:?} cut at {cut}"
                );
            }
        }
        for bad in [
            &[0x80][..],               // a continuation byte with no lead
            &[0xC0, 0x80],             // overlong
            &[0xC3, 0x41],             // a lead byte without its continuation
            &[0xE0, 0x80, 0x80],       // overlong
            &[0xED, 0xA0, 0x80],       // a surrogate
            &[0xF4, 0x90, 0x80, 0x80], // past U+10FFFF
            &[0xF8],
        ] {
            assert!(bytes(bad).is_none(), "{bad:x?}");
        }
    }

    #[test]
    fn nesting_deeper_than_the_stack_is_refused() {
        let deepest = format!("{{\"a\":{}", "[".repeat(MAX_DEPTH as usize - 1));
        let state = read(&deepest).unwrap();
        let mut deeper = state;
        assert!(!deeper.feed(b'['));
        let closed = format!("{deepest}{}}}", "]".repeat(MAX_DEPTH as usize - 1));
        assert!(read(&closed).unwrap().is_whole());
    }
}
