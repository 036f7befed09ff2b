//! Tensor specs: the one list of named shapes that a struct of tensors (the activations, their
//! gradients) allocates from, that limit checks walk and that memory estimates sum, so the three
//! cannot drift apart.

use crate::gpu::{Gpu, Tensor};

/// One named f32 (or u32) tensor, or one per layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The buffer's label (per-layer ones get `.{layer}` after it).
    pub name: &'static str,
    /// What it is, for messages: e.g. "attention matrix (B,NH,T,T)".
    pub what: &'static str,
    pub shape: Vec<usize>,
    /// None: one tensor; Some(n_layer): one per layer.
    pub layers: Option<usize>,
}

impl TensorSpec {
    pub fn one(name: &'static str, what: &'static str, shape: Vec<usize>) -> TensorSpec {
        TensorSpec { name, what, shape, layers: None }
    }

    pub fn per_layer(n_layer: usize, name: &'static str, what: &'static str, shape: Vec<usize>) -> TensorSpec {
        TensorSpec { name, what, shape, layers: Some(n_layer) }
    }

    /// The bytes of one of the tensors.
    pub fn tensor_bytes(&self) -> u64 {
        shape_bytes(&self.shape)
    }

    /// The bytes of all of them.
    pub fn bytes(&self) -> u64 {
        (self.layers.unwrap_or(1) as u64).saturating_mul(self.tensor_bytes())
    }
}

/// The bytes of an f32 tensor of `shape`, multiplied out in u64 and saturating: shapes built
/// from a hostile setting (a batch of 10^7 at a 10^6 vocab) come to u64::MAX, which every limit
/// check refuses, instead of wrapping (in usize, 32 bits on wasm32) to a size that passes.
pub fn shape_bytes(shape: &[usize]) -> u64 {
    shape.iter().fold(4u64, |bytes, &d| bytes.saturating_mul(d as u64))
}

/// The bytes of every tensor in `specs` (saturating, as [`shape_bytes`]).
pub fn total_bytes(specs: &[TensorSpec]) -> u64 {
    specs.iter().map(TensorSpec::bytes).fold(0, u64::saturating_add)
}

/// Tensors allocated from a spec list, in its order, and handed out by name in that order (the
/// struct built from them names its fields in the same order; a name out of place is a bug).
pub(crate) struct Allocated {
    made: std::vec::IntoIter<(TensorSpec, Vec<Tensor>)>,
}

impl Allocated {
    pub(crate) fn new(gpu: &Gpu, specs: Vec<TensorSpec>) -> Allocated {
        let made: Vec<_> = specs
            .into_iter()
            .map(|s| {
                let tensors = match s.layers {
                    None => vec![gpu.tensor(s.name, &s.shape)],
                    Some(n) => (0..n).map(|i| gpu.tensor(&format!("{}.{i}", s.name), &s.shape)).collect(),
                };
                (s, tensors)
            })
            .collect();
        Allocated { made: made.into_iter() }
    }

    fn next(&mut self, name: &str) -> (TensorSpec, Vec<Tensor>) {
        let (spec, tensors) = self.made.next().unwrap_or_else(|| panic!("no spec left for {name}"));
        assert_eq!(spec.name, name, "tensors are taken in their specs' order");
        (spec, tensors)
    }

    /// The next spec's tensor, which must be called `name` and be one.
    pub(crate) fn one(&mut self, name: &str) -> Tensor {
        let (spec, mut tensors) = self.next(name);
        assert!(spec.layers.is_none(), "{name} is a per-layer tensor");
        tensors.remove(0)
    }

    /// The next spec's per-layer tensors, which must be called `name`.
    pub(crate) fn layers(&mut self, name: &str) -> Vec<Tensor> {
        let (spec, tensors) = self.next(name);
        assert!(spec.layers.is_some(), "{name} is not a per-layer tensor");
        tensors
    }

    /// The next spec's per-layer tensors where `cond` (its specs listed them), else None.
    pub(crate) fn layers_if(&mut self, cond: bool, name: &str) -> Option<Vec<Tensor>> {
        cond.then(|| self.layers(name))
    }

    /// Checks that every spec was taken.
    pub(crate) fn done(mut self) {
        if let Some((spec, _)) = self.made.next() {
            panic!("the spec {} was allocated but not taken", spec.name);
        }
    }
}
