//! `skip` and `rename = "name"`, the field options that `#[param(...)]` and `#[tree(...)]`
//! share.
use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitStr};

/// Whether an option may be given again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// The later one replaces the earlier.
    Replace,
    /// Giving it again is an error at the repeat.
    Refuse,
}

/// The `skip` and `rename` options read so far, with their spans.
#[derive(Default)]
pub(crate) struct FieldOptions {
    /// `skip`, with the token that said it.
    pub skip: Option<Span>,
    /// `rename = "..."`, with its literal.
    pub rename: Option<LitStr>,
}

impl FieldOptions {
    /// Reads `skip` and `rename` from `attr` into `self`, passing any other option to
    /// `other`. The first error ends the reading; what was read until then stays in `self`.
    pub(crate) fn read(
        &mut self,
        attr: &Attribute,
        repeat: Repeat,
        mut other: impl FnMut(&ParseNestedMeta) -> syn::Result<()>,
    ) -> syn::Result<()> {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                if repeat == Repeat::Refuse && self.skip.is_some() {
                    return Err(meta.error("duplicate `skip`; write it once"));
                }
                self.skip = Some(meta.path.get_ident().expect("ident").span());
                Ok(())
            } else if meta.path.is_ident("rename") {
                let lit: LitStr = meta.value()?.parse()?;
                if repeat == Repeat::Refuse && self.rename.is_some() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "duplicate `rename`; give one name",
                    ));
                }
                self.rename = Some(lit);
                Ok(())
            } else {
                other(&meta)
            }
        })
    }
}
