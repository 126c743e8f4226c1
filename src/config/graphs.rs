//! `[[graphs]]`: inference graphs of the user's own, as ordered steps over the configured
//! models, and the checks that make a bad graph fail at start rather than on a request.
//!
//! A graph reads like its diagram, one `[[graphs.steps]]` table per box:
//!
//! ```toml
//! [[graphs]]
//! name = "seed"
//!   [[graphs.steps]]
//!   parallel = { generate = ["gpt2", "distilgpt2", "gpt2-medium"] }
//!   [[graphs.steps]]
//!   each = { classify = "bert-base-uncased" }
//! ```
//!
//! DATA: a step consumes *items* (the request's text as one item, or the previous step's
//! results) and produces items. A `generate` call turns an item's text into a new text (and
//! forgets its score: the score was of the old text); a `classify` call scores an item's text
//! and keeps it; an `embed` call scores it too, by the cosine similarity of its embedding to
//! the request's text's (its label is `similarity`). Which items carry a score is known before any request runs, so a condition
//! or a selection on a score that the step before does not produce is refused at start.
//!
//! PROMPTS: a `generate` call may put the item's text into a prompt of its own, `prompt =
//! "… {text} …"`, or into a conversation, `chat = { system = "…", user = "… {text} …" }`
//! (rendered with the model's own chat template). The item's text afterwards is then the
//! model's answer alone, not prompt plus continuation.
//!
//! CHECKED AT START: every message names the graph, the step (its number and name) and the
//! key at fault.

use std::collections::HashSet;

use serde::Deserialize;

use super::{ModelConfig, Role};

/// What a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepInput {
    /// The request's text, as one item.
    Request,
    /// Every result of the step before (the default for every step but the first).
    Previous,
}

/// What a failing model call does to the request (KServe's `Hard` / `Soft` dependency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The request fails with that call's error.
    #[default]
    Fail,
    /// The failed call's result is left out and named in the answer's `failures`; the rest
    /// of the graph carries on.
    Continue,
}

/// What a model call does to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Generate,
    Classify,
    Embed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::Classify => "classify",
            Self::Embed => "embed",
        }
    }

    fn role(self) -> Role {
        match self {
            Self::Generate => Role::Generator,
            Self::Classify => Role::Classifier,
            Self::Embed => Role::Embedder,
        }
    }

    /// Whether the call leaves a score on the item.
    pub fn scores(self) -> bool {
        self != Self::Generate
    }
}

/// One model call of a step: `{ generate = "gpt2" }` or `{ classify = "bert-base-uncased" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub action: Action,
    pub model: String,
    /// How a generate call puts the item's text to its model; `None`: it continues the
    /// text as it is.
    pub framing: Option<Framing>,
}

/// A generate call's prompt around the item's text, whose `{text}` stands for it (`{{` and
/// `}}` for braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `prompt = "… {text} …"`: a plain prompt.
    Prompt(String),
    /// `chat = { system = "…", user = "… {text} …" }`: a conversation, rendered with the
    /// model's own chat template.
    Chat {
        system: Option<String>,
        user: String,
    },
}

impl Framing {
    /// `template` with the item's `text` in place of `{text}`.
    pub fn fill(template: &str, text: &str) -> String {
        pieces(template)
            .expect("checked at start")
            .into_iter()
            .map(|piece| match piece {
                Piece::Literal(literal) => literal,
                Piece::Text => text.to_string(),
            })
            .collect()
    }
}

enum Piece {
    Literal(String),
    Text,
}

/// `template` cut at its placeholders; an error names a placeholder other than `{text}` or
/// a lone brace.
fn pieces(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            literal.push_str(&tail[..1]);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{text}") {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            pieces.push(Piece::Text);
            rest = after;
        } else if tail.starts_with('{') {
            let name = tail.find('}').map_or(tail, |end| &tail[..=end]);
            return Err(format!(
                "unknown placeholder {name}: the only one is {{text}} (write {{{{ and }}}} for braces)"
            ));
        } else {
            return Err("a lone } (write }} for a brace)".into());
        }
    }
    literal.push_str(rest);
    pieces.push(Piece::Literal(literal));
    Ok(pieces)
}

