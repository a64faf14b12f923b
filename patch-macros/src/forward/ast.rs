//! The parsed form of a `#[patch_forward] impl` block.
use crate::ctxt::Ctxt;
use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::{ImplItemFn, ItemImpl, Path, Token};

pub(super) struct ForwardBlock {
    pub item: ItemImpl,
    /// Every `fn forward` in the block (more than one is an error).
    pub forwards: Vec<ImplItemFn>,
    /// Every `fn forward_t` in the block (more than one is an error).
    pub forwards_t: Vec<ImplItemFn>,
    pub attr_span: Span,
}

/// The only argument is `crate = path`, for use inside tch-patch itself.
pub(super) fn parse_args(cx: &Ctxt, args: TokenStream) -> Option<Path> {
    if args.is_empty() {
        return None;
    }
    let parser = |input: syn::parse::ParseStream| {
        input.parse::<Token![crate]>()?;
        input.parse::<Token![=]>()?;
        crate::derive_struct::crate_path(input)
    };
    match parser.parse2(args.clone()) {
        Ok(path) => Some(path),
        Err(error)
            if matches!(args.clone().into_iter().next(),
                        Some(proc_macro2::TokenTree::Ident(ident)) if ident == "crate") =>
        {
            cx.syn_error(error);
            None
        }
        Err(_) => {
            cx.error_spanned_by(
                args,
                "`#[patch_forward]` takes no arguments; write it bare above \
                 `impl YourPatch { fn forward(&self, xs: &Tensor) -> Tensor { .. } }`",
            );
            None
        }
    }
}

impl ForwardBlock {
    pub(super) fn from_item(cx: &Ctxt, item: syn::Item) -> Option<Self> {
        let syn::Item::Impl(item) = item else {
            cx.error_spanned_by(
                item,
                "`#[patch_forward]` goes on an inherent impl block of a `#[patch]` struct: \
                 `#[patch_forward] impl YourPatch { fn forward(&self, xs: &Tensor) -> Tensor { .. } }`",
            );
            return None;
        };
        let mut forwards = Vec::new();
        let mut forwards_t = Vec::new();
        for impl_item in &item.items {
            if let syn::ImplItem::Fn(function) = impl_item {
                if function.sig.ident == "forward" {
                    forwards.push(function.clone());
                } else if function.sig.ident == "forward_t" {
                    forwards_t.push(function.clone());
                }
            }
        }
        Some(ForwardBlock {
            item,
            forwards,
            forwards_t,
            attr_span: Span::call_site(),
        })
    }
}
