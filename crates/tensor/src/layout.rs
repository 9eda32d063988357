//! Shape, element strides and offset: everything a view changes, nothing a kernel computes.

/// How a tensor's elements sit in its storage: `index(i) = offset + sum(i_d * strides_d)`.
///
/// Strides are in elements, not bytes. A stride of 0 repeats an element (a broadcast view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

/// Row-major (C order) strides for `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc *= shape[d];
    }
    strides
}

impl Layout {
    /// A row-major layout starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// A layout from its parts; the caller guarantees every index stays inside the storage.
    pub(crate) fn from_parts(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout {
            shape,
            strides,
            offset,
        }
    }

    /// The extent of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element stride of each dimension.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Index of the first element in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are row-major and gap-free (size-1 dimensions may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for d in (0..self.shape.len()).rev() {
            if self.shape[d] != 1 && self.strides[d] != acc {
                return false;
            }
            acc *= self.shape[d];
        }
        true
    }

    /// The storage range holding the elements, if the layout is contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.numel())
    }

    /// Index of the largest element reachable through this layout, plus one (0 when empty).
    pub(crate) fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<usize>()
            + 1
    }
}

/// Merges adjacent dimensions that are contiguous with respect to each other in every one of
/// `strides` (all of the same rank as `shape`). `None` when the shape has no elements.
pub(crate) fn coalesce(
    shape: &[usize],
    strides: &[&[usize]],
) -> Option<(Vec<usize>, Vec<Vec<usize>>)> {
    if shape.contains(&0) {
        return None;
    }
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::with_capacity(shape.len()); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = match out_shape.last() {
            Some(_) => strides.iter().zip(&out_strides).all(|(s, os)| {
                let last = *os.last().expect("same length as out_shape");
                last == s[d] * shape[d]
            }),
            None => false,
        };
        if mergeable {
            *out_shape.last_mut().expect("non-empty") *= shape[d];
            for (s, os) in strides.iter().zip(out_strides.iter_mut()) {
                *os.last_mut().expect("non-empty") = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (s, os) in strides.iter().zip(out_strides.iter_mut()) {
                os.push(s[d]);
            }
        }
    }
    Some((out_shape, out_strides))
}

/// Calls `f(outer_offsets, inner_len, inner_strides)` once per innermost run of a strided walk
/// over `shape`, for several operands that share the shape but not the strides.
///
/// This is the odometer every strided kernel uses; the inner run is a plain counted loop.
pub(crate) fn for_each_run<const K: usize>(
    shape: &[usize],
    strides: [&[usize]; K],
    offsets: [usize; K],
    mut f: impl FnMut([usize; K], usize, [usize; K]),
) {
    let Some((cshape, cstrides)) = coalesce(shape, &strides) else {
        return;
    };
    if cshape.is_empty() {
        f(offsets, 1, [0; K]);
        return;
    }
    let rank = cshape.len();
    let inner = cshape[rank - 1];
    let inner_strides: [usize; K] = std::array::from_fn(|k| cstrides[k][rank - 1]);
    let mut index = vec![0usize; rank - 1];
    let mut base = offsets;
    loop {
        f(base, inner, inner_strides);
        // Advance the odometer over the outer dimensions.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            for k in 0..K {
                base[k] += cstrides[k][d];
            }
            if index[d] < cshape[d] {
                break;
            }
            for k in 0..K {
                base[k] -= cstrides[k][d] * cshape[d];
            }
            index[d] = 0;
        }
    }
}
