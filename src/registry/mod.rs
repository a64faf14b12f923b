//! Named patches with typed, checked arguments, chosen from a string such as
//! `lora(rank=8, alpha=16, targets="*.attn.{q,v}")` (PyGlove's `from_uri`, PEFT's
//! `target_modules`).
//!
//! * [`parse_calls`] reads the text; errors give the column.
//! * A [`Registry`] holds a [`PatchSchema`] per patch name and checks each call against
//!   it: an unknown patch or argument, a missing, mistyped, out-of-range or repeated
//!   argument is a typed [`PatchStringError`] that names what is accepted.
//! * The result is a [`PatchSpec`]: name, [`ValidatedArgs`] (typed getters) and the
//!   `targets` glob, which every patch takes. [`PatchSpec::config`] turns it into the
//!   patch's typed config ([`PatchArgs`]), which the patch's constructor takes.
//!
//! Patches are registered by `#[derive(PatchArgs)]` on their config struct, in any crate:
//! [`Registry::global`] collects them all at first use. A config that names its patch type
//! (`#[patch_args(patch = ...)]`, see [`PatchArgs`](trait@PatchArgs)) makes the patch
//! applicable to a model too ([`apply_patch_string`](crate::apply_patch_string)), for the slot types the patch wraps.
//! Several patches are chained with `;`:
//!
//! ```
//! use tch_patch::patches::LoraConfig;
//! use tch_patch::registry::Registry;
//!
//! let registry = Registry::global()?;
//! let specs = registry.parse(r#"lora(rank=4, targets="*.attn.{q,v}"); bias_only(targets="*.mlp.*")"#)?;
//! assert_eq!(specs[0].name, "lora");
//! let lora: LoraConfig = specs[0].config()?;
//! assert_eq!((lora.rank, lora.alpha), (4, 16.0));
//! assert_eq!(specs[1].targets, "*.mlp.*");
//!
//! let error = registry.parse("lorra(targets=\"*\")").unwrap_err();
//! assert!(error.to_string().starts_with("at column 1: unknown patch \"lorra\" (did you mean \"lora\"?)"));
//! # Ok::<(), tch_patch::PatchError>(())
//! ```
pub(crate) mod apply;
mod args;
mod check_args;
mod error;
mod over;
mod parse;
mod spec;
mod value;

#[doc(hidden)]
pub use apply::SlotRule;
pub use apply::{apply_specs, rule_for};
pub use args::{ArgRange, ArgSpec, ArgType, FromArg, ValidatedArgs};
pub use error::PatchStringError;
pub use parse::{parse_calls, CallArg, PatchCall, Span};
/// Derives [`PatchArgs`](trait@PatchArgs) and registers the patch (see the trait).
pub use patch_macros::PatchArgs;
pub use spec::{expect_patch, to_patch_string, PatchArgs, PatchSchema, PatchSpec};
pub use value::Value;

use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The patch whose arguments are hyperparameter paths (`rebind(0.in_features=10)`),
/// checked by the rebind itself rather than by a schema.
pub(crate) const REBIND: &str = "rebind";

/// The argument every patch takes: the path glob of the modules to patch.
pub const TARGETS: &str = "targets";

/// A patch registered at link time, collected by [`Registry::global`].
/// `#[derive(PatchArgs)]` submits one per config struct, with the rules that apply the
/// patch type of its `#[patch_args(patch = ...)]` to slots; a hand-written schema (which
/// patch strings can name but not apply) can be submitted with `inventory::submit!`.
pub struct RegisteredPatch {
    schema: fn() -> PatchSchema,
    source: fn() -> &'static str,
    rules: &'static [SlotRule],
    node_rule: Option<MakeNodeRule>,
}

/// Builds the rule of a patch that changes nodes (a [`NodeRule`](crate::tree::NodeRule))
/// from a checked spec.
pub type MakeNodeRule =
    fn(&PatchSpec, &tch::nn::VarStore) -> crate::Result<Box<dyn crate::tree::AnyRule>>;

impl RegisteredPatch {
    /// A registration: the schema's constructor and the name of what registered it (a
    /// type name), shown when two registrations take the same patch name.
    pub const fn new(schema: fn() -> PatchSchema, source: fn() -> &'static str) -> Self {
        RegisteredPatch {
            schema,
            source,
            rules: &[],
            node_rule: None,
        }
    }

    /// The registration of a patch that changes nodes rather than slots (replacing every
    /// ReLU by a PReLU, wrapping every Linear after a Dropout): `make` builds its
    /// [`NodeRule`](crate::tree::NodeRule) from a checked spec.
    pub const fn with_node_rule(self, make: MakeNodeRule) -> Self {
        RegisteredPatch {
            node_rule: Some(make),
            ..self
        }
    }

    /// The registration with the rules that apply the patch, one per layer type it wraps.
    /// Used by `#[derive(PatchArgs)]`; not public API.
    #[doc(hidden)]
    pub const fn with_rules(self, rules: &'static [SlotRule]) -> Self {
        RegisteredPatch { rules, ..self }
    }
}

