//! `#[derive(PatchArgs)]`: a typed config struct of a named patch, registered at link time.
//! Parsed in `ast.rs`, checked in `valid.rs`, generated in `expand.rs`.
mod ast;
mod expand;
mod valid;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(input)?;
    let cx = Ctxt::new();
    let parsed = ast::ArgsStruct::from_input(&cx, &input);
    let kinds = parsed.as_ref().map(|parsed| valid::check(&cx, parsed));
    cx.check()?;
    let parsed = parsed.expect("no errors, so the struct was read");
    let kinds: Vec<_> = kinds
        .unwrap_or_default()
        .into_iter()
        .map(|kind| kind.expect("no errors, so every field has a kind"))
        .collect();
    Ok(expand::expand(&parsed, &kinds))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    /// Every error message of one derive, in order.
    fn errors(input: proc_macro2::TokenStream) -> Vec<String> {
        match super::derive(input) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_correct_struct_expands() {
        let ok = quote! {
            #[patch_args(name = "p", default)]
            struct P {
                /// rank
                #[arg(default = 8, range = 1..=4096)]
                rank: i64,
                #[arg(default = 16, range = 0.0..)]
                alpha: f64,
                #[arg(default = -0.5, range = -1.0..1.0)]
                shift: f64,
                #[arg(default = "mean", choices("mean", "sum"))]
                mode: String,
                #[arg(default = [1, -2])]
                ids: Vec<i64>,
                #[arg(default = true)]
                flag: bool,
            }
        };
        assert_eq!(errors(ok), Vec::<String>::new());
    }

    #[test]
    fn default_needs_every_field_to_have_one() {
        let input = quote! {
            #[patch_args(name = "p", default)]
            struct P {
                #[arg(default = 8)]
                rank: i64,
                ids: Vec<i64>,
            }
        };
        assert_eq!(
            errors(input),
            ["`#[patch_args(default)]` derives `Default` from the arguments' defaults, but `ids` \
              is required; give it `#[arg(default = ...)]` or remove `default`"]
        );
    }

    #[test]
    fn every_mistake_is_reported_in_one_pass() {
        let input = quote! {
            #[patch_args(name = "bad name", default, colour = 3)]
            struct Bad<T> {
                #[arg(default = 0, range = 1..=4096)]
                rank: i64,
                #[arg(default = "x")]
                alpha: f64,
                #[arg(range = 1.0..0.0)]
                beta: f64,
                #[arg(choices("a", "b"), default = "c")]
                mode: String,
                #[arg(range = 0..1)]
                flag: bool,
                targets: String,
                weights: Vec<f32>,
                #[arg(default = 1, colour = 2)]
                other: T,
            }
        };
        let errors = errors(input);
        let expected = [
            "unknown `#[patch_args]` option; expected `name = \"...\"`, `default`, `patch = Type`, `over(Type, ...)` or `crate = path`",
            "unknown `#[arg]` option; expected `default = literal`, `range = a..=b` or `choices(\"a\", \"b\")`",
            "a patch name is a plain identifier ([A-Za-z_][A-Za-z0-9_]*), as written in patch strings",
            "`#[derive(PatchArgs)]` does not take generic parameters: a registered patch has one concrete config type",
            "the default is outside the argument's `range`",
            "the default of a `f64` argument must be a number literal, e.g. `default = 0.5`",
            "this range is empty: no value is allowed",
            "the default is not one of the argument's `choices`",
            "`range` is for `i64` and `f64` arguments; a `bool` argument takes no range",
            "every patch takes `targets` (the path glob of the modules to patch) and the registry adds it: remove this field (`PatchSpec::targets` holds it)",
            "a patch argument is one of `i64`, `f64`, `bool`, `String` or `Vec<i64>`; use one of those types for this field",
            "a patch argument is one of `i64`, `f64`, `bool`, `String` or `Vec<i64>`; use one of those types for this field",
        ];
        for message in expected {
            assert!(
                errors.iter().any(|e| e == message),
                "missing {message:?} in {errors:#?}"
            );
        }
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`#[patch_args(default)]` derives `Default`")),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_patch_type_expands_to_one_rule_per_slot_type() {
        let generic = quote! {
            #[patch_args(name = "gain", patch = Gain<_>, over(nn::Linear, Block))]
            struct GainConfig {}
        };
        let expanded = super::derive(generic).unwrap().to_string();
        let stacking = "SlotRule :: stacking :: < GainConfig , Gain < :: tch_patch :: __private :: DynLayer < ";
        assert!(
            expanded.contains(&format!("{stacking}nn :: Linear > > , nn :: Linear > ()"))
                && expanded.contains(&format!("{stacking}Block > > , Block > ()")),
            "{expanded}"
        );
        assert!(
            expanded.contains(". with_rules (__TCH_PATCH_SLOT_RULES)"),
            "{expanded}"
        );

        let own_base = quote! {
            #[patch_args(name = "rows", patch = Rows)]
            struct RowsConfig {}
        };
        let expanded = super::derive(own_base).unwrap().to_string();
        assert!(
            expanded.contains("SlotRule :: bare :: < RowsConfig , Rows > ()"),
            "{expanded}"
        );

        assert_eq!(
            super::expand::fill_holes(quote!(Pair<'_, _, [_; 2]>), &quote!(X)).to_string(),
            quote!(Pair<'_, X, [X; 2]>).to_string()
        );

        let parse_only = quote! {
            #[patch_args(name = "p")]
            struct P {}
        };
        assert!(!super::derive(parse_only)
            .unwrap()
            .to_string()
            .contains("SlotRule"));
    }

    #[test]
    fn patch_and_over_must_fit_together() {
        let input = quote! {
            #[patch_args(name = "a", patch = Gain<_>)]
            struct A {}
        };
        assert_eq!(
            errors(input),
            [
                "this patch wraps whatever a slot holds (the `_`): list the slot layer types it \
              wraps with `over(...)`, e.g. `over(nn::Linear, nn::Conv2D)`"
            ]
        );
        let input = quote! {
            #[patch_args(name = "b", patch = Rows, over(nn::Embedding))]
            struct B {}
        };
        assert_eq!(
            errors(input),
            [
                "`over(...)` is for a patch generic over a slot's content, written with `_` \
              (`patch = Gain<_>`); this patch type names its base itself, which is the only slot \
              type it wraps: remove `over(...)`, or write its base as `_`"
            ]
        );
        let input = quote! {
            #[patch_args(name = "c", over(nn::Linear))]
            struct C {}
        };
        assert_eq!(
            errors(input),
            [
                "`over(...)` lists the slot types of the patch named by `patch = Type<_>`; give \
              that `patch` option too"
            ]
        );
        let input = quote! {
            #[patch_args(name = "d", patch = _)]
            struct D {}
        };
        assert_eq!(
            errors(input),
            ["`patch = _` names no patch type: write the patch, with `_` where a slot's content \
              goes, e.g. `patch = Gain<_>` (or a patch of one layer type, `patch = EmbeddingRows`)"]
        );
        let input = quote! {
            #[patch_args(name = "e", patch = Gain<_>, patch = Other<_>, over(nn::Linear, _, nn::Linear), over())]
            struct E {}
        };
        assert_eq!(
            errors(input),
            [
                "duplicate `patch` option; give it once",
                "duplicate `over` option; give it once",
                "`over()` lists no slot type; give at least one",
            ]
        );
        let input = quote! {
            #[patch_args(name = "f", patch = Gain<_>, over(nn::Linear, _, nn::Linear))]
            struct F {}
        };
        assert_eq!(
            errors(input),
            [
                "a slot type of `over(...)` is a layer type such as `nn::Linear`; `_` goes in \
                 `patch = ...` only",
                "this slot type is listed twice",
            ]
        );
    }

    #[test]
    fn the_name_is_required_and_enums_are_refused() {
        assert_eq!(
            errors(quote!(struct NoName { rank: i64 })),
            ["missing `#[patch_args(name = \"...\")]`: the name patch strings call this patch by, e.g. `#[patch_args(name = \"lora\")]`"]
        );
        assert_eq!(
            errors(quote!(
                #[patch_args(name = "e")]
                enum E {
                    A,
                }
            )),
            ["`#[derive(PatchArgs)]` goes on a struct with one named field per argument"]
        );
    }
}
