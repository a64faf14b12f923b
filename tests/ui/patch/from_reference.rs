use tch_patch::patch;

#[patch(from = &'static tch::nn::Linear)]
struct Borrowed {}

#[patch(from = Self)]
struct Itself {}

fn main() {}
