//! JSON Schema as a byte grammar: OpenAI's structured outputs (`response_format: {"type":
//! "json_schema", ...}`), for the part of JSON Schema they allow.
//!
//! Invariants:
//! * A schema compiles or is refused whole, naming the keyword and where it is: a keyword
//!   that would constrain the text in a way the grammar does not enforce (`pattern`,
//!   `format`, a number's `minimum`, ...) is refused, never ignored. Annotations (`title`,
//!   `description`, ...) are taken. An integer's bounds are kept digit by digit: a digit
//!   comes only while some integer in range still starts with the digits so far.
//! * An object writes its `properties` in the schema's order and no other key: every one
//!   `required` lists, and any of the others (OpenAI's strict mode lists them all). Which
//!   optional key comes is told by its bytes, as a choice's are (JSON strings are
//!   prefix-free), so at most 63 optional properties may stand in a row.
//! * Alternatives (`anyOf`, `oneOf`, a list of `type`s) must start with different bytes
//!   (a string or null, say), so that the first byte of a value picks one: the state stays
//!   one path, `Copy` and small, as the vocabulary walk needs. Objects are the exception
//!   when they are a tagged union (pydantic's discriminated unions, a call of one of several
//!   tools): each starts with the same key, whose value is a constant string of its own, so
//!   that value picks the object.
//! * Nesting is bounded by `MAX_FRAMES`; a deeper value is refused byte by byte. White
//!   space between parts, by `MAX_SPACES` bytes in a row (as in JSON mode).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

use super::grammar::{is_space, Escape, JsonState, Number, MAX_SPACES};

/// Open values at once (objects, arrays, and the value being written).
const MAX_FRAMES: usize = 12;
/// Bounds that keep a schema's grammar small.
const MAX_NODES: usize = 512;
/// Alternatives (and `enum` values) of one value at most: a choice's state is a 64-bit set.
pub const MAX_CHOICES: usize = 64;
const MAX_ITEMS: u16 = 4096;
/// A string's `maxLength` at most (and its length without one).
const MAX_CHARS: u16 = u16::MAX;
/// The longest property name or `enum`/`const` value, as JSON text, in bytes.
const MAX_TEXT: usize = 1024;

/// JSON Schema's keywords that constrain a text in ways this grammar does not enforce: a
/// schema using one is refused rather than half followed. Keywords outside JSON Schema's
/// vocabulary are annotations, as the specification has them, and so ignored.
const UNENFORCED: [&str; 28] = [
    "pattern",
    "format",
    "multipleOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "$dynamicRef",
    "$recursiveRef",
];

/// A compiled schema.
#[derive(Debug)]
pub struct JsonSchema {
    nodes: Vec<Node>,
    /// The node a text is a value of.
    root: u16,
    /// The schema as sent, for a model node to compile again.
    source: Value,
    /// Tells schemas apart in the vocabulary's cache of allowed tokens.
    fingerprint: u64,
}

#[derive(Debug)]
enum Node {
    /// Any JSON value.
    Any,
    /// Any JSON object.
    AnyObject,
    /// These properties, in order: each key as its JSON text (quotes included), its value's
    /// node, and whether it is required (else it may be left out).
    Object(Vec<(Vec<u8>, u16, bool)>),
    /// Any keys (a `String` node), each with a value of `values` (`additionalProperties`).
    Map {
        keys: u16,
        values: u16,
    },
    Array {
        items: u16,
        min: u16,
        max: u16,
    },
    /// With its `minLength` and `maxLength`, in characters.
    String {
        min: u16,
        max: u16,
    },
    Number {
        integer: bool,
    },
    /// An integer from `min` to `max` (`minimum`, `maximum` and their exclusive forms).
    Bounded {
        min: i64,
        max: i64,
    },
    /// One of these JSON texts (`enum`, `const`, a boolean, null).
    Choices(Vec<Vec<u8>>),
    /// The alternative whose first byte comes.
    OneOf(Vec<u16>),
    /// The `objects` whose first property has one key and a string constant of each's own
    /// (`tags`, a `Choices` node listing them in the same order): the object whose
    /// constant is written.
    Tagged {
        objects: Vec<u16>,
        tags: u16,
    },
    /// Stands for the `$ref`'d node until references are resolved.
    Ref(String),
}

