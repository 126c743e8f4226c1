//! Model latency on true-size random models (`infergraph init-weights --preset ..`).
//!
//! Run with `cargo bench --bench models` (add `-- --backend wgpu` for wgpu; `-- --quick` for
//! fewer repetitions; `-- --dtype f32,f16,bf16,int8` for each model in each dtype, side by
//! side; `-- --models smollm2-360m,qwen2.5-0.5b` for other generator presets than the seed's
//! three, e.g. the Llama family's; `-- --gguf FILE[,FILE]` for GGUF files, alone unless
//! `--models` is given too, each in its own precision unless `--dtype` says). Each decode step is also split by section (dense layers, LM head, the rest). Models
//! are written once under `target/bench-models/`. Reports medians, and ratios
//! between figures of the same run, since absolute times on shared machines drift.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData};
use infergraph::backend;
use infergraph::engine::pool::run_in_own_pool;
use infergraph::models::dense::Dense;
use infergraph::models::encoder::EncoderInput;
use infergraph::models::presets::Preset;
use infergraph::models::{self, CausalLm, Classifier, Embedder, Generator};

mod common;

use common::{ensure_model, median, median_of};

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
        for file in common::gguf_files() {
            let stored = models::stored_dtype(&file).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let file_dtypes = if common::dtype_given() {
                dtypes.clone()
            } else {
                vec![stored]
            };
            for dtype in file_dtypes {
                let generator = models::load_generator_in(&file, &selected.device, dtype).unwrap();
                bench_generator(&format!("{name} {dtype}"), &generator, repeats);
            }
        }
        if !common::gguf_files().is_empty() && !common::presets_given() {
            return;
        }
        for preset in common::generator_presets() {
            for &dtype in &dtypes {
                let generator =
                    models::load_generator_in(&ensure_model(preset), &selected.device, dtype)
                        .unwrap();
                bench_generator(&format!("{} {dtype}", preset.name()), &generator, repeats);
            }
        }
        for preset in [
            Preset::BertBaseUncased,
            Preset::RobertaBase,
            Preset::DistilbertBaseUncased,
        ] {
            for &dtype in &dtypes {
                let classifier =
                    models::load_classifier_in(&ensure_model(preset), &selected.device, dtype)
                        .unwrap();
                bench_classifier(&format!("{} {dtype}", preset.name()), &classifier, repeats);
            }
        }
        // The real all-MiniLM-L6-v2 (tests/fixtures/real/fetch-all-minilm-l6-v2.sh puts it
        // there): sentence embeddings at batch 1 and 32.
        let minilm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/real-models/all-minilm-l6-v2");
        if !minilm.join("model.safetensors").is_file() {
            println!("| all-MiniLM-L6-v2 | (skipped: run tests/fixtures/real/fetch-all-minilm-l6-v2.sh) | | |");
            return;
        }
        for &dtype in &dtypes {
            let embedder =
                models::load_embedder_in(&minilm, &selected.device, dtype, None).unwrap();
            bench_embedder(&format!("all-MiniLM-L6-v2 {dtype}"), &embedder, repeats);
        }
    });
}

/// The embedder's texts, one a line; `benches/sentence_transformers_anchor.py` times the same ones.
const SENTENCES: &str = include_str!("embed_sentences.txt");

fn bench_embedder(name: &str, embedder: &Embedder, repeats: usize) {
    for batch in [1usize, 32] {
        let texts: Vec<&str> = SENTENCES.lines().cycle().take(batch).collect();
        let t = median(repeats, || {
            embedder.embed_batch(&texts).unwrap();
        });
        let per_second = batch as f64 / t.as_secs_f64();
        row(
            name,
            &format!("embed, batch {batch} (8-12 tokens each)"),
            t,
            &format!("{per_second:.0} embeddings/s"),
        );
    }
}

