//! Procedural macros of tch-patch. Use them through the `tch-patch` crate, which re-exports
//! them next to the runtime they expand to.
//!
//! Each macro runs in three stages, one file each: parse into a small AST (`ast.rs`,
//! `attr.rs`), check it and record every error with its span (`valid.rs`, `ctxt.rs`),
//! then generate code (`expand.rs`).

mod ast;
mod attr;
mod ctxt;
mod delegate;
mod derive_struct;
mod expand;
mod field_options;
mod forward;
mod params;
mod registry;
mod tree;
mod valid;

use proc_macro::TokenStream;
use syn::parse::Parser;

/// Turns a struct into a patch of an existing module: `#[patch(from = Parent)] struct P { .. }`.
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `from = Type` | required: the parent module the patch wraps (a type, generic `L` allowed, not a reference) |
/// | `name = "..."` | the patch's `Patch::NAME` (default: the struct's name) |
/// | `module_t` | the parent implements only `nn::ModuleT` (like `nn::BatchNorm`), or the patch's forward depends on train mode: the patch implements `nn::ModuleT`, overrides `forward_t`, and its `forward(xs)` is a compile error |
/// | `crate = path` | the path of tch-patch (unquoted), for use inside tch-patch itself |
/// | `into_base = path` | `Patch::into_base` calls `path(self)` (a `fn(Self) -> Parent`) instead of handing out `base` as it is: for a patch that changed its parent's tensors (an int8 weight) and must give back a parent that works |
///
/// `custom_forward` is gone: a `#[patch_forward]` block overrides the forward by itself.
///
/// # Field attributes
///
/// | attribute | meaning |
/// |---|---|
/// | `#[param]` | a trainable `Tensor` of the patch, named after the field, listed after the parent's |
/// | `#[buffer]` | a non-trainable `Tensor`, saved and moved with the patch |
/// | none | a plain field (config, a flag), not a tensor of the module |
///
/// A field named `base` is an error: the macro adds it.
///
/// # What is generated
///
/// * a `base: Parent` field (first), holding the parent by value;
/// * `Deref`/`DerefMut`, `AsRef`, `AsMut`, `Borrow`, `BorrowMut` to the parent;
/// * `tch_patch::Patch` (`base`, `into_base`, `NAME`), `tch_patch::Parameters` (the parent's
///   names, then the patch's tensors), `tch_patch::tree::Layer` (so it stacks in a `Slot`);
/// * `nn::Module` (or `nn::ModuleT` with `module_t`) delegating to the parent bit for bit,
///   unless a `#[patch_forward]` block overrides it;
/// * `tch_patch::PatchView` for a patch without fields (view `&Parent` as `&P` in place).
///
/// Generic patches (`struct Lora<L>`, `from = L`), where clauses and patches of patches work.
///
/// A full, runnable example is the crate documentation of tch-patch
/// (<https://docs.rs/tch-patch/latest/tch_patch/>) and the trait `tch_patch::Patch`.
#[proc_macro_attribute]
pub fn patch(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(patch_impl(args.into(), input.into())).into()
}

fn patch_impl(
    args: proc_macro2::TokenStream,
    input: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let cx = ctxt::Ctxt::new();
    let args = (|stream: syn::parse::ParseStream| attr::PatchArgs::parse(&cx, stream)).parse2(args);
    let item: syn::Item = syn::parse2(input)?;
    let args = match args {
        Ok(args) => args,
        Err(error) => {
            cx.syn_error(error);
            attr::PatchArgs::default()
        }
    };
    let from = args.from.clone();
    let patch = ast::PatchStruct::from_item(&cx, args, item.clone());
    if let Some(patch) = &patch {
        valid::check(&cx, patch);
    }
    if let Err(errors) = cx.check() {
        let mut tokens = errors.into_compile_error();
        tokens.extend(fallback(item, from));
        return Ok(tokens);
    }
    Ok(expand::expand(
        &patch.expect("no errors, so the struct was read"),
    ))
}

