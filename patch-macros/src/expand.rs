//! Code generation for `#[patch(...)] struct`. Runs only on a struct that passed `valid.rs`.
//! Every runtime item is named through `<crate>::__private`, never by a name in scope.
use crate::ast::{PatchField, PatchStruct};
use crate::attr::FieldRole;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{parse_quote, Generics, Type, WherePredicate};

pub(crate) fn expand(patch: &PatchStruct) -> TokenStream {
    let from = patch
        .args
        .from
        .as_ref()
        .expect("validated: `from` is present");
    let private = private_path(patch);
    let definition = struct_definition(patch, from);
    let impls = [
        access_impls(patch, from),
        patch_impl(patch, from, &private),
        view_impl(patch, from, &private),
        module_impl(patch, from, &private),
        parameters_impl(patch, from, &private),
        layer_impl(patch, from, &private),
        debug_impl(patch, from),
        registration(patch, &private),
        crate::delegate::patch_impls(patch, from, &private),
    ];
    quote! {
        #definition
        const _: () = { #(#impls)* };
    }
}

fn private_path(patch: &PatchStruct) -> TokenStream {
    match &patch.args.krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    }
}

fn struct_definition(patch: &PatchStruct, from: &Type) -> TokenStream {
    let PatchStruct {
        attrs,
        vis,
        ident,
        generics,
        ..
    } = patch;
    let where_clause = &generics.where_clause;
    let fields = patch.fields.iter().map(|field| {
        let PatchField {
            attrs,
            vis,
            ident,
            ty,
            ..
        } = field;
        quote!(#(#attrs)* #vis #ident: #ty)
    });
    // With no field of its own the patch has the parent's layout, so `&Parent` can be
    // viewed as `&Patch` in place (see `view_impl`).
    let repr = patch
        .fields
        .is_empty()
        .then(|| quote!(#[repr(transparent)]));
    quote! {
        #(#attrs)*
        #repr
        #vis struct #ident #generics #where_clause {
            /// The parent module, moved in whole: its tensors are the same tensors.
            base: #from,
            #(#fields,)*
        }
    }
}

/// `Deref`, `DerefMut`, `AsRef`, `AsMut`, `Borrow`, `BorrowMut`: all to the parent.
fn access_impls(patch: &PatchStruct, from: &Type) -> TokenStream {
    let ident = &patch.ident;
    let (impl_g, ty_g, where_clause) = patch.generics.split_for_impl();
    quote! {
        impl #impl_g ::core::ops::Deref for #ident #ty_g #where_clause {
            type Target = #from;
            #[inline]
            fn deref(&self) -> &#from { &self.base }
        }
        impl #impl_g ::core::ops::DerefMut for #ident #ty_g #where_clause {
            #[inline]
            fn deref_mut(&mut self) -> &mut #from { &mut self.base }
        }
        impl #impl_g ::core::convert::AsRef<#from> for #ident #ty_g #where_clause {
            #[inline]
            fn as_ref(&self) -> &#from { &self.base }
        }
        impl #impl_g ::core::convert::AsMut<#from> for #ident #ty_g #where_clause {
            #[inline]
            fn as_mut(&mut self) -> &mut #from { &mut self.base }
        }
        impl #impl_g ::core::borrow::Borrow<#from> for #ident #ty_g #where_clause {
            #[inline]
            fn borrow(&self) -> &#from { &self.base }
        }
        impl #impl_g ::core::borrow::BorrowMut<#from> for #ident #ty_g #where_clause {
            #[inline]
            fn borrow_mut(&mut self) -> &mut #from { &mut self.base }
        }
    }
}

fn tensor_fields(patch: &PatchStruct) -> impl Iterator<Item = (&PatchField, TokenStream)> {
    patch.fields.iter().filter_map(|field| match field.role {
        FieldRole::Plain => None,
        FieldRole::Param => Some((field, quote!(Param))),
        FieldRole::Buffer => Some((field, quote!(Buffer))),
    })
}

fn patch_name(patch: &PatchStruct) -> String {
    patch
        .args
        .name
        .as_ref()
        .map(|name| name.value())
        .unwrap_or_else(|| patch.ident.to_string())
}

