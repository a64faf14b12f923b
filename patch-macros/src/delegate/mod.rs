//! Delegation of a parent's own traits: `#[delegatable]` on a trait records its definition
//! in a hidden `macro_rules!` named like the trait (macros live in their own namespace, so
//! `use path::MyTrait;` imports both); `#[patch(delegate(MyTrait))]` and
//! `#[delegate_rest] impl MyTrait for P { .. }` invoke that macro, which hands the
//! definition and the impl block to `delegate_impl!` (`expand.rs`), which fills in every
//! item the block does not define by a call to the parent's.
mod ast;
mod expand;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use syn::spanned::Spanned;

pub(crate) use ast::DelegateList;

/// `#[delegatable]`: the trait unchanged, plus its delegation macro.
pub(crate) fn delegatable(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "`#[delegatable]` takes no arguments; write it bare above the trait",
        ));
    }
    let item: syn::ItemTrait = syn::parse2(input).map_err(|error| {
        syn::Error::new(
            error.span(),
            "`#[delegatable]` goes on a trait definition: `#[delegatable] pub trait MyTrait { .. }`",
        )
    })?;
    let carried = ast::carried_definition(&item);
    let ident = &item.ident;
    let local = format_ident!("__tch_patch_delegate_{}", ident);
    let body = quote! {
        ($($args:tt)*) => {
            ::tch_patch::__private::delegate_impl! { { #carried } $($args)* }
        };
    };
    let macro_def = match &item.vis {
        syn::Visibility::Public(_) => {
            // `#[macro_export]` puts the macro at the crate root, where every name must be
            // unique: the hidden name carries a hash of the trait and a per-crate counter.
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            carried.to_string().hash(&mut hasher);
            COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut hasher);
            let exported = format_ident!("{}_{:016x}", local, hasher.finish());
            quote! {
                #[doc(hidden)]
                #[macro_export]
                macro_rules! #exported { #body }
                #[doc(hidden)]
                pub use #exported as #ident;
            }
        }
        vis => quote! {
            #[doc(hidden)]
            #[allow(unused_macros)]
            macro_rules! #local { #body }
            #[doc(hidden)]
            #[allow(unused_imports)]
            #vis use #local as #ident;
        },
    };
    Ok(quote! {
        #item
        #macro_def
    })
}

/// `#[delegate_rest]` on `impl Trait for Patch { overrides }`: the trait's macro, with the
/// block, so every item the block leaves out delegates to `<Self as Patch>::Base`.
pub(crate) fn delegate_rest(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "`#[delegate_rest]` takes no arguments; write it bare above `impl MyTrait for MyPatch { .. }`",
        ));
    }
    let item: syn::Item = syn::parse2(input)?;
    let syn::Item::Impl(block) = item else {
        return Err(syn::Error::new_spanned(
            item,
            "`#[delegate_rest]` goes on a trait impl of a patch: \
             `#[delegate_rest] impl MyTrait for MyPatch { /* the methods you override */ }`",
        ));
    };
    let Some((bang, trait_path, _)) = &block.trait_ else {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            "`#[delegate_rest]` goes on a trait impl (`impl MyTrait for MyPatch { .. }`), \
             not an inherent impl: it fills in the trait's methods you do not write",
        ));
    };
    if let Some(bang) = bang {
        return Err(syn::Error::new_spanned(
            bang,
            "a negative impl has nothing to delegate",
        ));
    }
    let parent = quote!(<Self as ::tch_patch::__private::Patch>::Base);
    Ok(invoke(trait_path, &block, &parent))
}

/// The invocation of the trait's delegation macro for one impl block.
fn invoke(trait_path: &syn::Path, block: &syn::ItemImpl, parent: &TokenStream) -> TokenStream {
    let mut macro_path = trait_path.clone();
    if let Some(last) = macro_path.segments.last_mut() {
        last.arguments = syn::PathArguments::None;
    }
    let span = trait_path.span();
    quote_spanned! {span=>
        #macro_path! { { #block } { #parent } }
    }
}

/// What `#[patch(delegate(..))]` adds to the patch's expansion: one delegating impl per
/// trait, bounded by the parent implementing it.
pub(crate) fn patch_impls(
    patch: &crate::ast::PatchStruct,
    from: &syn::Type,
    private: &TokenStream,
) -> TokenStream {
    let Some(list) = &patch.args.delegate else {
        return TokenStream::new();
    };
    let ident = &patch.ident;
    let concrete = !crate::expand::mentions_type_params(from, &patch.generics);
    list.traits
        .iter()
        .map(|trait_path| {
            let span = trait_path.span();
            let mut generics = patch.generics.clone();
            generics
                .make_where_clause()
                .predicates
                .push(syn::parse_quote_spanned!(span=> for<'__d> #from: #trait_path));
            let (impl_g, ty_g, where_clause) = generics.split_for_impl();
            let block: syn::ItemImpl = syn::parse_quote_spanned! {span=>
                impl #impl_g #trait_path for #ident #ty_g #where_clause {}
            };
            let parent = quote!(#from);
            let call = invoke(trait_path, &block, &parent);
            // The bound above is higher-ranked (so a false one is not an error of its own);
            // this assertion reports a parent without the trait once, at `delegate(..)`.
            let check = concrete.then(|| {
                let (impl_g, ty_g, where_clause) = patch.generics.split_for_impl();
                quote_spanned! {span=>
                    #[allow(dead_code)]
                    trait __DelegateCheck { fn __check(); }
                    impl #impl_g __DelegateCheck for #ident #ty_g #where_clause {
                        fn __check() {
                            fn parent_implements<T: ?::core::marker::Sized + #trait_path>() {}
                            parent_implements::<#from>();
                        }
                    }
                }
            });
            let _ = private;
            quote! {
                #call
                const _: () = { #check };
            }
        })
        .collect()
}

/// The hidden `delegate_impl!`: `{ trait } { impl block } { parent type }`.
pub(crate) fn delegate_impl(input: TokenStream) -> syn::Result<TokenStream> {
    let input: ast::DelegateInput = syn::parse2(input)?;
    Ok(expand::expand(input))
}
