//! `#[derive(ModuleTree)]`: gives a model struct's modules their paths.
//! Parsed in `ast.rs`, checked in `valid.rs`, generated in `expand.rs`.
mod ast;
mod expand;
mod valid;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

pub fn derive(input: TokenStream) -> syn::Result<TokenStream> {
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
