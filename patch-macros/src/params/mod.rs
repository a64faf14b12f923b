//! `#[derive(Parameters)]`: names every tensor of a user's model struct.
//! Parsed and checked in `ast.rs`, generated in `expand.rs`.
mod ast;
mod expand;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(input)?;
    let cx = Ctxt::new();
    let model = ast::Model::from_input(&cx, &input);
    cx.check()?;
    Ok(expand::expand(
        &model.expect("no errors, so the struct was read"),
    ))
}
