//! The parsed form of a `#[derive(ModuleTree)]` struct: its fields with their names and
//! the `#[tree(...)]` options as written (checked in `valid.rs`).
use crate::ctxt::Ctxt;
use crate::derive_struct::{container_crate, struct_fields, FieldName};
use crate::field_options::{FieldOptions, Repeat};
use proc_macro2::Span;
use syn::{DeriveInput, Generics, Ident, LitStr, Member, Path, Type};

pub(super) struct TreeModel {
    pub ident: Ident,
    pub generics: Generics,
    pub fields: Vec<TreeField>,
    pub krate: Option<Path>,
}

pub(super) struct TreeField {
    pub member: Member,
    /// The path segment: the field name, or a rename.
    pub name: String,
    /// Where the name comes from, for error spans.
    pub name_span: Span,
    pub ty: Type,
    /// `#[tree(skip)]` or `#[param(skip)]`, with the token that said it.
    pub skip: Option<Span>,
    /// `#[tree(rename = "...")]`, with its literal.
    pub rename: Option<LitStr>,
    /// `#[buffer]` (shared with `#[derive(Parameters)]`): a tensor field that is a buffer.
    pub buffer: Option<Span>,
}

pub(super) const FIELD_OPTIONS: &str = "`skip` (not part of the tree) or `rename = \"name\"`";

impl TreeModel {
    pub(super) fn from_input(cx: &Ctxt, input: &DeriveInput) -> Option<Self> {
        let krate = container_crate(
            cx,
            &input.attrs,
            "tree",
            "unknown `#[tree]` option on a struct; the only one is `crate = path` \
             (field options go on fields)",
        );
        let fields = struct_fields(
            cx,
            input,
            "`#[derive(ModuleTree)]` goes on a struct: the fields of an enum's variants \
             have no fixed paths; hold the alternatives in `Slot`s or `Option`s of a struct",
            "`#[derive(ModuleTree)]` goes on a struct",
        )?;
        let fields = fields
            .iter()
            .enumerate()
            .map(|(index, field)| read_field(cx, index, field))
            .collect();
        Some(TreeModel {
            ident: input.ident.clone(),
            generics: input.generics.clone(),
            fields,
            krate,
        })
    }
}

fn read_field(cx: &Ctxt, index: usize, field: &syn::Field) -> TreeField {
    let FieldName { member, name, span } = FieldName::of(index, field);
    let mut tree = FieldOptions::default();
    let mut param = FieldOptions::default();
    let mut buffer = None;
    for attr in &field.attrs {
        if attr.path().is_ident("buffer") {
            buffer = Some(attr.path().get_ident().expect("ident").span());
        } else if attr.path().is_ident("tree") {
            let result = tree.read(attr, Repeat::Refuse, |meta| {
                Err(meta.error(format!(
                    "unknown `#[tree]` option; expected {FIELD_OPTIONS}"
                )))
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        } else if attr.path().is_ident("param") {
            // `#[derive(Parameters)]`'s options, read so both derives name the field alike.
            // Their syntax is checked by that derive; anything unreadable is left to it.
            let _ = param.read(attr, Repeat::Replace, |_| Ok(()));
        }
    }
    let (name, name_span) = match tree.rename.as_ref().or(param.rename.as_ref()) {
        Some(lit) => (lit.value(), lit.span()),
        None => (name, span),
    };
    TreeField {
        member,
        name,
        name_span,
        ty: field.ty.clone(),
        skip: tree.skip.or(param.skip),
        rename: tree.rename,
        buffer,
    }
}
