//! The embedded default models: reproducible from `init-weights --demo`, and served by the
//! default config through the same loader as a real checkpoint.

use std::path::PathBuf;

use infergraph::config::{Config, Role};
use infergraph::models::presets::{self, Preset, WeightDtype};
use infergraph::models::{self, GenerationParams};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_demo_weights_are_exactly_what_init_weights_writes() {
    let out = tempfile::tempdir().unwrap();
    for preset in Preset::DEMOS {
        let dir = out.path().join(preset.name());
        presets::write_demo(preset, &dir, WeightDtype::F16).unwrap();
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            let committed =
                std::fs::read(repo().join("model-weights").join(preset.name()).join(file)).unwrap();
            let written = std::fs::read(dir.join(file)).unwrap();
            assert!(
                committed == written,
                "model-weights/{}/{file} differs from `init-weights --demo`",
                preset.name()
            );
        }
    }
}

#[test]
fn the_default_config_loads_every_model_and_runs_the_graph() {
    let config = Config::from_file(&repo().join("config.toml")).unwrap();
    let device = burn::tensor::Device::flex();
    let mut generated = Vec::new();
    for model in config.generators() {
        assert_eq!(model.role, Role::Generator);
        let generator = models::load_generator(model.path().unwrap(), &device).unwrap();
        let generation = generator
            .generate("I have an idea!", &GenerationParams::default())
            .unwrap();
        assert!(generation.text.starts_with("I have an idea!"));
        generated.push(generation.text);
    }
    assert_eq!(generated.len(), 3);
    let classifier =
        models::load_classifier(config.classifier().unwrap().path().unwrap(), &device).unwrap();
    for text in &generated {
        let result = classifier.classify(text, None).unwrap();
        assert!(result.score >= 0.5 && result.score <= 1.0);
        assert!(result.label.starts_with("LABEL_"));
    }
}
