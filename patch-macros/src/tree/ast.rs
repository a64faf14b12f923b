//! The parsed form of a `#[derive(ModuleTree)]` struct: its fields with their names and
//! the `#[tree(...)]` options as written (checked in `valid.rs`).
use crate::ctxt::Ctxt;
use proc_macro2::Span;
use syn::{Attribute, DeriveInput, Generics, Ident, LitStr, Member, Path, Type};

pub struct TreeModel {
    pub ident: Ident,
    pub generics: Generics,
    pub fields: Vec<TreeField>,
    pub krate: Option<Path>,
}

pub struct TreeField {
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

pub const FIELD_OPTIONS: &str = "`skip` (not part of the tree) or `rename = \"name\"`";

impl TreeModel {
    pub fn from_input(cx: &Ctxt, input: &DeriveInput) -> Option<Self> {
        let krate = container_crate(cx, &input.attrs);
        let fields = match &input.data {
            syn::Data::Struct(data) => &data.fields,
            syn::Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "`#[derive(ModuleTree)]` goes on a struct: the fields of an enum's variants \
                     have no fixed paths; hold the alternatives in `Slot`s or `Option`s of a struct",
                );
                return None;
            }
            syn::Data::Union(data) => {
                cx.error_spanned_by(data.union_token, "`#[derive(ModuleTree)]` goes on a struct");
                return None;
            }
        };
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
    let (member, mut name, mut name_span) = match &field.ident {
        Some(ident) => (
            Member::Named(ident.clone()),
            ident.to_string().trim_start_matches("r#").to_owned(),
            ident.span(),
        ),
        None => (
            Member::Unnamed(index.into()),
            index.to_string(),
            Span::call_site(),
        ),
    };
    let mut skip = None;
    let mut param_skip = None;
    let mut rename: Option<LitStr> = None;
    let mut param_rename: Option<LitStr> = None;
    let mut buffer = None;
    for attr in &field.attrs {
        if attr.path().is_ident("buffer") {
            buffer = Some(attr.path().get_ident().expect("ident").span());
        } else if attr.path().is_ident("tree") {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    if skip.is_some() {
                        return Err(meta.error("duplicate `skip`; write it once"));
                    }
                    skip = Some(meta.path.get_ident().expect("ident").span());
                    Ok(())
                } else if meta.path.is_ident("rename") {
                    let lit: LitStr = meta.value()?.parse()?;
                    if rename.is_some() {
                        return Err(syn::Error::new(
                            lit.span(),
                            "duplicate `rename`; give one name",
                        ));
                    }
                    rename = Some(lit);
                    Ok(())
                } else {
                    Err(meta.error(format!(
                        "unknown `#[tree]` option; expected {FIELD_OPTIONS}"
                    )))
                }
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        } else if attr.path().is_ident("param") {
            // `#[derive(Parameters)]`'s options, read so both derives name the field alike.
            // Their syntax is checked by that derive; anything unreadable is left to it.
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    param_skip = Some(meta.path.get_ident().expect("ident").span());
                } else if meta.path.is_ident("rename") {
                    param_rename = Some(meta.value()?.parse()?);
                }
                Ok(())
            });
        }
    }
    let skip = skip.or(param_skip);
    if let Some(lit) = rename.as_ref().or(param_rename.as_ref()) {
        name = lit.value();
        name_span = lit.span();
    }
    TreeField {
        member,
        name,
        name_span,
        ty: field.ty.clone(),
        skip,
        rename,
        buffer,
    }
}

/// `#[tree(crate = "path")]` on the struct, for use inside tch-patch itself.
fn container_crate(cx: &Ctxt, attrs: &[Attribute]) -> Option<Path> {
    let mut krate = None;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("tree")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                krate = Some(meta.value()?.parse::<LitStr>()?.parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `#[tree]` option on a struct; the only one is `crate = \"path\"` \
                     (field options go on fields)",
                ))
            }
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    krate
}
