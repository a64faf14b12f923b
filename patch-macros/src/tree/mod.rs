//! `#[derive(ModuleTree)]`: gives a model struct's modules their paths.
//! Parsed in `ast.rs`, checked in `valid.rs`, generated in `expand.rs`.
mod ast;
mod expand;
mod valid;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(input)?;
    let cx = Ctxt::new();
    let model = ast::TreeModel::from_input(&cx, &input);
    if let Some(model) = &model {
        valid::check(&cx, model);
    }
    cx.check()?;
    Ok(expand::expand(
        &model.expect("no errors, so the struct was read"),
    ))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn errors(input: proc_macro2::TokenStream) -> Vec<String> {
        match super::derive(input) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_struct_expands_to_visits_in_field_order() {
        let out = super::derive(quote! {
            struct Model {
                embed: Slot<Embedding>,
                #[tree(skip)]
                scratch: i64,
                #[param(rename = "lm_head")]
                head: Slot<Linear>,
            }
        })
        .unwrap()
        .to_string();
        assert!(
            out.contains("visitor . child (\"embed\" , & self . embed)"),
            "{out}"
        );
        assert!(
            out.contains("visitor . child (\"lm_head\" , & self . head)"),
            "{out}"
        );
        assert!(!out.contains("scratch"), "{out}");
    }

    #[test]
    fn every_mistake_is_reported_in_one_pass() {
        let found = errors(quote! {
            #[tree(krate = "x")]
            struct Model {
                #[tree(skip, rename = "b")]
                a: i64,
                #[tree(frobnicate)]
                b: Slot<Linear>,
                #[tree(rename = "b")]
                c: Slot<Linear>,
                #[tree(rename = "x.y")]
                d: Slot<Linear>,
            }
        });
        assert_eq!(
            found,
            [
                "unknown `#[tree]` option on a struct; the only one is `crate = path` \
                 (field options go on fields)",
                "unknown `#[tree]` option; expected `skip` (not part of the tree) or \
                 `rename = \"name\"`",
                "a skipped field has no path, so `rename` means nothing here; remove one of them",
                "two fields are named `b` in the tree; rename one with `#[tree(rename = \"...\")]`",
                "`x.y` cannot be a path segment: a name is non-empty and has no `.` (dots join \
                 the segments of a path)",
            ]
        );
    }

    #[test]
    fn enums_are_refused() {
        let found = errors(quote!(
            enum Model {
                A,
            }
        ));
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("`#[derive(ModuleTree)]` goes on a struct"));
    }
}
