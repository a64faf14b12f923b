// A field that is neither a `Tensor` nor a module with tensors: the error names the field's
// type and says what to write.
use tch::Tensor;
use tch_patch::Parameters;

#[derive(Parameters)]
struct Model {
    weight: Tensor,
    name: String,
}

fn main() {}
