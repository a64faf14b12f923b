//! Code generation for `#[derive(PatchArgs)]`: the `PatchArgs` impl (schema, conversion
//! from and to checked arguments), `Default` when asked, and the link-time registration,
//! with the rules that apply the patch type of `patch = ...` to slots.
//! Runs only on a struct that passed `valid.rs`; every runtime item is named through
//! `<crate>::__private`.
use super::ast::{ArgField, ArgsStruct, LitValue, Num, RangeLit};
use super::valid::ArgKind;
use proc_macro2::{Group, Literal, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

pub(super) fn expand(args: &ArgsStruct, kinds: &[ArgKind]) -> TokenStream {
    let private = match &args.krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::tch_patch::__private),
    };
    let registry = quote!(#private::registry);
    let ident = &args.ident;
    let name = args.name.as_ref().map(|n| n.value()).unwrap_or_default();
    let doc = &args.doc;
    let arg_specs = args
        .fields
        .iter()
        .zip(kinds)
        .map(|(field, kind)| arg_spec(&registry, field, *kind));
    let reads = args.fields.iter().map(|field| {
        let (member, name, ty) = (&field.ident, &field.name, &field.ty);
        quote!(#member: args.get_as::<#ty>(#name)?)
    });
    let writes = args.fields.iter().map(|field| {
        let (member, name) = (&field.ident, &field.name);
        quote!((#private::String::from(#name), #registry::FromArg::to_value(&self.#member)))
    });
    let default_impl = args.derive_default.as_ref().map(|_| {
        let fields = args.fields.iter().map(|field| {
            let member = &field.ident;
            let value = field
                .default
                .as_ref()
                .map(|d| rust_value(&d.value))
                .unwrap_or_default();
            quote!(#member: #value)
        });
        quote! {
            impl ::core::default::Default for #ident {
                fn default() -> Self {
                    Self { #(#fields,)* }
                }
            }
        }
    });
    let rules = slot_rules(args, &private);
    let with_rules = rules
        .as_ref()
        .map(|_| quote!(.with_rules(__TCH_PATCH_SLOT_RULES)));
    quote! {
        const _: () = {
            impl #registry::PatchArgs for #ident {
                const NAME: &'static str = #name;
                fn schema() -> #registry::PatchSchema {
                    #registry::PatchSchema::new(#name, #doc) #(.arg(#arg_specs))*
                }
                fn from_args(args: &#registry::ValidatedArgs) -> #private::Result<Self> {
                    #registry::expect_patch(args, #name)?;
                    ::core::result::Result::Ok(Self { #(#reads,)* })
                }
                fn to_args(&self) -> #private::Result<#registry::ValidatedArgs> {
                    <Self as #registry::PatchArgs>::schema()
                        .check_values(#private::vec![#(#writes),*])
                }
            }
            #default_impl
            #rules
            #private::inventory::submit! {
                #registry::RegisteredPatch::new(
                    <#ident as #registry::PatchArgs>::schema,
                    || ::core::any::type_name::<#ident>(),
                ) #with_rules
            }
        };
    }
}

/// The rules of `patch = ...`, one per slot type: `SlotRule::stacking` for each type of
/// `over(...)` (the `_` of the patch type standing for that slot's content), or
/// `SlotRule::bare` for a patch of its own base type. Each is spanned at the type the user
/// wrote, so an unfit type is reported there.
fn slot_rules(args: &ArgsStruct, private: &TokenStream) -> Option<TokenStream> {
    let patch = args.patch.as_ref()?;
    let span = patch.span();
    // The whole call at the user's type, so that a failing check inside it (the names
    // differ) is reported there too.
    let registry = respan(quote!(#private::registry), span);
    let ident = &args.ident;
    let rules: Vec<TokenStream> = match &args.over {
        Some((_, types)) => types
            .iter()
            .map(|slot| {
                let private = respan(private.clone(), slot.span());
                let content = quote_spanned!(slot.span()=> #private::DynLayer<#slot>);
                let patch = fill_holes(patch.to_token_stream(), &content);
                quote_spanned! {span=>
                    #registry::SlotRule::stacking::<#ident, #patch, #slot>()
                }
            })
            .collect(),
        None => vec![quote_spanned! {span=>
            #registry::SlotRule::bare::<#ident, #patch>()
        }],
    };
    Some(quote! {
        const __TCH_PATCH_SLOT_RULES: &[#registry::SlotRule] = &[#(#rules),*];
    })
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

/// `tokens` with every `_` type replaced by `content` (not the `_` of a lifetime `'_`).
pub(super) fn fill_holes(tokens: TokenStream, content: &TokenStream) -> TokenStream {
    let mut after_quote = false;
    tokens
        .into_iter()
        .flat_map(|tree| {
            let lifetime = std::mem::replace(
                &mut after_quote,
                matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == '\''),
            );
            match tree {
                TokenTree::Ident(ident) if ident == "_" && !lifetime => content.clone(),
                TokenTree::Group(group) => {
                    let inner = fill_holes(group.stream(), content);
                    let mut filled = Group::new(group.delimiter(), inner);
                    filled.set_span(group.span());
                    TokenTree::Group(filled).into_token_stream()
                }
                other => other.into_token_stream(),
            }
        })
        .collect()
}

fn arg_spec(registry: &TokenStream, field: &ArgField, kind: ArgKind) -> TokenStream {
    let name = &field.name;
    let ty = match kind {
        ArgKind::Int => quote!(Int),
        ArgKind::Float => quote!(Float),
        ArgKind::Bool => quote!(Bool),
        ArgKind::Str => quote!(Str),
        ArgKind::IntList => quote!(IntList),
    };
    let default = field.default.as_ref().map(|default| {
        let value = registry_value(registry, &default.value, kind);
        quote!(.default(#value))
    });
    let range = field.range.as_ref().map(|range| range_tokens(range, kind));
    let choices = (!field.choices.is_empty()).then(|| {
        let choices = &field.choices;
        quote!(.choices([#(#choices),*]))
    });
    let doc = &field.doc;
    quote! {
        #registry::ArgSpec::new(#name, #registry::ArgType::#ty)
            #default #range #choices .doc(#doc)
    }
}

fn int(value: i64) -> TokenStream {
    let lit = Literal::u64_unsuffixed(value.unsigned_abs());
    if value < 0 {
        quote!(-#lit)
    } else {
        quote!(#lit)
    }
}

fn float(value: f64) -> TokenStream {
    let lit = Literal::f64_unsuffixed(value.abs());
    if value.is_sign_negative() {
        quote!(-#lit)
    } else {
        quote!(#lit)
    }
}

fn num(value: Num, kind: ArgKind) -> TokenStream {
    match (value, kind) {
        (Num::Int(v), ArgKind::Int) => int(v),
        (value, _) => float(value.as_f64()),
    }
}

/// The default as a `Value` of the argument's type (an integer literal of a float
/// argument becomes a float).
fn registry_value(registry: &TokenStream, value: &LitValue, kind: ArgKind) -> TokenStream {
    match value {
        LitValue::Int(v) if kind == ArgKind::Float => {
            let v = float(*v as f64);
            quote!(#registry::Value::Float(#v))
        }
        LitValue::Int(v) => {
            let v = int(*v);
            quote!(#registry::Value::Int(#v))
        }
        LitValue::Float(v) => {
            let v = float(*v);
            quote!(#registry::Value::Float(#v))
        }
        LitValue::Bool(v) => quote!(#registry::Value::Bool(#v)),
        LitValue::Str(v) => quote!(#registry::Value::Str(::core::convert::From::from(#v))),
        LitValue::IntList(items) => {
            let items = items.iter().map(|v| int(*v));
            quote!(#registry::Value::List(::std::vec![#(#registry::Value::Int(#items)),*]))
        }
    }
}

/// The default as a Rust value of the field's type, for `Default`.
fn rust_value(value: &LitValue) -> TokenStream {
    match value {
        LitValue::Int(v) => int(*v),
        LitValue::Float(v) => float(*v),
        LitValue::Bool(v) => quote!(#v),
        LitValue::Str(v) => quote!(::core::convert::From::from(#v)),
        LitValue::IntList(items) => {
            let items = items.iter().map(|v| int(*v));
            quote!(::std::vec![#(#items),*])
        }
    }
}

fn range_tokens(range: &RangeLit, kind: ArgKind) -> TokenStream {
    let bound = |end: &Option<(Num, proc_macro2::Span)>, inclusive: bool| match end {
        None => quote!(::core::ops::Bound::Unbounded),
        Some((n, _)) => {
            let n = num(*n, kind);
            if inclusive {
                quote!(::core::ops::Bound::Included(#n))
            } else {
                quote!(::core::ops::Bound::Excluded(#n))
            }
        }
    };
    let lo = bound(&range.start, true);
    let hi = bound(&range.end, range.inclusive);
    match kind {
        ArgKind::Int => quote!(.int_range((#lo, #hi))),
        _ => quote!(.float_range((#lo, #hi))),
    }
}