fn bench_generator(name: &str, generator: &Generator, repeats: usize) {
    let model = generator.model();
    // A realistic token mix, not a single repeated id.
    let prompt =
        |len: usize| -> Vec<u32> { (0..len as u32).map(|i| 464 + (i * 7919) % 40000).collect() };
    // A long prompt too (a document, a chat's history), where attention's share grows.
    let context = model.description().context_length;
    for len in [8, 128, 1024].into_iter().filter(|&len| len < context) {
        let p = prompt(len);
        let t = median(repeats, || {
            model
                .prefill(std::slice::from_ref(&p))
                .unwrap()
                .0
                .into_data();
        });
        let per_second = len as f64 / t.as_secs_f64();
        row(
            name,
            &format!("prefill, batch 1, {len} tokens"),
            t,
            &format!("{per_second:.0} tok/s"),
        );
    }
    // Prompts of mixed lengths arriving together, as a loaded server prefills them: each
    // costs its own length.
    let mixed: Vec<Vec<u32>> = [16, 40, 128, 512]
        .into_iter()
        .filter(|&len| len < context)
        .map(prompt)
        .collect();
    let t = median(repeats, || {
        model.prefill(&mixed).unwrap().0.into_data();
    });
    let lengths: Vec<String> = mixed.iter().map(|p| p.len().to_string()).collect();
    row(
        name,
        &format!(
            "prefill, batch {}, {} tokens",
            mixed.len(),
            lengths.join(" + ")
        ),
        t,
        "",
    );
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
    // Each round also times the step's sections alone, right after the step (the same
    // machine state): the blocks' dense layers in a step's order (so their weights stream
    // from memory as in a step) and the LM head. The rest of the step (attention over the
    // cache, layer norms, GELU, residuals, the embedding lookup) is what is left.
    let inputs: Vec<_> = batches
        .iter()
        .map(|&batch| {
            let body: Vec<_> = model
                .block_dense_layers()
                .into_iter()
                .map(|dense| activations(model, batch, dense))
                .collect();
            (body, activations(model, batch, model.lm_head()))
        })
        .collect();
    let mut times = [
        [Vec::new(), Vec::new(), Vec::new()],
        [Vec::new(), Vec::new(), Vec::new()],
    ];
    for round in 0..=3 * repeats {
        for (((cache, next), times), (body, head)) in
            running.iter_mut().zip(&mut times).zip(&inputs)
        {
            let start = Instant::now();
            model.decode(next, cache).unwrap().into_data();
            let stepped = Instant::now();
            for (dense, x) in model.block_dense_layers().into_iter().zip(body) {
                dense.forward(x.clone()).into_data();
            }
            let dense_done = Instant::now();
            model.lm_head().forward(head.clone()).into_data();
            // Round 0 is the warm-up.
            if round > 0 {
                times[0].push(stepped - start);
                times[1].push(dense_done - stepped);
                times[2].push(dense_done.elapsed());
            }
        }
    }
    let medians = times.map(|sections| sections.map(median_of));
    for (batch, [step, ..]) in batches.iter().zip(medians) {
        row(
            name,
            &format!("decode step, batch {batch}"),
            step,
            &format!("{:.1} tok/s", *batch as f64 / step.as_secs_f64()),
        );
    }
    let ratio = medians[1][0].as_secs_f64() / medians[0][0].as_secs_f64();
    println!(
        "| {name} | batch-8 step / batch-1 step | {ratio:.2}× | per-token cost {:.2}× of batch 1 |",
        ratio / 8.0
    );
    for (batch, [step, dense, head]) in batches.iter().zip(medians) {
        let rest = step.saturating_sub(dense + head);
        let share = |t: Duration| {
            format!(
                "{:.0} % of the step",
                100.0 * t.as_secs_f64() / step.as_secs_f64()
            )
        };
        let sections = [
            ("blocks' dense layers", dense),
            ("LM head", head),
            ("the rest of the step", rest),
        ];
        for (section, t) in sections {
            row(name, &format!("batch {batch}: {section}"), t, &share(t));
        }
    }
}

/// A `[batch, in]` input for `dense`, on the model's device.
fn activations(model: &dyn CausalLm, batch: usize, dense: &Dense) -> Tensor<2> {
    let d_in = dense.in_features();
    let values: Vec<f32> = (0..batch * d_in)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, d_in]), model.device())
}

fn bench_classifier(name: &str, classifier: &Classifier, repeats: usize) {
    let input = |len: usize| {
        let mut ids: Vec<u32> = (0..len as u32 - 2)
            .map(|i| 1000 + (i * 7919) % 29000)
            .collect();
        ids.insert(0, 101);
        ids.push(102);
        EncoderInput {
            token_type_ids: vec![0; ids.len()],
            input_ids: ids,
        }
    };
    let forward = |inputs: &[EncoderInput]| {
        median(repeats, || {
            classifier.model().logits(inputs).unwrap().into_data();
        })
    };
    for len in [40usize, 128, 512] {
        let t = forward(&[input(len)]);
        row(name, &format!("forward, batch 1, {len} tokens"), t, "");
    }
    // Inputs of mixed lengths, as a loaded server batches them: each costs its own length.
    let mixed: Vec<EncoderInput> = [16, 40, 128, 512].map(input).into();
    let t = forward(&mixed);
    row(name, "forward, batch 4, 16 + 40 + 128 + 512 tokens", t, "");
}

fn row(model: &str, measure: &str, t: Duration, note: &str) {
    println!(
        "| {model} | {measure} | {:.1} ms | {note} |",
        t.as_secs_f64() * 1e3
    );
}
