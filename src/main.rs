fn main() -> std::process::ExitCode {
    return_large_frees_to_the_system();
    infergraph::cli::main()
}

/// glibc's threshold for serving an allocation from a mapping of its own grows (up to
/// 32 MiB) each time such a mapping is freed, after which large blocks come from its heap and
/// stay in the process once freed. Loading converts a model through runs of a few MiB each,
/// so the runs then piled up in the peak: SmolLM2-135M's Q4_1 file peaked at 166 MB instead
/// of 141 (docs/benchmarks.md). A fixed 1 MiB threshold returns every such block when freed.
fn return_large_frees_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
