use tch_patch::patch;

#[patch(from = tch::nn::Linear)]
enum Either {
    Left,
    Right,
}

fn main() {}