inventory::collect!(RegisteredPatch);

/// More slot types for a patch registered elsewhere, submitted by [`patch_over!`]
/// (`crate::patch_over`): [`Registry::from_inventory`] adds its rules to the patch's own.
#[doc(hidden)]
pub struct ExtraSlotRules {
    patch: &'static str,
    source: fn() -> &'static str,
    rules: &'static [SlotRule],
}

impl ExtraSlotRules {
    /// Rules for patch `patch` from `source` (the config type's name). Used by
    /// [`patch_over!`](crate::patch_over); not public API.
    pub const fn new(
        patch: &'static str,
        source: fn() -> &'static str,
        rules: &'static [SlotRule],
    ) -> Self {
        ExtraSlotRules {
            patch,
            source,
            rules,
        }
    }
}

inventory::collect!(ExtraSlotRules);

/// Patch schemas by name, and for the patches registered with a patch type, the rules
/// that apply them to a model's slots.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    schemas: BTreeMap<String, PatchSchema>,
    rules: BTreeMap<String, Vec<&'static SlotRule>>,
    node_rules: BTreeMap<String, MakeNodeRule>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every patch registered at link time (`#[derive(PatchArgs)]` in any linked crate,
    /// the built-in patches among them), built once. An error if two registrations share
    /// a name or one has an invalid schema.
    pub fn global() -> Result<&'static Registry, PatchStringError> {
        static GLOBAL: OnceLock<std::result::Result<Registry, String>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Registry::from_inventory().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(|message| PatchStringError::InvalidRegistry {
                message: message.clone(),
            })
    }

    /// A new registry with every patch registered at link time; add more with
    /// [`add`](Self::add).
    pub fn from_inventory() -> Result<Registry, PatchStringError> {
        let mut node_rules = Vec::new();
        let mut entries: Vec<(PatchSchema, &'static str, &'static [SlotRule])> =
            inventory::iter::<RegisteredPatch>
                .into_iter()
                .map(|entry| {
                    let schema = (entry.schema)();
                    if let Some(make) = entry.node_rule {
                        node_rules.push((schema.name.clone(), make));
                    }
                    (schema, (entry.source)(), entry.rules)
                })
                .collect();
        entries.sort_by(|a, b| (&a.0.name, a.1).cmp(&(&b.0.name, b.1)));
        for pair in entries.windows(2) {
            if pair[0].0.name == pair[1].0.name {
                return Err(PatchStringError::DuplicatePatchName {
                    name: pair[0].0.name.clone(),
                    sources: vec![pair[0].1.to_owned(), pair[1].1.to_owned()],
                });
            }
        }
        let mut registry = Registry::new();
        for (schema, _, rules) in entries {
            registry.add_with_rules(schema, rules.iter().collect())?;
        }
        registry.node_rules.extend(node_rules);
        let mut extra: Vec<&ExtraSlotRules> =
            inventory::iter::<ExtraSlotRules>.into_iter().collect();
        // Link order is not stable: the rules of one patch in the same order every run
        // (two `patch_over!` of one config told apart by their layer types).
        extra.sort_by_key(|entry| {
            let types: Vec<String> = entry.rules.iter().map(SlotRule::short_name).collect();
            (entry.patch, (entry.source)(), types)
        });
        for entry in extra {
            registry.add_extra_rules(entry)?;
        }
        Ok(registry)
    }

    /// Adds a patch with its rules; an error, leaving the registry as it was, if the
    /// schema is invalid, the name taken or a layer type has two rules.
    fn add_with_rules(
        &mut self,
        schema: PatchSchema,
        rules: Vec<&'static SlotRule>,
    ) -> Result<(), PatchStringError> {
        if let Some(rule) = twice(&rules) {
            return Err(PatchStringError::InvalidSchema {
                patch: schema.name,
                message: format!("it is registered twice for `{}` slots", rule.short_name()),
            });
        }
        let name = schema.name.clone();
        self.add(schema)?;
        if !rules.is_empty() {
            self.rules.insert(name, rules);
        }
        Ok(())
    }

    /// Adds the rules of a [`patch_over!`](crate::patch_over) to its patch's: an error if
    /// the patch is not registered or a layer type then has two rules.
    fn add_extra_rules(&mut self, extra: &ExtraSlotRules) -> Result<(), PatchStringError> {
        let source = (extra.source)();
        if !self.schemas.contains_key(extra.patch) {
            return Err(PatchStringError::InvalidRegistry {
                message: format!(
                    "`patch_over!` of `{source}` adds slot types to patch `{}`, which is not registered",
                    extra.patch
                ),
            });
        }
        let mut rules = self.rules.get(extra.patch).cloned().unwrap_or_default();
        rules.extend(extra.rules);
        if let Some(rule) = twice(&rules) {
            return Err(PatchStringError::InvalidSchema {
                patch: extra.patch.to_owned(),
                message: format!(
                    "it is registered twice for `{}` slots (the second by `patch_over!` of `{source}`)",
                    rule.short_name()
                ),
            });
        }
        self.rules.insert(extra.patch.to_owned(), rules);
        Ok(())
    }

    /// Adds a patch. An error, leaving the registry as it was, if the schema is invalid
    /// or the name is taken.
    pub fn add(&mut self, schema: PatchSchema) -> Result<(), PatchStringError> {
        schema.validate()?;
        if self.schemas.contains_key(&schema.name) {
            return Err(PatchStringError::DuplicatePatchName {
                name: schema.name,
                sources: Vec::new(),
            });
        }
        self.schemas.insert(schema.name.clone(), schema);
        Ok(())
    }

    /// Adds the patch of a [`PatchArgs`] config type.
    pub fn add_args<C: PatchArgs>(&mut self) -> Result<(), PatchStringError> {
        self.add(C::schema())
    }

    /// The registered names, sorted: the names patch strings may use, and the list every
    /// [`PatchStringError::UnknownPatch`] of this registry gives.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.schemas.keys().map(String::as_str)
    }

    /// The names of the layer types patch `name` wraps when applied from a patch string
    /// (`["Linear"]` for `lora`), in registration order; empty for a patch registered
    /// without a patch type, `None` for an unknown name.
    pub fn slot_types(&self, name: &str) -> Option<Vec<String>> {
        self.schemas.get(name)?;
        let rules = self.rules.get(name).map(Vec::as_slice).unwrap_or_default();
        Some(rules.iter().map(|rule| rule.short_name()).collect())
    }

    /// The error for a patch name this registry does not know: every known name (from
    /// [`names`](Self::names)) and the nearest one.
    pub(crate) fn unknown_patch(&self, name: &str, column: Option<usize>) -> PatchStringError {
        PatchStringError::UnknownPatch {
            name: name.to_owned(),
            column,
            nearest: crate::nearest::nearest(name, self.names()),
            known: self.names().map(str::to_owned).collect(),
        }
    }

    /// The schema of patch `name`.
    pub fn schema(&self, name: &str) -> Option<&PatchSchema> {
        self.schemas.get(name)
    }

    /// Parses and checks a patch string: one spec per `;`-separated patch, in order.
    ///
    /// Every patch of the string is checked: one that has a problem does not hide the
    /// next one's. One problem is returned as itself, several as
    /// [`PatchStringError::Problems`], in the order written. A syntax error stops the
    /// parse ([`PatchStringError::PatchSyntax`]), as what follows it cannot be read.
    pub fn parse(&self, text: &str) -> Result<Vec<PatchSpec>, PatchStringError> {
        let mut specs = Vec::new();
        let mut problems = Vec::new();
        for call in parse_calls(text)? {
            match self.check(&call) {
                Ok(spec) => specs.push(spec),
                Err(problem) => problems.push(problem),
            }
        }
        match PatchStringError::from_problems(text, problems) {
            Some(error) => Err(error),
            None => Ok(specs),
        }
    }

    /// Parses and checks a string of exactly one patch.
    pub fn parse_one(&self, text: &str) -> Result<PatchSpec, PatchStringError> {
        let calls = parse_calls(text)?;
        if calls.is_empty() {
            return Err(PatchStringError::PatchSyntax {
                input: text.to_owned(),
                offset: text.len(),
                column: text.chars().count() + 1,
                message: "expected a patch, found the end".into(),
            });
        }
        if let [second, ..] = &calls[1.min(calls.len())..] {
            return Err(PatchStringError::PatchSyntax {
                input: text.to_owned(),
                offset: second.span.offset,
                column: second.span.column,
                message: "expected one patch, found a second one".into(),
            });
        }
        self.check(&calls[0])
    }

    /// Checks one parsed call against its schema.
    pub fn check(&self, call: &PatchCall) -> Result<PatchSpec, PatchStringError> {
        let Some(schema) = self.schemas.get(&call.name) else {
            return Err(self.unknown_patch(&call.name, Some(call.span.column)));
        };
        if call.name == REBIND && self.node_rules.contains_key(REBIND) {
            return check_args::check_rebind(call);
        }
        let given = call.args.iter().map(check_args::given).collect();
        let (args, targets) = check_args::check_values_at(schema, given, true, Some(call.span))?;
        let targets = targets.or_else(|| schema.default_targets.clone());
        Ok(PatchSpec {
            name: call.name.clone(),
            args,
            targets: targets.unwrap_or_default(),
        })
    }

    /// A help text: every patch with its arguments, types, defaults, ranges and docs.
    pub fn help(&self) -> String {
        self.schemas
            .values()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Parses and checks a patch string with the [global registry](Registry::global).
pub fn parse_patches(text: &str) -> Result<Vec<PatchSpec>, PatchStringError> {
    Registry::global()?.parse(text)
}

/// The first rule whose layer type an earlier rule has too.
fn twice<'a>(rules: &[&'a SlotRule]) -> Option<&'a SlotRule> {
    rules.iter().enumerate().find_map(|(index, rule)| {
        rules[..index]
            .iter()
            .any(|earlier| earlier.root() == rule.root())
            .then_some(*rule)
    })
}
