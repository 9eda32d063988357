//! Matrix products on `matrixmultiply`'s sgemm; transposed operands are passed as strides.

use rayon::prelude::*;

use crate::kernels::sgemm::{Strided, sgemm};
use crate::tensor::broadcast_shapes;
use crate::{Error, Result, Tensor};

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
