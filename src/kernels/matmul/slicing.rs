//! A product's dispatch cut into slices of C for the submit plan (src/submit.rs): a submit that
//! one big product alone would keep past its budget runs it as several dispatches, each over a
//! slice of C's rows (or columns), with bit-identical results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::layout::Layout;
use super::{Params, FLAG_BIAS};
use crate::gpu::Tensor;
use crate::kernels::{Dispatch, Launch, Pipe, Slices};

/// Which way a product's dispatch is cut, with the rows or columns of C that one workgroup
/// computes.
#[derive(Clone, Copy)]
enum Along {
    Rows(usize),
    Cols(usize),
}

/// A product's dispatch and how to cut it into slices of C: slices of rows (M, A's and C's
/// offsets moved to the slice's first row, a multiple of the workgroup tile's rows), or for an
/// NT product without bias whose rows are one workgroup high (lm_head over a short prompt)
/// slices of columns (N, B's and C's offsets moved; the NT kernels store through `put1`, which
/// takes any column offset). Every element of C is the same fma chain as in the whole dispatch.
pub(super) struct Slicing {
    whole: Dispatch,
    pipe: Arc<Pipe>,
    params: Params,
    tensors: [Tensor; 4],
    /// The whole dispatch's workgroups (x over columns, y over rows).
    workgroups: [u32; 2],
    along: Along,
    /// The dispatches of each cut asked for, by its number of slices.
    cuts: Mutex<HashMap<usize, Arc<[Dispatch]>>>,
}

/// What [`Slicing::launch`] records: the whole dispatch's pipe, params, tensors and workgroups,
/// its layout and the tile of C (columns, rows) one workgroup computes.
pub(super) struct Recorded<'a> {
    pub pipe: &'a Arc<Pipe>,
    pub layout: Option<Layout>,
    pub tile: [usize; 2],
    pub params: Params,
    pub tensors: [&'a Tensor; 4],
    pub workgroups: [u32; 3],
}

impl Slicing {
    /// `whole` as a launch that can be cut where it has more than one workgroup along a way it
    /// can be cut, else as it is.
    pub(super) fn launch(whole: Dispatch, r: Recorded) -> Launch {
        let wg = r.workgroups;
        let along = if wg[1] > 1 {
            Along::Rows(r.tile[1])
        } else if wg[0] > 1 && r.layout == Some(Layout::Nt) && r.params.flags & FLAG_BIAS == 0 {
            Along::Cols(r.tile[0])
        } else {
            return Launch::Whole(whole);
        };
        Launch::Sliceable(Box::new(Slicing {
            whole,
            pipe: r.pipe.clone(),
            params: r.params,
            tensors: r.tensors.map(Tensor::clone),
            workgroups: [wg[0], wg[1]],
            along,
            cuts: Mutex::new(HashMap::new()),
        }))
    }

    /// The dispatches of the cut into `of` slices.
    fn make(&self, of: usize) -> Vec<Dispatch> {
        let (p, n, [wx, wy]) = (self.params, self.max_slices(), self.workgroups);
        let [out, a, b, bias] = &self.tensors;
        (0..of)
            .map(|j| {
                let (w0, w1) = (j * n / of, (j + 1) * n / of);
                let (params, wg) = match self.along {
                    Along::Rows(rows) => {
                        let (m0, m1) = (w0 * rows, (w1 * rows).min(p.m as usize));
                        let (m, m0) = ((m1 - m0) as u32, m0 as u32);
                        (
                            Params { m, a_off: p.a_off + m0 * p.a_rs, c_off: p.c_off + m0 * p.ldc, ..p },
                            [wx, (w1 - w0) as u32],
                        )
                    }
                    Along::Cols(cols) => {
                        let (n0, n1) = (w0 * cols, (w1 * cols).min(p.n as usize));
                        let (n, n0) = ((n1 - n0) as u32, n0 as u32);
                        (Params { n, b_off: p.b_off + n0 * p.b_cs, c_off: p.c_off + n0, ..p }, [(w1 - w0) as u32, wy])
                    }
                };
                self.pipe.dispatch(&params, &[out, a, b, bias], [wg[0], wg[1], 1])
            })
            .collect()
    }

    fn cut(&self, of: usize) -> Option<Arc<[Dispatch]>> {
        self.cuts.lock().unwrap_or_else(|e| e.into_inner()).get(&of).cloned()
    }
}

impl Slices for Slicing {
    fn whole(&self) -> &Dispatch {
        &self.whole
    }

    /// One slice per workgroup row (or column) at most.
    fn max_slices(&self) -> usize {
        match self.along {
            Along::Rows(_) => self.workgroups[1] as usize,
            Along::Cols(_) => self.workgroups[0] as usize,
        }
    }

    fn prepare(&self, of: usize) {
        if self.cut(of).is_none() {
            // made outside the lock; the map only keeps them
            let made: Arc<[Dispatch]> = self.make(of).into();
            self.cuts.lock().unwrap_or_else(|e| e.into_inner()).entry(of).or_insert(made);
        }
    }

    fn encode_slice(&self, pass: &mut wgpu::ComputePass<'_>, j: usize, of: usize) {
        let cut = self.cut(of).unwrap_or_else(|| panic!("slices of a cut into {of} are encoded before it is prepared"));
        cut[j].encode(pass);
    }
}
