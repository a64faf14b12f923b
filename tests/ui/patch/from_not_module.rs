use tch_patch::patch;

#[patch(from = String)]
struct Tagged {}

#[patch(from = Vec<tch::Tensor>, module_t)]
struct Stack {}

fn main() {}
