//! Unit tests of [`LoraEmbedding`](super::LoraEmbedding).
use super::{BuildPatch, LoraConfig, LoraEmbedding};
use crate::error::PatchError;
use crate::patch_trait::Patch;
use crate::varstore::unpatch;
use tch::{nn, nn::Module, Device, Kind, Tensor};

const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);

fn config(rank: i64) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 6.0,
        ..Default::default()
    }
}

/// A LoRA of rank 3 on a `[32, 8]` table at `emb`, with `A` made non-zero.
fn patched(vs: &nn::VarStore, table: nn::EmbeddingConfig) -> LoraEmbedding {
    let path = vs.root() / "emb";
    let lora = LoraEmbedding::new(nn::embedding(&path, 32, 8, table), &path, &config(3)).unwrap();
    tch::no_grad(|| {
        lora.lora_embedding_a()
            .shallow_clone()
            .copy_(&Tensor::randn([3, 32], FLOAT))
    });
    lora
}

fn ids() -> Tensor {
    Tensor::from_slice(&[0i64, 3, 3, 17, 31, 5]).reshape([2, 3])
}

#[test]
fn starts_as_peft_does_and_adds_the_lookup_of_a_transposed() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "emb";
    let lora = LoraEmbedding::new(
        nn::embedding(&path, 32, 8, Default::default()),
        &path,
        &config(3),
    )
    .unwrap();
    assert_eq!(lora.lora_embedding_a().size(), [3, 32]);
    assert_eq!(lora.lora_embedding_b().size(), [8, 3]);
    assert_eq!(
        lora.lora_embedding_a()
            .abs()
            .sum(Kind::Float)
            .double_value(&[]),
        0.0
    );
    assert!(
        lora.lora_embedding_b()
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            > 0.0
    );
    assert_eq!(lora.scaling(), 2.0);
    assert!(lora.forward(&ids()).equal(&lora.base().forward(&ids())));
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.contains(&"emb.lora_embedding_a".to_owned()));
    assert!(names.contains(&"emb.lora_embedding_b".to_owned()));

    let lora = patched(&nn::VarStore::new(Device::Cpu), Default::default());
    let table = &lora.ws + lora.delta_weight().unwrap();
    let expected = Tensor::embedding(&table, &ids(), -1, false, false);
    assert!(lora.forward(&ids()).allclose(&expected, 1e-5, 1e-5, false));
}

