//! `#[patch_forward]`: an inherent impl block of a patch that overrides its forward.
//! Parsed in `ast.rs`, checked in `valid.rs`, generated in `expand.rs`.
mod ast;
mod expand;
mod valid;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

pub(crate) fn patch_forward(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let krate = ast::parse_args(&cx, args);
    let item: syn::Item = syn::parse2(input)?;
    let block = ast::ForwardBlock::from_item(&cx, item.clone());
    if let Some(block) = &block {
        valid::check(&cx, block);
    }
    // An invalid block expands to its errors and its other methods: the struct's
    // `nn::Module` impl then delegates to the parent, so the user sees only these errors.
    if let Err(errors) = cx.check() {
        let mut tokens = errors.into_compile_error();
        tokens.extend(expand::expand_invalid(&item));
        return Ok(tokens);
    }
    let block = block.expect("no errors, so the block was read");
    Ok(expand::expand(&block, krate))
}
