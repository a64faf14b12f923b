//! `delegate_impl!`: the impl block, with every trait item it leaves out delegated to the
//! parent: `fn m(&self, a: A) -> R { <Parent as Trait>::m(Patch::base(self), a) }`,
//! `type Out = <Parent as Trait>::Out;`, `const N: usize = <Parent as Trait>::N;`.
use super::ast::DelegateInput;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{FnArg, GenericArgument, GenericParam, ImplItem, TraitItem, Type};

pub(super) fn expand(input: DelegateInput) -> TokenStream {
    let DelegateInput {
        definition,
        mut block,
        parent,
    } = input;
    let private = quote!(::tch_patch::__private);
    let Some((_, trait_path, _)) = block.trait_.clone() else {
        return syn::Error::new_spanned(&block, "a trait impl is required").to_compile_error();
    };
    let span = trait_path.span();
    let trait_name = definition.ident.to_string();
    let self_ty = block.self_ty.to_token_stream().to_string();
    let mut substitution = Substitution::new(&definition.generics, &trait_path);

    let written_values: HashSet<String> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(function) => Some(function.sig.ident.to_string()),
            ImplItem::Const(constant) => Some(constant.ident.to_string()),
            _ => None,
        })
        .collect();
    let written_types: HashSet<String> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Type(ty) => Some(ty.ident.to_string()),
            _ => None,
        })
        .collect();

    let mut errors = TokenStream::new();
    let as_trait = quote_spanned!(span=> <#parent as #trait_path>);
    for trait_item in definition.items {
        match trait_item {
            TraitItem::Fn(mut function)
                if !written_values.contains(&function.sig.ident.to_string()) =>
            {
                substitution.visit_signature_mut(&mut function.sig);
                match delegated_fn(&function.sig, &as_trait, &private, span) {
                    Ok(item) => block.items.push(item),
                    Err(why) => errors.extend(
                        syn::Error::new(
                            span,
                            format!(
                                "`{trait_name}::{name}` {why}, so it cannot be delegated to the \
                                 parent: override it in `#[delegate_rest] impl {trait_name} for \
                                 {self_ty} {{ fn {name}(..) {{ .. }} }}` (and leave `{trait_name}` \
                                 out of `delegate(..)`)",
                                name = function.sig.ident,
                            ),
                        )
                        .to_compile_error(),
                    ),
                }
            }
            TraitItem::Type(mut ty) if !written_types.contains(&ty.ident.to_string()) => {
                substitution.visit_generics_mut(&mut ty.generics);
                let ident = &ty.ident;
                let (impl_g, ty_g, where_clause) = ty.generics.split_for_impl();
                let _ = impl_g;
                let params = &ty.generics.params;
                block.items.push(syn::parse_quote_spanned! {span=>
                    type #ident <#params> = #as_trait::#ident #ty_g #where_clause;
                });
            }
            TraitItem::Const(mut constant)
                if !written_values.contains(&constant.ident.to_string()) =>
            {
                substitution.visit_type_mut(&mut constant.ty);
                let ident = &constant.ident;
                let ty = &constant.ty;
                block.items.push(syn::parse_quote_spanned! {span=>
                    const #ident: #ty = #as_trait::#ident;
                });
            }
            TraitItem::Macro(mac) => errors.extend(
                syn::Error::new(
                    span,
                    format!(
                        "`{trait_name}` has a macro among its items (`{}!`); delegation needs \
                         every item written out",
                        mac.mac.path.to_token_stream()
                    ),
                )
                .to_compile_error(),
            ),
            _ => {}
        }
    }
    quote! {
        #block
        #errors
    }
}

