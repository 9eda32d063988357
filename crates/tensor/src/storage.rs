//! Tensor storage and a process-wide pool of large buffers.
//!
//! Why: training allocates and frees the same large activations every step. A fresh buffer of
//! a few MiB comes from `mmap`, and touching it costs one page fault per 4 KiB — measured at a
//! third of a training step's time before this pool. Large buffers are therefore handed back
//! to the pool when their last tensor is dropped, and the next allocation of the same size
//! takes one from there. Small buffers go straight to the system allocator.

use std::collections::HashMap;
use std::sync::Mutex;

/// Buffers smaller than this many floats (256 KiB) are not pooled.
const POOL_MIN_LEN: usize = 64 * 1024;
/// Buffers kept per exact size.
const POOL_PER_SIZE: usize = 8;
/// Floats kept in the pool at most (1 GiB).
const POOL_MAX_FLOATS: usize = 256 << 20;

struct Pool {
    by_len: HashMap<usize, Vec<Vec<f32>>>,
    floats: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with_pool<T>(f: impl FnOnce(&mut Pool) -> T) -> T {
    // A poisoned lock only means another thread panicked mid-push/pop: the map is still valid.
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(|| Pool {
        by_len: HashMap::new(),
        floats: 0,
    }))
}

/// An empty vector with capacity for exactly `len` floats, reused from the pool when one of
/// that size is there. Fill it with `extend`/`push` or `resize`.
pub(crate) fn with_capacity(len: usize) -> Vec<f32> {
    if len >= POOL_MIN_LEN {
        let reused = with_pool(|p| {
            let v = p.by_len.get_mut(&len)?.pop()?;
            p.floats -= len;
            Some(v)
        });
        if let Some(mut v) = reused {
            v.clear();
            return v;
        }
    }
    let mut v = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        // Not an abort: the caller's command can still say what was too large.
        std::panic::panic_any(OutOfMemory {
            bytes: len.saturating_mul(std::mem::size_of::<f32>()),
        });
    }
    v
}

/// The payload of the panic raised when a tensor's buffer cannot be allocated (the system, or
/// an address-space limit such as `ulimit -v`, refused it). Rust aborts the process on a failed
/// allocation; the tensor core asks for its buffers fallibly instead and unwinds with this
/// payload, so a command can catch it (`std::panic::catch_unwind`) and report the size instead
/// of dying with "memory allocation failed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory {
    /// The size of the buffer that could not be allocated.
    pub bytes: usize,
}

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "out of memory: a tensor of {} MiB could not be allocated",
            self.bytes.div_ceil(1 << 20)
        )
    }
}

/// An empty vector with capacity for `len` floats that a kernel writes in full through its
/// spare capacity before `set_len(len)`. Debug builds (and so the tests) fill the capacity
/// with NaN first: an element a kernel forgot to write then shows up as NaN against the
/// reference instead of as whatever the reused buffer held.
pub(crate) fn for_overwrite(len: usize) -> Vec<f32> {
    let mut v = with_capacity(len);
    if cfg!(debug_assertions) {
        v.spare_capacity_mut()[..len].fill(std::mem::MaybeUninit::new(f32::NAN));
    }
    v
}

/// `len` zeros, reusing a pooled buffer when possible.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut v = with_capacity(len);
    v.resize(len, 0.0);
    v
}

/// The elements of a tensor. Dropping the last handle returns a large buffer to the pool.
#[derive(Debug, Default)]
pub(crate) struct Storage(Vec<f32>);

impl Storage {
    pub(crate) fn new(v: Vec<f32>) -> Self {
        Storage(v)
    }

    /// Takes the vector out (it will not go back to the pool).
    pub(crate) fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl Clone for Storage {
    fn clone(&self) -> Self {
        let mut v = with_capacity(self.0.len());
        v.extend_from_slice(&self.0);
        Storage(v)
    }
}

impl std::ops::Deref for Storage {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let len = self.0.len();
        if len < POOL_MIN_LEN || self.0.capacity() != len {
            return;
        }
        let v = std::mem::take(&mut self.0);
        with_pool(|p| {
            if p.floats + len > POOL_MAX_FLOATS {
                return;
            }
            let slot = p.by_len.entry(len).or_default();
            if slot.len() < POOL_PER_SIZE {
                slot.push(v);
                p.floats += len;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused_and_zeroed_on_request() {
        let len = POOL_MIN_LEN + 12_345; // a size no other test uses
        let mut v = zeroed(len);
        v.iter_mut().for_each(|x| *x = 7.0);
        let ptr = v.as_ptr();
        drop(Storage::new(v));
        let w = zeroed(len);
        assert_eq!(w.as_ptr(), ptr, "the buffer came back from the pool");
        assert!(w.iter().all(|&x| x == 0.0));
        assert_eq!(w.len(), len);
    }
}
