//! A patch implements its parent's own traits by delegation (`#[delegatable]`,
//! `#[patch(delegate(..))]`, `#[delegate_rest]`).
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{delegatable, delegate_rest, named_tensors, patch, Parameters};

mod traits {
    use tch_patch::delegatable;

    // `pub` on purpose: a public trait's delegation macro is exported, which is what this
    // module checks.
    #[allow(unreachable_pub)]
    #[delegatable]
    pub trait Scale<T> {
        fn scale(&self, by: T) -> f64;
    }
}
use traits::Scale;

#[delegatable]
pub trait Describe {
    type Out: std::fmt::Debug;
    const LAYERS: usize;
    fn name(&self) -> String;
    fn out(&self) -> Self::Out;
    fn convert<U: Into<f64>>(&self, value: U) -> f64;
    fn greeting(&self) -> String {
        format!("I am {}", self.name())
    }
    fn bump(&mut self) -> usize;
    fn consume(self) -> String
    where
        Self: Sized;
    fn make_label(prefix: &str) -> String
    where
        Self: Sized;
}

#[derive(Debug, Parameters)]
pub struct MyBlock {
    fc: nn::Linear,
    #[param(skip)]
    bumps: usize,
}

impl Module for MyBlock {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc.forward(xs)
    }
}

impl Describe for MyBlock {
    type Out = i64;
    const LAYERS: usize = 1;
    fn name(&self) -> String {
        "block".into()
    }
    fn out(&self) -> i64 {
        self.fc.ws.size()[0]
    }
    fn convert<U: Into<f64>>(&self, value: U) -> f64 {
        value.into() * 2.0
    }
    fn greeting(&self) -> String {
        "hello from the block".into()
    }
    fn bump(&mut self) -> usize {
        self.bumps += 1;
        self.bumps
    }
    fn consume(self) -> String {
        format!("consumed {}", self.bumps)
    }
    fn make_label(prefix: &str) -> String {
        format!("{prefix}-block")
    }
}

impl Scale<f32> for MyBlock {
    fn scale(&self, by: f32) -> f64 {
        f64::from(by) * 10.0
    }
}

/// An object-safe trait, for `Box<dyn ..>`.
#[delegatable]
pub trait Named {
    fn label(&self) -> String;
}
impl Named for MyBlock {
    fn label(&self) -> String {
        "label".into()
    }
}

#[patch(from = MyBlock, delegate(Describe, traits::Scale<f32>, Named))]
pub struct Delegated {}

#[patch(from = MyBlock, delegate(Scale<f32>))]
pub struct Overridden {}

#[delegate_rest]
impl Describe for Overridden {
    fn name(&self) -> String {
        format!("patched {}", self.base.name())
    }
}

/// A patch of a patch delegates to the first patch.
#[patch(from = Delegated, delegate(Describe, Named))]
pub struct Twice {}

/// A generic patch: delegation wherever the parent implements the trait.
#[patch(from = L, delegate(Named))]
pub struct Generic<L>
where
    L: Module + std::fmt::Debug, {}

fn block(vs: &nn::VarStore) -> MyBlock {
    MyBlock {
        fc: nn::linear(vs.root() / "fc", 4, 3, Default::default()),
        bumps: 0,
    }
}

fn describe(d: &impl Describe) -> String {
    format!("{} / {}", d.name(), d.greeting())
}

#[test]
fn every_item_delegates() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut patched = Delegated { base: block(&vs) };
    assert_eq!(describe(&patched), "block / hello from the block");
    assert_eq!(patched.out(), 3);
    assert_eq!(<Delegated as Describe>::LAYERS, 1);
    let out: <Delegated as Describe>::Out = 5i64;
    assert_eq!(out, 5);
    assert_eq!(patched.convert(3u8), 6.0);
    assert_eq!(patched.bump(), 1);
    assert_eq!(patched.bump(), 2);
    assert_eq!(patched.base.bumps, 2);
    assert_eq!(patched.scale(2.0f32), 20.0);
    assert_eq!(<Delegated as Describe>::make_label("x"), "x-block");
    let boxed: Box<dyn Named> = Box::new(Delegated { base: block(&vs) });
    assert_eq!(boxed.label(), "label");
    assert_eq!(patched.consume(), "consumed 2");
}

#[test]
fn forward_and_names_are_the_parents() {
    let vs = nn::VarStore::new(Device::Cpu);
    let parent = block(&vs);
    let xs = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
    let expected = parent.forward(&xs);
    let names: Vec<_> = named_tensors(&parent).into_iter().map(|t| t.name).collect();
    let patched = Delegated { base: parent };
    assert!(patched.forward(&xs).equal(&expected));
    let patched_names: Vec<_> = named_tensors(&patched)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(patched_names, names);
}

#[test]
fn an_override_changes_one_method_only() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut patched = Overridden { base: block(&vs) };
    assert_eq!(patched.name(), "patched block");
    // The parent overrides `greeting`; its version is delegated, not the trait's default.
    assert_eq!(patched.greeting(), "hello from the block");
    assert_eq!(patched.out(), 3);
    assert_eq!(patched.bump(), 1);
    assert_eq!(patched.scale(1.0f32), 10.0);
    assert_eq!(<Overridden as Describe>::make_label("y"), "y-block");
}

#[test]
fn patches_of_patches_and_generic_patches_delegate() {
    let vs = nn::VarStore::new(Device::Cpu);
    let twice = Twice {
        base: Delegated { base: block(&vs) },
    };
    assert_eq!(describe(&twice), "block / hello from the block");
    assert_eq!(twice.label(), "label");
    let generic = Generic { base: block(&vs) };
    assert_eq!(generic.label(), "label");
    let dynamic: Vec<Box<dyn Named>> = vec![Box::new(twice), Box::new(generic)];
    assert!(dynamic.iter().all(|named| named.label() == "label"));
}