/// What a `#[patch]` with errors expands to besides them (the way thiserror's
/// `fallback.rs` does): the user's item, so that one mistake is one error and not also
/// "cannot find type" at every use. A struct loses its `#[param]` / `#[buffer]` field
/// attributes (only `#[patch]` reads them) and gains `base: Parent` when `from` names a
/// plain type, so that `P { base: .. }` and the generic parameters it uses still resolve.
fn fallback(mut item: syn::Item, from: Option<syn::Type>) -> proc_macro2::TokenStream {
    if let syn::Item::Struct(item) = &mut item {
        for field in item.fields.iter_mut() {
            field
                .attrs
                .retain(|a| !a.path().is_ident("param") && !a.path().is_ident("buffer"));
        }
        // Not for `Self` (or a path through it): a struct holding itself has infinite size.
        let names_self =
            |from: &syn::TypePath| from.path.segments.iter().any(|s| s.ident == "Self");
        if let (Some(syn::Type::Path(from)), syn::Fields::Named(fields)) = (from, &mut item.fields)
        {
            if names_self(&from) {
                return quote::quote!(#[allow(dead_code)] #item);
            }
            let has_base = fields
                .named
                .iter()
                .any(|f| f.ident.as_ref().is_some_and(|i| i == "base"));
            if !has_base {
                fields
                    .named
                    .insert(0, syn::parse_quote!(#[allow(dead_code)] pub base: #from));
            }
        }
    }
    // The build fails anyway: no "never constructed" warning on top of the errors.
    quote::quote!(#[allow(dead_code)] #item)
}

/// Overrides the forward of a `#[patch]` struct: put it on an inherent impl block holding
/// `fn forward(&self, xs: &Tensor) -> Tensor` (or, for a `module_t` patch,
/// `fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor`). No option on the struct is
/// needed.
///
/// The block is kept as written (its `forward` stays an inherent method, and may call
/// `self.base.forward(xs)` for the parent's), and the macro adds a hidden inherent method
/// that the struct's `nn::Module` / `nn::ModuleT` impl calls; inherent methods win over the
/// hidden delegating trait, so the override is picked.
///
/// | rule | error when broken |
/// |---|---|
/// | an inherent `impl P` block (not a trait impl, not another item) | at the item |
/// | one `forward` or one `forward_t`, not both, once per patch | at the second one |
/// | `forward` takes `&self, &Tensor` and returns `Tensor`; `forward_t` also `bool` | at the signature |
/// | `forward` for a plain patch, `forward_t` for a `module_t` patch | at the method's name |
/// | arguments: none, or `crate = path` (unquoted) inside tch-patch | at the arguments |
///
/// Example: the crate documentation of tch-patch (<https://docs.rs/tch-patch/latest/tch_patch/>).
#[proc_macro_attribute]
pub fn patch_forward(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(forward::patch_forward(args.into(), input.into())).into()
}

/// Lists a model struct's tensors by name: implements `tch_patch::Parameters` for a struct
/// with named fields.
///
/// | attribute | on | meaning |
/// |---|---|---|
/// | `#[param]` | a `Tensor` field | a trainable tensor, named after the field |
/// | `#[buffer]` | a `Tensor` field | a non-trainable tensor |
/// | none | a field whose type implements `Parameters` | its tensors, prefixed `field.` |
/// | `#[param(rename = "name")]` | a `Tensor` field | a trainable tensor under that name |
/// | `#[param(skip)]` | a field | not a tensor of the model: not listed |
/// | `#[parameters(crate = path)]` | the struct | the path of tch-patch (unquoted), inside tch-patch itself |
///
/// `#[param]` and `#[buffer]` on one field, an enum, a union, or a field type that does not
/// implement `Parameters` is an error. Runnable example: the trait `tch_patch::Parameters`
/// (<https://docs.rs/tch-patch/latest/tch_patch/trait.Parameters.html>).
#[proc_macro_derive(Parameters, attributes(param, buffer, parameters))]
pub fn derive_parameters(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(params::derive(input.into())).into()
}

/// A typed config struct of a named patch, registered in the patch registry of every
/// program that links the crate: implements `tch_patch::registry::PatchArgs`.
///
/// | attribute | on | meaning |
/// |---|---|---|
/// | `#[patch_args(name = "...")]` | the struct, required | the name rules and files use for the patch |
/// | `#[patch_args(patch = Type)]` | the struct | the patch it builds (`MyPatch<_>` wraps any slot's content); it must implement `BuildPatch` with this config |
/// | `#[patch_args(over(Type, ...))]` | the struct | the slot contents it applies to |
/// | `#[patch_args(default)]` | the struct | every field may be omitted (uses `Default`) |
/// | `#[patch_args(crate = path)]` | the struct | the path of tch-patch (unquoted), inside tch-patch itself |
/// | `#[arg(default = literal)]` | a field | its value when a rule omits it |
/// | `#[arg(range = a..=b)]` | a number field | the accepted values |
/// | `#[arg(choices("a", "b"))]` | a string field | the accepted values |
///
/// Runnable example: `tch_patch::registry::PatchArgs`
/// (<https://docs.rs/tch-patch/latest/tch_patch/registry/trait.PatchArgs.html>).
#[proc_macro_derive(PatchArgs, attributes(patch_args, arg))]
pub fn derive_patch_args(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(registry::derive(input.into())).into()
}

/// Gives a model struct's modules paths and walks its slots: implements
/// `tch_patch::ModuleTree` for a struct with named fields.
///
/// | attribute | on | meaning |
/// |---|---|---|
/// | none | a `Slot<_>`, a leaf layer, a `Vec`/array of them, or a field whose type derives `ModuleTree` | a node at the field's name |
/// | `#[tree(skip)]` | a field | not walked (config, a foreign module) |
/// | `#[tree(rename = "name")]` | a field | the path segment used instead of the field's name |
/// | `#[buffer]` | a `Tensor` field | a buffer of the node |
/// | `#[tree(crate = path)]` | the struct | the path of tch-patch (unquoted), inside tch-patch itself |
///
/// A field type that is not a node is an error saying what to write. Runnable example: the
/// trait `tch_patch::ModuleTree`
/// (<https://docs.rs/tch-patch/latest/tch_patch/trait.ModuleTree.html>).
#[proc_macro_derive(ModuleTree, attributes(tree, buffer))]
pub fn derive_module_tree(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(tree::derive(input.into())).into()
}

/// Makes a trait delegatable: a patch can then implement it by calling its parent's impl,
/// with `#[patch(from = Parent, delegate(MyTrait))]` or a `#[delegate_rest]` block.
#[cfg_attr(not(doctest), doc = include_str!("delegate/guide.md"))]
#[proc_macro_attribute]
pub fn delegatable(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(delegate::delegatable(args.into(), input.into())).into()
}

/// Implements a `#[delegatable]` trait for a patch from the items you write (your
/// overrides), delegating every other item to the parent. See `delegatable` for the guide.
#[proc_macro_attribute]
pub fn delegate_rest(args: TokenStream, input: TokenStream) -> TokenStream {
    ctxt::into_tokens(delegate::delegate_rest(args.into(), input.into())).into()
}

/// Not public API: what a `#[delegatable]` trait's macro expands to.
#[doc(hidden)]
#[proc_macro]
pub fn __delegate_impl(input: TokenStream) -> TokenStream {
    ctxt::into_tokens(delegate::delegate_impl(input.into())).into()
}
