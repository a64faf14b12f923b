//! A fingerprint of every tensor of a model and its VarStore: name, shape, dtype, device,
//! data pointer, `requires_grad`, a checksum and a saved copy of the values.
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};
use tch_patch::{named_tensors, Parameters};

/// What is recorded of one tensor.
struct Print {
    shape: Vec<i64>,
    kind: Kind,
    device: Device,
    data_ptr: usize,
    requires_grad: bool,
    /// The sum of the values as f64, compared bit for bit.
    sum: u64,
    /// A deep copy of the values, compared with `equal`.
    copy: Tensor,
}

impl Print {
    fn of(tensor: &Tensor) -> Self {
        Print {
            shape: tensor.size(),
            kind: tensor.kind(),
            device: tensor.device(),
            data_ptr: tensor.data_ptr() as usize,
            requires_grad: tensor.requires_grad(),
            sum: tensor.sum(Kind::Double).double_value(&[]).to_bits(),
            copy: tensor.detach().copy(),
        }
    }

    /// Every difference of `now` from this print, in words.
    fn differences(&self, name: &str, now: &Tensor) -> Vec<String> {
        let now_print = Print::of(now);
        let mut out = Vec::new();
        let mut check = |what: &str, same: bool| {
            if !same {
                out.push(format!("`{name}`: {what} changed"));
            }
        };
        check("shape", self.shape == now_print.shape);
        check("dtype", self.kind == now_print.kind);
        check("device", self.device == now_print.device);
        check("data_ptr", self.data_ptr == now_print.data_ptr);
        check(
            "requires_grad",
            self.requires_grad == now_print.requires_grad,
        );
        check("checksum", self.sum == now_print.sum);
        check(
            "values",
            self.shape == now_print.shape && self.kind == now_print.kind && self.copy.equal(now),
        );
        out
    }
}

/// Prints of a set of named tensors, plus the number of trainable VarStore variables.
pub(crate) struct Fingerprint {
    tensors: BTreeMap<String, Print>,
    trainable: usize,
}

/// A module to fingerprint: its tensors are named `{label}:{name}`.
pub(crate) type Labelled<'a> = (&'static str, &'a dyn Parameters);

impl Fingerprint {
    /// Every variable of `vs` (as `vs:{name}`) and, if given, every tensor of `module`
    /// (as `module:{name}`).
    pub(crate) fn take<M: Parameters>(vs: &nn::VarStore, module: Option<&M>) -> Self {
        Self::take_all(vs, &labelled(module))
    }

    /// Every variable of `vs` and every tensor of each module (as `{label}:{name}`).
    pub(crate) fn take_all(vs: &nn::VarStore, modules: &[Labelled<'_>]) -> Self {
        Fingerprint {
            tensors: entries(vs, modules)
                .iter()
                .map(|(name, tensor)| (name.clone(), Print::of(tensor)))
                .collect(),
            trainable: vs.trainable_variables().len(),
        }
    }

    /// Every difference between this fingerprint and the tensors now there.
    pub(crate) fn differences<M: Parameters>(
        &self,
        vs: &nn::VarStore,
        module: Option<&M>,
    ) -> Vec<String> {
        self.differences_all(vs, &labelled(module))
    }

    /// Every difference between this fingerprint and the tensors of `vs` and `modules` now.
    /// A module left out (moved into a failed call, so gone) is not compared.
    pub(crate) fn differences_all(
        &self,
        vs: &nn::VarStore,
        modules: &[Labelled<'_>],
    ) -> Vec<String> {
        let now = entries(vs, modules);
        let mut out = Vec::new();
        let names: Vec<&String> = now.keys().collect();
        let compared = |name: &&String| {
            let label = name.split(':').next().unwrap_or_default();
            label == "vs" || modules.iter().any(|(l, _)| *l == label)
        };
        let was: Vec<&String> = self.tensors.keys().filter(compared).collect();
        if names != was {
            out.push(format!("tensor names changed: {was:?} -> {names:?}"));
        }
        for (name, print) in self.tensors.iter().filter(|(name, _)| compared(name)) {
            if let Some(tensor) = now.get(name) {
                out.extend(print.differences(name, tensor));
            }
        }
        let trainable = vs.trainable_variables().len();
        if trainable != self.trainable {
            out.push(format!(
                "trainable variables: {} -> {trainable}",
                self.trainable
            ));
        }
        out
    }
}

fn labelled<M: Parameters>(module: Option<&M>) -> Vec<Labelled<'_>> {
    module
        .map(|m| ("module", m as &dyn Parameters))
        .into_iter()
        .collect()
}

fn entries(vs: &nn::VarStore, modules: &[Labelled<'_>]) -> BTreeMap<String, Tensor> {
    let mut out: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(name, tensor)| (format!("vs:{name}"), tensor))
        .collect();
    for (label, module) in modules {
        for named in named_tensors(*module) {
            out.insert(format!("{label}:{}", named.name), named.tensor);
        }
    }
    out
}
