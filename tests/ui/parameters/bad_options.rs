// Every mistake of `#[derive(Parameters)]`'s attributes is reported at once, each at its
// token, and the struct is still defined: its later uses give no further error.
use tch::{nn, Tensor};
use tch_patch::Parameters;

#[derive(Parameters)]
#[parameters(frozen)]
struct Model {
    #[param(frozen)]
    weight: Tensor,
    #[buffer]
    child: nn::Linear,
    #[buffer(persistent)]
    running_mean: Tensor,
}

#[derive(Parameters)]
enum Choice {
    A(nn::Linear),
}

fn uses(model: &Model) -> &Tensor {
    let _ = &model.child;
    let _ = &model.running_mean;
    &model.weight
}

fn main() {}
