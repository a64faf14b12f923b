//! Parsing of the `#[patch(...)]` arguments and of the field attributes
//! `#[param]` / `#[buffer]`. Only syntax here; meaning is checked in `valid.rs`.
use crate::ctxt::Ctxt;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, LitStr, Path, Token, Type};

/// The options written in `#[patch(...)]`, each kept with the token that set it (for spans).
#[derive(Default)]
pub(crate) struct PatchArgs {
    pub from: Option<Type>,
    pub name: Option<LitStr>,
    pub module_t: Option<Ident>,
    pub krate: Option<Path>,
    pub delegate: Option<crate::delegate::DelegateList>,
    pub into_base: Option<Path>,
}

pub(crate) const OPTIONS: &str = "`from = Type`, `name = \"...\"`, `module_t`, `crate = path`, \
     `delegate(Trait, ..)`, `into_base = path`";

const OPTION_NAMES: [&str; 6] = ["from", "name", "module_t", "crate", "delegate", "into_base"];

fn takes_value(option: &str) -> bool {
    matches!(option, "from" | "name" | "crate" | "into_base")
}

/// The option an unknown name is a likely misspelling of, if any.
fn closest_option(name: &str) -> Option<&'static str> {
    OPTION_NAMES
        .iter()
        .map(|option| (edit_distance(name, option), *option))
        .filter(|(distance, option)| *distance <= 1 + option.len() / 4)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, option)| option)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

impl PatchArgs {
    /// Parses the attribute's arguments, recording every problem in `cx` and going on.
    pub(crate) fn parse(cx: &Ctxt, input: ParseStream) -> syn::Result<Self> {
        let mut args = PatchArgs::default();
        while !input.is_empty() {
            let key: Ident = if input.peek(Token![crate]) {
                let kw: Token![crate] = input.parse()?;
                Ident::new("crate", kw.span)
            } else {
                input.parse()?
            };
            let name = key.to_string();
            let name = if name == "custom_forward" {
                cx.error_spanned_by(
                    &key,
                    "`custom_forward` is no longer needed: a `#[patch_forward]` impl block \
                     overrides the forward by itself; remove `custom_forward`",
                );
                String::new()
            } else if OPTION_NAMES.contains(&name.as_str()) {
                name
            } else {
                let suggestion = closest_option(&name);
                let hint = suggestion
                    .map(|option| format!("did you mean `{option}`? "))
                    .unwrap_or_default();
                cx.error_spanned_by(
                    &key,
                    format!("unknown `#[patch]` option `{key}`; {hint}expected one of {OPTIONS}"),
                );
                match suggestion {
                    // Read a near miss as the option it resembles, when its value has the
                    // right shape, so `frm = nn::Linear` gives one error, not also "missing
                    // `from`".
                    Some(option) if takes_value(option) == input.peek(Token![=]) => {
                        option.to_owned()
                    }
                    _ => {
                        // Skip the value of the unknown option so later options are still read.
                        if input.peek(Token![=]) {
                            input.parse::<Token![=]>()?;
                            input.parse::<syn::Expr>()?;
                        }
                        String::new()
                    }
                }
            };
            match name.as_str() {
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
                    let path = crate::derive_struct::crate_path(input)?;
                    set_once(cx, &mut args.krate, path, &key);
                }
                "delegate" => {
                    let list = crate::delegate::DelegateList::parse(input)?;
                    set_once(cx, &mut args.delegate, list, &key);
                }
                "into_base" => {
                    input.parse::<Token![=]>()?;
                    let path: Path = input.parse()?;
                    set_once(cx, &mut args.into_base, path, &key);
                }
                "module_t" => set_once(cx, &mut args.module_t, key.clone(), &key),
                _ => {}
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
pub(crate) enum FieldRole {
    /// A plain field: not listed among the patch's tensors.
    Plain,
    /// `#[param]`: a trainable tensor the patch adds.
    Param,
    /// `#[buffer]`: a tensor that is saved and loaded but never trained.
    Buffer,
}

/// Reads the role of a field from its attributes and returns the attributes to keep.
/// Several role attributes on one field are reported, each at its own span.
pub(crate) fn field_role(cx: &Ctxt, attrs: &[Attribute]) -> (FieldRole, Vec<Attribute>) {
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
        if attr.meta.require_path_only().is_err() {
            let name = name_of(attr);
            cx.error_spanned_by(
                &attr.meta,
                format!(
                    "`#[{name}]` takes no arguments: write `#[{name}]` alone above a `Tensor` \
                     field and create the tensor where you build the struct"
                ),
            );
        }
        if let Some(previous) = &role_attr {
            if previous.path().is_ident(attr.path().get_ident().unwrap()) {
                cx.error_spanned_by(
                    attr,
                    format!("duplicate `#[{}]`; write it once", name_of(attr)),
                );
                continue;
            }
            cx.error_spanned_by(
                attr,
                format!(
                    "a field is either `#[param]` (trained) or `#[buffer]` (never trained), \
                     not both; this field is already `#[{}]`",
                    name_of(previous)
                ),
            );
            continue;
        }
        role = this;
        role_attr = Some(attr.clone());
    }
    (role, kept)
}

/// `param` or `buffer`: the name of a role attribute.
fn name_of(attr: &Attribute) -> String {
    attr.path()
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{closest_option, edit_distance};

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(edit_distance("frm", "from"), 1);
        assert_eq!(edit_distance("", "name"), 4);
        assert_eq!(closest_option("frm"), Some("from"));
        assert_eq!(closest_option("Name"), Some("name"));
        assert_eq!(closest_option("module"), Some("module_t"));
        assert_eq!(closest_option("parent"), None);
        assert_eq!(closest_option("train"), None);
    }
}
