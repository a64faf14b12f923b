// `name = "..."` sets `Patch::NAME` and the name the patch is known by at run time.
use tch::{nn, Device};
use tch_patch::{patch, Patch};

#[patch(from = nn::Linear, name = "lora.Linear")]
struct LoraLinear {}

#[patch(from = nn::Linear)]
struct Unnamed {}

fn main() {
    assert_eq!(<LoraLinear as Patch>::NAME, "lora.Linear");
    assert_eq!(<Unnamed as Patch>::NAME, "Unnamed");

    let vs = nn::VarStore::new(Device::Cpu);
    let patched = LoraLinear {
        base: nn::linear(vs.root(), 3, 2, Default::default()),
    };
    assert_eq!(tch_patch::dynamic::patch_name(&patched), Some("lora.Linear"));
    assert!(format!("{patched:?}").starts_with("lora.Linear { base: "));
}
