//! Code generation for `#[patch_forward]`: the block itself, untouched, plus the hidden
//! inherent method that the struct's module impl calls, and the checks that tie the block
//! to the struct's `#[patch]`.
use super::ast::ForwardBlock;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Path;

pub(super) fn expand(block: &ForwardBlock, krate: Option<Path>) -> TokenStream {
    let private = match krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    };
    let item = &block.item;
    let self_ty = &item.self_ty;
    let (impl_g, _, where_clause) = item.generics.split_for_impl();
    // The hidden inherent method that the `nn::Module` (`nn::ModuleT`) impl written by
    // `#[patch]` calls: an inherent method wins over the delegating `DelegateForward`
    // trait method of the same name. `pub`, so that it is found from the struct's module
    // wherever this block is.
    let (hidden, kind_marker) = if let Some(forward) = block.forwards.first() {
        let ident = &forward.sig.ident;
        (
            quote! {
                #[doc(hidden)]
                #[inline]
                pub fn __tch_patch_forward(&self, xs: &#private::tch::Tensor) -> #private::tch::Tensor {
                    <#self_ty>::#ident(self, xs)
                }
            },
            quote_spanned!(ident.span()=> #private::assert_module_patch::<Self>();),
        )
    } else {
        let ident = &block.forwards_t[0].sig.ident;
        (
            quote! {
                #[doc(hidden)]
                #[inline]
                pub fn __tch_patch_forward_t(&self, xs: &#private::tch::Tensor, train: bool) -> #private::tch::Tensor {
                    <#self_ty>::#ident(self, xs, train)
                }
            },
            quote_spanned!(ident.span()=> #private::assert_module_t_patch::<Self>();),
        )
    };
    quote! {
        #item
        impl #impl_g #self_ty #where_clause {
            #hidden
        }
        const _: () = {
            #[allow(dead_code)]
            trait __PatchForwardChecks { fn __checks(); }
            impl #impl_g __PatchForwardChecks for #self_ty #where_clause {
                fn __checks() {
                    #kind_marker
                }
            }
        };
    }
}

/// What an invalid block expands to besides its errors: the block without its `forward` /
/// `forward_t` (those are at fault), so its other methods still exist and the user sees
/// only the block's errors. Nothing for a trait impl or a non-impl item.
pub(super) fn expand_invalid(item: &syn::Item) -> TokenStream {
    let syn::Item::Impl(item) = item else {
        return TokenStream::new();
    };
    if item.trait_.is_some() {
        return TokenStream::new();
    }
    let mut item = item.clone();
    item.items.retain(|impl_item| {
        !matches!(impl_item, syn::ImplItem::Fn(function)
            if function.sig.ident == "forward" || function.sig.ident == "forward_t")
    });
    quote!(#item)
}
