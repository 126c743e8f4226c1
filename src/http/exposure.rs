//! What `/v1/models` tells a caller about where things are.
//!
//! INVARIANT: unless `[auth] expose_internals` is set, no answer carries a filesystem path
//! or a replica's URL (internal Service names, addresses): a model's `path` is only its
//! folder's name, and replicas are numbered (`replica-1`, ..) in config order, which is
//! enough to tell them apart in the answer without saying where they are.

use std::path::Path;

use super::api::ModelInfo;

/// Strips the internals from `models` in place.
pub fn hide_internals(models: &mut [ModelInfo]) {
    for model in models {
        let folder = Path::new(&model.path)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        model.path = folder;
        for (i, replica) in model.replicas.iter_mut().flatten().enumerate() {
            replica.url = format!("replica-{}", i + 1);
        }
    }
}
