//! The parsed form of a `#[derive(PatchArgs)]` struct: its `#[patch_args(...)]` options
//! and, per field, the `#[arg(...)]` options with their literals read. Only syntax here;
//! whether it all fits together is checked in `valid.rs`.
use crate::ctxt::Ctxt;
use crate::derive_struct::struct_fields;
use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, DeriveInput, Expr, ExprLit, ExprUnary, Generics, Ident, Lit, LitStr, Path, Token,
    Type, UnOp,
};

pub(super) struct ArgsStruct {
    pub ident: Ident,
    pub generics: Generics,
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `default`: also derive `Default` from the fields' defaults.
    pub derive_default: Option<Ident>,
    /// `crate = path`, for use inside tch-patch itself.
    pub krate: Option<Path>,
    /// `patch = Type`: the patch type the config builds, `_` standing for a slot's content.
    pub patch: Option<Type>,
    /// `over(Type, ...)`: the slot layer types a `patch = Gain<_>` wraps, after the `over`.
    pub over: Option<(Ident, Vec<Type>)>,
    pub doc: String,
    pub fields: Vec<ArgField>,
}

pub(super) struct ArgField {
    pub ident: Ident,
    /// The name in patch strings: the field name without `r#`.
    pub name: String,
    pub ty: Type,
    pub default: Option<Literal>,
    pub range: Option<RangeLit>,
    pub choices: Vec<LitStr>,
    pub doc: String,
}

/// A literal written in an `#[arg(...)]` option, with its span.
pub(super) struct Literal {
    pub value: LitValue,
    pub span: Span,
}

pub(super) enum LitValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    IntList(Vec<i64>),
}

/// A number of a range bound.
#[derive(Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Float(v) => v,
        }
    }
}

/// `a..b`, `a..=b`, `a..`, `..=b` with literal ends.
pub(super) struct RangeLit {
    pub start: Option<(Num, Span)>,
    pub end: Option<(Num, Span)>,
    pub inclusive: bool,
    pub span: Span,
}

impl ArgsStruct {
    pub(super) fn from_input(cx: &Ctxt, input: &DeriveInput) -> Option<Self> {
        let mut out = ArgsStruct {
            ident: input.ident.clone(),
            generics: input.generics.clone(),
            name: None,
            derive_default: None,
            krate: None,
            patch: None,
            over: None,
            doc: doc_of(&input.attrs),
            fields: Vec::new(),
        };
        for attr in input
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("patch_args"))
        {
            let result = attr.parse_nested_meta(|meta| container_option(cx, &mut out, meta));
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
        let not_a_struct =
            "`#[derive(PatchArgs)]` goes on a struct with one named field per argument";
        let fields = struct_fields(cx, input, not_a_struct, not_a_struct)?;
        if let syn::Fields::Unnamed(unnamed) = fields {
            cx.error_spanned_by(
                unnamed,
                "`#[derive(PatchArgs)]` needs named fields: each field is an argument, \
                 named as in patch strings (`struct LoraConfig { rank: i64 }`)",
            );
            return None;
        }
        out.fields = fields
            .iter()
            .filter_map(|field| ArgField::from_field(cx, field))
            .collect();
        Some(out)
    }
}

fn container_option(cx: &Ctxt, out: &mut ArgsStruct, meta: ParseNestedMeta) -> syn::Result<()> {
    let duplicate = |what: &str| format!("duplicate `{what}` option; give it once");
    if meta.path.is_ident("name") {
        let lit: LitStr = meta.value()?.parse()?;
        if out.name.is_some() {
            cx.error_spanned_by(&lit, duplicate("name"));
        }
        out.name = Some(lit);
    } else if meta.path.is_ident("default") {
        let ident = meta.path.get_ident().cloned().expect("checked: an ident");
        if out.derive_default.is_some() {
            cx.error_spanned_by(&ident, duplicate("default"));
        }
        out.derive_default = Some(ident);
    } else if meta.path.is_ident("crate") {
        let path = crate::derive_struct::crate_path(meta.value()?)?;
        out.krate = Some(path);
    } else if meta.path.is_ident("patch") {
        let ty: Type = meta.value()?.parse()?;
        if out.patch.is_some() {
            cx.error_spanned_by(&ty, duplicate("patch"));
        }
        out.patch = Some(ty);
    } else if meta.path.is_ident("over") {
        let ident = meta.path.get_ident().cloned().expect("checked: an ident");
        let content;
        syn::parenthesized!(content in meta.input);
        let types = Punctuated::<Type, Token![,]>::parse_terminated(&content)?;
        if out.over.is_some() {
            cx.error_spanned_by(&ident, duplicate("over"));
        }
        out.over = Some((ident, types.into_iter().collect()));
    } else {
        cx.error_spanned_by(
            &meta.path,
            "unknown `#[patch_args]` option; expected `name = \"...\"`, `default`, \
             `patch = Type`, `over(Type, ...)` or `crate = path`",
        );
        if meta.input.peek(syn::Token![=]) {
            meta.value()?.parse::<Expr>()?;
        }
    }
    Ok(())
}