/// When a switch case is taken, tested on one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The item's label (from the classify call before) equals this.
    Label(String),
    /// The item's score is above this.
    ScoreAbove(f64),
    /// The item's score is below this.
    ScoreBelow(f64),
    /// The item's text contains this.
    TextContains(String),
}

impl Condition {
    /// Whether testing it needs a score on the item.
    fn needs_score(&self) -> bool {
        !matches!(self, Self::TextContains(_))
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Label(label) => write!(f, "label = {label:?}"),
            Self::ScoreAbove(x) => write!(f, "score_above = {x}"),
            Self::ScoreBelow(x) => write!(f, "score_below = {x}"),
            Self::TextContains(s) => write!(f, "text_contains = {s:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SwitchCase {
    pub when: Condition,
    pub call: Call,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitBranch {
    /// Percent of requests; a split's weights add up to 100.
    pub weight: u32,
    pub call: Call,
}

/// Which item a `select` step keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Best {
    HighestScore,
    LowestScore,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Every call at once on every input item; results item by item, in the listed order.
    Parallel(Vec<Call>),
    /// The call on each input item, one at a time.
    Each(Call),
    /// For each input item, the first case whose condition holds (else `otherwise`).
    Switch {
        cases: Vec<SwitchCase>,
        otherwise: Option<Call>,
    },
    /// One branch per request, drawn by weight (reproducible with the request's `seed`).
    Split(Vec<SplitBranch>),
    /// Keeps the one input item with the best score.
    Select(Best),
}

impl StepKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Parallel(_) => "parallel",
            Self::Each(_) => "each",
            Self::Switch { .. } => "switch",
            Self::Split(_) => "split",
            Self::Select(_) => "select",
        }
    }

    /// Every model call the step may make, with the key that wrote it (`each`,
    /// `switch[0]`, ..), for messages.
    pub fn keyed_calls(&self) -> Vec<(String, &Call)> {
        match self {
            Self::Parallel(calls) => calls.iter().map(|c| ("parallel".into(), c)).collect(),
            Self::Each(call) => vec![("each".into(), call)],
            Self::Switch { cases, otherwise } => cases
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("switch[{i}]"), &c.call))
                .chain(otherwise.iter().map(|c| ("otherwise".into(), c)))
                .collect(),
            Self::Split(branches) => branches
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("split[{i}]"), &b.call))
                .collect(),
            Self::Select(_) => Vec::new(),
        }
    }

    /// Every model call the step may make.
    pub fn calls(&self) -> Vec<&Call> {
        self.keyed_calls().into_iter().map(|(_, c)| c).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// Unique in its graph; names the step in answers, events, traces and metrics.
    pub name: String,
    pub input: StepInput,
    pub on_error: OnError,
    pub kind: StepKind,
}

/// A checked graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSpec {
    /// Unique; the graph is at `POST /v1/graphs/{name}`.
    pub name: String,
    /// Serves `/v1/graph`, the seed endpoints and the streams (exactly one graph does).
    pub default: bool,
    /// The graph the server runs when the config has no `[[graphs]]`. Its traces keep
    /// their shape from before graphs could be configured: no span per step.
    pub builtin: bool,
    pub steps: Vec<StepSpec>,
}

/// The name of the graph a config without `[[graphs]]` gets.
pub const BUILTIN_GRAPH: &str = "default";

impl GraphSpec {
    /// Every generator in parallel on the request, then the classifier on each result, in
    /// generator order: the seed's graph.
    pub fn builtin(generators: &[&str], classifier: &str) -> Self {
        let call = |action, model: &str| Call {
            action,
            model: model.to_string(),
            framing: None,
        };
        Self {
            name: BUILTIN_GRAPH.into(),
            default: true,
            builtin: true,
            steps: vec![
                StepSpec {
                    name: "generate".into(),
                    input: StepInput::Request,
                    on_error: OnError::Fail,
                    kind: StepKind::Parallel(
                        generators
                            .iter()
                            .map(|g| call(Action::Generate, g))
                            .collect(),
                    ),
                },
                StepSpec {
                    name: "classify".into(),
                    input: StepInput::Previous,
                    on_error: OnError::Fail,
                    kind: StepKind::Each(call(Action::Classify, classifier)),
                },
            ],
        }
    }