/// The delegating method, or why there is none.
fn delegated_fn(
    sig: &syn::Signature,
    as_trait: &TokenStream,
    private: &TokenStream,
    span: Span,
) -> Result<ImplItem, &'static str> {
    let mut sig = sig.clone();
    let mut args = Vec::new();
    let mut receiver = None;
    for (index, input) in sig.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Receiver(recv) => {
                let kind = receiver_kind(recv)
                    .ok_or("has a receiver other than `self`, `&self`, `&mut self`")?;
                receiver = Some(match kind {
                    Receiver::Ref => quote!(#private::Patch::base(self)),
                    Receiver::Mut => quote!(#private::Patch::base_mut(self)),
                    Receiver::Value => quote!(#private::Patch::into_base(self)),
                });
                recv.mutability = if recv.reference.is_some() {
                    recv.mutability
                } else {
                    None
                };
            }
            FnArg::Typed(typed) => {
                if mentions_self(&typed.ty) {
                    return Err("takes a `Self` argument");
                }
                let name = format_ident!("__arg{}", index, span = span);
                *typed.pat = syn::parse_quote!(#name);
                args.push(name);
            }
        }
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        if mentions_self(ty) {
            return Err("returns `Self`");
        }
    }
    let ident = &sig.ident;
    let turbofish: Vec<TokenStream> = sig
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(ty) => Some(ty.ident.to_token_stream()),
            GenericParam::Const(constant) => Some(constant.ident.to_token_stream()),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    let turbofish = (!turbofish.is_empty()).then(|| quote!(::<#(#turbofish),*>));
    let receiver = receiver.into_iter();
    let mut call = quote_spanned!(span=> #as_trait::#ident #turbofish(#(#receiver,)* #(#args),*));
    if sig.asyncness.is_some() {
        call = quote!(#call.await);
    }
    if sig.unsafety.is_some() {
        call = quote!(unsafe { #call });
    }
    Ok(syn::parse_quote_spanned! {span=>
        #[inline]
        #sig { #call }
    })
}

enum Receiver {
    Ref,
    Mut,
    Value,
}

fn receiver_kind(recv: &syn::Receiver) -> Option<Receiver> {
    if recv.colon_token.is_none() {
        return Some(match (&recv.reference, &recv.mutability) {
            (Some(_), Some(_)) => Receiver::Mut,
            (Some(_), None) => Receiver::Ref,
            (None, _) => Receiver::Value,
        });
    }
    match &*recv.ty {
        Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
            Some(Receiver::Value)
        }
        Type::Reference(reference) => match &*reference.elem {
            Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
                Some(if reference.mutability.is_some() {
                    Receiver::Mut
                } else {
                    Receiver::Ref
                })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether a type names `Self` itself (not `Self::Assoc`, which delegation preserves).
fn mentions_self(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'a> Visit<'a> for Finder {
        fn visit_type_path(&mut self, path: &'a syn::TypePath) {
            if path.qself.is_none()
                && path.path.segments.len() == 1
                && path.path.segments[0].ident == "Self"
            {
                self.0 = true;
            }
            syn::visit::visit_type_path(self, path);
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// Replaces the trait's generic parameters by the arguments the impl gives them.
struct Substitution {
    types: HashMap<String, GenericArgument>,
    lifetimes: HashMap<String, syn::Lifetime>,
}

impl Substitution {
    fn new(generics: &syn::Generics, trait_path: &syn::Path) -> Self {
        let args: Vec<GenericArgument> = match trait_path.segments.last().map(|s| &s.arguments) {
            Some(syn::PathArguments::AngleBracketed(args)) => args.args.iter().cloned().collect(),
            _ => Vec::new(),
        };
        let mut lifetimes_given = args.iter().filter_map(|arg| match arg {
            GenericArgument::Lifetime(lifetime) => Some(lifetime.clone()),
            _ => None,
        });
        let mut others_given = args
            .iter()
            .filter(|arg| matches!(arg, GenericArgument::Type(_) | GenericArgument::Const(_)));
        let mut this = Substitution {
            types: HashMap::new(),
            lifetimes: HashMap::new(),
        };
        for param in &generics.params {
            match param {
                GenericParam::Lifetime(param) => {
                    if let Some(given) = lifetimes_given.next() {
                        this.lifetimes
                            .insert(param.lifetime.ident.to_string(), given);
                    }
                }
                GenericParam::Type(param) => {
                    let given = others_given
                        .next()
                        .cloned()
                        .or_else(|| param.default.clone().map(GenericArgument::Type));
                    if let Some(given) = given {
                        this.types.insert(param.ident.to_string(), given);
                    }
                }
                GenericParam::Const(param) => {
                    let given = others_given
                        .next()
                        .cloned()
                        .or_else(|| param.default.clone().map(GenericArgument::Const));
                    if let Some(given) = given {
                        this.types.insert(param.ident.to_string(), given);
                    }
                }
            }
        }
        this
    }

    fn lookup(&self, path: &syn::Path) -> Option<&GenericArgument> {
        let first = path.segments.first()?;
        if path.leading_colon.is_some() || !first.arguments.is_none() {
            return None;
        }
        self.types.get(&first.ident.to_string())
    }
}

fn as_expr(arg: &GenericArgument) -> syn::Expr {
    match arg {
        GenericArgument::Const(expr) => syn::parse_quote!({ #expr }),
        other => syn::parse_quote!({ #other }),
    }
}

impl VisitMut for Substitution {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(path) = ty {
            if path.qself.is_none() {
                if let Some(arg) = self.lookup(&path.path).cloned() {
                    let rest: Vec<_> = path.path.segments.iter().skip(1).cloned().collect();
                    *ty = match (&arg, rest.is_empty()) {
                        (GenericArgument::Type(arg), true) => arg.clone(),
                        (GenericArgument::Type(arg), false) => {
                            syn::parse_quote!(<#arg>::#(#rest)::*)
                        }
                        (other, _) => Type::Verbatim(quote!({ #other })),
                    };
                    return;
                }
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }

    fn visit_expr_mut(&mut self, expr: &mut syn::Expr) {
        if let syn::Expr::Path(path) = expr {
            if path.qself.is_none() && path.path.segments.len() == 1 {
                if let Some(arg) = self.lookup(&path.path) {
                    *expr = as_expr(arg);
                    return;
                }
            }
        }
        syn::visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
        if let Some(given) = self.lifetimes.get(&lifetime.ident.to_string()) {
            *lifetime = given.clone();
        }
    }
}
