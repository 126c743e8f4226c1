//! What each dtype costs in quality, against f32, on the true-size random models
//! (`target/bench-models/`, written by the models bench): per generator, the largest
//! |Δlogit| relative to the f32 logits' range over fixed prompts, and the share of greedy
//! tokens that match f32's over 32-token continuations; for the classifier, the largest
//! score difference. Run with `cargo bench --bench quality` (`-- --dtype f16,int8` for some).
//!
//! Random weights make a harsh test: their next-token margins are tiny, so one flipped token
//! sends a continuation elsewhere and every later token counts as a mismatch.

use infergraph::engine::pool::run_in_own_pool;
use infergraph::models::presets::Preset;
use infergraph::models::{self, Dtype, GenerationParams, Generator};

mod common;

use common::ensure_model;

const PROMPTS: [&str; 4] = [
    "I have an idea!",
    "The quick brown fox jumps over the lazy dog because",
    "In the beginning of the twenty-first century, the city",
    "Hello, my name is",
];
const NEW_TOKENS: usize = 32;

fn main() {
    let dtypes: Vec<Dtype> =
        common::dtypes_or(&[Dtype::F16, Dtype::Bf16, Dtype::Int8, Dtype::W8a8]);
    let device = burn::tensor::Device::flex();
    println!("| model | dtype | max abs Δlogit / f32 range | greedy tokens equal to f32 | first mismatch (median over prompts) |");
    println!("|---|---|---|---|---|");
    run_in_own_pool("quality", || {
        for preset in [Preset::Distilgpt2, Preset::Gpt2, Preset::Gpt2Medium] {
            let dir = ensure_model(preset);
            let reference = models::load_generator(&dir, &device).unwrap();
            let expected: Vec<(Vec<f32>, Vec<u32>)> =
                PROMPTS.iter().map(|p| measure(&reference, p)).collect();
            for &dtype in &dtypes {
                let generator = models::load_generator_in(&dir, &device, dtype).unwrap();
                let (mut worst, mut equal, mut firsts) = (0f32, 0, Vec::new());
                for (prompt, (logits, tokens)) in PROMPTS.iter().zip(&expected) {
                    let (got_logits, got_tokens) = measure(&generator, prompt);
                    let range = logits.iter().copied().fold(f32::MIN, f32::max)
                        - logits.iter().copied().fold(f32::MAX, f32::min);
                    let diff = logits
                        .iter()
                        .zip(&got_logits)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    worst = worst.max(diff / range);
                    equal += tokens
                        .iter()
                        .zip(&got_tokens)
                        .filter(|(a, b)| a == b)
                        .count();
                    firsts.push(
                        tokens
                            .iter()
                            .zip(&got_tokens)
                            .position(|(a, b)| a != b)
                            .unwrap_or(NEW_TOKENS),
                    );
                }
                firsts.sort();
                let first = match firsts[firsts.len() / 2] {
                    NEW_TOKENS => "none".to_string(),
                    n => format!("token {} of {NEW_TOKENS}", n + 1),
                };
                println!(
                    "| {} | {dtype} | {worst:.2e} | {:.0} % | {first} |",
                    preset.name(),
                    100.0 * equal as f64 / (NEW_TOKENS * PROMPTS.len()) as f64,
                );
            }
        }
        let dir = ensure_model(Preset::BertBaseUncased);
        let reference = models::load_classifier(&dir, &device).unwrap();
        for &dtype in &dtypes {
            let classifier = models::load_classifier_in(&dir, &device, dtype).unwrap();
            let worst = PROMPTS
                .iter()
                .map(|p| {
                    let a = reference.classify(p, None).unwrap();
                    let b = classifier.classify(p, None).unwrap();
                    (a.scores[0] - b.scores[0]).abs()
                })
                .fold(0f32, f32::max);
            println!("| bert-base-uncased | {dtype} | max abs Δscore {worst:.2e} | | |");
        }
    });
}

/// The prompt's last-position logits and its greedy 32-token continuation.
fn measure(generator: &Generator, prompt: &str) -> (Vec<f32>, Vec<u32>) {
    let ids = generator.tokenizer().encode(prompt, None).unwrap().ids;
    let logits = generator.model().logits_all(&ids).unwrap();
    let [t, v] = logits.dims();
    let last = logits
        .slice([t - 1..t, 0..v])
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let params = GenerationParams {
        max_new_tokens: NEW_TOKENS,
        min_new_tokens: NEW_TOKENS,
        ..GenerationParams::default()
    };
    let tokens = generator.generate(prompt, &params).unwrap().new_token_ids;
    (last, tokens)
}