    /// Whether the graph's results carry a score (its last step classifies or selects
    /// scored items), which the seed endpoints' `{generated, score}` answers need.
    pub fn gives_scores(&self) -> bool {
        self.steps
            .iter()
            .fold(false, |scored, step| step_scores(step, scored))
    }

    /// Every model the graph calls, each once, in order of first use.
    pub fn models(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for call in self.steps.iter().flat_map(|s| s.kind.calls()) {
            if !seen.contains(&call.model.as_str()) {
                seen.push(call.model.as_str());
            }
        }
        seen
    }
}

/// Whether `step`'s results carry a score, given whether the previous step's did.
fn step_scores(step: &StepSpec, previous_scored: bool) -> bool {
    let input_scored = step.input == StepInput::Previous && previous_scored;
    match &step.kind {
        StepKind::Select(_) => input_scored,
        kind => kind.calls().iter().all(|call| call.action.scores()),
    }
}

/// A `[[graphs]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntry {
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    steps: Vec<StepEntry>,
}

/// A `[[graphs.steps]]` table as written: one of the kind keys, and the optional rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepEntry {
    name: Option<String>,
    input: Option<StepInput>,
    #[serde(default)]
    on_error: OnError,
    parallel: Option<ModelsEntry>,
    each: Option<CallEntry>,
    switch: Option<Vec<CaseEntry>>,
    otherwise: Option<CallEntry>,
    split: Option<Vec<BranchEntry>>,
    select: Option<Best>,
}

impl StepEntry {
    /// The kind keys this table sets (a valid step sets exactly one).
    fn kinds(&self) -> Vec<&'static str> {
        [
            ("parallel", self.parallel.is_some()),
            ("each", self.each.is_some()),
            ("switch", self.switch.is_some()),
            ("split", self.split.is_some()),
            ("select", self.select.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// `{ generate = [..] }`, `{ classify = [..] }` or `{ embed = [..] }`; generate with an
/// optional `prompt` or `chat`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsEntry {
    generate: Option<Vec<String>>,
    classify: Option<Vec<String>>,
    embed: Option<Vec<String>>,
    prompt: Option<String>,
    chat: Option<ChatEntry>,
}

/// `{ generate = ".." }`, `{ classify = ".." }` or `{ embed = ".." }`; generate with an
/// optional `prompt` or `chat`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallEntry {
    generate: Option<String>,
    classify: Option<String>,
    embed: Option<String>,
    prompt: Option<String>,
    chat: Option<ChatEntry>,
}

/// `chat = { system = "..", user = ".. {text} .." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatEntry {
    system: Option<String>,
    user: Option<String>,
}

/// The call keys of one table as written: generate, classify, embed, and a generate
/// call's prompt or chat.
struct CallKeys {
    generate: Option<String>,
    classify: Option<String>,
    embed: Option<String>,
    prompt: Option<String>,
    chat: Option<ChatEntry>,
}

/// One switch case: one condition key and one call key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEntry {
    label: Option<String>,
    score_above: Option<f64>,
    score_below: Option<f64>,
    text_contains: Option<String>,
    generate: Option<String>,
    classify: Option<String>,
    embed: Option<String>,
    prompt: Option<String>,
    chat: Option<ChatEntry>,
}

/// One split branch: a weight and one call key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchEntry {
    weight: Option<u32>,
    generate: Option<String>,
    classify: Option<String>,
    embed: Option<String>,
    prompt: Option<String>,
    chat: Option<ChatEntry>,
}

