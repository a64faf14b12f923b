use tch_patch::patch;

// A near miss is suggested and read as the option it resembles.
#[patch(frm = tch::nn::Linear)]
struct Traced {}

#[patch(from = tch::nn::BatchNorm, module)]
struct TrainAware {}

// An unknown option with no near miss.
#[patch(from = tch::nn::Linear, parent = tch::nn::Linear)]
struct Parent {}

fn main() {}
