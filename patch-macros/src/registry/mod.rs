//! `#[derive(PatchArgs)]`: a typed config struct of a named patch, registered at link time.
//! Parsed in `ast.rs`, checked in `valid.rs`, generated in `expand.rs`.
mod ast;
mod expand;
mod valid;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

pub fn derive(input: TokenStream) -> syn::Result<TokenStream> {
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
