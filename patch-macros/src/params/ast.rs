//! The parsed form of a `#[derive(Parameters)]` struct, checked as it is read.
use crate::ctxt::Ctxt;
use crate::derive_struct::{container_crate, struct_fields, FieldName};
use crate::field_options::{FieldOptions, Repeat};
use crate::valid::is_tensor;
use syn::{DeriveInput, Generics, Ident, Member, Path, Type};

pub(super) struct Model {
    pub ident: Ident,
    pub generics: Generics,
    pub fields: Vec<ModelField>,
    pub krate: Option<Path>,
}

pub(super) struct ModelField {
    pub member: Member,
    pub name: String,
    pub ty: Type,
    pub kind: FieldKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
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
    pub(super) fn from_input(cx: &Ctxt, input: &DeriveInput) -> Option<Self> {
        let krate = container_crate(
            cx,
            &input.attrs,
            "parameters",
            "unknown `#[parameters]` option; the only one is `crate = path`",
        );
        let fields = struct_fields(
            cx,
            input,
            "`#[derive(Parameters)]` goes on a struct: an enum has no fixed set of named tensors",
            "`#[derive(Parameters)]` goes on a struct",
        )?;
        let fields = fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let FieldName { member, name, .. } = FieldName::of(index, field);
                let (kind, rename) = field_kind(cx, field);
                ModelField {
                    member,
                    name: rename.unwrap_or(name),
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
            if attr.meta.require_path_only().is_err() {
                cx.error_spanned_by(
                    &attr.meta,
                    "`#[buffer]` takes no options: it marks a `Tensor` field as a buffer",
                );
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
            let mut options = FieldOptions::default();
            let result = options.read(attr, Repeat::Replace, |meta| {
                Err(meta.error(
                    "unknown `#[param]` option; expected `skip` (not a tensor of the model) \
                     or `rename = \"name\"`",
                ))
            });
            if options.skip.is_some() {
                kind = FieldKind::Skip;
            }
            if let Some(lit) = options.rename {
                rename = Some(lit.value());
            }
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
    }
    (kind, rename)
}
