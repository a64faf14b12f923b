//! Patch schemas (what a registered patch accepts), checked patch specs (what a string
//! asked for) and the `PatchArgs` trait of typed config structs.
use super::args::{ArgSpec, ValidatedArgs};
use super::check_args::check_values;
use super::value::Value;
use super::{Registry, TARGETS};
use crate::error::{PatchError, Result};
use crate::registry::PatchStringError;
use std::fmt;
use std::str::FromStr;

/// Everything a registered patch accepts: its name, a doc line and its arguments. Every
/// patch also takes `targets` (a required string, the path glob of the modules to patch),
/// which the registry adds and which is not listed here.
///
/// ```
/// use tch_patch::registry::{ArgSpec, ArgType, PatchSchema, Registry, Value};
///
/// let schema = PatchSchema::new("scale", "multiplies the output")
///     .arg(ArgSpec::new("factor", ArgType::Float).default(Value::Float(1.0)).doc("the factor"));
/// let mut registry = Registry::new();
/// registry.add(schema)?;
/// let spec = registry.parse_one(r#"scale(factor=2, targets="head")"#)?;
/// assert_eq!(spec.args.get_f64("factor")?, 2.0);
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PatchSchema {
    /// The name written in patch strings.
    pub name: String,
    /// What the patch does, one line.
    pub doc: String,
    /// The arguments, in the order they are printed.
    pub args: Vec<ArgSpec>,
    /// The `targets` a patch string may leave out (a patch that finds its own nodes, such
    /// as every ReLU of the model); `None`: `targets` is required.
    pub default_targets: Option<String>,
}

impl PatchSchema {
    /// A schema with no arguments yet.
    pub fn new(name: impl Into<String>, doc: impl Into<String>) -> Self {
        PatchSchema {
            name: name.into(),
            doc: doc.into(),
            args: Vec::new(),
            default_targets: None,
        }
    }

    /// Makes `targets` optional, `glob` when left out.
    pub fn default_targets(mut self, glob: impl Into<String>) -> Self {
        self.default_targets = Some(glob.into());
        self
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: ArgSpec) -> Self {
        self.args.push(arg);
        self
    }

    /// The argument named `name`.
    pub fn get(&self, name: &str) -> Option<&ArgSpec> {
        self.args.iter().find(|arg| arg.name == name)
    }

    /// Every argument name a patch string may use: the schema's, then `targets`.
    pub fn accepted(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|arg| arg.name.clone())
            .chain([TARGETS.to_owned()])
            .collect()
    }

    /// Checks the schema: a valid name, argument names unique and not `targets`,
    /// constraints that fit their types, defaults that pass them.
    pub fn validate(&self) -> Result<(), PatchStringError> {
        if !super::args::is_name(&self.name) {
            return Err(PatchStringError::InvalidSchema {
                patch: self.name.clone(),
                message: "the patch name is not a valid name ([A-Za-z_][A-Za-z0-9_]*)".into(),
            });
        }
        for (index, arg) in self.args.iter().enumerate() {
            if self.args[..index]
                .iter()
                .any(|earlier| earlier.name == arg.name)
            {
                return Err(PatchStringError::InvalidSchema {
                    patch: self.name.clone(),
                    message: format!("argument \"{}\" is declared twice", arg.name),
                });
            }
            arg.validate(&self.name)?;
        }
        Ok(())
    }

    /// Checks values given in Rust (not parsed from a string) against the schema, filling
    /// in defaults. The same checks as for a patch string, without `targets`. The error
    /// is a [`PatchError::PatchString`]: `#[derive(PatchArgs)]`'s `to_args` returns it as
    /// it is.
    pub fn check_values(&self, values: Vec<(String, Value)>) -> Result<ValidatedArgs> {
        let given: Vec<_> = values
            .into_iter()
            .map(|(name, value)| (name, value, None))
            .collect();
        check_values(self, given, false)
            .map(|(args, _)| args)
            .map_err(PatchError::from)
    }
}

impl fmt::Display for PatchSchema {
    /// A help text: the name and doc, then one line per argument.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.doc.is_empty() {
            write!(f, ": {}", self.doc)?;
        }
        for arg in &self.args {
            write!(f, "\n  {arg}")?;
        }
        match &self.default_targets {
            None => write!(
                f,
                "\n  {TARGETS}: string (required) (path glob of the modules to patch)"
            ),
            Some(glob) => write!(
                f,
                "\n  {TARGETS}: string (default {glob:?}) (path glob of the modules to patch)"
            ),
        }
    }
}

/// One checked patch of a patch string: which patch, its typed arguments and the target
/// selector (the `targets` glob), ready to be applied to the matching modules.
///
/// Printing a spec (`Display`) gives a patch string with every argument, defaults
/// included, that parses back to an equal spec:
///
/// ```
/// use tch_patch::registry::PatchSpec;
///
/// let spec: PatchSpec = r#"lora(rank=4, targets="*.attn.{q,v}")"#.parse()?;
/// assert_eq!(spec.targets, "*.attn.{q,v}");
/// assert_eq!(
///     spec.to_string(),
///     r#"lora(rank=4, alpha=16.0, dropout=0.0, use_rslora=false, targets="*.attn.{q,v}")"#
/// );
/// assert_eq!(spec.to_string().parse::<PatchSpec>()?, spec);
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PatchSpec {
    /// The registered patch name.
    pub name: String,
    /// Every argument, checked and typed, defaults filled in.
    pub args: ValidatedArgs,
    /// The path glob of the modules to patch.
    pub targets: String,
}