impl JsonSchema {
    /// Compiles OpenAI's `response_format.json_schema`: `name` (1 to 64 letters, digits, `_`
    /// or `-`), and optionally `schema` (an object; any JSON value without it),
    /// `description`, `strict`.
    pub fn from_openai(spec: &Value) -> Result<Self, String> {
        let spec_fields = spec
            .as_object()
            .ok_or_else(|| "must be an object".to_string())?;
        if let Some(key) = spec_fields
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "schema" | "description" | "strict"))
        {
            return Err(format!("unknown field {key:?}"));
        }
        let name_ok = spec["name"].as_str().is_some_and(|name| {
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !name_ok {
            return Err("name: must be 1 to 64 letters, digits, _ or -".into());
        }
        if !matches!(
            spec.get("strict"),
            None | Some(Value::Bool(_) | Value::Null)
        ) {
            return Err("strict: must be a boolean".into());
        }
        if !matches!(spec.get("description"), None | Some(Value::String(_))) {
            return Err("description: must be a string".into());
        }
        let schema = match spec.get("schema") {
            None => &Value::Bool(true),
            Some(schema @ Value::Object(_)) => schema,
            Some(_) => return Err("schema: must be an object".into()),
        };
        let mut compiled = Self::compile(schema)?;
        compiled.source = spec.clone();
        Ok(compiled)
    }

    /// Compiles a JSON Schema.
    fn compile(schema: &Value) -> Result<Self, String> {
        let mut compiler = Compiler {
            nodes: Vec::new(),
            definitions: HashMap::new(),
        };
        for key in ["$defs", "definitions"] {
            if let Some(defs) = schema.get(key) {
                let defs = defs
                    .as_object()
                    .ok_or_else(|| format!("{key}: must be an object"))?;
                for (name, definition) in defs {
                    let at = format!("#/{key}/{name}");
                    let node = compiler.node(definition, &at)?;
                    compiler.definitions.insert(at, node);
                }
            }
        }
        let root = compiler.node(schema, "#")?;
        let mut compiled = JsonSchema {
            nodes: compiler.nodes,
            root,
            source: schema.clone(),
            fingerprint: 0,
        };
        compiled.resolve(&compiler.definitions)?;
        compiled.tag_unions()?;
        compiled.check_alternatives()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        schema.to_string().hash(&mut hasher);
        compiled.fingerprint = hasher.finish();
        Ok(compiled)
    }

    /// OpenAI's `json_schema` object it was compiled from.
    pub fn source(&self) -> &Value {
        &self.source
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Points every use of a reference at the node it names (through references to
    /// references).
    fn resolve(&mut self, definitions: &HashMap<String, u16>) -> Result<(), String> {
        let mut target = HashMap::new();
        for index in 0..self.nodes.len() {
            let mut at = index;
            for _ in 0..=self.nodes.len() {
                let Node::Ref(name) = &self.nodes[at] else {
                    break;
                };
                at = *definitions
                    .get(name)
                    .ok_or_else(|| format!("$ref: {name:?} is not under #/$defs"))?
                    as usize;
            }
            if matches!(self.nodes[at], Node::Ref(_)) {
                return Err("$ref: a reference refers only to references".into());
            }
            if at != index {
                target.insert(index as u16, at as u16);
            }
        }
        let follow = |index: &mut u16| {
            if let Some(&to) = target.get(index) {
                *index = to;
            }
        };
        follow(&mut self.root);
        for node in &mut self.nodes {
            match node {
                Node::Object(properties) => properties.iter_mut().for_each(|(_, c, _)| follow(c)),
                Node::Array { items, .. } => follow(items),
                Node::Map { values, .. } => follow(values),
                Node::OneOf(alternatives) => alternatives.iter_mut().for_each(follow),
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes each set of alternatives that are objects of a tagged union one `Tagged` node.
    fn tag_unions(&mut self) -> Result<(), String> {
        for index in 0..self.nodes.len() {
            let Node::OneOf(alternatives) = &self.nodes[index] else {
                continue;
            };
            let (objects, others): (Vec<u16>, Vec<u16>) = alternatives.iter().partition(
                |&&a| matches!(&self.nodes[a as usize], Node::Object(p) if !p.is_empty()),
            );
            let Some(tags) = self.tags_of(&objects) else {
                continue;
            };
            if self.nodes.len() + 2 > MAX_NODES {
                return Err(format!("the schema is over {MAX_NODES} parts"));
            }
            self.nodes.push(Node::Choices(tags));
            let tags = self.nodes.len() as u16 - 1;
            self.nodes.push(Node::Tagged { objects, tags });
            let tagged = self.nodes.len() as u16 - 1;
            self.nodes[index] = Node::OneOf(others.into_iter().chain([tagged]).collect());
        }
        Ok(())
    }

    /// The constants that tell `objects` apart, if they are a tagged union: two or more
    /// objects whose first properties share a key and have string constants, all different.
    fn tags_of(&self, objects: &[u16]) -> Option<Vec<Vec<u8>>> {
        if objects.len() < 2 {
            return None;
        }
        let mut key = None;
        let mut tags: Vec<Vec<u8>> = Vec::new();
        for &object in objects {
            let Node::Object(properties) = &self.nodes[object as usize] else {
                return None;
            };
            // The tag must be written, and first.
            let (first_key, value, true) = &properties[0] else {
                return None;
            };
            let Node::Choices(texts) = &self.nodes[*value as usize] else {
                return None;
            };
            // A JSON string's text ends at its closing quote, so no tag extends another.
            let [tag] = texts.as_slice() else {
                return None;
            };
            if *key.get_or_insert(first_key) != first_key
                || !tag.starts_with(b"\"")
                || tags.contains(tag)
            {
                return None;
            }
            tags.push(tag.clone());
        }
        Some(tags)
    }

    /// The bytes a value of `node` may start with.
    fn first_bytes(&self, node: u16, seen: &mut Vec<u16>) -> [bool; 256] {
        let mut first = [false; 256];
        let mut set = |bytes: &[u8]| bytes.iter().for_each(|&b| first[b as usize] = true);
        match &self.nodes[node as usize] {
            Node::Any => set(b"{[\"-0123456789tfn"),
            Node::AnyObject | Node::Object(_) | Node::Map { .. } | Node::Tagged { .. } => set(b"{"),
            Node::Array { .. } => set(b"["),
            Node::String { .. } => set(b"\""),
            Node::Number { .. } | Node::Bounded { .. } => set(b"-0123456789"),
            Node::Choices(choices) => choices.iter().for_each(|c| set(&c[..1])),
            Node::OneOf(alternatives) => {
                if !seen.contains(&node) {
                    seen.push(node);
                    for &alternative in alternatives {
                        let theirs = self.first_bytes(alternative, seen);
                        for b in 0..256 {
                            first[b] |= theirs[b];
                        }
                    }
                }
            }
            Node::Ref(_) => {}
        }
        first
    }

    fn check_alternatives(&self) -> Result<(), String> {
        for node in &self.nodes {
            let Node::OneOf(alternatives) = node else {
                continue;
            };
            let mut taken = [false; 256];
            for &alternative in alternatives {
                let first = self.first_bytes(alternative, &mut Vec::new());
                if (0..256).any(|b| first[b] && taken[b]) {
                    return Err(
                        "anyOf: alternatives must start differently (a string, a number, \
                         an object, an array, true/false, null), so the first byte picks one"
                            .into(),
                    );
                }
                (0..256).for_each(|b| taken[b] |= first[b]);
            }
        }
        Ok(())
    }

    /// Its grammar's state before any byte.
    pub fn start(&self) -> SchemaState {
        let mut frames = [Frame::Empty; MAX_FRAMES];
        frames[0] = Frame::Value(self.root);
        SchemaState {
            frames,
            depth: 1,
            spaces: 0,
        }
    }
}

struct Compiler {
    nodes: Vec<Node>,
    definitions: HashMap<String, u16>,
}

impl Compiler {
    fn push(&mut self, node: Node) -> Result<u16, String> {
        if self.nodes.len() == MAX_NODES {
            return Err(format!("the schema is over {MAX_NODES} parts"));
        }
        self.nodes.push(node);
        Ok(self.nodes.len() as u16 - 1)
    }

    /// Compiles the schema at `at` (a JSON pointer, for errors).
    fn node(&mut self, schema: &Value, at: &str) -> Result<u16, String> {
        let schema = match schema {
            Value::Bool(true) => return self.push(Node::Any),
            Value::Object(schema) => schema,
            _ => return Err(format!("{at}: a schema must be an object")),
        };
        if let Some(key) = schema.keys().find(|k| UNENFORCED.contains(&k.as_str())) {
            return Err(format!("{at}: {key:?} is not supported in a json_schema"));
        }
        let range = integer_bounds(schema, at)?;
        if let Some(reference) = schema.get("$ref") {
            let reference = reference
                .as_str()
                .ok_or_else(|| format!("{at}: $ref must be a string"))?;
            return self.push(Node::Ref(reference.to_string()));
        }
        if let Some(value) = schema.get("const") {
            return self.push(Node::Choices(vec![text_of(value, at)?]));
        }
        if let Some(values) = schema.get("enum") {
            let values = values
                .as_array()
                .filter(|v| !v.is_empty() && v.len() <= MAX_CHOICES)
                .ok_or_else(|| format!("{at}: enum must list 1 to {MAX_CHOICES} values"))?;
            let texts = values
                .iter()
                .map(|v| text_of(v, at))
                .collect::<Result<_, _>>()?;
            return self.push(Node::Choices(texts));
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(alternatives) = schema.get(keyword) {
                let alternatives = alternatives
                    .as_array()
                    .filter(|a| !a.is_empty() && a.len() <= MAX_CHOICES)
                    .ok_or_else(|| format!("{at}: {keyword} must list 1 to {MAX_CHOICES}"))?;
                let nodes = alternatives
                    .iter()
                    .enumerate()
                    .map(|(i, a)| self.node(a, &format!("{at}/{keyword}/{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                return self.push(Node::OneOf(nodes));
            }
        }
        let types: Vec<&str> = match schema.get("type") {
            None => return self.push(Node::Any),
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(several)) => several
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| format!("{at}: type must name types"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("{at}: type must be a string or a list")),
        };
        if types.len() > 1 {
            let nodes = types
                .iter()
                .map(|t| self.node(&serde_json::json!({ "type": t }), at))
                .collect::<Result<Vec<_>, _>>()?;
            return self.push(Node::OneOf(nodes));
        }
        match types.first().copied().unwrap_or_default() {
            "object" => {
                let Some(properties) = schema.get("properties") else {
                    return match schema.get("additionalProperties") {
                        None | Some(Value::Bool(true)) => self.push(Node::AnyObject),
                        Some(Value::Bool(false)) => self.push(Node::Object(Vec::new())),
                        Some(values) => {
                            let values =
                                self.node(values, &format!("{at}/additionalProperties"))?;
                            let keys = self.push(Node::String {
                                min: 0,
                                max: MAX_CHARS,
                            })?;
                            self.push(Node::Map { keys, values })
                        }
                    };
                };
                let properties: &Map<String, Value> = properties
                    .as_object()
                    .ok_or_else(|| format!("{at}: properties must be an object"))?;
                let required = match schema.get("required") {
                    Some(required) => required
                        .as_array()
                        .ok_or_else(|| format!("{at}: required must be a list"))?
                        .as_slice(),
                    None => &[],
                };
                if let Some(missing) = required
                    .iter()
                    .find(|r| !r.as_str().is_some_and(|r| properties.contains_key(r)))
                {
                    return Err(format!("{at}: required {missing} is not a property"));
                }
                let mut compiled = Vec::new();
                let mut optional_run = 0;
                for (name, property) in properties {
                    let child = self.node(property, &format!("{at}/properties/{name}"))?;
                    let must = required.iter().any(|r| r == name.as_str());
                    optional_run = if must { 0 } else { optional_run + 1 };
                    if optional_run == 64 {
                        return Err(format!(
                            "{at}: over 63 optional properties in a row (list some in required)"
                        ));
                    }
                    compiled.push((text_of(&Value::String(name.clone()), at)?, child, must));
                }
                self.push(Node::Object(compiled))
            }
            "array" => {
                let items = match schema.get("items") {
                    Some(items) => self.node(items, &format!("{at}/items"))?,
                    None => self.push(Node::Any)?,
                };
                let (min, max) = bounds(schema, "minItems", "maxItems", MAX_ITEMS, at)?;
                self.push(Node::Array { items, min, max })
            }
            "string" => {
                let (min, max) = bounds(schema, "minLength", "maxLength", MAX_CHARS, at)?;
                self.push(Node::String { min, max })
            }
            "integer" => match range {
                Some((min, max)) => self.push(Node::Bounded { min, max }),
                None => self.push(Node::Number { integer: true }),
            },
            "number" => self.push(Node::Number { integer: false }),
            "boolean" => self.push(Node::Choices(vec![b"true".to_vec(), b"false".to_vec()])),
            "null" => self.push(Node::Choices(vec![b"null".to_vec()])),
            other => Err(format!("{at}: type {other:?} is not a JSON Schema type")),
        }
    }
}

/// An integer schema's bounds (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`:
/// integers, or whole numbers), if it has any. Elsewhere they are refused: a number's would
/// need its fraction bounded too, and a schema without `type` would leave them unkept.
fn integer_bounds(schema: &Map<String, Value>, at: &str) -> Result<Option<(i64, i64)>, String> {
    const KEYS: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
    let Some(first) = KEYS.iter().find(|k| schema.contains_key(**k)) else {
        return Ok(None);
    };
    let elsewhere = ["const", "enum", "anyOf", "oneOf", "$ref"]
        .iter()
        .any(|k| schema.contains_key(*k));
    if schema.get("type") != Some(&Value::from("integer")) || elsewhere {
        return Err(format!(
            "{at}: {first:?} is supported on an integer only (\"type\": \"integer\")"
        ));
    }
    let (mut min, mut max) = (i64::MIN, i64::MAX);
    for key in KEYS {
        let Some(value) = schema.get(key) else {
            continue;
        };
        let whole = value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("{at}: {key} must be a whole number"))?;
        match key {
            "minimum" => min = min.max(whole),
            "exclusiveMinimum" => min = min.max(whole.saturating_add(1)),
            "maximum" => max = max.min(whole),
            _ => max = max.min(whole.saturating_sub(1)),
        }
    }
    if min > max {
        return Err(format!("{at}: no integer is within its bounds"));
    }
    Ok(Some((min, max)))
}

/// `schema`'s `low` and `high` counts (0 and `most` when absent), each at most `most`.
fn bounds(
    schema: &Map<String, Value>,
    low: &str,
    high: &str,
    most: u16,
    at: &str,
) -> Result<(u16, u16), String> {
    let count = |key: &str, default: u16| match schema.get(key) {
        None => Ok(default),
        Some(n) => n
            .as_u64()
            .filter(|&n| n <= u64::from(most))
            .map(|n| n as u16)
            .ok_or_else(|| format!("{at}: {key} must be 0 to {most}")),
    };
    let (min, max) = (count(low, 0)?, count(high, most)?);
    if min > max {
        return Err(format!("{at}: {low} is over {high}"));
    }
    Ok((min, max))
}

/// `value` as JSON text, which the model writes byte for byte.
fn text_of(value: &Value, at: &str) -> Result<Vec<u8>, String> {
    let text = serde_json::to_vec(value).unwrap_or_default();
    if text.len() > MAX_TEXT {
        return Err(format!("{at}: a name or value over {MAX_TEXT} bytes"));
    }
    Ok(text)
}

/// Where a text stands in a schema's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaState {
    /// The open values, outermost first; `depth` of them are in use.
    frames: [Frame; MAX_FRAMES],
    depth: u8,
    /// White-space bytes just read between parts.
    spaces: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Frame {
    Empty,
    /// A value of this node comes next (after any whitespace).
    Value(u16),
    Object {
        node: u16,
        /// The property being written (or last written).
        property: u16,
        at: ObjectAt,
    },
    Array {
        node: u16,
        /// Values started so far.
        count: u16,
        at: ArrayAt,
    },
    Map {
        node: u16,
        at: MapAt,
    },
    String {
        node: u16,
        escaped: Escape,
        /// Characters written (an escape is one).
        chars: u16,
    },
    Number {
        integer: bool,
        part: Number,
    },
    /// An integer of a `Bounded` node: its sign and the value of its digits so far.
    Bounded {
        node: u16,
        negative: bool,
        /// `None` until the first digit (after a `-`).
        digits: Option<u64>,
    },
    /// Inside one of a node's JSON texts: `written` bytes so far, which leave the choices
    /// whose bits are set.
    Choice {
        node: u16,
        written: u16,
        left: u64,
    },
    /// A free-form value.
    Any(JsonState),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ObjectAt {
    /// After `{`: a key comes, or `}` if no property is required.
    Open,
    /// After a comma: a key comes.
    BeforeKey,
    /// `written` bytes of a key written, which leave the candidates whose bits are set (bit
    /// `k`: the frame's `property` + `k`).
    Key { written: u16, left: u64 },
    /// After the key: `:` comes.
    Colon,
    /// After the property's value.
    AfterValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MapAt {
    /// After `{`.
    Open,
    /// After a comma: a key comes.
    Comma,
    /// After a key (while it is written, too).
    Colon,
    AfterValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ArrayAt {
    /// After `[`.
    Open,
    /// After a comma.
    Comma,
    AfterValue,
}

impl Frame {
    /// Whether the value this frame writes may end here, before a byte that is not its own:
    /// a number, a free-form value, a choice that others extend.
    fn may_end(&self, schema: &JsonSchema) -> bool {
        match *self {
            Frame::Any(inner) => inner.may_end(),
            Frame::Number { part, .. } => part.whole(),
            Frame::Bounded {
                node,
                negative,
                digits: Some(digits),
            } => match schema.nodes[node as usize] {
                Node::Bounded { min, max } => {
                    let value = signed(negative, u128::from(digits));
                    (i128::from(min)..=i128::from(max)).contains(&value)
                }
                _ => false,
            },
            Frame::Choice {
                node,
                written,
                left,
            } => match &schema.nodes[node as usize] {
                Node::Choices(choices) => (0..choices.len())
                    .any(|i| left >> i & 1 == 1 && choices[i].len() == written as usize),
                _ => false,
            },
            _ => false,
        }
    }
}

impl SchemaState {
    /// Whether the text is a whole value of the schema (trailing whitespace allowed): every
    /// value closed, or the last one open one that may end here (a number, a free-form
    /// value, a choice that others extend).
    pub fn is_whole(&self, schema: &JsonSchema) -> bool {
        self.depth == 0 || self.depth == 1 && self.frames[0].may_end(schema)
    }

    /// Whether every value is closed (a whole top-level number is not: a digit may follow).
    pub fn is_closed(&self) -> bool {
        self.depth == 0
    }

    fn top(&mut self) -> &mut Frame {
        &mut self.frames[self.depth as usize - 1]
    }

    fn push(&mut self, frame: Frame) -> bool {
        if self.depth as usize == MAX_FRAMES {
            return false;
        }
        self.frames[self.depth as usize] = frame;
        self.depth += 1;
        true
    }

    /// The value on top ended: back to what holds it.
    fn pop(&mut self) {
        self.depth -= 1;
        self.frames[self.depth as usize] = Frame::Empty;
    }

    /// Takes `byte`; false (and a state to drop) when no text of the schema has it here.
    pub fn feed(&mut self, schema: &JsonSchema, byte: u8) -> bool {
        // Inside a string or a choice spaces are the value's; a free-form value counts its own.
        let between_parts = is_space(byte)
            && (self.depth == 0
                || !matches!(
                    self.frames[self.depth as usize - 1],
                    Frame::String { .. } | Frame::Choice { .. } | Frame::Any(_)
                ));
        if !self.step(schema, byte) {
            return false;
        }
        self.spaces = if between_parts { self.spaces + 1 } else { 0 };
        self.spaces <= MAX_SPACES
    }

    fn step(&mut self, schema: &JsonSchema, byte: u8) -> bool {
        if self.depth == 0 {
            return is_space(byte);
        }
        match *self.top() {
            Frame::Empty => false,
            Frame::Value(node) => is_space(byte) || self.start(schema, node, byte),
            Frame::Object { node, property, at } => {
                self.in_object(schema, node, property, at, byte)
            }
            Frame::Array { node, count, at } => self.in_array(schema, node, count, at, byte),
            Frame::Map { node, at } => self.in_map(schema, node, at, byte),
            Frame::String {
                node,
                escaped,
                chars,
            } => {
                let Node::String { min, max } = schema.nodes[node as usize] else {
                    return false;
                };
                match escaped.then(byte) {
                    Ok(Some(next)) => {
                        // A character starts at a byte outside an escape or a multi-byte
                        // character.
                        let starts = escaped == Escape::None;
                        let chars = chars + u16::from(starts);
                        if chars > max {
                            return false;
                        }
                        *self.top() = Frame::String {
                            node,
                            escaped: next,
                            chars,
                        };
                        true
                    }
                    Ok(None) if chars >= min => {
                        self.pop();
                        true
                    }
                    _ => false,
                }
            }
            Frame::Bounded {
                node,
                negative,
                digits,
            } => match next_digits(schema, node, negative, digits, byte) {
                Some(digits) => {
                    *self.top() = Frame::Bounded {
                        node,
                        negative,
                        digits: Some(digits),
                    };
                    true
                }
                None => self.end_before(schema, byte),
            },
            Frame::Number { integer, part } => match next_number(part, integer, byte) {
                Some(part) => {
                    *self.top() = Frame::Number { integer, part };
                    true
                }
                None => self.end_before(schema, byte),
            },
            Frame::Choice {
                node,
                written,
                left,
            } => {
                let Node::Choices(choices) = &schema.nodes[node as usize] else {
                    return false;
                };
                let at = written as usize;
                let continuing = (0..choices.len())
                    .filter(|&i| left >> i & 1 == 1 && choices[i].get(at) == Some(&byte))
                    .fold(0u64, |bits, i| bits | 1 << i);
                if continuing != 0 {
                    let written = written + 1;
                    // A choice no other continues ends the value now (a string's quote, a
                    // literal's last letter); one that others extend ends on the next byte.
                    let ended = (0..choices.len())
                        .all(|i| continuing >> i & 1 == 0 || choices[i].len() == written as usize);
                    if ended {
                        self.pop();
                        self.pick_tagged(schema, continuing);
                    } else {
                        *self.top() = Frame::Choice {
                            node,
                            written,
                            left: continuing,
                        };
                    }
                    return true;
                }
                self.end_before(schema, byte)
            }
            Frame::Any(inner) => {
                let mut next = inner;
                if next.feed(byte) {
                    *self.top() = Frame::Any(next);
                    true
                } else {
                    self.end_before(schema, byte)
                }
            }
        }
    }

    /// After a tag (the one choice left in `picked`'s bits), the tagged union's object is
    /// the one it names.
    fn pick_tagged(&mut self, schema: &JsonSchema, picked: u64) {
        if self.depth == 0 {
            return;
        }
        if let Frame::Object { node, property, at } = *self.top() {
            if let Node::Tagged { objects, .. } = &schema.nodes[node as usize] {
                let object = objects[picked.trailing_zeros() as usize];
                *self.top() = Frame::Object {
                    node: object,
                    property,
                    at,
                };
            }
        }
    }

    /// `byte`, which the value on top cannot take, as the first after it, if it may end.
    fn end_before(&mut self, schema: &JsonSchema, byte: u8) -> bool {
        if !self.frames[self.depth as usize - 1].may_end(schema) {
            return false;
        }
        self.pop();
        self.step(schema, byte)
    }

    /// The first byte of a value of `node`, in place of the `Value` frame on top.
    fn start(&mut self, schema: &JsonSchema, node: u16, byte: u8) -> bool {
        let frame = match &schema.nodes[node as usize] {
            free @ (Node::Any | Node::AnyObject) => {
                let mut inner = if matches!(free, Node::AnyObject) {
                    JsonState::new()
                } else {
                    JsonState::any_value()
                };
                if !inner.feed(byte) {
                    return false;
                }
                Frame::Any(inner)
            }
            // A tagged union's first key is every object's: the object is picked at that
            // key's value.
            Node::Object(_) | Node::Tagged { .. } if byte == b'{' => Frame::Object {
                node,
                property: 0,
                at: ObjectAt::Open,
            },
            Node::Map { .. } if byte == b'{' => Frame::Map {
                node,
                at: MapAt::Open,
            },
            Node::Array { .. } if byte == b'[' => Frame::Array {
                node,
                count: 0,
                at: ArrayAt::Open,
            },
            Node::String { .. } if byte == b'"' => Frame::String {
                node,
                escaped: Escape::None,
                chars: 0,
            },
            Node::Bounded { min, .. } => {
                if byte == b'-' {
                    // Some negative integer must be in range: -1 at the most.
                    if *min > -1 {
                        return false;
                    }
                    Frame::Bounded {
                        node,
                        negative: true,
                        digits: None,
                    }
                } else {
                    match next_digits(schema, node, false, None, byte) {
                        Some(digits) => Frame::Bounded {
                            node,
                            negative: false,
                            digits: Some(digits),
                        },
                        None => return false,
                    }
                }
            }
            &Node::Number { integer } => match Number::start(byte) {
                Some(part) => Frame::Number { integer, part },
                None => return false,
            },
            Node::Choices(choices) => {
                *self.top() = Frame::Choice {
                    node,
                    written: 0,
                    left: u64::MAX >> (64 - choices.len()),
                };
                return self.step(schema, byte);
            }
            Node::OneOf(alternatives) => {
                for &alternative in alternatives {
                    let mut attempt = *self;
                    *attempt.top() = Frame::Value(alternative);
                    if attempt.step(schema, byte) {
                        *self = attempt;
                        return true;
                    }
                }
                return false;
            }
            _ => return false,
        };
        *self.top() = frame;
        true
    }

    fn in_object(
        &mut self,
        schema: &JsonSchema,
        node: u16,
        property: u16,
        at: ObjectAt,
        byte: u8,
    ) -> bool {
        let (properties, tags) = match &schema.nodes[node as usize] {
            Node::Object(properties) => (properties, None),
            Node::Tagged { objects, tags } => match &schema.nodes[objects[0] as usize] {
                Node::Object(properties) => (properties, Some(*tags)),
                _ => return false,
            },
            _ => return false,
        };
        let set = |state: &mut Self, property: u16, at: ObjectAt| {
            *state.top() = Frame::Object { node, property, at };
        };
        let after = |from: u16| &properties[(from as usize).min(properties.len())..];
        match at {
            ObjectAt::Open | ObjectAt::BeforeKey | ObjectAt::Colon if is_space(byte) => true,
            ObjectAt::Open if byte == b'}' => {
                let closes = after(property).iter().all(|(_, _, must)| !must);
                if closes {
                    self.pop();
                }
                closes
            }
            ObjectAt::Open | ObjectAt::BeforeKey | ObjectAt::Key { .. } => {
                let (written, left) = match at {
                    ObjectAt::Key { written, left } => (written, left),
                    // The next properties up to the first required one may come.
                    _ => {
                        let run = after(property).iter().position(|(_, _, must)| *must);
                        let count = run.map_or(after(property).len(), |r| r + 1);
                        (0, u64::MAX.checked_shr(64 - count as u32).unwrap_or(0))
                    }
                };
                let key = |k: u32| &properties[property as usize + k as usize].0;
                let continuing = set_bits(left)
                    .filter(|&k| key(k).get(written as usize) == Some(&byte))
                    .fold(0u64, |bits, k| bits | 1 << k);
                if continuing == 0 {
                    return false;
                }
                let written = written + 1;
                // JSON strings are prefix-free: a whole key is the one candidate left.
                match set_bits(continuing).find(|&k| key(k).len() == written as usize) {
                    Some(k) => set(self, property + k as u16, ObjectAt::Colon),
                    None => set(
                        self,
                        property,
                        ObjectAt::Key {
                            written,
                            left: continuing,
                        },
                    ),
                }
                true
            }
            ObjectAt::Colon => {
                if byte != b':' {
                    return false;
                }
                set(self, property, ObjectAt::AfterValue);
                self.push(Frame::Value(
                    tags.unwrap_or(properties[property as usize].1),
                ))
            }
            ObjectAt::AfterValue => {
                let rest = after(property + 1);
                match byte {
                    _ if is_space(byte) => true,
                    b',' if !rest.is_empty() => {
                        set(self, property + 1, ObjectAt::BeforeKey);
                        true
                    }
                    b'}' if rest.iter().all(|(_, _, must)| !must) => {
                        self.pop();
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    fn in_map(&mut self, schema: &JsonSchema, node: u16, at: MapAt, byte: u8) -> bool {
        let Node::Map { keys, values } = schema.nodes[node as usize] else {
            return false;
        };
        if is_space(byte) {
            return true;
        }
        let mut set = |at: MapAt| *self.top() = Frame::Map { node, at };
        match (at, byte) {
            (MapAt::Open | MapAt::Comma, b'"') => {
                // The key's string is read above this frame, which waits for its colon.
                set(MapAt::Colon);
                self.push(Frame::String {
                    node: keys,
                    escaped: Escape::None,
                    chars: 0,
                })
            }
            (MapAt::Open | MapAt::AfterValue, b'}') => {
                self.pop();
                true
            }
            (MapAt::Colon, b':') => {
                set(MapAt::AfterValue);
                self.push(Frame::Value(values))
            }
            (MapAt::AfterValue, b',') => {
                set(MapAt::Comma);
                true
            }
            _ => false,
        }
    }

    fn in_array(
        &mut self,
        schema: &JsonSchema,
        node: u16,
        count: u16,
        at: ArrayAt,
        byte: u8,
    ) -> bool {
        let Node::Array { items, min, max } = schema.nodes[node as usize] else {
            return false;
        };
        if is_space(byte) {
            return true;
        }
        match (at, byte) {
            (ArrayAt::Open, b']') | (ArrayAt::AfterValue, b']') if count >= min => {
                self.pop();
                true
            }
            (ArrayAt::AfterValue, b',') if count < max => {
                *self.top() = Frame::Array {
                    node,
                    count,
                    at: ArrayAt::Comma,
                };
                true
            }
            (ArrayAt::Open, _) | (ArrayAt::Comma, _) if count < max => {
                *self.top() = Frame::Array {
                    node,
                    count: count + 1,
                    at: ArrayAt::AfterValue,
                };
                self.push(Frame::Value(items)) && self.step(schema, byte)
            }
            _ => false,
        }
    }
}

/// The places of `bits`' set bits, lowest first: a key's few candidates, where a scan of
/// all 64 places ran at every byte of every key in the vocabulary walk.
fn set_bits(bits: u64) -> impl Iterator<Item = u32> {
    std::iter::successors((bits != 0).then_some(bits), |&b| {
        let rest = b & (b - 1);
        (rest != 0).then_some(rest)
    })
    .map(u64::trailing_zeros)
}

/// A bounded integer's digits after `byte`, if it is a digit that leaves some integer of the
/// node's range reachable (no leading zero; a `0` is whole).
fn next_digits(
    schema: &JsonSchema,
    node: u16,
    negative: bool,
    digits: Option<u64>,
    byte: u8,
) -> Option<u64> {
    let Node::Bounded { min, max } = schema.nodes[node as usize] else {
        return None;
    };
    if !byte.is_ascii_digit() || digits == Some(0) {
        return None;
    }
    let next = digits
        .unwrap_or(0)
        .checked_mul(10)?
        .checked_add(u64::from(byte - b'0'))?;
    let (min, max) = (i128::from(min), i128::from(max));
    // The digits may end here, or go on: with `more` digits to come, the value is within
    // `next`·10^more and that plus 10^more − 1 (or 0 alone, after a `0`).
    let mut scale: u128 = 1;
    loop {
        let low = u128::from(next) * scale;
        let high = low + scale - 1;
        let (a, b) = if negative {
            (signed(true, high), signed(true, low))
        } else {
            (signed(false, low), signed(false, high))
        };
        if a <= max && b >= min {
            return Some(next);
        }
        // Past the range's far end, more digits only go further.
        let beyond = if negative { b < min } else { a > max };
        if beyond || next == 0 || low > u128::from(u64::MAX) {
            return None;
        }
        scale *= 10;
    }
}

fn signed(negative: bool, magnitude: u128) -> i128 {
    let value = magnitude as i128;
    if negative {
        -value
    } else {
        value
    }
}

/// Where a number is after `byte`, if it may come; an integer has no fraction or exponent.
fn next_number(part: Number, integer: bool, byte: u8) -> Option<Number> {
    part.then(byte).filter(|next| !integer || next.integral())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Whether `schema`'s grammar takes every byte of `text`, and if so whether it is whole.
    fn read(schema: &Value, text: &str) -> Option<bool> {
        let schema = JsonSchema::compile(schema).unwrap();
        let mut state = schema.start();
        text.bytes()
            .all(|b| state.feed(&schema, b))
            .then(|| state.is_whole(&schema))
    }

    /// What pydantic writes for a model with a nested model, a list of an enum, an optional
    /// field and a free-form one.
    fn pet() -> Value {
        json!({
            "$defs": {
                "Kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"},
                "Owner": {"properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                          "required": ["name", "age"], "type": "object", "title": "Owner"}
            },
            "properties": {
                "name": {"type": "string", "description": "what it answers to"},
                "kinds": {"items": {"$ref": "#/$defs/Kind"}, "type": "array", "maxItems": 2},
                "weight": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": null},
                "owner": {"$ref": "#/$defs/Owner"},
                "vaccinated": {"type": "boolean"},
                "notes": {}
            },
            "required": ["name", "kinds", "weight", "owner", "vaccinated", "notes"],
            "title": "Pet",
            "type": "object",
            "additionalProperties": false
        })
    }

    #[test]
    fn a_value_of_the_schema_is_taken_byte_by_byte_compact_or_pretty_and_is_whole_at_its_end() {
        let value = json!({"name": "Rex \"the\" dog", "kinds": ["dog"], "weight": -12.5e1,
            "owner": {"name": "Ada", "age": 36}, "vaccinated": true, "notes": [1, {"a": null}]});
        let mut null_weight = value.clone();
        null_weight["weight"] = Value::Null;
        for value in [value, null_weight] {
            // Keys in the schema's order, as `preserve_order` writes them.
            let compact = serde_json::to_string(&value).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            for text in [compact, pretty] {
                for end in 0..text.len() {
                    assert_eq!(
                        read(&pet(), &text[..end]),
                        Some(false),
                        "{:?}",
                        &text[..end]
                    );
                }
                assert_eq!(read(&pet(), &text), Some(true), "{text}");
                assert_eq!(read(&pet(), &format!("{text}\n")), Some(true));
            }
        }
    }

    #[test]
    fn what_the_schema_does_not_allow_is_refused_where_it_starts() {
        let owner = r#""owner": {"name": "A", "age": 3}"#;
        for bad in [
            // Another key, a missing one, keys out of order.
            r#"{"nam"#.replace("nam", "nick"),
            r#"{"name": "x", "weight""#.into(),
            r#"{"kinds": []"#.into(),
            // Wrong types and values.
            r#"{"name": 1"#.into(),
            r#"{"name": "x", "kinds": ["cow"#.into(),
            r#"{"name": "x", "kinds": ["cat", "dog", "cat""#.into(),
            r#"{"name": "x", "kinds": [], "weight": "heavy""#.into(),
            format!(
                r#"{{"name": "x", "kinds": [], "weight": 1, {}"#,
                owner.replace("3", "3.5")
            ),
            format!(r#"{{"name": "x", "kinds": [], "weight": 1, {owner}, "vaccinated": 1"#),
            format!(r#"{{"name": "x", "kinds": [], "weight": 1, {owner}, "vaccinated": true}}"#),
            format!(
                r#"{{"name": "x", "kinds": [], "weight": 1, {owner}, "vaccinated": true, "notes": 1, "more""#
            ),
        ] {
            assert_eq!(read(&pet(), &bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_and_choices_that_others_extend_end_at_the_next_byte() {
        let schema = json!({"enum": [1, 12, "a"]});
        assert_eq!(read(&schema, "1"), Some(true));
        assert_eq!(read(&schema, "12"), Some(true));
        assert_eq!(read(&schema, "12 "), Some(true));
        assert_eq!(read(&schema, "13"), None);
        assert_eq!(read(&schema, "\"a"), Some(false));
        let object = json!({"type": "object", "properties": {"n": {"enum": [1, 12]}, "i": {"type": "integer"}}});
        assert_eq!(read(&object, r#"{"n": 1, "i": -0}"#), Some(true));
        assert_eq!(read(&object, r#"{"n":12,"i":7}"#), Some(true));
        assert_eq!(read(&object, r#"{"n":12,"i":7.5"#), None);
        assert_eq!(read(&json!({"type": "number"}), "7"), Some(true));
        assert_eq!(read(&json!({"type": "integer"}), "7e2"), None);
    }

    #[test]
    fn white_space_between_parts_is_bounded_as_in_json_mode() {
        let schema = json!({"type": "object", "properties": {"a": {"enum": ["x  y"]}}});
        let most = " ".repeat(MAX_SPACES as usize);
        assert_eq!(
            read(&schema, &format!("{{{most}\"a\":{most}\"x  y\"{most}}}")),
            Some(true)
        );
        assert_eq!(read(&schema, &format!("{{{most} ")), None);
        assert_eq!(read(&schema, &format!("{{\"a\": \"x  y\"}}{most} ")), None);
    }

    #[test]
    fn strings_keep_to_their_lengths_in_characters_an_escape_or_a_multi_byte_one_counting_once() {
        let schema = json!({"type": "string", "minLength": 2, "maxLength": 3});
        assert_eq!(read(&schema, r#""ab""#), Some(true));
        assert_eq!(read(&schema, r#""a""#), None);
        assert_eq!(read(&schema, r#""abcd"#), None);
        assert_eq!(read(&schema, r#""\n\u00e9é""#), Some(true));
        assert_eq!(read(&schema, r#""\n\u00e9éx"#), None);
        assert_eq!(read(&schema, "\"東京\""), Some(true));
    }

    #[test]
    fn an_object_without_properties_takes_what_additional_properties_says() {
        let counts = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        assert_eq!(read(&counts, r#"{"a": 1, "b c": -2}"#), Some(true));
        assert_eq!(read(&counts, "{}"), Some(true));
        assert_eq!(read(&counts, r#"{"a": "x"#), None);
        assert_eq!(read(&counts, r#"{"a": 1,}"#), None);
        let empty = json!({"type": "object", "additionalProperties": false});
        assert_eq!(read(&empty, "{ }"), Some(true));
        assert_eq!(read(&empty, r#"{""#), None);
        let any = json!({"type": "object"});
        assert_eq!(read(&any, r#"{"a": [true, {"b": null}]}"#), Some(true));
    }

    #[test]
    fn arrays_keep_to_their_item_counts() {
        let schema =
            json!({"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2});
        assert_eq!(read(&schema, "[]"), None);
        assert_eq!(read(&schema, "[true]"), Some(true));
        assert_eq!(read(&schema, "[true, false]"), Some(true));
        assert_eq!(read(&schema, "[true, false,"), None);
    }

    #[test]
    fn optional_properties_may_be_left_out_and_the_rest_come_in_the_schemas_order() {
        let schema = json!({"type": "object", "required": ["b"], "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"},
            "c": {"type": "integer"}, "cc": {"type": "integer"}}});
        for whole in [
            r#"{"b": 2}"#,
            r#"{"a": 1, "b": 2}"#,
            r#"{"b": 2, "cc": 4}"#,
            r#"{"a":1,"b":2,"c":3,"cc":4}"#,
        ] {
            assert_eq!(read(&schema, whole), Some(true), "{whole}");
        }
        for refused in [
            "{}",
            r#"{"a": 1}"#,
            r#"{"a": 1, }"#,
            r#"{"b": 2, "a": 1}"#,
            r#"{"b": 2, "c": 3, "c""#,
            r#"{"b": 2,}"#,
            r#"{"d": 1}"#,
        ] {
            assert!(!read(&schema, refused).unwrap_or(false), "{refused}");
        }
        // Without `required`, every property is optional: `{}` is a value.
        let loose = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(read(&loose, "{}"), Some(true));
        assert_eq!(read(&loose, r#"{"a": 1}"#), Some(true));
    }

    #[test]
    fn an_integers_bounds_let_a_digit_come_only_while_some_integer_in_range_starts_so() {
        let month = json!({"type": "integer", "minimum": 1, "maximum": 12});
        for whole in ["1", "7", "10", "12"] {
            assert_eq!(read(&month, whole), Some(true), "{whole}");
        }
        for refused in ["0", "13", "-1", "01", "100", "1.5", "1e1"] {
            assert_eq!(read(&month, refused), None, "{refused}");
        }
        let below = json!({"type": "integer", "minimum": -20, "exclusiveMaximum": -2});
        for whole in ["-3", "-20", "-19"] {
            assert_eq!(read(&below, whole), Some(true), "{whole}");
        }
        // -1 may still become -10 to -19, and -2 -20: taken, but not whole.
        assert_eq!(read(&below, "-1"), Some(false));
        assert_eq!(read(&below, "-2"), Some(false));
        for refused in ["-21", "-0", "5", "-200", "-2 "] {
            assert_eq!(read(&below, refused), None, "{refused}");
        }
        let huge = json!({"type": "integer", "exclusiveMinimum": 9_000_000_000_000_000_000_u64 as f64 as i64 - 1});
        assert_eq!(read(&huge, "9"), Some(false));
        assert_eq!(read(&huge, "99999999999999999999"), None);
        for (schema, says) in [
            (
                json!({"type": "number", "minimum": 0}),
                "supported on an integer only",
            ),
            (json!({"minimum": 0}), "supported on an integer only"),
            (
                json!({"type": "integer", "enum": [1], "maximum": 0}),
                "supported on an integer only",
            ),
            (
                json!({"type": "integer", "minimum": 0.5}),
                "minimum must be a whole number",
            ),
            (
                json!({"type": "integer", "minimum": 3, "maximum": 2}),
                "no integer is within",
            ),
        ] {
            let error = JsonSchema::compile(&schema).unwrap_err();
            assert!(error.contains(says), "{schema}: {error}");
        }
    }

    #[test]
    fn keywords_the_grammar_cannot_keep_to_are_refused_by_name_and_place() {
        for (schema, says) in [
            (
                json!({"type": "object", "properties": {"e": {"type": "string", "format": "email"}}}),
                "#/properties/e: \"format\" is not supported",
            ),
            (
                json!({"type": "string", "pattern": "^a"}),
                "#: \"pattern\" is not supported",
            ),
            (
                json!({"anyOf": [{"type": "string"}, {"enum": ["a"]}]}),
                "anyOf: alternatives must start differently",
            ),
            (
                json!({"$ref": "#/$defs/Missing"}),
                "$ref: \"#/$defs/Missing\"",
            ),
            (
                json!({"type": "object", "properties": {}, "required": ["a"]}),
                "required \"a\" is not a property",
            ),
            (json!({"type": "tuple"}), "type \"tuple\" is not"),
            (
                json!({"const": "x".repeat(1100)}),
                "#: a name or value over 1024 bytes",
            ),
            (
                json!({"type": "array", "items": [{}]}),
                "#/items: a schema must be an object",
            ),
        ] {
            let error = JsonSchema::compile(&schema).unwrap_err();
            assert!(error.contains(says), "{schema}: {error}");
        }
        // Keywords outside JSON Schema are annotations, as the specification has them.
        assert_eq!(
            read(&json!({"type": "string", "x-note": 1}), "\"a\""),
            Some(true)
        );
    }

    #[test]
    fn objects_whose_first_property_is_a_constant_of_their_own_are_told_apart_by_it() {
        // pydantic's discriminated union of two models, optional.
        let schema = json!({
            "$defs": {
                "Cat": {"type": "object", "required": ["kind", "lives"], "properties": {
                    "kind": {"const": "cat", "type": "string"}, "lives": {"type": "integer"}}},
                "Dog": {"type": "object", "required": ["kind", "good"], "properties": {
                    "kind": {"const": "dog", "type": "string"}, "good": {"type": "boolean"}}},
            },
            "anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}, {"type": "null"}],
        });
        assert_eq!(read(&schema, r#"{"kind": "cat", "lives": 9}"#), Some(true));
        assert_eq!(read(&schema, r#"{"kind":"dog","good":true}"#), Some(true));
        assert_eq!(read(&schema, "null"), Some(true));
        assert_eq!(read(&schema, r#"{"kind": "dog", "lives": 9}"#), None);
        assert_eq!(read(&schema, r#"{"kind": "bird""#), None);
        assert_eq!(read(&schema, r#"{"kind": "cat""#), Some(false));
        // Without a required constant of its own each, objects still may not start alike.
        let alike = json!({"anyOf": [
            {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cat"}}},
            {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cat"}, "x": {}}},
        ]});
        let error = JsonSchema::compile(&alike).unwrap_err();
        assert!(
            error.contains("alternatives must start differently"),
            "{error}"
        );
    }

    #[test]
    fn a_recursive_schema_nests_until_its_frames_run_out() {
        let tree = json!({"$defs": {"Node": {"type": "object", "properties": {
            "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
            "$ref": "#/$defs/Node"});
        assert_eq!(
            read(
                &tree,
                r#"{"kids": [{"kids": []}, {"kids": [{"kids": []}]}]}"#
            ),
            Some(true)
        );
        let deep = r#"{"kids": ["#.repeat(MAX_FRAMES);
        assert_eq!(read(&tree, &deep), None);
    }
}
