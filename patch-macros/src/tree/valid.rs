//! Checks a parsed `#[derive(ModuleTree)]` struct; each problem carries its span.
use super::ast::TreeModel;
use crate::ctxt::Ctxt;
use crate::valid::is_tensor;
use std::collections::HashMap;

pub(super) fn check(cx: &Ctxt, model: &TreeModel) {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for field in &model.fields {
        if let (Some(_), Some(rename)) = (field.skip, &field.rename) {
            cx.error_spanned_by(
                rename,
                "a skipped field has no path, so `rename` means nothing here; remove one of them",
            );
        }
        if field.skip.is_some() {
            continue;
        }
        if let (Some(span), false) = (field.buffer, is_tensor(&field.ty)) {
            cx.syn_error(syn::Error::new(
                span,
                "`#[buffer]` marks a `Tensor` field as a buffer; a child module's buffers are \
                 declared by the child itself",
            ));
        }
        if field.name.is_empty() || field.name.contains('.') {
            cx.syn_error(syn::Error::new(
                field.name_span,
                format!(
                    "`{}` cannot be a path segment: a name is non-empty and has no `.` \
                     (dots join the segments of a path)",
                    field.name
                ),
            ));
        }
        if seen.insert(&field.name, ()).is_some() {
            cx.syn_error(syn::Error::new(
                field.name_span,
                format!(
                    "two fields are named `{}` in the tree; rename one with \
                     `#[tree(rename = \"...\")]`",
                    field.name
                ),
            ));
        }
    }
}