/// Checks `entries` against `models`: the graphs the server will run, or a message naming
/// the graph, the step and the key at fault.
pub fn check_graphs(
    entries: &[GraphEntry],
    models: &[ModelConfig],
) -> Result<Vec<GraphSpec>, String> {
    let mut names = HashSet::new();
    let mut graphs = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = &entry.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "graphs.name: {name:?} must be letters, digits, '-', '_' or '.' (it is part of \
                 the graph's URL)"
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(format!("graphs.name: {name:?} appears twice"));
        }
        if entry.steps.is_empty() {
            return Err(format!(
                "graphs {name:?}: needs at least one [[graphs.steps]]"
            ));
        }
        let mut steps: Vec<StepSpec> = Vec::with_capacity(entry.steps.len());
        let mut scored = false;
        for (index, step) in entry.steps.iter().enumerate() {
            let checked = StepChecker {
                graph: name,
                number: index + 1,
                models,
            }
            .check(step, &entry.steps, scored)?;
            if steps.iter().any(|s| s.name == checked.name) {
                return Err(format!(
                    "graphs {name:?} step {}: name {:?} is used by an earlier step",
                    index + 1,
                    checked.name
                ));
            }
            scored = step_scores(&checked, scored);
            steps.push(checked);
        }
        graphs.push(GraphSpec {
            name: name.clone(),
            default: entry.default,
            builtin: false,
            steps,
        });
    }
    match graphs.iter().filter(|g| g.default).count() {
        0 => {
            if let Some(first) = graphs.first_mut() {
                first.default = true;
            }
        }
        1 => {}
        _ => return Err("graphs.default: only one graph may say `default = true`".into()),
    }
    if let Some(default) = graphs.iter().find(|g| g.default && !g.gives_scores()) {
        return Err(format!(
            "graphs {:?}: the default graph also answers /classify_generated_texts and \
             /generate_score with {{generated, score}}, so its last step must give scores \
             (classify, or select scored results); say `default = true` on a graph that does",
            default.name
        ));
    }
    Ok(graphs)
}

/// Checks one step of one graph; every error names both.
struct StepChecker<'a> {
    graph: &'a str,
    /// From 1, as a person counts the tables in the file.
    number: usize,
    models: &'a [ModelConfig],
}