fn patch_impl(patch: &PatchStruct, from: &Type, private: &TokenStream) -> TokenStream {
    let ident = &patch.ident;
    let (impl_g, ty_g, where_clause) = patch.generics.split_for_impl();
    let name = patch_name(patch);
    let added: Vec<_> = tensor_fields(patch)
        .map(|(field, role)| {
            let field_name = field.ident.to_string();
            quote!((#field_name, #private::TensorRole::#role))
        })
        .collect();
    let added_refs = tensor_fields(patch).map(|(field, role)| {
        let field_ident = &field.ident;
        let field_name = field_ident.to_string();
        quote!((#field_name, &self.#field_ident, #private::TensorRole::#role))
    });
    let into_base = match &patch.args.into_base {
        Some(undo) => quote!(#undo(self)),
        None => quote!(self.base),
    };
    quote! {
        #[diagnostic::do_not_recommend]
        impl #impl_g #private::Patch for #ident #ty_g #where_clause {
            type Base = #from;
            const NAME: &'static str = #name;
            const ADDED_TENSORS: &'static [(&'static str, #private::TensorRole)] = &[#(#added),*];
            #[inline]
            fn base(&self) -> &#from { &self.base }
            #[inline]
            fn base_mut(&mut self) -> &mut #from { &mut self.base }
            #[inline]
            fn into_base(self) -> #from { #into_base }
            fn added_tensors(&self)
                -> #private::Vec<(&'static str, &#private::tch::Tensor, #private::TensorRole)>
            {
                #private::vec![#(#added_refs),*]
            }
        }
    }
}

/// For a patch with no field of its own: `&Parent` viewed in place as `&Patch`.
fn view_impl(patch: &PatchStruct, from: &Type, private: &TokenStream) -> TokenStream {
    if !patch.fields.is_empty() {
        return TokenStream::new();
    }
    let ident = &patch.ident;
    let (impl_g, ty_g, where_clause) = patch.generics.split_for_impl();
    quote! {
        #[allow(unsafe_code)]
        // SAFETY: the struct is `#[repr(transparent)]` over its only field, of type `#from`,
        // so both types have one layout and every `#from` is a valid value of the patch.
        #[diagnostic::do_not_recommend]
        unsafe impl #impl_g #private::PatchView for #ident #ty_g #where_clause {
            #[inline]
            fn view(base: &#from) -> &Self {
                unsafe { &*(base as *const #from as *const Self) }
            }
            #[inline]
            fn view_mut(base: &mut #from) -> &mut Self {
                unsafe { &mut *(base as *mut #from as *mut Self) }
            }
        }
    }
}

fn with_predicates(generics: &Generics, predicates: Vec<WherePredicate>) -> Generics {
    let mut generics = generics.clone();
    generics.make_where_clause().predicates.extend(predicates);
    generics
}

/// `nn::Module` (or `nn::ModuleT` with `module_t`), whose forward calls
/// `self.__tch_patch_forward(xs)` (`__tch_patch_forward_t`) with the hidden trait
/// `DelegateForward` (`DelegateForwardT`) in scope. That trait, implemented here for the
/// patch, delegates to the parent; a `#[patch_forward]` block writes an inherent method of
/// the same name, and an inherent method wins over a trait method in method resolution,
/// so the override is picked with no flag on the struct.
fn module_impl(patch: &PatchStruct, from: &Type, private: &TokenStream) -> TokenStream {
    let ident = &patch.ident;
    let (impl_g, ty_g, where_clause) = patch.generics.split_for_impl();
    let kind_marker = if patch.args.module_t.is_some() {
        quote!(#private::ModuleTPatch)
    } else {
        quote!(#private::ModulePatch)
    };
    let markers = quote! {
        #[diagnostic::do_not_recommend]
        impl #impl_g #kind_marker for #ident #ty_g #where_clause {}
    };
    let module_t = patch.args.module_t.is_some();
    let (parent_trait, parent_assert) = if module_t {
        (
            quote!(#private::ModuleTParent),
            quote!(#private::assert_module_t_parent),
        )
    } else {
        (
            quote!(#private::ModuleParent),
            quote!(#private::assert_module_parent),
        )
    };
    // The parent bound is higher-ranked so that a concrete parent that is not a module is
    // not a "trivially false bound" error, reported by rustc with the supertrait's message.
    // A parent that names no type parameter is instead checked by an assertion whose error
    // points at `from = ...` and says what to write.
    let bounded = with_predicates(
        &patch.generics,
        vec![parse_quote!(for<'__p> #from: #parent_trait)],
    );
    let (_, _, bounded_where) = bounded.split_for_impl();
    let parent_check = (!mentions_type_params(from, &patch.generics)).then(|| {
        quote! {
            #[allow(dead_code)]
            trait __PatchChecks { fn __checks(); }
            impl #impl_g __PatchChecks for #ident #ty_g #where_clause {
                fn __checks() { #parent_assert::<#from>(); }
            }
        }
    });
    let forward = if module_t {
        let self_ty = quote!(#ident #ty_g);
        let no_forward = forward_needs_train_flag(private, &impl_g, &self_ty, where_clause);
        quote! {
            #[diagnostic::do_not_recommend]
            impl #impl_g #private::DelegateForwardT for #ident #ty_g #bounded_where {
                #[inline]
                fn __tch_patch_forward_t(&self, xs: &#private::tch::Tensor, train: bool) -> #private::tch::Tensor {
                    #private::tch::nn::ModuleT::forward_t(&self.base, xs, train)
                }
            }
            #[diagnostic::do_not_recommend]
            impl #impl_g #private::tch::nn::ModuleT for #ident #ty_g #bounded_where {
                #[inline]
                fn forward_t(&self, xs: &#private::tch::Tensor, train: bool) -> #private::tch::Tensor {
                    #[allow(unused_imports)]
                    use #private::DelegateForwardT as _;
                    self.__tch_patch_forward_t(xs, train)
                }
            }
            #no_forward
        }
    } else {
        quote! {
            #[diagnostic::do_not_recommend]
            impl #impl_g #private::DelegateForward for #ident #ty_g #bounded_where {
                #[inline]
                fn __tch_patch_forward(&self, xs: &#private::tch::Tensor) -> #private::tch::Tensor {
                    #private::tch::nn::Module::forward(&self.base, xs)
                }
            }
            #[diagnostic::do_not_recommend]
            impl #impl_g #private::tch::nn::Module for #ident #ty_g #bounded_where {
                #[inline]
                fn forward(&self, xs: &#private::tch::Tensor) -> #private::tch::Tensor {
                    #[allow(unused_imports)]
                    use #private::DelegateForward as _;
                    self.__tch_patch_forward(xs)
                }
            }
        }
    };
    quote!(#markers #forward #parent_check)
}

/// For a `module_t` patch: an inherent `forward(xs)` that can never be called (its bound
/// has no impl), so `patch.forward(&xs)` is a compile error saying to pass the train flag,
/// instead of method lookup going through `Deref` to the parent's `nn::Module::forward`,
/// which would skip the patch silently.
pub(crate) fn forward_needs_train_flag(
    private: &TokenStream,
    impl_g: &dyn ToTokens,
    self_ty: &dyn ToTokens,
    where_clause: Option<&syn::WhereClause>,
) -> TokenStream {
    quote! {
        impl #impl_g #self_ty #where_clause {
            #[doc(hidden)]
            #[allow(dead_code)]
            #[inline]
            pub fn forward(&self, xs: &#private::tch::Tensor) -> #private::tch::Tensor
            where
                for<'__p> Self: #private::NeedsTrainFlag,
            {
                #private::tch::nn::ModuleT::forward_t(self, xs, false)
            }
        }
    }
}

/// Whether `ty` names one of the struct's type or const parameters (then the parent is
/// only a module for some arguments, and the impl's bound says which).
pub(crate) fn mentions_type_params(ty: &Type, generics: &Generics) -> bool {
    let params: Vec<&syn::Ident> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            syn::GenericParam::Type(param) => Some(&param.ident),
            syn::GenericParam::Const(param) => Some(&param.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    fn walk(tokens: TokenStream, params: &[&syn::Ident]) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => params.iter().any(|param| **param == ident),
            proc_macro2::TokenTree::Group(group) => walk(group.stream(), params),
            _ => false,
        })
    }
    !params.is_empty() && walk(ty.to_token_stream(), &params)
}

fn parameters_impl(patch: &PatchStruct, from: &Type, private: &TokenStream) -> TokenStream {
    let ident = &patch.ident;
    // The higher-ranked bound keeps a concrete parent without `Parameters` from being an
    // error here: the patch then simply has no `Parameters` either.
    let generics = with_predicates(
        &patch.generics,
        vec![parse_quote!(for<'__p> #from: #private::Parameters)],
    );
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let visits = tensor_fields(patch).map(|(field, role)| {
        let field_ident = &field.ident;
        let name = field_ident.to_string();
        quote!(visitor.tensor(#name, &self.#field_ident, #private::TensorRole::#role);)
    });
    let visits_mut = tensor_fields(patch).map(|(field, role)| {
        let field_ident = &field.ident;
        let name = field_ident.to_string();
        quote!(visitor.tensor(#name, &mut self.#field_ident, #private::TensorRole::#role);)
    });
    quote! {
        impl #impl_g #private::Parameters for #ident #ty_g #where_clause {
            fn visit<'__a>(&'__a self, visitor: &mut #private::Visitor<'__a, '_>) {
                #private::Parameters::visit(&self.base, visitor);
                #(#visits)*
            }
            fn visit_mut(&mut self, visitor: &mut #private::VisitorMut<'_>) {
                #private::Parameters::visit_mut(&mut self.base, visitor);
                #(#visits_mut)*
            }
        }
    }
}

/// `Layer` (so the patch can sit in a `Slot` and be stacked on at run time) whenever its
/// parent is a `Layer` and the patch is a module with parameters. The higher-ranked bounds
/// keep a parent that is not a `Layer` from being an error: the patch then is not one either.
fn layer_impl(patch: &PatchStruct, from: &Type, private: &TokenStream) -> TokenStream {
    let ident = &patch.ident;
    let name = patch_name(patch);
    let (_, ty_g, _) = patch.generics.split_for_impl();
    let generics = with_predicates(
        &patch.generics,
        vec![
            parse_quote!(for<'__x> #from: #private::Layer),
            parse_quote!(
                for<'__x> #ident #ty_g: #private::tch::nn::ModuleT
                    + #private::Parameters
                    + ::core::marker::Send
                    + ::core::any::Any
            ),
        ],
    );
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let content = quote!(dyn #private::SlotContent<<Self as #private::Layer>::Root>);
    quote! {
        #[diagnostic::do_not_recommend]
        impl #impl_g #private::Layer for #ident #ty_g #where_clause {
            type Root = <#from as #private::Layer>::Root;
            fn collect_patch_names(&self, names: &mut #private::Vec<&'static str>) {
                names.push(#name);
                #private::Layer::collect_patch_names(&self.base, names);
            }
            #[inline]
            fn root(&self) -> &<Self as #private::Layer>::Root {
                #private::Layer::root(&self.base)
            }
            #[inline]
            fn root_mut(&mut self) -> &mut <Self as #private::Layer>::Root {
                #private::Layer::root_mut(&mut self.base)
            }
            fn inner(&self) -> ::core::option::Option<&#content> {
                ::core::option::Option::Some(#private::Layer::as_content(&self.base))
            }
            fn inner_mut(&mut self) -> ::core::option::Option<&mut #content> {
                ::core::option::Option::Some(#private::Layer::as_content_mut(&mut self.base))
            }
            fn peel(
                self,
            ) -> ::core::result::Result<#private::Box<#content>, #private::Box<#content>> {
                ::core::result::Result::Ok(#private::Layer::into_content(#private::Patch::into_base(self)))
            }
            fn into_root(
                self,
            ) -> ::core::result::Result<<Self as #private::Layer>::Root, #private::Box<#content>> {
                ::core::result::Result::Err(#private::Box::new(self))
            }
            fn hyperparameters(&self) -> #private::HyperList {
                #private::Layer::hyperparameters(&self.base)
            }
            fn added_tensors(&self) -> #private::Vec<#private::tch::Tensor> {
                #private::Patch::added_tensors(self)
                    .into_iter()
                    .map(|(_, tensor, _)| tensor.shallow_clone())
                    .collect()
            }
        }
    }
}

fn debug_impl(patch: &PatchStruct, from: &Type) -> TokenStream {
    let ident = &patch.ident;
    let name = patch_name(patch);
    let mut predicates: Vec<WherePredicate> = vec![parse_quote!(#from: ::core::fmt::Debug)];
    predicates.extend(patch.fields.iter().map(|field| {
        let ty = &field.ty;
        parse_quote_spanned_debug(ty)
    }));
    let generics = with_predicates(&patch.generics, predicates);
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let fields = patch.fields.iter().map(|field| {
        let field_ident = &field.ident;
        let field_name = field_ident.to_string();
        quote!(.field(#field_name, &self.#field_ident))
    });
    quote! {
        impl #impl_g ::core::fmt::Debug for #ident #ty_g #where_clause {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name).field("base", &self.base) #(#fields)* .finish()
            }
        }
    }
}

fn parse_quote_spanned_debug(ty: &Type) -> WherePredicate {
    syn::parse2(quote_spanned!(ty.span()=> #ty: ::core::fmt::Debug)).expect("a where predicate")
}

/// Non-generic patches are listed in a process-wide table, so `is_patched(&dyn Any)` can
/// recognise them. A generic patch has no single type to list.
fn registration(patch: &PatchStruct, private: &TokenStream) -> TokenStream {
    if !patch.generics.params.is_empty() {
        return TokenStream::new();
    }
    let ident = &patch.ident;
    let name = patch_name(patch);
    quote! {
        #private::inventory::submit! {
            #private::PatchTypeInfo::new(
                #name,
                || ::core::any::TypeId::of::<#ident>(),
                || ::core::any::type_name::<<#ident as #private::Patch>::Base>(),
            )
        }
    }
}
