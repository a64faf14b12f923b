//! The parsed form of a `#[derive(Parameters)]` struct, checked as it is read.
use crate::ctxt::Ctxt;
use crate::valid::is_tensor;
use syn::{Attribute, DeriveInput, Generics, Ident, LitStr, Member, Path, Type};

pub struct Model {
    pub ident: Ident,
    pub generics: Generics,
    pub fields: Vec<ModelField>,
    pub krate: Option<Path>,
}

pub struct ModelField {
    pub member: Member,
    pub name: String,
    pub ty: Type,
    pub kind: FieldKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A `Tensor` field: a parameter.
    Param,
    /// A `Tensor` field marked `#[buffer]`.
    Buffer,
    /// Any other field: a child module (or a `Vec`, `Option`, array of them).
    Child,
    /// `#[param(skip)]`: not a tensor of the model.
    Skip,
}

impl Model {
    pub fn from_input(cx: &Ctxt, input: &DeriveInput) -> Option<Self> {
        let krate = container_crate(cx, &input.attrs);
        let fields = match &input.data {
            syn::Data::Struct(data) => &data.fields,
            syn::Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "`#[derive(Parameters)]` goes on a struct: an enum has no fixed set of named tensors",
                );
                return None;
            }
            syn::Data::Union(data) => {
                cx.error_spanned_by(data.union_token, "`#[derive(Parameters)]` goes on a struct");
                return None;
            }
        };
        let fields = fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let member = match &field.ident {
                    Some(ident) => Member::Named(ident.clone()),
                    None => Member::Unnamed(index.into()),
                };
                let default_name = match &field.ident {
                    Some(ident) => ident.to_string().trim_start_matches("r#").to_owned(),
                    None => index.to_string(),
                };
                let (kind, rename) = field_kind(cx, field);
                ModelField {
                    member,
                    name: rename.unwrap_or(default_name),
                    ty: field.ty.clone(),
                    kind,
                }
            })
            .collect();
        Some(Model {
            ident: input.ident.clone(),
            generics: input.generics.clone(),
            fields,
            krate,
        })
    }
}

/// `#[parameters(crate = path)]` on the struct, for use inside tch-patch itself.
fn container_crate(cx: &Ctxt, attrs: &[Attribute]) -> Option<Path> {
    let mut krate = None;
    for attr in attrs
        .iter()
        .filter(|attr| attr.path().is_ident("parameters"))
    {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                krate = Some(meta.value()?.parse::<LitStr>()?.parse()?);
                Ok(())
            } else {
                Err(meta
                    .error("unknown `#[parameters]` option; the only one is `crate = \"path\"`"))
            }
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    krate
}

fn field_kind(cx: &Ctxt, field: &syn::Field) -> (FieldKind, Option<String>) {
    let tensor = is_tensor(&field.ty);
    let mut kind = if tensor {
        FieldKind::Param
    } else {
        FieldKind::Child
    };
    let mut rename = None;
    for attr in &field.attrs {
        if attr.path().is_ident("buffer") {
            if let Err(error) = attr.meta.require_path_only() {
                cx.syn_error(error);
            }
            if !tensor {
                cx.error_spanned_by(
                    &field.ty,
                    "`#[buffer]` marks a `Tensor` field as never trained; a child module's \
                     buffers are declared by the child itself",
                );
            }
            kind = FieldKind::Buffer;
        } else if attr.path().is_ident("param") {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    kind = FieldKind::Skip;
                    Ok(())
                } else if meta.path.is_ident("rename") {
                    rename = Some(meta.value()?.parse::<LitStr>()?.value());
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown `#[param]` option; expected `skip` (not a tensor of the model) \
                         or `rename = \"name\"`",
                    ))
                }
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
    }
    (kind, rename)
}
