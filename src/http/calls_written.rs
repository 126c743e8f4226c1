//! A constrained answer's calls read as far as they are written, so that a stream can send
//! each call's arguments piece by piece, as OpenAI streams them, and a whole answer reads
//! the same way.
//!
//! Invariants:
//! * The text is a prefix of what the call grammar writes (`tools.rs`): a named function's
//!   arguments object; or, for `required`, one `{"name", "arguments"}` object or a list of
//!   them, the name first. Reading stops where the text stops or leaves that shape.
//! * A call counts once its name is whole; its arguments are the bytes of its `arguments`
//!   value written so far, exactly as written, so they only ever grow: the pieces a stream
//!   sends join to what the whole answer gives.

/// What a constrained answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Written {
    /// The arguments of this function alone (a named `tool_choice`).
    Arguments(String),
    /// One `{"name", "arguments"}` object (`required`, no parallel calls).
    Call,
    /// A list of them (`required`).
    Calls,
}

/// A call as far as it is written: its name and its arguments' text so far.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CallSoFar<'t> {
    pub name: String,
    pub arguments: &'t str,
}

/// What a text has written of its calls.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CallsSoFar<'t> {
    /// The calls begun, in order.
    pub calls: Vec<CallSoFar<'t>>,
    /// Whether the text holds the whole shape (every call closed).
    pub whole: bool,
}

impl Written {
    /// What `text` has written of its calls.
    pub(super) fn calls_in<'t>(&self, text: &'t str) -> CallsSoFar<'t> {
        let mut cursor = Cursor { text, at: 0 };
        let mut calls = Vec::new();
        let whole = match self {
            Self::Arguments(name) => {
                cursor.skip_space();
                let start = cursor.at;
                let whole = cursor.value();
                calls.push(CallSoFar {
                    name: name.clone(),
                    arguments: cursor.since(start),
                });
                whole
            }
            Self::Call => cursor.call(&mut calls),
            Self::Calls => cursor.calls(&mut calls),
        };
        CallsSoFar {
            calls,
            whole: whole.is_some(),
        }
    }
}

