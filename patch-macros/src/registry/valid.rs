//! Checks a parsed `#[derive(PatchArgs)]` struct: field types the registry knows,
//! defaults, ranges and choices that fit them. Every problem is recorded at its span.
use super::ast::{ArgField, ArgsStruct, LitValue, Num, RangeLit};
use crate::ctxt::Ctxt;
use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::Visit;
use syn::Type;

/// The argument type of a field, from its Rust type.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ArgKind {
    Int,
    Float,
    Bool,
    Str,
    IntList,
}

impl ArgKind {
    fn of(ty: &Type) -> Option<Self> {
        let Type::Path(path) = ty else { return None };
        let last = path.path.segments.last()?;
        match (last.ident.to_string().as_str(), &last.arguments) {
            ("i64", syn::PathArguments::None) => Some(ArgKind::Int),
            ("f64", syn::PathArguments::None) => Some(ArgKind::Float),
            ("bool", syn::PathArguments::None) => Some(ArgKind::Bool),
            ("String", syn::PathArguments::None) => Some(ArgKind::Str),
            ("Vec", syn::PathArguments::AngleBracketed(args)) => match args.args.first() {
                Some(syn::GenericArgument::Type(inner))
                    if args.args.len() == 1 && ArgKind::of(inner) == Some(ArgKind::Int) =>
                {
                    Some(ArgKind::IntList)
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn rust_name(self) -> &'static str {
        match self {
            ArgKind::Int => "i64",
            ArgKind::Float => "f64",
            ArgKind::Bool => "bool",
            ArgKind::Str => "String",
            ArgKind::IntList => "Vec<i64>",
        }
    }
}

const TYPES: &str = "`i64`, `f64`, `bool`, `String` or `Vec<i64>`";

/// Checks the struct; gives each field's argument kind (`None` where it is unknown, which
/// is then an error already recorded).
pub(super) fn check(cx: &Ctxt, args: &ArgsStruct) -> Vec<Option<ArgKind>> {
    match &args.name {
        None => cx.syn_error(syn::Error::new(
            Span::call_site(),
            "missing `#[patch_args(name = \"...\")]`: the name patch strings call this patch by, \
             e.g. `#[patch_args(name = \"lora\")]`",
        )),
        Some(name) if !is_name(&name.value()) => cx.error_spanned_by(
            name,
            "a patch name is a plain identifier ([A-Za-z_][A-Za-z0-9_]*), as written in patch strings",
        ),
        Some(_) => {}
    }
    if !args.generics.params.is_empty() {
        cx.error_spanned_by(
            &args.generics,
            "`#[derive(PatchArgs)]` does not take generic parameters: a registered patch has one \
             concrete config type",
        );
    }
    check_patch(cx, args);
    let kinds: Vec<_> = args
        .fields
        .iter()
        .map(|field| check_field(cx, field))
        .collect();
    if let Some(flag) = &args.derive_default {
        for field in args.fields.iter().filter(|f| f.default.is_none()) {
            cx.error_spanned_by(
                &field.ident,
                format!(
                    "`#[patch_args(default)]` derives `Default` from the arguments' defaults, \
                     but `{}` is required; give it `#[arg(default = ...)]` or remove `{flag}`",
                    field.name
                ),
            );
        }
    }
    kinds
}

/// `patch = Type` and `over(...)`: a patch generic over the slot's content (`Gain<_>`)
/// lists the slot types it wraps; a patch of its own base type lists none.
fn check_patch(cx: &Ctxt, args: &ArgsStruct) {
    let Some(patch) = &args.patch else {
        if let Some((over, _)) = &args.over {
            cx.error_spanned_by(
                over,
                "`over(...)` lists the slot types of the patch named by `patch = Type<_>`; \
                 give that `patch` option too",
            );
        }
        return;
    };
    if matches!(patch, Type::Infer(_)) {
        cx.error_spanned_by(
            patch,
            "`patch = _` names no patch type: write the patch, with `_` where a slot's content \
             goes, e.g. `patch = Gain<_>` (or a patch of one layer type, `patch = EmbeddingRows`)",
        );
        return;
    }
    let generic = holes(patch) > 0;
    match &args.over {
        None if generic => cx.error_spanned_by(
            patch,
            "this patch wraps whatever a slot holds (the `_`): list the slot layer types it \
             wraps with `over(...)`, e.g. `over(nn::Linear, nn::Conv2D)`",
        ),
        None => {}
        Some((over, _)) if !generic => cx.error_spanned_by(
            over,
            "`over(...)` is for a patch generic over a slot's content, written with `_` \
             (`patch = Gain<_>`); this patch type names its base itself, which is the only slot \
             type it wraps: remove `over(...)`, or write its base as `_`",
        ),
        Some((over, types)) => {
            if types.is_empty() {
                cx.error_spanned_by(over, "`over()` lists no slot type; give at least one");
            }
            for (index, ty) in types.iter().enumerate() {
                if holes(ty) > 0 {
                    cx.error_spanned_by(
                        ty,
                        "a slot type of `over(...)` is a layer type such as `nn::Linear`; `_` \
                         goes in `patch = ...` only",
                    );
                } else if types[..index].iter().any(|earlier| same_type(earlier, ty)) {
                    cx.error_spanned_by(ty, "this slot type is listed twice");
                }
            }
        }
    }
}

/// How many `_` the type holds.
fn holes(ty: &Type) -> usize {
    struct Holes(usize);
    impl<'ast> Visit<'ast> for Holes {
        fn visit_type_infer(&mut self, _: &'ast syn::TypeInfer) {
            self.0 += 1;
        }
    }
    let mut holes = Holes(0);
    holes.visit_type(ty);
    holes.0
}

fn same_type(a: &Type, b: &Type) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

fn check_field(cx: &Ctxt, field: &ArgField) -> Option<ArgKind> {
    if field.name == "targets" {
        cx.error_spanned_by(
            &field.ident,
            "every patch takes `targets` (the path glob of the modules to patch) and the \
             registry adds it: remove this field (`PatchSpec::targets` holds it)",
        );
    }
    if !is_name(&field.name) {
        cx.error_spanned_by(
            &field.ident,
            "argument names are ASCII: [A-Za-z_][A-Za-z0-9_]*",
        );
    }
    let Some(kind) = ArgKind::of(&field.ty) else {
        cx.error_spanned_by(
            &field.ty,
            format!("a patch argument is one of {TYPES}; use one of those types for this field"),
        );
        return None;
    };
    if let Some(default) = &field.default {
        let fits = matches!(
            (kind, &default.value),
            (ArgKind::Int, LitValue::Int(_))
                | (ArgKind::Float, LitValue::Int(_) | LitValue::Float(_))
                | (ArgKind::Bool, LitValue::Bool(_))
                | (ArgKind::Str, LitValue::Str(_))
                | (ArgKind::IntList, LitValue::IntList(_))
        );
        if !fits {
            cx.syn_error(syn::Error::new(
                default.span,
                format!(
                    "the default of a `{}` argument must be {}",
                    kind.rust_name(),
                    example(kind)
                ),
            ));
        }
    }
    if let Some(range) = &field.range {
        check_range(cx, field, kind, range);
    }
    if !field.choices.is_empty() {
        check_choices(cx, field, kind);
    }
    Some(kind)
}

fn example(kind: ArgKind) -> &'static str {
    match kind {
        ArgKind::Int => "an integer literal, e.g. `default = 8`",
        ArgKind::Float => "a number literal, e.g. `default = 0.5`",
        ArgKind::Bool => "`true` or `false`",
        ArgKind::Str => "a string literal, e.g. `default = \"mean\"`",
        ArgKind::IntList => "a list of integer literals, e.g. `default = [1, 2]`",
    }
}

fn check_range(cx: &Ctxt, field: &ArgField, kind: ArgKind, range: &RangeLit) {
    if !matches!(kind, ArgKind::Int | ArgKind::Float) {
        cx.syn_error(syn::Error::new(
            range.span,
            format!(
                "`range` is for `i64` and `f64` arguments; a `{}` argument {}",
                kind.rust_name(),
                if kind == ArgKind::Str {
                    "can list its allowed values with `choices(\"a\", \"b\")`"
                } else {
                    "takes no range"
                }
            ),
        ));
        return;
    }
    for (num, span) in range.start.iter().chain(range.end.iter()) {
        if kind == ArgKind::Int && matches!(num, Num::Float(_)) {
            cx.syn_error(syn::Error::new(
                *span,
                "the bounds of an `i64` argument's range are integer literals",
            ));
            return;
        }
    }
    if let (Some((lo, _)), Some((hi, _))) = (&range.start, &range.end) {
        let empty = if range.inclusive {
            lo.as_f64() > hi.as_f64()
        } else {
            lo.as_f64() >= hi.as_f64()
        };
        if empty {
            cx.syn_error(syn::Error::new(
                range.span,
                "this range is empty: no value is allowed",
            ));
            return;
        }
    }
    if let Some(default) = &field.default {
        let value = match default.value {
            LitValue::Int(v) => v as f64,
            LitValue::Float(v) => v,
            _ => return,
        };
        let above = range.start.is_none_or(|(lo, _)| value >= lo.as_f64());
        let below = range.end.is_none_or(|(hi, _)| {
            if range.inclusive {
                value <= hi.as_f64()
            } else {
                value < hi.as_f64()
            }
        });
        if !(above && below) {
            cx.syn_error(syn::Error::new(
                default.span,
                "the default is outside the argument's `range`",
            ));
        }
    }
}

fn check_choices(cx: &Ctxt, field: &ArgField, kind: ArgKind) {
    if kind != ArgKind::Str {
        cx.error_spanned_by(
            &field.choices[0],
            format!(
                "`choices` is for `String` arguments; a `{}` argument {}",
                kind.rust_name(),
                if matches!(kind, ArgKind::Int | ArgKind::Float) {
                    "can be limited with `range = a..=b`"
                } else {
                    "takes no choices"
                }
            ),
        );
        return;
    }
    for (index, choice) in field.choices.iter().enumerate() {
        if field.choices[..index]
            .iter()
            .any(|c| c.value() == choice.value())
        {
            cx.error_spanned_by(choice, "this choice is listed twice");
        }
    }
    if let Some(default) = &field.default {
        if let LitValue::Str(text) = &default.value {
            if !field.choices.iter().any(|c| &c.value() == text) {
                cx.syn_error(syn::Error::new(
                    default.span,
                    "the default is not one of the argument's `choices`",
                ));
            }
        }
    }
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