impl ArgField {
    fn from_field(cx: &Ctxt, field: &syn::Field) -> Option<Self> {
        let ident = field.ident.clone()?;
        let mut out = ArgField {
            name: ident.to_string().trim_start_matches("r#").to_owned(),
            ident,
            ty: field.ty.clone(),
            default: None,
            range: None,
            choices: Vec::new(),
            doc: doc_of(&field.attrs),
        };
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("arg")) {
            let result = attr.parse_nested_meta(|meta| field_option(cx, &mut out, meta));
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
        Some(out)
    }
}

fn field_option(cx: &Ctxt, out: &mut ArgField, meta: ParseNestedMeta) -> syn::Result<()> {
    let duplicate = |what: &str| format!("duplicate `{what}` option; give it once");
    if meta.path.is_ident("default") {
        let expr: Expr = meta.value()?.parse()?;
        if out.default.is_some() {
            cx.error_spanned_by(&meta.path, duplicate("default"));
        }
        out.default = literal(cx, &expr);
    } else if meta.path.is_ident("range") {
        let expr: Expr = meta.value()?.parse()?;
        if out.range.is_some() {
            cx.error_spanned_by(&meta.path, duplicate("range"));
        }
        out.range = range(cx, &expr);
    } else if meta.path.is_ident("choices") {
        if !out.choices.is_empty() {
            cx.error_spanned_by(&meta.path, duplicate("choices"));
        }
        let content;
        syn::parenthesized!(content in meta.input);
        let lits = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
        out.choices = lits.into_iter().collect();
    } else {
        cx.error_spanned_by(
            &meta.path,
            "unknown `#[arg]` option; expected `default = literal`, `range = a..=b` or \
             `choices(\"a\", \"b\")`",
        );
        if meta.input.peek(syn::Token![=]) {
            meta.value()?.parse::<Expr>()?;
        }
    }
    Ok(())
}

/// A literal value: a number (maybe negative), `true`/`false`, a string or a list of
/// integers.
fn literal(cx: &Ctxt, expr: &Expr) -> Option<Literal> {
    let span = expr.span();
    let value = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => LitValue::Bool(b.value),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => LitValue::Str(s.value()),
        Expr::Array(array) => {
            let mut items = Vec::new();
            for element in &array.elems {
                match number(cx, element) {
                    Some(Num::Int(v)) => items.push(v),
                    Some(Num::Float(_)) => {
                        cx.error_spanned_by(element, "list defaults hold integers: `[1, 2, 3]`");
                        return None;
                    }
                    None => return None,
                }
            }
            LitValue::IntList(items)
        }
        _ => match number(cx, expr)? {
            Num::Int(v) => LitValue::Int(v),
            Num::Float(v) => LitValue::Float(v),
        },
    };
    Some(Literal { value, span })
}

/// An integer or float literal, maybe negated.
fn number(cx: &Ctxt, expr: &Expr) -> Option<Num> {
    let (negative, inner) = match expr {
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => (true, &**expr),
        other => (false, other),
    };
    let parsed = match inner {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => {
            let text = format!("{}{}", if negative { "-" } else { "" }, int.base10_digits());
            text.parse::<i64>()
                .map(Num::Int)
                .map_err(|_| "does not fit in an i64")
        }
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) => float
            .base10_parse::<f64>()
            .map(|v| Num::Float(if negative { -v } else { v }))
            .map_err(|_| "is not a number"),
        _ => {
            cx.error_spanned_by(
                expr,
                "expected a literal: a number (`8`, `-0.5`, `1e-3`), `true`/`false`, \
                 a string (`\"mul\"`) or a list of integers (`[1, 2]`)",
            );
            return None;
        }
    };
    parsed
        .map_err(|problem| cx.error_spanned_by(expr, format!("this literal {problem}")))
        .ok()
}

fn range(cx: &Ctxt, expr: &Expr) -> Option<RangeLit> {
    let Expr::Range(range) = expr else {
        cx.error_spanned_by(
            expr,
            "expected a range of literals: `1..=4096`, `0.0..1.0`, `0..`, `..=1.0`",
        );
        return None;
    };
    let end_of = |bound: &Option<Box<Expr>>| match bound {
        None => Some(None),
        Some(e) => number(cx, e).map(|n| Some((n, e.span()))),
    };
    let start = end_of(&range.start)?;
    let end = end_of(&range.end)?;
    Some(RangeLit {
        start,
        end,
        inclusive: matches!(range.limits, syn::RangeLimits::Closed(_)),
        span: expr.span(),
    })
}

/// The doc comment, lines joined by spaces.
fn doc_of(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
