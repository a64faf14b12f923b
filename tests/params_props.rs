//! Property tests of tensor names: paths compose like PyTorch's, every visitor sees the
//! same names in the same order, and `visit_mut` round trips leave every tensor in place.
use proptest::prelude::*;
use tch::{nn, Device, Tensor};
use tch_patch::{named_tensors, params::named_tensors_with_prefix, params::VisitorMut, Parameters};

#[derive(Parameters)]
struct Block {
    proj: nn::Linear,
    norm: Option<nn::LayerNorm>,
}

#[derive(Parameters)]
struct Stack {
    blocks: Vec<Block>,
    extra: [Tensor; 2],
}

fn build(vs: &nn::VarStore, widths: &[(i64, bool, bool)]) -> Stack {
    let root = vs.root();
    let blocks = widths
        .iter()
        .enumerate()
        .map(|(i, &(width, bias, norm))| {
            let path = &root / "blocks" / i;
            let config = nn::LinearConfig {
                bias,
                ..Default::default()
            };
            Block {
                proj: nn::linear(&path / "proj", width, width, config),
                norm: norm.then(|| nn::layer_norm(&path / "norm", vec![width], Default::default())),
            }
        })
        .collect();
    let extra = [
        (&root / "extra").zeros("0", &[1]),
        (&root / "extra").zeros("1", &[2]),
    ];
    Stack { blocks, extra }
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}|[0-9]{1,2}"
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn names_match_the_var_store_and_the_prefix_composes(
        widths in prop::collection::vec((1i64..5, any::<bool>(), any::<bool>()), 0..5),
        prefix in segment(),
    ) {
        let vs = nn::VarStore::new(Device::Cpu);
        let stack = build(&vs, &widths);
        let mut ours: Vec<String> = named_tensors(&stack).into_iter().map(|t| t.name).collect();
        let prefixed: Vec<String> =
            named_tensors_with_prefix(&stack, &prefix).into_iter().map(|t| t.name).collect();
        let expected: Vec<String> = ours.iter().map(|n| format!("{prefix}.{n}")).collect();
        prop_assert_eq!(prefixed, expected);
        ours.sort();
        let mut theirs: Vec<String> = vs.variables().into_keys().collect();
        theirs.sort();
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn visit_mut_sees_what_visit_sees_and_a_round_trip_keeps_every_tensor(
        widths in prop::collection::vec((1i64..5, any::<bool>(), any::<bool>()), 0..5),
    ) {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut stack = build(&vs, &widths);
        let before = named_tensors(&stack);
        // Take every tensor out and put a shallow handle back: the same tensors, by identity.
        let mut seen = Vec::new();
        let mut swap = |name: &str, tensor: &mut Tensor, _role| {
            seen.push(name.to_owned());
            let taken = std::mem::replace(tensor, Tensor::new());
            *tensor = taken.shallow_clone();
        };
        stack.visit_mut(&mut VisitorMut::new("", &mut swap));
        let after = named_tensors(&stack);
        prop_assert_eq!(seen, before.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        prop_assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            prop_assert_eq!(&b.name, &a.name);
            prop_assert!(b.tensor.is_set_to(&a.tensor), "{} changed identity", b.name);
        }
    }
}
