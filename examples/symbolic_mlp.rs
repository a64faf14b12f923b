//! The PyGlove tutorial (reference 003), step by step, on a tch model: build
//! `Sequential(Linear(4, 8), ReLU(), Linear(8, 1))`, print it with its hyperparameters,
//! traverse and query it, clone + rebind + diff, patch it by rule and by patch string, then
//! search over activations and LoRA ranks, training each candidate briefly.
//!
//! `cargo run --example symbolic_mlp`
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::prelude::*;
use tch_patch::{layers, registry::Registry, search::SearchSpace, tree::*};

/// The tutorial's MLP; its Linears sit in slots, so LoRA can patch them too.
fn mlp(vs: &nn::VarStore) -> layers::Sequential {
    let p = vs.root();
    layers::seq()
        .add(Slot::new(nn::linear(&p / 0, 4, 8, Default::default())))
        .add(layers::Relu)
        .add(Slot::new(nn::linear(&p / 2, 8, 1, Default::default())))
}

/// A few steps of Adam on `y = sin(x0) + x1 * x2`; the last loss.
fn train(model: &layers::Sequential, vs: &nn::VarStore, steps: usize) -> f64 {
    tch::manual_seed(0);
    let xs = Tensor::randn([256, 4], (Kind::Float, Device::Cpu));
    let ys = xs.select(1, 0).sin() + xs.select(1, 1) * xs.select(1, 2);
    let mut adam = nn::Adam::default().build(vs, 1e-2).expect("an optimizer");
    let mut loss = 0.0;
    for _ in 0..steps {
        let error = model.forward_t(&xs, true).squeeze_dim(1) - &ys;
        let mse = error.square().mean(Kind::Float);
        adam.backward_step(&mse);
        loss = mse.double_value(&[]);
    }
    loss
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(42);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = mlp(&vs);

    println!(
        "1. the model, with its hyperparameters\n{}",
        print_tree(&model)
    );

    println!("2. traverse (pg.traverse)");
    for (path, value) in model.traverse() {
        println!("   {path} = {value}");
    }

    let linears = model.query(|node| node.is::<nn::Linear>());
    let wide = model.query(|node| node.hyperparameter("in_features") == Some(HyperValue::Int(4)));
    println!("3. query: Linears {linears:?}; in_features == 4: {wide:?}\n");

    let other = nn::VarStore::new(Device::Cpu);
    let mut wider = model.clone_into(&other.root(), CloneMode::Deep)?;
    wider.rebind(&other, &[("0.in_features", 10.into())])?;
    println!(
        "4. clone + rebind(0.in_features=10) + diff\n{}",
        diff(&model, &wider)
    );
    let half = wider.rebind(&other, &[("0.out_features", 16.into())]);
    println!("   a half rebind is refused: {}\n", half.unwrap_err());

    apply_patch_string(&mut model, &vs, "prelu_activation")?;
    println!("5. prelu_activation\n{}", print_tree(&model));
    model.undo_nodes_from(&vs);

    let refused = apply_patch_string(&mut model, &vs, "dropout_before_linear(p=1.5)");
    println!("6. dropout_before_linear(p=1.5): {}", refused.unwrap_err());
    apply_patch_string(&mut model, &vs, "dropout_before_linear(p=0.1)")?;
    println!("   dropout_before_linear(p=0.1)\n{}", print_tree(&model));
    model.undo_nodes_from(&vs);

    let names: Vec<&str> = Registry::global()?.names().collect();
    println!("7. registered patches: {}\n", names.join(", "));

    apply_patch_string(
        &mut model,
        &vs,
        r#"gelu_activation; lora(rank=2, targets="*")"#,
    )?;
    println!("8. two patches from one string\n{}", print_tree(&model));

    let space = SearchSpace::parse(
        r#"one_of(prelu_activation, gelu_activation, ""); lora(rank=one_of(2, 4), targets="*")"#,
    )?;
    println!("9. a search over {} candidates", space.count().unwrap_or(0));
    let mut best: Option<(f64, String)> = None;
    for candidate in space.enumerate()? {
        tch::manual_seed(42);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut model = mlp(&vs);
        apply_patch_string(&mut model, &vs, &candidate.patches)?;
        let loss = train(&model, &vs, 60);
        println!("   {candidate}: loss {loss:.4}");
        if best.as_ref().is_none_or(|(b, _)| loss < *b) {
            best = Some((loss, candidate.to_string()));
        }
    }
    if let Some((loss, choice)) = best {
        println!("   best: {choice} (loss {loss:.4})");
    }
    Ok(())
}
