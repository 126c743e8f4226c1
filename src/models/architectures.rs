//! The architectures infergraph runs: one table, keyed by `config.json`'s `model_type`,
//! saying which model family implements each, which role it serves, and which
//! `architectures[0]` classes fit that role. Adding an architecture is a file for its
//! family (or flags in one) and a line here.

/// What a model does in a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Continues text (a causal LM).
    Generate,
    /// Scores text with labels (a sequence classifier).
    Classify,
}

impl Task {
    /// The role's name in `config.toml` and `/v1/models`.
    pub fn role(self) -> &'static str {
        match self {
            Self::Generate => "generator",
            Self::Classify => "classifier",
        }
    }
}

/// The code that implements an architecture (one file under `models/` each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Gpt2,
    Llama,
    Bert,
}

/// One row of the table.
#[derive(Debug)]
pub struct Architecture {
    pub model_type: &'static str,
    pub family: Family,
    pub task: Task,
    /// `architectures[0]` values that fit `task` (a folder without the field is taken on
    /// its `model_type` alone).
    pub classes: &'static [&'static str],
    /// The prefix its checkpoints may put before every key (stripped where present).
    pub weight_prefix: &'static str,
}

const fn row(
    model_type: &'static str,
    family: Family,
    task: Task,
    classes: &'static [&'static str],
    weight_prefix: &'static str,
) -> Architecture {
    Architecture {
        model_type,
        family,
        task,
        classes,
        weight_prefix,
    }
}

use Family::*;
use Task::*;

pub const ARCHITECTURES: &[Architecture] = &[
    row("gpt2", Gpt2, Generate, &["GPT2LMHeadModel"], "transformer."),
    row("llama", Llama, Generate, &["LlamaForCausalLM"], "model."),
    row(
        "mistral",
        Llama,
        Generate,
        &["MistralForCausalLM"],
        "model.",
    ),
    row("qwen2", Llama, Generate, &["Qwen2ForCausalLM"], "model."),
    row("qwen3", Llama, Generate, &["Qwen3ForCausalLM"], "model."),
    row(
        "bert",
        Bert,
        Classify,
        &["BertForSequenceClassification"],
        "bert.",
    ),
];

/// The row for `model_type`, if infergraph runs it.
pub fn find(model_type: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.model_type == model_type)
}

/// "gpt2, llama, … (generators); bert (classifiers)": what an error lists as supported.
pub fn supported() -> String {
    [Generate, Classify]
        .iter()
        .map(|&task| {
            let types: Vec<&str> = ARCHITECTURES
                .iter()
                .filter(|a| a.task == task)
                .map(|a| a.model_type)
                .collect();
            format!("{} ({}s)", types.join(", "), task.role())
        })
        .collect::<Vec<_>>()
        .join("; ")
}
