//! A hypernetwork: net 1 (a small MLP) reads a task vector and writes the weights of net 2
//! (an `nn::Linear`); net 2's loss on the task trains net 1, through net 2's weights.
//!
//! `Mutable` lets net 1's output be assigned to net 2's parameters with autograd recording
//! it (torch-mutable-modules' `to_mutable_module`). Net 2's own leaves are never trained.
//!
//! Run with `cargo run --example hypernetwork`.
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_patch::mutable::Mutable;
use tch_patch::prelude::*;

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Net 1: task vector (4) -> hidden (32) -> net 2's 6 weights and 2 biases.
#[derive(Debug)]
struct HyperNet {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Module for HyperNet {
    fn forward(&self, z: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(z).relu())
    }
}

fn main() -> Result<(), PatchError> {
    tch::manual_seed(0);
    let vs1 = nn::VarStore::new(Device::Cpu);
    let net1 = HyperNet {
        fc1: nn::linear(vs1.root() / "fc1", 4, 32, Default::default()),
        fc2: nn::linear(vs1.root() / "fc2", 32, 8, Default::default()),
    };
    let vs2 = nn::VarStore::new(Device::Cpu);
    let mut net2 = Mutable::new(nn::linear(vs2.root(), 3, 2, Default::default()))?;
    let mut opt = nn::Adam::default()
        .build(&vs1, 1e-2)
        .map_err(PatchError::torch("building Adam"))?;

    // Tasks: linear maps whose weights depend on the task vector through a hidden matrix.
    let truth = Tensor::randn([8, 4], CPU);
    let tasks: Vec<Tensor> = (0..4).map(|_| Tensor::randn([4], CPU)).collect();
    let xs = Tensor::randn([16, 3], CPU);

    for step in 0..=100 {
        let z = &tasks[step % tasks.len()];
        let target = {
            let p = truth.mv(z);
            xs.matmul(&p.narrow(0, 0, 6).view([2, 3]).tr()) + p.narrow(0, 6, 2)
        };
        // Net 1 writes net 2's parameters; the graph runs through the assignment.
        let predicted = net1.forward(z);
        net2.set("weight", &predicted.narrow(0, 0, 6).view([2, 3]))?;
        net2.set("bias", &predicted.narrow(0, 6, 2))?;
        let loss = (net2.forward(&xs) - target).square().mean(Kind::Float);
        opt.backward_step(&loss);
        if step % 10 == 0 {
            println!("step {step:3}  loss {:.4}", loss.double_value(&[]));
        }
    }
    let untouched = vs2.variables().values().all(|leaf| !leaf.grad().defined());
    println!("net 2's own parameters received no gradient: {untouched}");
    Ok(())
}
