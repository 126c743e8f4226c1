//! Shared by the benchmarks: true-size random models, written once.
#![allow(dead_code)] // each bench uses its own subset

use std::path::{Path, PathBuf};

use infergraph::backend::BackendChoice;
use infergraph::models::presets::{self, Preset, WeightDtype};

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
    let args: Vec<String> = std::env::args().collect();
    let choice = args
        .windows(2)
        .find(|w| w[0] == "--backend")
        .map(|w| w[1].parse::<BackendChoice>().expect("auto, wgpu or cpu"))
        .unwrap_or(BackendChoice::Cpu);
    (choice, args.iter().any(|a| a == "--quick"))
}
