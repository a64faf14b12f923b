//! Code generation for `#[derive(Parameters)]`.
use super::ast::{FieldKind, Model};
use crate::expand::mentions_type_params;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::WherePredicate;

pub(super) fn expand(model: &Model) -> TokenStream {
    let private = match &model.krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    };
    let ident = &model.ident;
    let mut generics = model.generics.clone();
    // A child field whose type names a type or const parameter is bounded `Parameters` in
    // the where clause. A concrete type is not (a bound that can never hold would be reported
    // at the derive, with the compiler's "trivial bounds" note): its `visitor.child` call,
    // spanned at the field's type, reports it there.
    let bounds: Vec<WherePredicate> = model
        .fields
        .iter()
        .filter(|field| {
            field.kind == FieldKind::Child && mentions_type_params(&field.ty, &model.generics)
        })
        .map(|field| {
            let ty = &field.ty;
            syn::parse2(quote_spanned!(ty.span()=> #ty: #private::Parameters))
                .expect("a where predicate")
        })
        .collect();
    generics.make_where_clause().predicates.extend(bounds);
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let visits = model.fields.iter().map(|field| {
        let (member, name) = (&field.member, &field.name);
        match field.kind {
            FieldKind::Param => {
                quote!(visitor.tensor(#name, &self.#member, #private::TensorRole::Param);)
            }
            FieldKind::Buffer => {
                quote!(visitor.tensor(#name, &self.#member, #private::TensorRole::Buffer);)
            }
            FieldKind::Child => {
                quote_spanned!(field.ty.span()=> visitor.child(#name, &self.#member);)
            }
            FieldKind::Skip => quote!(),
        }
    });
    let visits_mut = model.fields.iter().map(|field| {
        let (member, name) = (&field.member, &field.name);
        match field.kind {
            FieldKind::Param => {
                quote!(visitor.tensor(#name, &mut self.#member, #private::TensorRole::Param);)
            }
            FieldKind::Buffer => {
                quote!(visitor.tensor(#name, &mut self.#member, #private::TensorRole::Buffer);)
            }
            FieldKind::Child => {
                quote_spanned!(field.ty.span()=> visitor.child(#name, &mut self.#member);)
            }
            FieldKind::Skip => quote!(),
        }
    });
    quote! {
        impl #impl_g #private::Parameters for #ident #ty_g #where_clause {
            fn visit<'__a>(&'__a self, visitor: &mut #private::Visitor<'__a, '_>) {
                #(#visits)*
            }
            fn visit_mut(&mut self, visitor: &mut #private::VisitorMut<'_>) {
                #(#visits_mut)*
            }
        }
    }
}
