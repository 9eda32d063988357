//! A per-thread pool of reusable f32 buffers for kernel temporaries (padded inputs, packed
//! weights, flipped weights).
//!
//! Why: a fresh buffer of a few MiB or more comes from `mmap`, and its first touch costs a page
//! fault per 4 KiB (about 6 ms for 16 MiB on the reference machine) — as much as the
//! convolution that needs it. Reusing buffers makes that a one-time cost per thread.

use std::cell::RefCell;

/// Buffers kept per thread.
const KEEP_BUFFERS: usize = 6;
/// Largest buffer kept (floats; 256 MiB).
const KEEP_MAX: usize = 64 << 20;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `len` floats, reusing a kept one when one is large enough.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let reused = POOL.with(|p| {
        let mut pool = p.borrow_mut();
        // The smallest kept buffer that fits, so large ones stay for large requests.
        let best = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        best.map(|i| pool.swap_remove(i))
    });
    let mut v = reused.unwrap_or_default();
    v.clear();
    v.resize(len, 0.0);
    v
}

/// Gives a buffer back for later [`take`]s on this thread.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() == 0 || v.capacity() > KEEP_MAX {
        return;
    }
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() == KEEP_BUFFERS {
            // Keep the larger buffers: they are the expensive ones to fault in.
            let smallest = (0..pool.len())
                .min_by_key(|&i| pool[i].capacity())
                .expect("full pool");
            if pool[smallest].capacity() >= v.capacity() {
                return;
            }
            pool.swap_remove(smallest);
        }
        pool.push(v);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_come_back_zeroed_and_reused() {
        let mut a = super::take(1000);
        a.iter_mut().for_each(|v| *v = 7.0);
        let ptr = a.as_ptr();
        super::give(a);
        let b = super::take(500);
        assert_eq!(b.as_ptr(), ptr, "the kept buffer is reused");
        assert!(b.iter().all(|&v| v == 0.0) && b.len() == 500);
    }

    /// What a kernel leaves unwritten in a `for_overwrite` buffer reads NaN in the tests, even
    /// when the buffer comes back from the pool holding old values.
    #[cfg(debug_assertions)]
    #[test]
    fn unwritten_elements_of_an_output_read_nan_in_debug_builds() {
        let len = 1 << 16; // pooled size
        let mut old = crate::storage::with_capacity(len);
        old.resize(len, 3.0);
        drop(crate::Tensor::from_vec(old, &[len]).unwrap());
        let mut v = crate::storage::for_overwrite(len);
        // SAFETY: for_overwrite gave capacity >= len and, in debug builds, wrote NaN into all
        // of it, so the first len elements are initialised.
        unsafe { v.set_len(len) };
        assert!(v.iter().all(|x| x.is_nan()));
    }
}
