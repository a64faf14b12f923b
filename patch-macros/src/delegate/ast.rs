//! The parsed forms: the `delegate(..)` list of `#[patch]`, the definition a trait's macro
//! carries, and the input of `delegate_impl!`.
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Path, Token};

/// `delegate(Trait, path::Trait2<f32>)`: the traits the patch implements by delegation.
pub(crate) struct DelegateList {
    pub traits: Vec<Path>,
}

impl DelegateList {
    /// Reads the parenthesised list after `delegate`.
    pub(crate) fn parse(input: ParseStream) -> syn::Result<Self> {
        let content;
        syn::parenthesized!(content in input);
        let traits: Punctuated<Path, Token![,]> = Punctuated::parse_terminated(&content)?;
        if traits.is_empty() {
            return Err(content.error(
                "`delegate(..)` lists the parent's traits the patch implements by delegation, \
                 e.g. `delegate(MyTrait, Scale<f32>)`",
            ));
        }
        Ok(DelegateList {
            traits: traits.into_iter().collect(),
        })
    }
}

/// The trait as its macro carries it: attributes and default bodies dropped (a body could
/// hold a `$` that `macro_rules!` would read as its own).
pub(super) fn carried_definition(item: &syn::ItemTrait) -> TokenStream {
    let mut item = item.clone();
    item.attrs.clear();
    for trait_item in &mut item.items {
        match trait_item {
            syn::TraitItem::Fn(function) => {
                function.attrs.clear();
                function.default = None;
                function.semi_token = Some(Default::default());
            }
            syn::TraitItem::Type(ty) => {
                ty.attrs.clear();
                ty.default = None;
            }
            syn::TraitItem::Const(constant) => {
                constant.attrs.clear();
                constant.default = None;
            }
            _ => {}
        }
    }
    item.into_token_stream()
}

/// `{ trait definition } { impl block } { parent type }`.
pub(super) struct DelegateInput {
    pub definition: syn::ItemTrait,
    pub block: syn::ItemImpl,
    pub parent: syn::Type,
}

impl Parse for DelegateInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let definition;
        syn::braced!(definition in input);
        let block;
        syn::braced!(block in input);
        let parent;
        syn::braced!(parent in input);
        Ok(DelegateInput {
            definition: definition.parse()?,
            block: block.parse()?,
            parent: parent.parse()?,
        })
    }
}
