//! Checks a parsed patch struct; every problem is recorded with the span of the token at fault.
use crate::ast::PatchStruct;
use crate::attr::FieldRole;
use crate::ctxt::Ctxt;
use proc_macro2::Span;
use syn::Type;

/// The name of the field that holds the parent.
pub(crate) const BASE_FIELD: &str = "base";

pub(crate) fn check(cx: &Ctxt, patch: &PatchStruct) {
    check_from(cx, patch);
    for field in &patch.fields {
        if field.ident == BASE_FIELD {
            cx.error_spanned_by(
                &field.ident,
                "`base` is the field `#[patch]` adds to hold the parent module; \
                 rename this field (the parent is reachable as `self.base` or `self.base()`)",
            );
        }
        if field.role != FieldRole::Plain && !is_tensor(&field.ty) {
            let attr = if field.role == FieldRole::Param {
                "param"
            } else {
                "buffer"
            };
            cx.error_spanned_by(
                &field.ty,
                format!(
                    "`#[{attr}]` marks a tensor the patch adds, so the field must be a \
                     `Tensor`; remove `#[{attr}]` to keep a plain field of another type"
                ),
            );
        }
    }
}

fn check_from(cx: &Ctxt, patch: &PatchStruct) {
    let Some(from) = &patch.args.from else {
        cx.syn_error(syn::Error::new(
            Span::call_site(),
            "missing `from = ParentType`: say which module this patch wraps, \
             e.g. `#[patch(from = nn::Linear)]`",
        ));
        return;
    };
    if names_the_struct(from, patch) {
        cx.error_spanned_by(
            from,
            "a patch cannot wrap itself: `from` names the parent module type, \
             e.g. `#[patch(from = nn::Linear)]`",
        );
    }
    if matches!(from, Type::Reference(_)) {
        cx.error_spanned_by(
            from,
            "a patch takes its parent by value (it moves the tensor handles, never copies \
             them): write the module type without `&`",
        );
    }
}

fn names_the_struct(ty: &Type, patch: &PatchStruct) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.is_ident("Self") || path.path.is_ident(&patch.ident)
        }
        _ => false,
    }
}

/// `Tensor`, `tch::Tensor` or `::tch::Tensor`. A type alias under another name is not seen
/// through: the error then asks for the plain name.
pub(crate) fn is_tensor(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Tensor" && last.arguments.is_none()),
        Type::Group(group) => is_tensor(&group.elem),
        Type::Paren(paren) => is_tensor(&paren.elem),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_tensor;

    #[test]
    fn recognises_tensor_paths_only() {
        for good in ["Tensor", "tch::Tensor", "::tch::Tensor", "(Tensor)"] {
            assert!(is_tensor(&syn::parse_str(good).unwrap()), "{good}");
        }
        for bad in [
            "Vec<Tensor>",
            "&Tensor",
            "Option<Tensor>",
            "f32",
            "Tensor<f32>",
        ] {
            assert!(!is_tensor(&syn::parse_str(bad).unwrap()), "{bad}");
        }
    }
}
