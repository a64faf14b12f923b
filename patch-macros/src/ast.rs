//! The parsed form of a `#[patch(...)] struct`: what the user wrote, before any checking.
use crate::attr::{self, FieldRole, PatchArgs};
use crate::ctxt::Ctxt;
use syn::{Attribute, Generics, Ident, Type, Visibility};

pub(crate) struct PatchStruct {
    pub args: PatchArgs,
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub generics: Generics,
    pub fields: Vec<PatchField>,
}

pub(crate) struct PatchField {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub ty: Type,
    pub role: FieldRole,
}

impl PatchStruct {
    /// Reads the item under `#[patch]`. Items that are not structs with named fields are
    /// errors recorded in `cx`; `None` then means there is nothing further to check.
    pub(crate) fn from_item(cx: &Ctxt, args: PatchArgs, item: syn::Item) -> Option<Self> {
        let item = match item {
            syn::Item::Struct(item) => item,
            syn::Item::Enum(item) => {
                cx.error_spanned_by(
                    item.enum_token,
                    "`#[patch]` goes on a struct with named fields, not on an enum: \
                     a patch wraps one parent module",
                );
                return None;
            }
            syn::Item::Union(item) => {
                cx.error_spanned_by(
                    item.union_token,
                    "`#[patch]` goes on a struct with named fields, not on a union",
                );
                return None;
            }
            other => {
                cx.error_spanned_by(
                    other,
                    "`#[patch]` goes on a struct with named fields, e.g. \
                     `#[patch(from = nn::Linear)] struct Scaled { #[param] scale: Tensor }`",
                );
                return None;
            }
        };
        let fields = match item.fields {
            syn::Fields::Named(named) => named.named.into_iter().collect(),
            syn::Fields::Unit => Vec::new(),
            syn::Fields::Unnamed(unnamed) => {
                cx.error_spanned_by(
                    &unnamed,
                    "`#[patch]` needs named fields (or none): the parent goes into a \
                     generated `base` field and the patch's own tensors are found by name; \
                     write `struct Name { field: Type }`",
                );
                return None;
            }
        };
        let fields = fields
            .into_iter()
            .map(|field| {
                let (role, attrs) = attr::field_role(cx, &field.attrs);
                PatchField {
                    attrs,
                    vis: field.vis,
                    ident: field.ident.expect("named field"),
                    ty: field.ty,
                    role,
                }
            })
            .collect();
        Some(PatchStruct {
            args,
            attrs: item.attrs,
            vis: item.vis,
            ident: item.ident,
            generics: item.generics,
            fields,
        })
    }
}
