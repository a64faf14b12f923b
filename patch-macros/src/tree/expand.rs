//! Code generation for `#[derive(ModuleTree)]`.
use super::ast::TreeModel;
use crate::expand::mentions_type_params;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::WherePredicate;

pub(super) fn expand(model: &TreeModel) -> TokenStream {
    let private = match &model.krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    };
    let ident = &model.ident;
    let walked: Vec<_> = model.fields.iter().filter(|f| f.skip.is_none()).collect();
    // A field whose type uses the struct's generic parameters needs a bound. Other fields get
    // none: a concrete type that is not a tree node is then reported at the field itself,
    // by the visit call below, with the trait's note on what to write.
    let bounds: Vec<WherePredicate> = walked
        .iter()
        .filter(|field| field.buffer.is_none() && mentions_type_params(&field.ty, &model.generics))
        .map(|field| {
            let ty = &field.ty;
            syn::parse2(quote_spanned!(ty.span()=> #ty: #private::ModuleTree))
                .expect("a where predicate")
        })
        .collect();
    let mut generics = model.generics.clone();
    generics.make_where_clause().predicates.extend(bounds);
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let visits = walked.iter().map(|field| {
        let (member, name, ty) = (&field.member, &field.name, &field.ty);
        if field.buffer.is_some() {
            quote_spanned!(ty.span()=> visitor.child_tensor(
                #name, &self.#member, #private::TensorRole::Buffer);)
        } else {
            quote_spanned!(ty.span()=> visitor.child(#name, &self.#member);)
        }
    });
    let visits_mut = walked
        .iter()
        .filter(|field| field.buffer.is_none())
        .map(|field| {
            let (member, name, ty) = (&field.member, &field.name, &field.ty);
            quote_spanned!(ty.span()=> visitor.child(#name, &mut self.#member);)
        });
    quote! {
        impl #impl_g #private::ModuleTree for #ident #ty_g #where_clause {
            fn visit_tree<'__a>(&'__a self, visitor: &mut #private::TreeVisitor<'__a, '_>) {
                visitor.branch(::core::any::type_name::<Self>());
                #(#visits)*
            }
            fn visit_slots_mut<'__a>(
                &'__a mut self,
                visitor: &mut #private::SlotVisitorMut<'__a, '_>,
            ) {
                #(#visits_mut)*
            }
        }
    }
}