impl StepChecker<'_> {
    fn error(&self, step: &StepEntry, key: &str, message: impl std::fmt::Display) -> String {
        let name = step
            .name
            .as_deref()
            .map_or(String::new(), |n| format!(" ({n:?})"));
        format!(
            "graphs {:?} step {}{name}: {key}: {message}",
            self.graph, self.number
        )
    }

    fn check(
        &self,
        step: &StepEntry,
        all: &[StepEntry],
        previous_scored: bool,
    ) -> Result<StepSpec, String> {
        let given = step.kinds();
        if given.len() != 1 {
            return Err(self.error(
                step,
                "kind",
                format!(
                    "give exactly one of parallel, each, switch, split, select (found {})",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
            ));
        }
        let kind_key = given[0];
        if step.otherwise.is_some() && kind_key != "switch" {
            return Err(self.error(step, "otherwise", "belongs to a switch step only"));
        }
        let input = match (step.input, self.number) {
            (Some(StepInput::Previous), 1) => {
                return Err(self.error(step, "input", "the first step has no previous step"))
            }
            (Some(input), _) => input,
            (None, 1) => StepInput::Request,
            (None, _) => StepInput::Previous,
        };
        let scored = input == StepInput::Previous && previous_scored;
        let kind = match kind_key {
            "parallel" => StepKind::Parallel(self.parallel(step)?),
            "each" => StepKind::Each(self.call(step, "each", step.each.as_ref().map(call_keys))?),
            "switch" => self.switch(step, scored)?,
            "split" => StepKind::Split(self.split(step)?),
            _ => {
                let best = step.select.expect("select is set");
                if !scored {
                    return Err(self.error(
                        step,
                        "select",
                        format!(
                            "keeps the best score, but {} carries no score (classify or embed it \
                             first)",
                            self.input_described(input, all)
                        ),
                    ));
                }
                StepKind::Select(best)
            }
        };
        let name = match &step.name {
            Some(name) if name.trim().is_empty() => {
                return Err(self.error(step, "name", "must not be empty"))
            }
            Some(name) => name.clone(),
            None => default_step_name(kind_key, self.number, all),
        };
        Ok(StepSpec {
            name,
            input,
            on_error: step.on_error,
            kind,
        })
    }

    /// What a step's input is, for messages.
    fn input_described(&self, input: StepInput, all: &[StepEntry]) -> String {
        match input {
            StepInput::Request => "its input (the request's text)".into(),
            StepInput::Previous => {
                let before = all[self.number - 2].kinds();
                let kind = before.first().copied().unwrap_or("?");
                format!("what step {} ({kind}) produces", self.number - 1)
            }
        }
    }

    fn parallel(&self, step: &StepEntry) -> Result<Vec<Call>, String> {
        let entry = step.parallel.as_ref().expect("parallel is set");
        let (action, models) = match (&entry.generate, &entry.classify, &entry.embed) {
            (Some(models), None, None) => (Action::Generate, models),
            (None, Some(models), None) => (Action::Classify, models),
            (None, None, Some(models)) => (Action::Embed, models),
            _ => {
                return Err(self.error(
                    step,
                    "parallel",
                    "give exactly one of generate = [..], classify = [..] or embed = [..]",
                ))
            }
        };
        if models.is_empty() {
            return Err(self.error(step, "parallel", "lists no model"));
        }
        let framing = self.framing(step, "parallel", action, &entry.prompt, &entry.chat)?;
        models
            .iter()
            .map(|model| {
                self.resolve(
                    step,
                    &format!("parallel.{}", action.as_str()),
                    Call {
                        action,
                        model: model.clone(),
                        framing: framing.clone(),
                    },
                )
            })
            .collect()
    }

    fn switch(&self, step: &StepEntry, scored: bool) -> Result<StepKind, String> {
        let entries = step.switch.as_ref().expect("switch is set");
        if entries.is_empty() {
            return Err(self.error(step, "switch", "lists no case"));
        }
        let mut cases = Vec::with_capacity(entries.len());
        for (i, case) in entries.iter().enumerate() {
            let key = format!("switch[{i}]");
            let conditions: Vec<Condition> = [
                case.label.clone().map(Condition::Label),
                case.score_above.map(Condition::ScoreAbove),
                case.score_below.map(Condition::ScoreBelow),
                case.text_contains.clone().map(Condition::TextContains),
            ]
            .into_iter()
            .flatten()
            .collect();
            let [when] = <[Condition; 1]>::try_from(conditions).map_err(|_| {
                self.error(
                    step,
                    &key,
                    "give exactly one condition: label, score_above, score_below or text_contains",
                )
            })?;
            if when.needs_score() && !scored {
                let field = when.to_string();
                let field = field.split(' ').next().unwrap_or_default().to_string();
                return Err(self.error(
                    step,
                    &format!("{key}.{field}"),
                    "tests a score, but the step's input carries none: route on the results of \
                     a classify or embed step (or use text_contains)",
                ));
            }
            let call = self.call(
                step,
                &key,
                Some(CallKeys {
                    generate: case.generate.clone(),
                    classify: case.classify.clone(),
                    embed: case.embed.clone(),
                    prompt: case.prompt.clone(),
                    chat: case.chat.clone(),
                }),
            )?;
            cases.push(SwitchCase { when, call });
        }
        let otherwise = step
            .otherwise
            .as_ref()
            .map(|o| self.call(step, "otherwise", Some(call_keys(o))))
            .transpose()?;
        Ok(StepKind::Switch { cases, otherwise })
    }

    fn split(&self, step: &StepEntry) -> Result<Vec<SplitBranch>, String> {
        let entries = step.split.as_ref().expect("split is set");
        if entries.len() < 2 {
            return Err(self.error(step, "split", "needs at least two branches"));
        }
        let mut branches = Vec::with_capacity(entries.len());
        for (i, branch) in entries.iter().enumerate() {
            let key = format!("split[{i}]");
            let weight = branch.weight.ok_or_else(|| {
                self.error(
                    step,
                    &format!("{key}.weight"),
                    "missing (percent of requests)",
                )
            })?;
            let call = self.call(
                step,
                &key,
                Some(CallKeys {
                    generate: branch.generate.clone(),
                    classify: branch.classify.clone(),
                    embed: branch.embed.clone(),
                    prompt: branch.prompt.clone(),
                    chat: branch.chat.clone(),
                }),
            )?;
            branches.push(SplitBranch { weight, call });
        }
        let total: u64 = branches.iter().map(|b| u64::from(b.weight)).sum();
        if total != 100 {
            let weights: Vec<String> = branches.iter().map(|b| b.weight.to_string()).collect();
            return Err(self.error(
                step,
                "split.weight",
                format!(
                    "the weights ({}) add up to {total}; they must add up to 100",
                    weights.join(" + ")
                ),
            ));
        }
        Ok(branches)
    }

    /// One call from its `generate` / `classify` / `embed` keys, as found at `key`.
    fn call(&self, step: &StepEntry, key: &str, keys: Option<CallKeys>) -> Result<Call, String> {
        let keys = keys.unwrap_or(CallKeys {
            generate: None,
            classify: None,
            embed: None,
            prompt: None,
            chat: None,
        });
        let (action, model) = match (keys.generate, keys.classify, keys.embed) {
            (Some(model), None, None) => (Action::Generate, model),
            (None, Some(model), None) => (Action::Classify, model),
            (None, None, Some(model)) => (Action::Embed, model),
            _ => {
                return Err(self.error(
                    step,
                    key,
                    "give exactly one of generate = \"model\", classify = \"model\" or \
                     embed = \"model\"",
                ))
            }
        };
        let framing = self.framing(step, key, action, &keys.prompt, &keys.chat)?;
        let call = Call {
            action,
            model,
            framing,
        };
        let key = format!("{key}.{}", call.action.as_str());
        self.resolve(step, &key, call)
    }

    /// A generate call's `prompt` or `chat` at `key`, its placeholders checked.
    fn framing(
        &self,
        step: &StepEntry,
        key: &str,
        action: Action,
        prompt: &Option<String>,
        chat: &Option<ChatEntry>,
    ) -> Result<Option<Framing>, String> {
        let framing = match (prompt, chat) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(self.error(step, key, "give prompt or chat, not both"));
            }
            _ if action != Action::Generate => {
                let which = if prompt.is_some() { "prompt" } else { "chat" };
                return Err(self.error(
                    step,
                    &format!("{key}.{which}"),
                    format!("only a generate call takes one, not {}", action.as_str()),
                ));
            }
            (Some(prompt), None) => Framing::Prompt(prompt.clone()),
            (None, Some(chat)) => Framing::Chat {
                system: chat.system.clone(),
                user: chat
                    .user
                    .clone()
                    .ok_or_else(|| self.error(step, &format!("{key}.chat.user"), "missing"))?,
            },
        };
        let texts = match &framing {
            Framing::Prompt(prompt) => vec![("prompt", prompt, true)],
            Framing::Chat { system, user } => system
                .iter()
                .map(|s| ("chat.system", s, false))
                .chain([("chat.user", user, true)])
                .collect(),
        };
        for (field, text, needs_text) in texts {
            let field = format!("{key}.{field}");
            let parts = pieces(text).map_err(|e| self.error(step, &field, e))?;
            if needs_text && !parts.iter().any(|p| matches!(p, Piece::Text)) {
                return Err(self.error(
                    step,
                    &field,
                    "never says {text}, so the item's text would not reach the model",
                ));
            }
        }
        Ok(Some(framing))
    }

    /// `call` if its model exists and can do its action.
    fn resolve(&self, step: &StepEntry, key: &str, call: Call) -> Result<Call, String> {
        let Some(model) = self.models.iter().find(|m| m.name == call.model) else {
            let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            return Err(self.error(
                step,
                key,
                format!(
                    "no model is called {:?} (the [[models]] are: {})",
                    call.model,
                    known.join(", ")
                ),
            ));
        };
        if model.role != call.action.role() {
            let (role, can) = match model.role {
                Role::Generator => ("a generator", "generate"),
                Role::Classifier => ("a classifier", "classify"),
                Role::Embedder => ("an embedder", "embed"),
            };
            return Err(self.error(
                step,
                key,
                format!(
                    "{:?} is {role}: it can only {can}, not {}",
                    call.model,
                    call.action.as_str()
                ),
            ));
        }
        Ok(call)
    }
}

fn call_keys(entry: &CallEntry) -> CallKeys {
    CallKeys {
        generate: entry.generate.clone(),
        classify: entry.classify.clone(),
        embed: entry.embed.clone(),
        prompt: entry.prompt.clone(),
        chat: entry.chat.clone(),
    }
}

/// A step's name when it gives none: its kind, or with its number when the graph has
/// several steps of that kind.
fn default_step_name(kind: &str, number: usize, all: &[StepEntry]) -> String {
    let same_kind = all.iter().filter(|s| s.kinds() == [kind]).count();
    if same_kind > 1 {
        format!("{kind}-{number}")
    } else {
        kind.to_string()
    }
}