impl PatchSpec {
    /// The arguments as the patch's typed config. An error if the spec is of another
    /// patch than `C`'s.
    pub fn config<C: PatchArgs>(&self) -> Result<C> {
        C::from_args(&self.args)
    }
}

impl fmt::Display for PatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (name, value) in self.args.iter() {
            write!(f, "{name}={value}, ")?;
        }
        write!(f, "{TARGETS}={})", Value::Str(self.targets.clone()))
    }
}

impl FromStr for PatchSpec {
    type Err = PatchStringError;

    /// Parses one patch with the [global registry](Registry::global).
    fn from_str(text: &str) -> Result<Self, PatchStringError> {
        Registry::global()?.parse_one(text)
    }
}

/// Prints a chain of specs as one patch string, `; `-separated, that parses back to them.
pub fn to_patch_string(specs: &[PatchSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A typed config struct of a registered patch: one field per argument.
///
/// Derive it with `#[derive(PatchArgs)]`, which also registers the patch in every
/// program that links the crate (no central list to edit). The syntax:
///
/// * on the struct: `#[patch_args(name = "...")]` (required: the name in patch strings),
///   `default` to also derive `Default` from the fields' defaults, and `patch = Type` to
///   make the patch applicable to models ([`apply_patch_string`](crate::apply_patch_string)):
///   * `patch = Gain<_>, over(nn::Linear, MyBlock)`: a patch generic over its base, built
///     over whatever a slot holds (the `_`, so it stacks on other patches), for each slot
///     type listed in `over(...)`;
///   * `patch = Rows`: a patch of one layer type (`#[patch(from = nn::Embedding)]`), built
///     over a bare slot of that type (a patched one is refused);
///
///   the patch type must implement [`BuildPatch`](crate::patches::BuildPatch) with this
///   struct as its `Config`, and have the same name (`#[patch(name = "...")]`); otherwise
///   it fails to compile, at the type. Without `patch`, patch strings parse the patch but
///   cannot apply it ([`PatchStringError::NotApplicable`](crate::registry::PatchStringError::NotApplicable));
/// * field types: `i64`, `f64`, `bool`, `String`, `Vec<i64>`; the field name is the
///   argument name; the field's doc comment is its help line;
/// * on a field: `#[arg(default = literal, range = a..=b, choices("x", "y"))]`, each
///   optional; without `default` the argument is required. Ranges (`1..=4096`,
///   `0.0..1.0`, `0..`, `..=1.0`) are for numbers, choices for strings; a default outside
///   them, a mistyped default or a field named `targets` (every patch has it) fails to
///   compile, each at its span.
///
///
/// ```
/// use tch_patch::registry::{PatchArgs, Registry};
///
/// /// Scales a module's output.
/// #[derive(Debug, Clone, PartialEq, PatchArgs)]
/// #[patch_args(name = "scale_output")]
/// struct ScaleOutput {
///     /// The factor.
///     #[arg(default = 1.0, range = 0.0..=10.0)]
///     factor: f64,
///     /// How to scale.
///     #[arg(default = "mul", choices("mul", "add"))]
///     mode: String,
/// }
///
/// let spec = Registry::global()?.parse_one(r#"scale_output(factor=2.5, targets="head")"#)?;
/// let config: ScaleOutput = spec.config()?;
/// assert_eq!(config, ScaleOutput { factor: 2.5, mode: "mul".into() });
/// let error = Registry::global()?.parse_one(r#"scale_output(factor=11, targets="head")"#);
/// assert_eq!(
///     error.unwrap_err().to_string(),
///     "at column 21: argument \"factor\" of patch \"scale_output\" is 11.0, but must be in 0.0..=10.0"
/// );
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub trait PatchArgs: Sized {
    /// The registered name.
    const NAME: &'static str;
    /// The argument schema.
    fn schema() -> PatchSchema;
    /// The config from checked arguments; an error if they are another patch's.
    fn from_args(args: &ValidatedArgs) -> Result<Self>;
    /// The config's values as checked arguments; an error if a field breaks a constraint
    /// of the schema (a config built in Rust with `rank: 0`).
    fn to_args(&self) -> Result<ValidatedArgs>;
    /// Checks the config against the schema.
    fn validate(&self) -> Result<()> {
        self.to_args().map(drop)
    }
    /// A spec of this config applied to `targets`, as a patch string would give it.
    fn to_spec(&self, targets: impl Into<String>) -> Result<PatchSpec> {
        Ok(PatchSpec {
            name: Self::NAME.to_owned(),
            args: self.to_args()?,
            targets: targets.into(),
        })
    }
}

/// Used by `#[derive(PatchArgs)]`: fails unless `args` are those of patch `name`.
#[doc(hidden)]
pub fn expect_patch(args: &ValidatedArgs, name: &str) -> Result<(), PatchStringError> {
    if args.patch() == name {
        Ok(())
    } else {
        Err(PatchStringError::WrongPatch {
            expected: name.to_owned(),
            found: args.patch().to_owned(),
        })
    }
}
