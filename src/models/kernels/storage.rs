//! Where packed weight matrices live: zeroed, 64-byte aligned buffers on transparent huge pages.
//!
//! # Why
//! A decode step reads every weight once, as a stream. On 4 KiB pages each 4 KiB of that
//! stream costs a TLB miss, and in a virtual machine (nested paging) a miss walks two page
//! tables: a C loop streaming 256 MiB on this project's Zen 4 VM read 16–18 GB/s on one thread
//! and 24–25 on two from 4 KiB pages, against 29–31 and 30–32 from 2 MiB pages. Our batch-1
//! decode steps got 4–9 % faster (`docs/benchmarks.md`). Heap buffers get huge pages only
//! where the kernel's `transparent_hugepage` setting is `always`; the usual one is `madvise`.
//!
//! # Invariants
//! * A [`WeightBuffer`] owns its bytes: no other buffer overlaps them, and they start zeroed
//!   (fresh anonymous pages).
//! * Mappings start on a 2 MiB boundary. Only huge pages that lie wholly inside buffers are
//!   asked for, so nothing beyond the buffers' bytes becomes resident (a huge page is resident
//!   whole once touched; the peak-RSS targets have a margin of about a megabyte). Where the
//!   kernel gives no huge pages, nothing changes but the speed.
//! * Buffers larger than [`OWN_MAPPING`] get a mapping of their own, advised `MADV_HUGEPAGE`
//!   whole: its last partial 2 MiB is not eligible and stays on 4 KiB pages.
//! * Smaller buffers are cut one after another from shared chunks, each into the oldest chunk
//!   with room for it, so a model's many small matrices sit on huge pages too. When a buffer
//!   completes a chunk's 2 MiB stretches, they are advised then; the first of them may already
//!   hold the buffers before it on small pages, so it is collapsed (`MADV_COLLAPSE`).
//! * A mapping is unmapped when the last buffer cut from it is dropped.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

/// The size of a transparent huge page on x86-64 and of most aarch64 kernels' PMD pages.
const HUGE_PAGE: usize = 2 << 20;

/// Bytes of each shared chunk: a whole number of huge pages, large enough that a model's small
/// matrices need few chunks (each ends in a partly used stretch on small pages).
const CHUNK: usize = 32 * HUGE_PAGE;

/// Buffers larger than this get a mapping of their own: they fill whole huge pages anyway, and
/// one never leaves most of a chunk behind it unused.
const OWN_MAPPING: usize = CHUNK / 4;

/// Buffers are whole 64-byte lines, aligned to them (the kernels' cache-line loads).
const ALIGN: usize = 64;

