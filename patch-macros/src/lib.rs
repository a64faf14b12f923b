//! Procedural macros of tch-patch. Use them through the `tch-patch` crate, which re-exports
//! them next to the runtime they expand to.
//!
//! Each macro runs in three stages, one file each: parse into a small AST (`ast.rs`,
//! `attr.rs`), check it and record every error with its span (`valid.rs`, `ctxt.rs`),
//! then generate code (`expand.rs`).

mod ast;
mod attr;
mod ctxt;
mod delegate;
mod derive_struct;
mod expand;
mod field_options;
mod forward;
mod params;
mod registry;
mod tree;
mod valid;

use proc_macro::TokenStream;
use syn::parse::Parser;

/// Turns a struct into a patch of an existing module. See `tch_patch::patch` for the guide.
#[proc_macro_attribute]
pub fn patch(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(patch_impl(args.into(), input.into())).into()
}

fn patch_impl(
    args: proc_macro2::TokenStream,
    input: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let cx = ctxt::Ctxt::new();
    let args = (|stream: syn::parse::ParseStream| attr::PatchArgs::parse(&cx, stream)).parse2(args);
    let item: syn::Item = syn::parse2(input)?;
    let args = match args {
        Ok(args) => args,
        Err(error) => {
            cx.syn_error(error);
            attr::PatchArgs::default()
        }
    };
    let patch = ast::PatchStruct::from_item(&cx, args, item);
    if let Some(patch) = &patch {
        valid::check(&cx, patch);
    }
    cx.check()?;
    Ok(expand::expand(
        &patch.expect("no errors, so the struct was read"),
    ))
}

/// Overrides the forward of a `#[patch(..., custom_forward)]` struct. See
/// `tch_patch::patch_forward` for the guide.
#[proc_macro_attribute]
pub fn patch_forward(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(forward::patch_forward(args.into(), input.into())).into()
}

/// Lists a model struct's tensors by name. See `tch_patch::Parameters` for the guide.
#[proc_macro_derive(Parameters, attributes(param, buffer, parameters))]
pub fn derive_parameters(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(params::derive(input.into())).into()
}

/// A typed config struct of a named patch, registered in the patch registry of every
/// program that links the crate. See `tch_patch::registry::PatchArgs` for the guide.
#[proc_macro_derive(PatchArgs, attributes(patch_args, arg))]
pub fn derive_patch_args(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(registry::derive(input.into())).into()
}

/// Gives a model struct's modules paths and walks its slots. See `tch_patch::ModuleTree`
/// for the guide.
#[proc_macro_derive(ModuleTree, attributes(tree, buffer))]
pub fn derive_module_tree(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(tree::derive(input.into())).into()
}

/// Makes a trait delegatable: a patch can then implement it by calling its parent's impl,
/// with `#[patch(from = Parent, delegate(MyTrait))]` or a `#[delegate_rest]` block.
#[cfg_attr(not(doctest), doc = include_str!("delegate/guide.md"))]
#[proc_macro_attribute]
pub fn delegatable(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(delegate::delegatable(args.into(), input.into())).into()
}

/// Implements a `#[delegatable]` trait for a patch from the items you write (your
/// overrides), delegating every other item to the parent. See `delegatable` for the guide.
#[proc_macro_attribute]
pub fn delegate_rest(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(delegate::delegate_rest(args.into(), input.into())).into()
}

/// Not public API: what a `#[delegatable]` trait's macro expands to.
#[doc(hidden)]
#[proc_macro]
pub fn __delegate_impl(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(delegate::delegate_impl(input.into())).into()
}
