//! The architectures infergraph runs: one table, keyed by `config.json`'s `model_type`,
//! saying which model family implements each, which roles it serves, and which
//! `architectures[0]` classes fit each role. Adding an architecture is a file for its
//! family (or flags in one) and a line here.

use super::{bert, distilbert, roberta};

/// What a model does in a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Continues text (a causal LM).
    Generate,
    /// Scores text with labels (a sequence classifier).
    Classify,
    /// Turns text into a vector (an encoder without a head, pooled).
    Embed,
}

impl Task {
    /// The role's name in `config.toml` and `/v1/models`.
    pub fn role(self) -> &'static str {
        match self {
            Self::Generate => "generator",
            Self::Classify => "classifier",
            Self::Embed => "embedder",
        }
    }
}

/// The code that implements an architecture (one file under `models/` each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Gpt2,
    Llama,
    Bert,
    Roberta,
    DistilBert,
}

/// A role an architecture serves, and the `architectures[0]` classes that fit it.
#[derive(Debug)]
pub struct Role {
    pub task: Task,
    /// Empty: any class (an embedder reads only the encoder, whatever head was saved).
    pub classes: &'static [&'static str],
}

/// One row of the table.
#[derive(Debug)]
pub struct Architecture {
    pub model_type: &'static str,
    pub family: Family,
    pub roles: &'static [Role],
    /// The prefix its checkpoints may put before every key (stripped where present).
    pub weight_prefix: &'static str,
}

impl Architecture {
    /// The role it serves for `task`, if it serves it.
    pub fn role(&self, task: Task) -> Option<&Role> {
        self.roles.iter().find(|r| r.task == task)
    }
}

/// One row.
const fn row(
    model_type: &'static str,
    family: Family,
    roles: &'static [Role],
    weight_prefix: &'static str,
) -> Architecture {
    Architecture {
        model_type,
        family,
        roles,
        weight_prefix,
    }
}

/// An encoder's roles: a classifier of its sequence-classification class, and an embedder
/// of any checkpoint of it.
const fn encoder_roles(classes: &'static [&'static str]) -> [Role; 2] {
    [
        Role {
            task: Task::Classify,
            classes,
        },
        Role {
            task: Task::Embed,
            classes: &[],
        },
    ]
}

const fn generates(classes: &'static [&'static str]) -> [Role; 1] {
    [Role {
        task: Task::Generate,
        classes,
    }]
}

use Family::*;

#[rustfmt::skip]
pub const ARCHITECTURES: &[Architecture] = &[
    row("gpt2", Gpt2, &generates(&["GPT2LMHeadModel"]), "transformer."),
    row("llama", Llama, &generates(&["LlamaForCausalLM"]), "model."),
    row("mistral", Llama, &generates(&["MistralForCausalLM"]), "model."),
    row("qwen2", Llama, &generates(&["Qwen2ForCausalLM"]), "model."),
    row("qwen3", Llama, &generates(&["Qwen3ForCausalLM"]), "model."),
    row("bert", Bert, &encoder_roles(&["BertForSequenceClassification"]), bert::PREFIX),
    row("roberta", Roberta, &encoder_roles(&["RobertaForSequenceClassification"]), roberta::PREFIX),
    row("xlm-roberta", Roberta, &encoder_roles(&["XLMRobertaForSequenceClassification"]), roberta::PREFIX),
    row("camembert", Roberta, &encoder_roles(&["CamembertForSequenceClassification"]), roberta::PREFIX),
    row("distilbert", DistilBert, &encoder_roles(&["DistilBertForSequenceClassification"]), distilbert::PREFIX),
];

/// The row for `model_type`, if infergraph runs it.
pub fn find(model_type: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.model_type == model_type)
}

/// "gpt2, llama, … (generators); bert, … (classifiers); …": what an error lists as supported.
pub fn supported() -> String {
    [Task::Generate, Task::Classify, Task::Embed]
        .iter()
        .map(|&task| {
            let types: Vec<&str> = ARCHITECTURES
                .iter()
                .filter(|a| a.role(task).is_some())
                .map(|a| a.model_type)
                .collect();
            format!("{} ({}s)", types.join(", "), task.role())
        })
        .collect::<Vec<_>>()
        .join("; ")
}