#[test]
fn gradients_reach_exactly_a_and_b() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lora = patched(&vs, Default::default());
    lora.forward(&ids()).square().sum(Kind::Float).backward();
    let mut with_grad: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.grad().defined())
        .map(|(name, _)| name)
        .collect();
    with_grad.sort();
    assert_eq!(with_grad, ["emb.lora_embedding_a", "emb.lora_embedding_b"]);
    assert!(
        lora.ws.requires_grad(),
        "the table's flag is left as it was"
    );
    for tensor in [&lora.lora_embedding_a(), &lora.lora_embedding_b()] {
        assert!(tensor.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}

#[test]
fn the_padding_column_of_a_gets_no_gradient_as_in_peft() {
    let vs = nn::VarStore::new(Device::Cpu);
    let padded = nn::EmbeddingConfig {
        padding_idx: 3,
        ..Default::default()
    };
    let lora = patched(&vs, padded);
    lora.forward(&ids()).sum(Kind::Float).backward();
    let grad = lora.lora_embedding_a().grad();
    assert_eq!(
        grad.select(1, 3).abs().sum(Kind::Float).double_value(&[]),
        0.0
    );
    assert!(grad.select(1, 17).abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn disabled_is_the_base_bit_for_bit_and_merged_is_disabled_first() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut lora = patched(&vs, Default::default());
    let base = lora.base().forward(&ids());
    assert!(!lora.forward(&ids()).equal(&base));
    lora.set_enabled(false).unwrap();
    assert!(lora.forward(&ids()).equal(&base));
    lora.set_enabled(true).unwrap();
    lora.merge().unwrap();
    lora.set_enabled(false).unwrap();
    assert!(!lora.is_merged() && !lora.is_enabled());
    assert!(lora.forward(&ids()).equal(&lora.base().forward(&ids())));
    let refused = lora.merge().unwrap_err();
    assert!(
        matches!(refused, PatchError::MergeState { .. }),
        "{refused}"
    );
    lora.set_enabled(true).unwrap();
    assert!(!lora.forward(&ids()).equal(&base));
}

#[test]
fn merge_then_unmerge_restores_the_table_within_one_rounding() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut lora = patched(&vs, Default::default());
    let before = lora.ws.detach().copy();
    let unmerged = lora.forward(&ids());
    let (ptr, delta) = (lora.ws.data_ptr(), lora.delta_weight().unwrap());
    lora.merge().unwrap();
    lora.merge().unwrap(); // once only
    assert_eq!(lora.ws.data_ptr(), ptr);
    assert!(lora.forward(&ids()).allclose(&unmerged, 1e-5, 1e-5, false));
    // Training after the merge does not change what unmerging subtracts.
    let _ = tch::no_grad(|| lora.lora_embedding_b().shallow_clone().fill_(7.0));
    lora.unmerge().unwrap();
    assert_eq!(lora.ws.data_ptr(), ptr);
    let bound = (before.abs() + delta.abs()) * 2f64.powi(-23);
    let error = (&lora.ws - &before).abs();
    assert!(bool::try_from(error.le_tensor(&bound).all()).unwrap());
}

#[test]
fn undo_gives_back_the_very_tensors_of_the_base() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "emb";
    let emb = nn::embedding(&path, 32, 8, Default::default());
    let ptr = emb.ws.data_ptr();
    let lora = LoraEmbedding::new(emb, &path, &config(2)).unwrap();
    assert_eq!(vs.variables().len(), 3);
    let emb = unpatch(lora, &vs);
    assert_eq!(emb.ws.data_ptr(), ptr);
    assert_eq!(
        vs.variables().into_keys().collect::<Vec<_>>(),
        ["emb.weight"]
    );
    let lora = LoraEmbedding::new(emb, &path, &config(2)).unwrap();
    assert_eq!(lora.into_base().ws.data_ptr(), ptr);

    let mut lora = patched(&nn::VarStore::new(Device::Cpu), Default::default());
    let before = lora.ws.detach().copy();
    lora.merge().unwrap();
    let table = lora.unload().unwrap();
    assert!(table.ws.allclose(&before, 1e-6, 1e-6, false));
    let lora = patched(&nn::VarStore::new(Device::Cpu), Default::default());
    let before = lora.ws.detach().copy();
    let delta = lora.delta_weight().unwrap();
    let merged = lora.merge_and_unload().unwrap();
    assert!(merged.ws.allclose(&(before + delta), 1e-6, 1e-6, false));
}

#[test]
fn bad_configs_and_tables_are_refused_with_the_var_store_unchanged() {
    let bad = [
        LoraConfig {
            rank: 0,
            ..Default::default()
        },
        LoraConfig {
            dropout: 1.5,
            ..Default::default()
        },
    ];
    for config in bad {
        let vs = nn::VarStore::new(Device::Cpu);
        let path = vs.root() / "emb";
        let emb = nn::embedding(&path, 32, 8, Default::default());
        let failed = LoraEmbedding::build(emb, &path, &config).unwrap_err();
        assert!(
            matches!(failed.error, PatchError::PatchString(_)),
            "{config:?}: {}",
            failed.error
        );
        assert_eq!(failed.base.ws.size(), [32, 8], "the base comes back");
        assert_eq!(vs.variables().len(), 1);
    }

    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "emb";
    let mut emb = nn::embedding(&path, 32, 8, Default::default());
    emb.ws = Tensor::zeros([32, 8], (Kind::Int64, Device::Cpu));
    let error = LoraEmbedding::new(emb, &path, &config(2)).unwrap_err();
    assert!(matches!(error, PatchError::KindMismatch { .. }), "{error}");
    assert_eq!(vs.variables().len(), 1);

    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "emb";
    let emb = nn::embedding(&path, 32, 8, Default::default());
    let _taken = path.zeros("lora_embedding_b", &[1]);
    let failed = LoraEmbedding::build(emb, &path, &config(2)).unwrap_err();
    assert!(
        matches!(&failed.error, PatchError::NameTaken { name } if name == "emb.lora_embedding_b"),
        "{}",
        failed.error
    );
    assert_eq!(vs.variables().len(), 2, "nothing registered");
}

#[test]
fn rslora_scales_by_the_square_root_of_the_rank() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "emb";
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        use_rslora: true,
        ..Default::default()
    };
    let lora = LoraEmbedding::new(
        nn::embedding(&path, 8, 2, Default::default()),
        &path,
        &config,
    )
    .unwrap();
    assert_eq!(lora.scaling(), 4.0);
    assert_eq!(<LoraEmbedding as Patch>::NAME, "lora");
}
