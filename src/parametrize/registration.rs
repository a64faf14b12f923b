//! A transform's own tensors in the VarStore: registered under the module's path when a
//! transform is added, taken out again when the parametrization is removed.
use crate::error::Result;
use crate::params::TensorRole;
use crate::varstore::{check_registrable, forget_tensors, register_tensors};
use tch::{nn, Tensor};

/// The VarStore path and the last name part of a dotted name (`a.b.weight_g` at `path`
/// is `weight_g` at `path / "a" / "b"`): tch's variable names cannot contain dots.
fn split<'p, 'n>(path: &nn::Path<'p>, dotted: &'n str) -> (nn::Path<'p>, &'n str) {
    match dotted.rsplit_once('.') {
        None => (path.clone(), dotted),
        Some((parents, leaf)) => (
            parents.split('.').fold(path.clone(), |p, part| p.sub(part)),
            leaf,
        ),
    }
}

/// Registers `tensors` (dotted names relative to `path`) all or none: every name is checked
/// before the first is added.
pub(super) fn register(path: &nn::Path, tensors: Vec<(&str, Tensor, TensorRole)>) -> Result<()> {
    for (name, tensor, role) in &tensors {
        let (sub, leaf) = split(path, name);
        check_registrable(&sub, &[(leaf, tensor.shallow_clone(), *role)])?;
    }
    for (name, tensor, role) in tensors {
        let (sub, leaf) = split(path, name);
        // The VarStore's handle shares the tensor (and its `requires_grad`) with ours.
        let [_shared] = register_tensors(&sub, [(leaf, tensor, role)])?;
    }
    Ok(())
}

/// Takes `tensors` (the same tensors, not equal values) out of `vs`: its named variables
/// and its trainable list. Other variables are untouched.
pub(super) fn forget(vs: &nn::VarStore, tensors: &[Tensor]) {
    forget_tensors(&vs.variables_, tensors);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PatchError;
    use tch::{Device, Kind};

    #[test]
    fn registers_dotted_names_all_or_none_and_forgets_them() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root() / "net";
        let _fc = nn::linear(&root / "fc1", 2, 2, Default::default());
        let zeros = || Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let taken = register(
            &root,
            vec![
                ("fc1.weight_g", zeros(), TensorRole::Param),
                ("fc1.weight", zeros(), TensorRole::Param),
            ],
        );
        assert!(matches!(taken, Err(PatchError::NameTaken { name }) if name == "net.fc1.weight"));
        assert_eq!(vs.variables().len(), 2, "nothing registered");

        let gain = zeros();
        register(
            &root,
            vec![("fc1.weight_g", gain.shallow_clone(), TensorRole::Param)],
        )
        .unwrap();
        assert!(gain.requires_grad());
        assert!(vs.variables().contains_key("net.fc1.weight_g"));
        assert_eq!(vs.trainable_variables().len(), 3);

        forget(&vs, &[gain]);
        assert!(!vs.variables().contains_key("net.fc1.weight_g"));
        assert_eq!(vs.trainable_variables().len(), 2);
    }
}
