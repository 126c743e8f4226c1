//! Shared by the benchmarks: true-size random models, written once.
#![allow(dead_code)] // each bench uses its own subset

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use infergraph::backend::BackendChoice;
use infergraph::models::presets::{self, Preset, WeightDtype};
use infergraph::models::Dtype;

/// The folder of a true-size random `preset` under `target/bench-models/`, written if absent.
pub fn ensure_model(preset: Preset) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-models")
        .join(preset.name());
    if !dir.join("model.safetensors").is_file() {
        eprintln!(
            "writing true-size random {} to {}",
            preset.name(),
            dir.display()
        );
        presets::write_true_size(preset, &dir, WeightDtype::F32).unwrap();
    }
    dir
}

/// `--backend B` from the command line (default cpu), and whether `--quick` was given.
pub fn args() -> (BackendChoice, bool) {
    let choice = value_of("--backend")
        .map(|v| v.parse::<BackendChoice>().expect("auto, wgpu or cpu"))
        .unwrap_or(BackendChoice::Cpu);
    (choice, std::env::args().any(|a| a == "--quick"))
}

/// `--dtype D[,D..]` from the command line (default f32): the dtypes to measure, each model
/// in each, in one run.
pub fn dtypes() -> Vec<Dtype> {
    dtypes_or(&[Dtype::F32])
}

/// `--dtype D[,D..]` from the command line, else `default`.
pub fn dtypes_or(default: &[Dtype]) -> Vec<Dtype> {
    match value_of("--dtype") {
        Some(list) => list
            .split(',')
            .map(|d| d.parse().unwrap_or_else(|e| panic!("--dtype: {e}")))
            .collect(),
        None => default.to_vec(),
    }
}

/// `--models P[,P..]` from the command line (preset names), else the seed's generators.
pub fn generator_presets() -> Vec<Preset> {
    match value_of("--models") {
        Some(list) => list
            .split(',')
            .map(|name| {
                <Preset as clap::ValueEnum>::from_str(name, true)
                    .unwrap_or_else(|e| panic!("--models: {e}"))
            })
            .collect(),
        None => vec![Preset::Distilgpt2, Preset::Gpt2, Preset::Gpt2Medium],
    }
}

/// `--gguf FILE[,FILE..]` from the command line: GGUF generators to measure besides the
/// presets (e.g. llama.cpp's own files, for a comparison on the same bytes).
pub fn gguf_files() -> Vec<std::path::PathBuf> {
    value_of("--gguf").map_or_else(Vec::new, |list| list.split(',').map(Into::into).collect())
}

/// Whether `--models` was given.
pub fn presets_given() -> bool {
    value_of("--models").is_some()
}

/// Whether `--dtype` was given (else a GGUF file is measured in its own precision).
pub fn dtype_given() -> bool {
    value_of("--dtype").is_some()
}

/// The value after `flag` on the command line.
pub fn value_of(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
}

/// Median wall time of `repeats` runs, after one warm-up run.
pub fn median(repeats: usize, mut f: impl FnMut()) -> Duration {
    f();
    median_of(
        (0..repeats)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

pub fn median_of(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
