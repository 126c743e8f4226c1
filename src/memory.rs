//! glibc malloc's policy for large blocks, in two phases.
//!
//! glibc serves a block above its mmap threshold from a mapping of its own, unmapped when the
//! block is freed; below it, from its heaps, which keep freed memory until their free top
//! passes the trim threshold. By default the threshold grows (up to 32 MiB) each time such a
//! mapping is freed.
//!
//! * **Loading** ([`for_loading`], first thing in `main`): a fixed 1 MiB threshold. Loading
//!   converts a model through runs of a few MiB each; with the growing threshold the runs piled
//!   up in the heap and in the peak: SmolLM2-135M's Q4_1 file peaked at 166 MB instead of 141
//!   (docs/benchmarks.md), where the peak-RSS targets have a margin of about a megabyte.
//! * **Serving** ([`for_serving`], once every model is loaded): a step's activations (a
//!   prompt's or an encoder's run to megabytes a layer) stay in the heaps once freed, and the
//!   next step reuses their pages. With fresh mappings each time, about a fifth of a 500-word
//!   BERT forward's samples were the kernel zeroing, mapping and unmapping pages; kept, the
//!   forward ran in 0.63× the time (docs/benchmarks.md). The price: the process keeps the
//!   high-water mark of its activations resident (+25–27 MB after 500-word BERT requests)
//!   between requests; an engine idle for a while hands it back ([`return_kept`]).
//!
//! Elsewhere (another libc) both are no-ops.

/// The loading phase's policy; call it before any other thread starts.
pub fn for_loading() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The serving phase's policy: blocks up to 32 MiB (glibc's largest threshold everywhere) come
/// from the heaps, which keep up to 256 MiB of freed memory on top.
pub fn for_serving() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; glibc takes its lock to do so, and its other
    // threads read the thresholds as plain words.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Hands the freed memory that [`for_serving`] keeps back to the system (every arena's free
/// pages, not only their tops): for an engine that has had no work for a while, so that an
/// idle server's resident memory falls back to its models and buffers.
pub fn return_kept() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; glibc locks each arena to do so.
    unsafe {
        libc::malloc_trim(0);
    }
}