/// One anonymous mapping; unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory; the buffers cut from it own disjoint ranges of it.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (rounded up to 4 KiB pages) starting on a 2 MiB boundary. Aborts like
    /// the global allocator when the system has no memory left.
    fn new(len: usize) -> Mapping {
        let len = len.max(1).next_multiple_of(4096);
        let span = len + HUGE_PAGE;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(len, ALIGN).unwrap(),
            );
        }
        let raw = raw.cast::<u8>();
        let head = raw.align_offset(HUGE_PAGE);
        // SAFETY: `head ≤ HUGE_PAGE`, so `[head, head + len)` lies inside the `span` mapped bytes;
        // the ranges unmapped before and after it are ours and nothing points into them.
        unsafe {
            let base = raw.add(head);
            if head > 0 {
                libc::munmap(raw.cast(), head);
            }
            let tail = span - head - len;
            if tail > 0 {
                libc::munmap(base.add(len).cast(), tail);
            }
            Mapping {
                base: NonNull::new_unchecked(base),
                len,
            }
        }
    }

    /// Asks for huge pages over the whole 2 MiB stretches of `[from, to)` (offsets), collapsing
    /// the first one when `from` is inside it: its bytes before `from` may already be resident
    /// on small pages, which would keep a page fault from giving it a huge one. Only advice:
    /// refused (an old kernel, huge pages off), the stretches stay on small pages.
    fn ask_huge_pages(&self, from: usize, to: usize) {
        let (first, end) = (
            from / HUGE_PAGE * HUGE_PAGE,
            to.min(self.len) / HUGE_PAGE * HUGE_PAGE,
        );
        if end <= first {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: `[first, end)` lies inside the mapping; advice changes no byte's value.
        unsafe {
            let at = |offset: usize| self.base.as_ptr().add(offset).cast();
            libc::madvise(at(first), end - first, libc::MADV_HUGEPAGE);
            #[cfg(target_env = "gnu")]
            if from > first {
                libc::madvise(at(first), HUGE_PAGE, libc::MADV_COLLAPSE);
            }
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this base and length, and no buffer cut
        // from it is left (each holds an `Arc` of it).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A chunk that small buffers are cut from, and how much of it is cut. Weak, so a chunk whose
/// buffers are all dropped is unmapped rather than kept for buffers to come.
struct OpenChunk {
    mapping: Weak<Mapping>,
    used: usize,
}

/// The chunks with room left, oldest first. A buffer goes into the first one it fits, so a
/// chunk that could not take one buffer is still filled by smaller ones after it, and only the
/// newest chunk is left with a partly used huge page.
static OPEN_CHUNKS: Mutex<Vec<OpenChunk>> = Mutex::new(Vec::new());

/// A zeroed, 64-byte aligned weight buffer on memory advised for huge pages (module docs).
pub(super) struct WeightBuffer {
    start: NonNull<u8>,
    len: usize,
    /// Keeps the memory mapped while this buffer lives.
    _mapping: Arc<Mapping>,
}

// SAFETY: a buffer owns its bytes exclusively, like a `Vec<u8>`.
unsafe impl Send for WeightBuffer {}
unsafe impl Sync for WeightBuffer {}

impl WeightBuffer {
    /// `len` zeroed bytes, rounded up to whole 64-byte lines: the kernels' loads read whole
    /// lines, so a buffer's last line must be its own.
    pub(super) fn zeroed(len: usize) -> WeightBuffer {
        let len = len.next_multiple_of(ALIGN);
        if len > OWN_MAPPING {
            let mapping = Arc::new(Mapping::new(len));
            mapping.ask_huge_pages(0, mapping.len);
            return WeightBuffer {
                start: mapping.base,
                len,
                _mapping: mapping,
            };
        }
        let mut open = OPEN_CHUNKS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.retain(|chunk| chunk.used < CHUNK && chunk.mapping.strong_count() > 0);
        let found = open.iter_mut().find_map(|chunk| {
            let mapping = chunk
                .mapping
                .upgrade()
                .filter(|_| chunk.used + len <= CHUNK)?;
            let offset = chunk.used;
            chunk.used = offset + len;
            Some((mapping, offset))
        });
        let (mapping, offset) = found.unwrap_or_else(|| {
            let mapping = Arc::new(Mapping::new(CHUNK));
            open.push(OpenChunk {
                mapping: Arc::downgrade(&mapping),
                used: len,
            });
            (mapping, 0)
        });
        mapping.ask_huge_pages(offset, offset + len);
        WeightBuffer {
            // SAFETY: `offset + len ≤ CHUNK`, the mapping's length.
            start: unsafe { NonNull::new_unchecked(mapping.base.as_ptr().add(offset)) },
            len,
            _mapping: mapping,
        }
    }

    /// Length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn as_ptr(&self) -> *const u8 {
        self.start.as_ptr()
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        // SAFETY: the buffer's `len` bytes are mapped, initialised (zeroed at least) and ours.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    pub(super) fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`, and we hold `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Clone for WeightBuffer {
    fn clone(&self) -> Self {
        let mut copy = WeightBuffer::zeroed(self.len);
        copy.as_bytes_mut().copy_from_slice(self.as_bytes());
        copy
    }
}

impl PartialEq for WeightBuffer {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for WeightBuffer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_aligned_and_disjoint_whether_cut_from_a_chunk_or_mapped_alone() {
        let sizes = [64, 100, 4096, 3 << 20, OWN_MAPPING + 1, 1, CHUNK / 5];
        let lines = |len: usize| len.next_multiple_of(64);
        let mut buffers: Vec<WeightBuffer> =
            sizes.iter().map(|&len| WeightBuffer::zeroed(len)).collect();
        for (i, buffer) in buffers.iter_mut().enumerate() {
            assert_eq!(buffer.len(), lines(sizes[i]));
            assert_eq!(buffer.as_ptr() as usize % ALIGN, 0);
            assert!(buffer.as_bytes().iter().all(|&b| b == 0));
            buffer.as_bytes_mut().fill(i as u8 + 1);
        }
        for (i, buffer) in buffers.iter().enumerate() {
            assert!(
                buffer.as_bytes().iter().all(|&b| b == i as u8 + 1),
                "buffer {i} overwritten"
            );
        }
        let copy = buffers[2].clone();
        assert!(copy == buffers[2] && copy.as_ptr() != buffers[2].as_ptr());
    }

    #[test]
    fn a_mapping_is_released_with_the_last_buffer_cut_from_it() {
        let buffer = WeightBuffer::zeroed(OWN_MAPPING + 1);
        let mapping = Arc::downgrade(&buffer._mapping);
        let copy = buffer.clone();
        drop(copy);
        assert!(mapping.upgrade().is_some());
        drop(buffer);
        assert!(mapping.upgrade().is_none());
    }
}
