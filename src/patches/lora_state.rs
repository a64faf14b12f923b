//! What [`Lora`](super::Lora) and [`LoraEmbedding`](super::LoraEmbedding) share: the config,
//! the enabled flag, and merging the update into the base weight in place and back.
use super::LoraConfig;
use crate::error::{PatchError, Result};
use tch::Tensor;

/// A LoRA's state beside its tensors.
#[derive(Debug)]
pub(super) struct LoraState {
    pub(super) config: LoraConfig,
    pub(super) scaling: f64,
    enabled: bool,
    /// Copies of `A` and `B` as they were merged, while merged: unmerging subtracts the
    /// very delta that was added, whatever training did to the VarStore's `A` and `B`.
    merged: Option<(Tensor, Tensor)>,
}

impl LoraState {
    pub(super) fn new(config: &LoraConfig) -> Self {
        LoraState {
            config: config.clone(),
            scaling: config.scaling(),
            enabled: true,
            merged: None,
        }
    }

    pub(super) fn is_merged(&self) -> bool {
        self.merged.is_some()
    }

    pub(super) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether forward adds the update: enabled and not merged.
    pub(super) fn adds_update(&self) -> bool {
        self.enabled && self.merged.is_none()
    }

    /// Adds `delta(A, B)` (of copies of `a` and `b`, in the weight's layout) into `weight`
    /// in place (same tensor, same storage). Does nothing if merged; an error, changing
    /// nothing, if disabled.
    pub(super) fn merge(
        &mut self,
        weight: &Tensor,
        (a, b): (&Tensor, &Tensor),
        delta: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        if self.merged.is_some() {
            return Ok(());
        }
        if !self.enabled {
            return Err(PatchError::MergeState {
                message: "cannot merge a disabled LoRA adapter: enable it first".into(),
            });
        }
        let (a, b) = tch::no_grad(|| (a.detach().copy(), b.detach().copy()));
        let delta = delta(&a, &b)?;
        tch::no_grad(|| weight.shallow_clone().f_add_(&delta).map(drop)).map_err(
            PatchError::torch("merging the LoRA update into the base weight"),
        )?;
        self.merged = Some((a, b));
        Ok(())
    }

    /// Subtracts the merged delta from `weight` in place. Does nothing if not merged.
    pub(super) fn unmerge(
        &mut self,
        weight: &Tensor,
        delta: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let Some((a, b)) = &self.merged else {
            return Ok(());
        };
        // The copies stay where and what they were at merge time (they are not the
        // VarStore's, so `VarStore::set_device` or `half` does not reach them): the delta
        // goes to the weight's device, and the in-place subtraction rounds it to its dtype.
        let delta = delta(a, b)?
            .f_to_device(weight.device())
            .map_err(PatchError::torch(
                "moving the merged LoRA update to the weight",
            ))?;
        tch::no_grad(|| weight.shallow_clone().f_sub_(&delta).map(drop)).map_err(
            PatchError::torch("unmerging the LoRA update from the base weight"),
        )?;
        self.merged = None;
        Ok(())
    }

    /// Enables or disables; disabling unmerges first.
    pub(super) fn set_enabled(
        &mut self,
        enabled: bool,
        weight: &Tensor,
        delta: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        if !enabled {
            self.unmerge(weight, delta)?;
        }
        self.enabled = enabled;
        Ok(())
    }
}
