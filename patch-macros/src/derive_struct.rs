//! What the derives read alike from the struct they are put on: its fields (an enum or a
//! union is an error), each field's member and name, and the `crate = path` option.
use crate::ctxt::Ctxt;
use proc_macro2::Span;
use syn::{Attribute, DeriveInput, Fields, LitStr, Member, Path};

/// The fields of the struct `input`, or `None` with an error at the `enum` or `union`
/// keyword: `on_enum` or `on_union`.
pub(crate) fn struct_fields<'a>(
    cx: &Ctxt,
    input: &'a DeriveInput,
    on_enum: &str,
    on_union: &str,
) -> Option<&'a Fields> {
    match &input.data {
        syn::Data::Struct(data) => Some(&data.fields),
        syn::Data::Enum(data) => {
            cx.error_spanned_by(data.enum_token, on_enum);
            None
        }
        syn::Data::Union(data) => {
            cx.error_spanned_by(data.union_token, on_union);
            None
        }
    }
}

/// How the field at `index` of its struct is reached and named before any rename.
pub(crate) struct FieldName {
    /// `self.<member>`.
    pub member: Member,
    /// The identifier without `r#`, or the tuple index.
    pub name: String,
    /// The identifier's span; the call site for a tuple field.
    pub span: Span,
}

impl FieldName {
    /// The member and name of `field`, the field at `index` of its struct.
    pub(crate) fn of(index: usize, field: &syn::Field) -> Self {
        match &field.ident {
            Some(ident) => FieldName {
                member: Member::Named(ident.clone()),
                name: ident.to_string().trim_start_matches("r#").to_owned(),
                span: ident.span(),
            },
            None => FieldName {
                member: Member::Unnamed(index.into()),
                name: index.to_string(),
                span: Span::call_site(),
            },
        }
    }
}

/// The path after `crate =`, written unquoted in every attribute (`crate = my::path`). A
/// string (the older `crate = "path"`) is an error saying to write the path itself.
pub(crate) fn crate_path(input: syn::parse::ParseStream) -> syn::Result<Path> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "write the path unquoted: `crate = {}`, not a string",
                lit.value()
            ),
        ));
    }
    Path::parse_mod_style(input)
}

/// `#[<attr>(crate = path)]` on the struct, for use inside tch-patch itself. Any other
/// option is an error saying `unknown`.
pub(crate) fn container_crate(
    cx: &Ctxt,
    attrs: &[Attribute],
    attr: &str,
    unknown: &str,
) -> Option<Path> {
    let mut krate = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident(attr)) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                krate = Some(crate_path(meta.value()?)?);
                Ok(())
            } else {
                Err(meta.error(unknown))
            }
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    krate
}
