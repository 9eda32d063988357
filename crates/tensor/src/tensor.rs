//! The tensor handle: shared storage plus a layout. Views change only the layout.

use std::sync::Arc;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::layout::{Layout, for_each_run};
use crate::storage::{self, Storage};
use crate::{Error, Result};

/// An f32 n-dimensional array. Cloning is O(1): clones share storage, and every op returns a
/// new tensor, so a tensor never changes under its holder's feet.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Layout,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.to_vec();
        let shown: Vec<f32> = data.iter().copied().take(8).collect();
        write!(
            f,
            "Tensor{:?} {:?}{}",
            self.shape(),
            shown,
            if data.len() > 8 { " …" } else { "" }
        )
    }
}

fn check_count(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
    let expected: usize = shape.iter().product();
    if len != expected {
        return Err(Error::ElementCount {
            op,
            len,
            shape: shape.to_vec(),
            expected,
        });
    }
    Ok(())
}

impl Tensor {
    // ---------------------------------------------------------------- constructors

    /// A tensor owning `data`, laid out row-major as `shape`.
    ///
    /// # Errors
    /// [`Error::ElementCount`] when `data.len()` is not the product of `shape`.
    ///
    /// ```
    /// let t = tensor::Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// # Ok::<(), tensor::Error>(())
    /// ```
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        check_count("from_vec", data.len(), shape)?;
        Ok(Tensor {
            storage: Arc::new(Storage::new(data)),
            layout: Layout::contiguous(shape),
        })
    }

    /// Internal constructor for kernels that produce exactly `shape.iter().product()` values.
    pub(crate) fn from_parts(data: Vec<f32>, shape: &[usize]) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor {
            storage: Arc::new(Storage::new(data)),
            layout: Layout::contiguous(shape),
        }
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        let mut v = storage::with_capacity(shape.iter().product());
        v.resize(shape.iter().product(), value);
        Tensor::from_parts(v, shape)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::full(&[], value)
    }

    /// `0, 1, ..., n-1` as a rank-1 tensor.
    pub fn arange(n: usize) -> Tensor {
        Tensor::from_parts((0..n).map(|i| i as f32).collect(), &[n])
    }

    /// Uniform samples in `[lo, hi)` drawn from `rng` (pass a seeded RNG for reproducible runs).
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut impl Rng) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect();
        Tensor::from_parts(data, shape)
    }

    /// Normal samples with the given mean and standard deviation, drawn from `rng`.
    pub fn randn(shape: &[usize], mean: f32, std: f32, rng: &mut impl Rng) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(rng);
                mean + std * z
            })
            .collect();
        Tensor::from_parts(data, shape)
    }

    // ---------------------------------------------------------------- accessors

    /// The extent of each dimension.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    /// The layout (shape, strides, offset) of this view.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// The size of dimension `axis`.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis >= rank`.
    pub fn dim(&self, axis: usize) -> Result<usize> {
        self.shape()
            .get(axis)
            .copied()
            .ok_or(Error::axis("dim", axis, self.rank()))
    }

    /// The elements in row-major order, borrowed when the tensor is contiguous.
    pub fn as_contiguous_slice(&self) -> Option<&[f32]> {
        self.layout.contiguous_range().map(|r| &self.storage[r])
    }

    /// The elements in row-major order, as a new vector.
    pub fn to_vec(&self) -> Vec<f32> {
        match self.as_contiguous_slice() {
            Some(s) => s.to_vec(),
            None => self.gather(),
        }
    }

    /// The elements as a contiguous slice, copying only when this view is not contiguous.
    pub fn contiguous_data(&self) -> std::borrow::Cow<'_, [f32]> {
        match self.as_contiguous_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.gather()),
        }
    }

    /// The only element of a one-element tensor.
    ///
    /// # Errors
    /// [`Error::ElementCount`] when the tensor does not hold exactly one element.
    pub fn to_scalar(&self) -> Result<f32> {
        check_count("to_scalar", self.numel(), &[1])?;
        Ok(self.storage[self.layout.offset()])
    }

    /// The element at a multi-index.
    ///
    /// # Errors
    /// [`Error::RankMismatch`] or [`Error::IndexOutOfRange`] for a bad index.
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        if index.len() != self.rank() {
            return Err(Error::rank("get", format!("{}", index.len()), self.shape()));
        }
        let mut off = self.layout.offset();
        for ((&i, &n), &s) in index.iter().zip(self.shape()).zip(self.layout.strides()) {
            if i >= n {
                return Err(Error::IndexOutOfRange {
                    op: "get",
                    index: i,
                    size: n,
                });
            }
            off += i * s;
        }
        Ok(self.storage[off])
    }

    /// True when both tensors are views of the same storage.
    pub fn shares_storage_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// Consumes the tensor and returns its elements row-major, without a copy when possible.
    pub fn into_vec(self) -> Vec<f32> {
        if self.layout.is_contiguous()
            && self.layout.offset() == 0
            && self.storage.len() == self.numel()
        {
            match Arc::try_unwrap(self.storage) {
                Ok(s) => s.into_vec(),
                Err(arc) => arc.to_vec(),
            }
        } else {
            self.to_vec()
        }
    }

    fn gather(&self) -> Vec<f32> {
        let mut out = storage::with_capacity(self.numel());
        let src = &self.storage[..];
        for_each_run(
            self.shape(),
            [self.layout.strides()],
            [self.layout.offset()],
            |[base], len, [stride]| {
                if stride == 1 {
                    out.extend_from_slice(&src[base..base + len]);
                } else {
                    out.extend((0..len).map(|i| src[base + i * stride]));
                }
            },
        );
        out
    }

    /// A contiguous tensor with the same elements (a cheap clone when already contiguous).
    pub fn contiguous(&self) -> Tensor {
        if self.layout.is_contiguous() {
            self.clone()
        } else {
            Tensor::from_parts(self.gather(), self.shape())
        }
    }

    pub(crate) fn storage(&self) -> &[f32] {
        &self.storage
    }

    fn view(&self, layout: Layout) -> Tensor {
        debug_assert!(layout.storage_extent() <= self.storage.len());
        Tensor {
            storage: Arc::clone(&self.storage),
            layout,
        }
    }

    // ---------------------------------------------------------------- views

    /// The same elements with a new shape; a view when contiguous, a copy otherwise.
    ///
    /// # Errors
    /// [`Error::ElementCount`] when the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        check_count("reshape", self.numel(), shape)?;
        let base = self.contiguous();
        let offset = base.layout.offset();
        Ok(base.view(Layout::from_parts(
            shape.to_vec(),
            crate::layout::contiguous_strides(shape),
            offset,
        )))
    }

    /// Reorders the dimensions: output dimension `i` is input dimension `perm[i]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `perm` is not a permutation of `0..rank`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::arg(
                "permute",
                format!("{perm:?} is not a permutation of 0..{rank}"),
            ));
        }
        let shape = perm.iter().map(|&p| self.shape()[p]).collect();
        let strides = perm.iter().map(|&p| self.layout.strides()[p]).collect();
        Ok(self.view(Layout::from_parts(shape, strides, self.layout.offset())))
    }

    /// Swaps two dimensions.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] for a bad axis.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let rank = self.rank();
        for axis in [a, b] {
            if axis >= rank {
                return Err(Error::axis("transpose", axis, rank));
            }
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// The slice `start..start + len` of dimension `axis`, as a view.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] or [`Error::IndexOutOfRange`] when the range does not fit.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let size = self
            .dim(axis)
            .map_err(|_| Error::axis("narrow", axis, self.rank()))?;
        if start + len > size {
            return Err(Error::IndexOutOfRange {
                op: "narrow",
                index: start + len,
                size,
            });
        }
        let mut shape = self.shape().to_vec();
        shape[axis] = len;
        let offset = self.layout.offset() + start * self.layout.strides()[axis];
        Ok(self.view(Layout::from_parts(
            shape,
            self.layout.strides().to_vec(),
            offset,
        )))
    }

    /// Index `index` of dimension `axis`, with that dimension removed (a view).
    ///
    /// # Errors
    /// As [`Tensor::narrow`].
    pub fn select(&self, axis: usize, index: usize) -> Result<Tensor> {
        let t = self.narrow(axis, index, 1)?;
        let mut shape = t.shape().to_vec();
        let mut strides = t.layout.strides().to_vec();
        shape.remove(axis);
        strides.remove(axis);
        Ok(self.view(Layout::from_parts(shape, strides, t.layout.offset())))
    }

    /// Inserts a size-1 dimension at `axis` (a view).
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis > rank`.
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.rank() {
            return Err(Error::axis("unsqueeze", axis, self.rank()));
        }
        let mut shape = self.shape().to_vec();
        let mut strides = self.layout.strides().to_vec();
        shape.insert(axis, 1);
        strides.insert(axis, 0);
        Ok(self.view(Layout::from_parts(shape, strides, self.layout.offset())))
    }

    /// Removes dimension `axis`, which must have size 1 (a view).
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`], or [`Error::InvalidArgument`] when that dimension is not 1.
    pub fn squeeze(&self, axis: usize) -> Result<Tensor> {
        let size = self
            .dim(axis)
            .map_err(|_| Error::axis("squeeze", axis, self.rank()))?;
        if size != 1 {
            return Err(Error::arg(
                "squeeze",
                format!("dimension {axis} has size {size}, not 1"),
            ));
        }
        self.select(axis, 0)
    }

    /// Repeats size-1 dimensions (and prepends new ones) to reach `shape`, as a stride-0 view.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes are not broadcast-compatible this way round.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let rank = shape.len();
        if rank < self.rank() {
            return Err(Error::shape(
                "broadcast_to",
                self.shape(),
                shape,
                "target has fewer dims",
            ));
        }
        let lead = rank - self.rank();
        let mut strides = vec![0; rank];
        for d in 0..self.rank() {
            let (from, to) = (self.shape()[d], shape[lead + d]);
            if from == to {
                strides[lead + d] = self.layout.strides()[d];
            } else if from != 1 {
                return Err(Error::shape(
                    "broadcast_to",
                    self.shape(),
                    shape,
                    format!("dimension {d} has size {from}, neither 1 nor {to}"),
                ));
            }
        }
        Ok(self.view(Layout::from_parts(
            shape.to_vec(),
            strides,
            self.layout.offset(),
        )))
    }

    /// Treats the tensor as a flat vector of its elements (a view when contiguous).
    pub fn flatten_all(&self) -> Tensor {
        self.reshape(&[self.numel()]).expect("same element count")
    }
}

/// The shape two operands broadcast to, numpy-style (align trailing dims; 1 stretches).
///
/// # Errors
/// [`Error::ShapeMismatch`] naming `op` when a pair of dims is neither equal nor 1.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    a,
                    b,
                    format!("dims {da} and {db} do not broadcast"),
                ));
            }
        };
    }
    Ok(out)
}
