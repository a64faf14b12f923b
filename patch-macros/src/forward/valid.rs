//! Checks a `#[patch_forward]` block: one forward, with the signature of tch's traits.
use super::ast::ForwardBlock;
use crate::ctxt::Ctxt;
use crate::valid::is_tensor;
use syn::{FnArg, ImplItemFn, ReturnType, Type};

const FORWARD_SIG: &str = "fn forward(&self, xs: &Tensor) -> Tensor";
const FORWARD_T_SIG: &str = "fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor";

pub(super) fn check(cx: &Ctxt, block: &ForwardBlock) {
    let item = &block.item;
    if let Some((_, trait_path, _)) = &item.trait_ {
        cx.error_spanned_by(
            trait_path,
            "`#[patch_forward]` goes on an inherent impl block (`impl YourPatch { .. }`), \
             not on a trait impl: it writes the `nn::Module` impl for you",
        );
        return;
    }
    match (block.forwards.as_slice(), block.forwards_t.as_slice()) {
        ([], []) => cx.syn_error(syn::Error::new(
            block.attr_span,
            format!(
                "`#[patch_forward]` block has no forward: define `{FORWARD_SIG}` \
                 (or `{FORWARD_T_SIG}` for a forward that depends on train mode)"
            ),
        )),
        ([_, ..], [_, ..]) => cx.error_spanned_by(
            &block.forwards_t[0].sig.ident,
            "define either `forward` or `forward_t`, not both: `forward_t` is for a parent \
             whose forward depends on train mode (`#[patch(module_t)]`)",
        ),
        _ => {}
    }
    for duplicate in block
        .forwards
        .iter()
        .skip(1)
        .chain(block.forwards_t.iter().skip(1))
    {
        cx.error_spanned_by(
            &duplicate.sig.ident,
            "duplicate forward: a patch overrides its forward once; merge the two bodies",
        );
    }
    if let Some(forward) = block.forwards.first() {
        check_signature(cx, forward, false);
    }
    if let Some(forward) = block.forwards_t.first() {
        check_signature(cx, forward, true);
    }
}

fn check_signature(cx: &Ctxt, function: &ImplItemFn, with_train: bool) {
    let expected = if with_train {
        FORWARD_T_SIG
    } else {
        FORWARD_SIG
    };
    let sig = &function.sig;
    let wrong = |tokens: &dyn quote::ToTokens, what: &str| {
        cx.error_spanned_by(tokens, format!("{what}: a patch's forward is `{expected}`"))
    };
    if let Some(asyncness) = &sig.asyncness {
        wrong(asyncness, "forward cannot be `async`");
    }
    if let Some(unsafety) = &sig.unsafety {
        wrong(unsafety, "forward cannot be `unsafe`");
    }
    if !sig.generics.params.is_empty() {
        wrong(&sig.generics, "forward cannot have generic parameters");
    }
    let mut inputs = sig.inputs.iter().peekable();
    match inputs.peek() {
        Some(FnArg::Receiver(receiver)) => {
            if receiver.reference.is_none() || receiver.mutability.is_some() {
                wrong(receiver, "forward takes `&self`");
            }
            inputs.next();
        }
        // No receiver: the first argument is then read as the input, not reported twice.
        Some(first) => wrong(first, "forward takes `&self` first"),
        None => wrong(&sig.ident, "forward takes `&self`"),
    }
    match inputs.next() {
        Some(FnArg::Typed(arg)) if is_tensor_ref(&arg.ty) => {}
        Some(other) => wrong(other, "the input is a `&Tensor`"),
        None => wrong(&sig.ident, "forward takes an input `xs: &Tensor`"),
    }
    if with_train {
        match inputs.next() {
            Some(FnArg::Typed(arg)) if is_bool(&arg.ty) => {}
            Some(other) => wrong(other, "the train flag is a `bool`"),
            None => wrong(&sig.ident, "forward_t takes a `train: bool` flag"),
        }
    }
    for extra in inputs {
        wrong(extra, "forward takes no further arguments");
    }
    match &sig.output {
        ReturnType::Type(_, ty) if is_tensor(ty) => {}
        ReturnType::Type(_, ty) => wrong(ty, "forward returns a `Tensor`"),
        ReturnType::Default => wrong(&sig.ident, "forward returns a `Tensor`"),
    }
}

fn is_tensor_ref(ty: &Type) -> bool {
    matches!(ty, Type::Reference(reference)
        if reference.mutability.is_none() && is_tensor(&reference.elem))
}

fn is_bool(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("bool"))
}
