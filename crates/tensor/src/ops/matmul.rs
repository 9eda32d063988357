//! Matrix products: the packed GEMM of `kernels::sgemm` (transposed operands are passed as
//! strides), and, for the long, thin products of activations (Gram matrices and their
//! gradients), the convolution kernels, which read their operands in place.

use rayon::prelude::*;

use crate::kernels::sgemm::{Strided, sgemm};
use crate::tensor::broadcast_shapes;
use crate::{ConvOptions, Error, Result, Tensor};

/// Products of 2-D matrices with at least this many columns of B (a row-major B), or this long
/// a shared dimension (a transposed B), and at least [`CONV_PATH_ASPECT`] times the other two
/// sizes, run on the convolution kernels: packing such a B costs as much as multiplying it.
/// (Square products stay on the GEMM, which is faster for them.)
const CONV_PATH_MIN: usize = 1024;
const CONV_PATH_ASPECT: usize = 4;

impl Tensor {
    /// Matrix product over the last two dims, batched (with broadcasting) over the others.
    /// Views such as `transpose(0, 1)` are read through their strides without a copy.
    ///
    /// # Shapes
    /// `(..., m, k) x (..., k, n) -> (..., m, n)`; both operands have rank >= 2.
    ///
    /// # Errors
    /// [`Error::RankMismatch`] for rank < 2; [`Error::ShapeMismatch`] when the inner dims differ
    /// or the batch dims do not broadcast.
    ///
    /// ```
    /// use tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let b = a.transpose(0, 1)?; // a view: no copy
    /// assert_eq!(a.matmul(&b)?.to_vec(), vec![5.0, 11.0, 11.0, 25.0]);
    /// # Ok::<(), tensor::Error>(())
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let (ra, rb) = (self.rank(), other.rank());
        if ra < 2 {
            return Err(Error::rank("matmul", "at least 2", self.shape()));
        }
        if rb < 2 {
            return Err(Error::rank("matmul", "at least 2", other.shape()));
        }
        let (m, k) = (self.shape()[ra - 2], self.shape()[ra - 1]);
        let (k2, n) = (other.shape()[rb - 2], other.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                self.shape(),
                other.shape(),
                format!("inner dims {k} and {k2} differ"),
            ));
        }
        if ra == 2
            && rb == 2
            && let Some(c) = self.matmul_on_conv_kernels(other)?
        {
            return Ok(c);
        }
        let batch = broadcast_shapes("matmul", &self.shape()[..ra - 2], &other.shape()[..rb - 2])?;
        let mut full_a = batch.clone();
        full_a.extend([m, k]);
        let mut full_b = batch.clone();
        full_b.extend([k, n]);
        let (a, b) = (self.broadcast_to(&full_a)?, other.broadcast_to(&full_b)?);
        let nb: usize = batch.iter().product();
        let mut out = crate::storage::zeroed(nb * m * n);
        let offsets = |t: &Tensor| -> Vec<usize> {
            let l = t.layout();
            let r = l.rank();
            let mut offs = Vec::with_capacity(nb);
            let mut idx = vec![0usize; r - 2];
            for _ in 0..nb {
                offs.push(
                    l.offset()
                        + idx
                            .iter()
                            .zip(l.strides())
                            .map(|(i, s)| i * s)
                            .sum::<usize>(),
                );
                for d in (0..r - 2).rev() {
                    idx[d] += 1;
                    if idx[d] < l.shape()[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            offs
        };
        let (oa, ob) = (offsets(&a), offsets(&b));
        let (la, lb) = (a.layout(), b.layout());
        let (sa, sb) = (
            (la.strides()[la.rank() - 2], la.strides()[la.rank() - 1]),
            (lb.strides()[lb.rank() - 2], lb.strides()[lb.rank() - 1]),
        );
        let (da, db) = (a.storage(), b.storage());
        let one = |i: usize, c: &mut [f32]| {
            sgemm(
                m,
                k,
                n,
                da,
                Strided {
                    offset: oa[i],
                    rs: sa.0,
                    cs: sa.1,
                },
                db,
                Strided {
                    offset: ob[i],
                    rs: sb.0,
                    cs: sb.1,
                },
                c,
                Strided {
                    offset: 0,
                    rs: n,
                    cs: 1,
                },
            )
        };
        if m * n > 0 {
            if nb > 1 {
                out.par_chunks_mut(m * n)
                    .enumerate()
                    .for_each(|(i, c)| one(i, c));
            } else if nb == 1 && m >= 64 && m * n * k >= 1 << 21 {
                // One big product: split C's rows over the pool (sgemm itself stays single
                // threaded, so rayon's pool is the only source of threads).
                let rows = m.div_ceil(2 * rayon::current_num_threads()).max(16);
                out.par_chunks_mut(rows * n).enumerate().for_each(|(i, c)| {
                    let r0 = i * rows;
                    let mr = c.len() / n;
                    sgemm(
                        mr,
                        k,
                        n,
                        da,
                        Strided {
                            offset: oa[0] + r0 * sa.0,
                            rs: sa.0,
                            cs: sa.1,
                        },
                        db,
                        Strided {
                            offset: ob[0],
                            rs: sb.0,
                            cs: sb.1,
                        },
                        c,
                        Strided {
                            offset: 0,
                            rs: n,
                            cs: 1,
                        },
                    )
                });
            } else if nb == 1 {
                one(0, &mut out);
            }
        }
        let mut shape = batch;
        shape.extend([m, n]);
        Ok(Tensor::from_parts(out, &shape))
    }
}

impl Tensor {
    /// `self (m x k) * b (k x n)` for a row-major `self` as a convolution, when that is the
    /// faster kernel: with `b` row-major and `n` large it is a 1 x 1 convolution of a
    /// `k`-channel signal of length `n` (B is read in place, never packed); with `b` the
    /// transpose of a row-major `n x k` matrix and `k` large (a Gram matrix `F F^T`) it is the
    /// weight gradient of a 1 x 1 convolution, dot products along contiguous rows. `None`
    /// leaves the product to the GEMM.
    fn matmul_on_conv_kernels(&self, b: &Tensor) -> Result<Option<Tensor>> {
        let (m, k, n) = (self.shape()[0], self.shape()[1], b.shape()[1]);
        if !self.layout().is_contiguous() || m == 0 || k == 0 || n == 0 {
            return Ok(None);
        }
        let one_by_one = ConvOptions::default();
        let thin = |long: usize, a: usize, b: usize| {
            long >= CONV_PATH_MIN && long >= CONV_PATH_ASPECT * a.max(b)
        };
        if b.layout().is_contiguous() && thin(n, m, k) {
            let w = self.reshape(&[m, k, 1])?;
            let y = b.reshape(&[1, k, n])?.conv(&w, None, &one_by_one)?;
            return Ok(Some(y.reshape(&[m, n])?));
        }
        let bt = b.transpose(0, 1)?;
        if bt.layout().is_contiguous() && thin(k, m, n) {
            let x = bt.reshape(&[1, n, k])?;
            let dy = self.reshape(&[1, m, k])?;
            let dw = Tensor::conv_backward_weight(&x, &dy, &[m, n, 1], &one_by_one)?;
            return Ok(Some(dw.reshape(&[m, n])?));
        }
        Ok(None)
    }
}
