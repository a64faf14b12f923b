//! Code generation for `#[patch_forward]`: the block itself, untouched, plus the module
//! impl that calls its forward and the checks that tie it to the struct's `#[patch]`.
use super::ast::ForwardBlock;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Path;

pub fn expand(block: &ForwardBlock, krate: Option<Path>) -> TokenStream {
    let private = match krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    };
    let item = &block.item;
    let self_ty = &item.self_ty;
    let (impl_g, _, where_clause) = item.generics.split_for_impl();
    let span = block.attr_span;
    let (module_impl, kind_marker) = if let Some(forward) = block.forwards.first() {
        let ident = &forward.sig.ident;
        (
            quote! {
                #[diagnostic::do_not_recommend]
                impl #impl_g #private::tch::nn::Module for #self_ty #where_clause {
                    #[inline]
                    fn forward(&self, xs: &#private::tch::Tensor) -> #private::tch::Tensor {
                        <#self_ty>::#ident(self, xs)
                    }
                }
            },
            quote_spanned!(ident.span()=> #private::assert_plain_patch::<Self>();),
        )
    } else {
        let ident = &block.forwards_t[0].sig.ident;
        let no_forward =
            crate::expand::forward_needs_train_flag(&private, &impl_g, self_ty, where_clause);
        (
            quote! {
                #[diagnostic::do_not_recommend]
                impl #impl_g #private::tch::nn::ModuleT for #self_ty #where_clause {
                    #[inline]
                    fn forward_t(&self, xs: &#private::tch::Tensor, train: bool) -> #private::tch::Tensor {
                        <#self_ty>::#ident(self, xs, train)
                    }
                }
                #no_forward
            },
            quote_spanned!(ident.span()=> #private::assert_train_mode_patch::<Self>();),
        )
    };
    // Each `Self` carries the span of the token at fault (the attribute, or the forward's
    // name), which is where rustc reports an unmet bound.
    let declared = quote_spanned!(span=> #private::assert_declares_custom_forward::<Self>(););
    quote! {
        #item
        const _: () = {
            #module_impl
            #[diagnostic::do_not_recommend]
            impl #impl_g #private::HasCustomForward for #self_ty #where_clause {}
            #[allow(dead_code)]
            trait __PatchForwardChecks { fn __checks(); }
            impl #impl_g __PatchForwardChecks for #self_ty #where_clause {
                fn __checks() {
                    #declared
                    #kind_marker
                }
            }
        };
    }
}

/// What an invalid block expands to besides its errors: only the marker that the struct's
/// `custom_forward` looks for, so the user sees the block's errors and not also "has no
/// `#[patch_forward]` impl block". The block itself is left out (its forward is wrong).
pub fn expand_invalid(item: &syn::Item, krate: Option<Path>) -> TokenStream {
    let syn::Item::Impl(item) = item else {
        return TokenStream::new();
    };
    let private = match krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    };
    let self_ty = &item.self_ty;
    let (impl_g, _, where_clause) = item.generics.split_for_impl();
    quote! {
        #[diagnostic::do_not_recommend]
        impl #impl_g #private::HasCustomForward for #self_ty #where_clause {}
    }
}
