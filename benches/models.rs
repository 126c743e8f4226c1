//! Model latency on true-size random models (`infergraph init-weights --preset ..`).
//!
//! Run with `cargo bench --bench models` (add `-- --backend wgpu` for wgpu; `-- --quick` for
//! fewer repetitions; `-- --dtype f32,f16,bf16,int8` for each model in each dtype, side by
//! side). Each decode step is also split by section (dense layers, LM head, the rest). Models
//! are written once under `target/bench-models/`. Reports medians, and ratios
//! between figures of the same run, since absolute times on shared machines drift.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData};
use infergraph::backend;
use infergraph::engine::pool::run_in_own_pool;
use infergraph::models::bert::BertInput;
use infergraph::models::dense::Dense;
use infergraph::models::presets::Preset;
use infergraph::models::{self, Classifier, Generator};

mod common;

use common::ensure_model;

fn main() {
    let (choice, quick) = common::args();
    let dtypes = common::dtypes();
    let repeats = if quick { 3 } else { 10 };
    let selected = backend::select(choice);
    println!(
        "backend: {} ({}), {} repeats, median; CPU kernels: {}",
        selected.backend,
        selected.name,
        repeats,
        models::kernels::simd_path()
    );
    println!("| model | measure | median | note |");
    println!("|---|---|---|---|");

    // Measured where the engines run their models: inside a rayon pool of their own.
    run_in_own_pool("bench", || {
        for preset in [Preset::Distilgpt2, Preset::Gpt2, Preset::Gpt2Medium] {
            for &dtype in &dtypes {
                let generator =
                    models::load_generator_in(&ensure_model(preset), &selected.device, dtype)
                        .unwrap();
                bench_generator(&format!("{} {dtype}", preset.name()), &generator, repeats);
            }
        }
        for &dtype in &dtypes {
            let classifier = models::load_classifier_in(
                &ensure_model(Preset::BertBaseUncased),
                &selected.device,
                dtype,
            )
            .unwrap();
            bench_classifier(&format!("bert-base-uncased {dtype}"), &classifier, repeats);
        }
    });
}

fn bench_generator(name: &str, generator: &Generator, repeats: usize) {
    let model = generator.model();
    // A realistic token mix, not a single repeated id.
    let prompt =
        |len: usize| -> Vec<u32> { (0..len as u32).map(|i| 464 + (i * 7919) % 40000).collect() };
    for len in [8, 128] {
        let p = prompt(len);
        let t = median(repeats, || {
            model
                .prefill(std::slice::from_ref(&p))
                .unwrap()
                .0
                .into_data();
        });
        row(name, &format!("prefill, batch 1, {len} tokens"), t, "");
    }
    // A batch of 1 and a batch of 8, stepped in turn so that both see the same machine (these
    // machines are noisy, and the ratio of the two is the figure that matters). Each step is
    // the batch's next one, as in a running batch: from a 16–23-token context, one token
    // longer each time. Steps are cheap, so take more of them.
    let batches = [1usize, 8];
    let mut running: Vec<_> = batches
        .iter()
        .map(|&batch| {
            let prompts: Vec<Vec<u32>> = (0..batch).map(|b| prompt(16 + b)).collect();
            (model.prefill(&prompts).unwrap().1, vec![464u32; batch])
        })
        .collect();
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..=3 * repeats {
        for ((cache, next), times) in running.iter_mut().zip(&mut times) {
            let start = Instant::now();
            model.decode(next, cache).unwrap().into_data();
            // Round 0 is the warm-up.
            if round > 0 {
                times.push(start.elapsed());
            }
        }
    }
    let step = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    for (batch, step) in batches.iter().zip(step) {
        row(
            name,
            &format!("decode step, batch {batch}"),
            step,
            &format!("{:.1} tok/s", *batch as f64 / step.as_secs_f64()),
        );
    }
    println!(
        "| {name} | batch-8 step / batch-1 step | {:.2}× | per-token cost {:.2}× of batch 1 |",
        step[1].as_secs_f64() / step[0].as_secs_f64(),
        step[1].as_secs_f64() / step[0].as_secs_f64() / 8.0
    );
    step_by_section(name, model, batches, step, repeats);
}

/// A decode step by section: the blocks' dense layers run alone in a step's order (so their
/// weights stream from memory as in a step), the LM head alone, and the rest of the step
/// (attention over the cache, layer norms, GELU, residuals, embedding lookup) as what is left.
fn step_by_section(
    name: &str,
    model: &models::gpt2::Gpt2LmHeadModel,
    batches: [usize; 2],
    step: [Duration; 2],
    repeats: usize,
) {
    let device = model.device();
    let input = |batch: usize, dense: &Dense| {
        let d_in = dense.in_features();
        let values: Vec<f32> = (0..batch * d_in)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        Tensor::<2>::from_data(TensorData::new(values, [batch, d_in]), device)
    };
    for (&batch, step) in batches.iter().zip(step) {
        let body = median(3 * repeats, || {
            for dense in model.block_dense_layers() {
                dense.forward(input(batch, dense)).into_data();
            }
        });
        let head = model.lm_head();
        let head_time = median(3 * repeats, || {
            head.forward(input(batch, head)).into_data();
        });
        let rest = step.saturating_sub(body + head_time);
        let share = |t: Duration| {
            format!(
                "{:.0} % of the step",
                100.0 * t.as_secs_f64() / step.as_secs_f64()
            )
        };
        row(
            name,
            &format!("batch {batch}: blocks' dense layers"),
            body,
            &share(body),
        );
        row(
            name,
            &format!("batch {batch}: LM head"),
            head_time,
            &share(head_time),
        );
        row(
            name,
            &format!("batch {batch}: the rest of the step"),
            rest,
            &share(rest),
        );
    }
}

fn bench_classifier(name: &str, classifier: &Classifier, repeats: usize) {
    for len in [40usize, 128] {
        let mut ids: Vec<u32> = (0..len as u32 - 2)
            .map(|i| 1000 + (i * 7919) % 29000)
            .collect();
        ids.insert(0, 101);
        ids.push(102);
        let input = BertInput {
            token_type_ids: vec![0; ids.len()],
            input_ids: ids,
        };
        let t = median(repeats, || {
            classifier
                .model()
                .logits(std::slice::from_ref(&input))
                .unwrap()
                .into_data();
        });
        row(name, &format!("forward, batch 1, {len} tokens"), t, "");
    }
}

fn row(model: &str, measure: &str, t: Duration, note: &str) {
    println!(
        "| {model} | {measure} | {:.1} ms | {note} |",
        t.as_secs_f64() * 1e3
    );
}

/// Median wall time of `repeats` runs, after one warm-up run.
fn median(repeats: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