/// A reading position in a JSON text that may stop anywhere. Each step returns `None` where
/// the text ends (or leaves the expected shape) before the step is done.
struct Cursor<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Past `byte`, after any white space.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The text from `start` to where reading stands.
    fn since(&self, start: usize) -> &'t str {
        &self.text[start..self.at.min(self.text.len())]
    }

    /// Past one whole value (which starts at the cursor).
    fn value(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        let mut in_string = false;
        while let Some(&byte) = bytes.get(self.at) {
            self.at += 1;
            if in_string {
                match byte {
                    // The escaped byte is ASCII: skipping it keeps `at` on a character.
                    b'\\' => self.at += 1,
                    b'"' => {
                        in_string = false;
                        if depth == 0 {
                            return Some(());
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(());
                    }
                }
                // A number or literal on its own ends where a delimiter follows it.
                _ if depth == 0 => {
                    while self.peek().is_some_and(|b| !b",}] \t\n\r".contains(&b)) {
                        self.at += 1;
                    }
                    return self.peek().map(|_| ());
                }
                _ => {}
            }
        }
        None
    }

    /// A whole string, decoded.
    fn string(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.at;
        (self.peek()? == b'"').then_some(())?;
        self.value()?;
        serde_json::from_str(self.since(start)).ok()
    }

    /// A `{"name", "arguments"}` object: its call is pushed once the name is whole, and its
    /// arguments grow as they are read.
    fn call(&mut self, calls: &mut Vec<CallSoFar<'t>>) -> Option<()> {
        self.eat(b'{')?;
        let mut named = false;
        loop {
            self.skip_space();
            match self.peek()? {
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                b',' => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let key = self.string()?;
            self.eat(b':')?;
            self.skip_space();
            match key.as_str() {
                "name" if !named => {
                    let name = self.string()?;
                    calls.push(CallSoFar {
                        name,
                        arguments: "",
                    });
                    named = true;
                }
                // The grammar writes the name first.
                "arguments" if named => {
                    let start = self.at;
                    let whole = self.value();
                    calls.last_mut().expect("named").arguments = self.since(start);
                    whole?;
                }
                _ => return None,
            }
        }
    }

    /// `[call, ...]`.
    fn calls(&mut self, calls: &mut Vec<CallSoFar<'t>>) -> Option<()> {
        self.eat(b'[')?;
        loop {
            self.skip_space();
            match self.peek()? {
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                b',' => self.at += 1,
                _ => self.call(calls)?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(written: &Written, text: &str) -> Vec<(String, String)> {
        written
            .calls_in(text)
            .calls
            .into_iter()
            .map(|call| (call.name, call.arguments.to_string()))
            .collect()
    }

    fn calls(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, arguments)| (name.to_string(), arguments.to_string()))
            .collect()
    }

    #[test]
    fn a_named_functions_arguments_are_the_object_as_written_without_the_space_around_it() {
        let named = Written::Arguments("get_weather".into());
        let text = " \n{ \"city\": \"Par\\\"is\", \"days\": [1, {\"a\": \"}\"}] }\n ";
        assert_eq!(read(&named, text), calls(&[("get_weather", text.trim())]));
        assert!(named.calls_in(text).whole);
        assert!(!named.calls_in(&text[..text.len() - 4]).whole);
    }

    #[test]
    fn a_list_of_calls_reads_each_name_and_its_arguments_as_written() {
        let text = "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}},\n \
                    {\"name\":\"get_time\",\"arguments\":{}}]";
        assert_eq!(
            read(&Written::Calls, text),
            calls(&[("get_weather", "{\"city\": \"Paris\"}"), ("get_time", "{}")])
        );
        let one = "{\"name\": \"get_time\", \"arguments\": {\"zone\": -1.5e3}}";
        assert_eq!(
            read(&Written::Call, one),
            calls(&[("get_time", "{\"zone\": -1.5e3}")])
        );
    }

    #[test]
    fn every_prefix_reads_calls_whose_arguments_begin_the_whole_answers() {
        let text = "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa\\u00efs é\", \
                    \"n\": 12}}, {\"name\": \"get_time\", \"arguments\": {}}]";
        let whole = read(&Written::Calls, text);
        let mut last: Vec<(String, String)> = Vec::new();
        for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
            let so_far = read(&Written::Calls, &text[..end]);
            assert!(
                so_far.len() <= whole.len() && so_far.len() >= last.len(),
                "{end}"
            );
            for (i, (name, arguments)) in so_far.iter().enumerate() {
                assert_eq!(name, &whole[i].0);
                assert!(
                    whole[i].1.starts_with(arguments.as_str()),
                    "{end}: {arguments}"
                );
                if let Some((_, before)) = last.get(i) {
                    assert!(arguments.starts_with(before.as_str()), "{end}");
                }
            }
            last = so_far;
        }
        assert_eq!(last, whole);
        assert!(Written::Calls.calls_in(text).whole);
        assert!(!Written::Calls.calls_in(&text[..text.len() - 1]).whole);
    }

    #[test]
    fn a_call_counts_once_its_name_is_whole() {
        let written = Written::Call;
        assert!(read(&written, "{\"name\": \"get_wea").is_empty());
        assert_eq!(
            read(&written, "{\"name\": \"get_weather\""),
            calls(&[("get_weather", "")])
        );
        assert_eq!(
            read(&written, "{\"name\": \"get_weather\", \"arguments\": {\"ci"),
            calls(&[("get_weather", "{\"ci")])
        );
    }

    #[test]
    fn text_of_another_shape_reads_no_call() {
        for text in ["Paris", "{\"arguments\": {}, \"name\": \"x\"}", "[1, 2]"] {
            assert!(read(&Written::Calls, text).is_empty(), "{text}");
            assert!(read(&Written::Call, text).is_empty(), "{text}");
        }
    }
}
