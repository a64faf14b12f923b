//! Parsing of the `#[patch(...)]` arguments and of the field attributes
//! `#[param]` / `#[buffer]`. Only syntax here; meaning is checked in `valid.rs`.
use crate::ctxt::Ctxt;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, LitStr, Path, Token, Type};

/// The options written in `#[patch(...)]`, each kept with the token that set it (for spans).
#[derive(Default)]
pub struct PatchArgs {
    pub from: Option<Type>,
    pub name: Option<LitStr>,
    pub custom_forward: Option<Ident>,
    pub module_t: Option<Ident>,
    pub krate: Option<Path>,
}

pub const OPTIONS: &str =
    "`from = Type`, `name = \"...\"`, `custom_forward`, `module_t`, `crate = path`";

impl PatchArgs {
    /// Parses the attribute's arguments, recording every problem in `cx` and going on.
    pub fn parse(cx: &Ctxt, input: ParseStream) -> syn::Result<Self> {
        let mut args = PatchArgs::default();
        while !input.is_empty() {
            let key: Ident = if input.peek(Token![crate]) {
                let kw: Token![crate] = input.parse()?;
                Ident::new("crate", kw.span)
            } else {
                input.parse()?
            };
            match key.to_string().as_str() {
                "from" => {
                    input.parse::<Token![=]>()?;
                    let ty: Type = input.parse()?;
                    set_once(cx, &mut args.from, ty, &key);
                }
                "name" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    set_once(cx, &mut args.name, lit, &key);
                }
                "crate" => {
                    input.parse::<Token![=]>()?;
                    let path = Path::parse_mod_style(input)?;
                    set_once(cx, &mut args.krate, path, &key);
                }
                "custom_forward" => set_once(cx, &mut args.custom_forward, key.clone(), &key),
                "module_t" => set_once(cx, &mut args.module_t, key.clone(), &key),
                _ => {
                    cx.error_spanned_by(
                        &key,
                        format!("unknown `#[patch]` option `{key}`; expected one of {OPTIONS}"),
                    );
                    // Skip the value of the unknown option so later options are still read.
                    if input.peek(Token![=]) {
                        input.parse::<Token![=]>()?;
                        input.parse::<syn::Expr>()?;
                    }
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, value: T, key: &Ident) {
    if slot.is_some() {
        cx.error_spanned_by(
            key,
            format!("duplicate `#[patch]` option `{key}`; give it once"),
        );
    } else {
        *slot = Some(value);
    }
}

/// What a field attribute says the field is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldRole {
    /// A plain field: not listed among the patch's tensors.
    Plain,
    /// `#[param]`: a trainable tensor the patch adds.
    Param,
    /// `#[buffer]`: a tensor that is saved and loaded but never trained.
    Buffer,
}

/// Reads the role of a field from its attributes and returns the attributes to keep.
/// Several role attributes on one field are reported, each at its own span.
pub fn field_role(cx: &Ctxt, attrs: &[Attribute]) -> (FieldRole, Vec<Attribute>) {
    let mut role = FieldRole::Plain;
    let mut role_attr: Option<Attribute> = None;
    let mut kept = Vec::new();
    for attr in attrs {
        let this = if attr.path().is_ident("param") {
            FieldRole::Param
        } else if attr.path().is_ident("buffer") {
            FieldRole::Buffer
        } else {
            kept.push(attr.clone());
            continue;
        };
        if let Err(error) = attr.meta.require_path_only() {
            cx.error_spanned_by(
                &attr.meta,
                format!(
                    "`#[{}]` takes no arguments: {error}",
                    attr.path()
                        .get_ident()
                        .map(|i| i.to_string())
                        .unwrap_or_default()
                ),
            );
        }
        if let Some(previous) = &role_attr {
            if previous.path().is_ident(attr.path().get_ident().unwrap()) {
                cx.error_spanned_by(attr, "duplicate attribute; write it once");
                continue;
            }
            cx.error_spanned_by(
                attr,
                format!(
                    "a field is either `#[param]` (trained) or `#[buffer]` (never trained), \
                     not both; this field is already `{}`",
                    previous
                        .path()
                        .get_ident()
                        .map(|i| format!("#[{i}]"))
                        .unwrap_or_default()
                ),
            );
            continue;
        }
        role = this;
        role_attr = Some(attr.clone());
    }
    (role, kept)
}
