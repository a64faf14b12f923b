//! Patch strings: a table of good and bad strings with the exact result or error text,
//! typed error variants, and property tests (no string makes the parser panic; printing a
//! spec and parsing it again gives the same spec).
use proptest::prelude::*;
use tch_patch::patches::{LoraConfig, MostlyFrozenEmbeddingConfig};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::{
    parse_calls, to_patch_string, ArgSpec, ArgType, PatchArgs, PatchSchema, PatchSpec, Registry,
    Value,
};

/// A patch registered by this test crate only: string choices.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "scale_output", default)]
struct ScaleOutput {
    /// The factor.
    #[arg(default = 1.0, range = 0.0..=10.0)]
    factor: f64,
    /// How to apply it.
    #[arg(default = "mul", choices("mul", "add"))]
    mode: String,
}

fn registry() -> &'static Registry {
    Registry::global().expect("the registry builds")
}

const KNOWN: &str = "bias_only, dora, dropout_before, dropout_before_linear, gelu_activation, int8, lora, mostly_frozen_embedding, prelu_activation, rebind, scale_output";
const LORA_ARGS: &str = "rank, alpha, dropout, use_rslora, targets";

/// Each good string with its specs printed back (`; `-joined), each bad one with its
/// exact error message.
#[test]
fn table_of_patch_strings() {
    let ok = |printed: &str| Ok(printed.to_owned());
    let err = |message: &str| Err(message.to_owned());
    let table: Vec<(&str, Result<String, String>)> = vec![
        // --- good ---
        (
            r#"lora(rank=8, alpha=16, targets="*.attn.{q,v}")"#,
            ok(r#"lora(rank=8, alpha=16.0, dropout=0.0, use_rslora=false, targets="*.attn.{q,v}")"#),
        ),
        (
            r#"lora(rank=4, targets="*.q"); bias_only(targets="*.mlp.*")"#,
            ok(r#"lora(rank=4, alpha=16.0, dropout=0.0, use_rslora=false, targets="*.q"); bias_only(targets="*.mlp.*")"#),
        ),
        (
            "  lora ( targets = \"x\" ,\n rank = 2 , )  ;  ",
            ok(r#"lora(rank=2, alpha=16.0, dropout=0.0, use_rslora=false, targets="x")"#),
        ),
        (
            r#"dropout_before(p=1e-3, targets="*")"#,
            ok(r#"dropout_before(p=0.001, targets="*")"#),
        ),
        (
            r#"dropout_before(p=0, targets="*")"#,
            ok(r#"dropout_before(p=0.0, targets="*")"#),
        ),
        (
            r#"lora(alpha=-0.5, dropout=0.25, use_rslora=true, targets=blocks)"#,
            ok(r#"lora(rank=8, alpha=-0.5, dropout=0.25, use_rslora=true, targets="blocks")"#),
        ),
        (
            r#"mostly_frozen_embedding(tokens=[3, 5, 7,], targets="emb")"#,
            ok(r#"mostly_frozen_embedding(tokens=[3, 5, 7], targets="emb")"#),
        ),
        (
            r#"lora(targets="a\"b\\c\td")"#,
            ok(r#"lora(rank=8, alpha=16.0, dropout=0.0, use_rslora=false, targets="a\"b\\c\td")"#),
        ),
        (
            r#"scale_output(mode=add, targets="head")"#,
            ok(r#"scale_output(factor=1.0, mode="add", targets="head")"#),
        ),
        (
            r#"scale_output(factor=+2.5E1, targets="ü")"#,
            err("at column 21: argument \"factor\" of patch \"scale_output\" is 25.0, but must be in 0.0..=10.0"),
        ),
        // --- syntax errors ---
        // An empty string (or only spaces) is no patch: the identity.
        ("", ok("")),
        ("   ", ok("")),
        (";", err("at column 1: expected a patch name, found ';'")),
        (
            r#"lora(targets="x");;"#,
            err("at column 19: expected a patch name, found ';'"),
        ),
        (
            "lora(rank 8)",
            err("at column 11: expected '=' after argument name \"rank\", found '8'"),
        ),
        (
            "lora)",
            err("at column 5: expected '(' after patch name \"lora\", found ')'"),
        ),
        (
            "lora(=3)",
            err("at column 6: expected an argument name or ')', found '='"),
        ),
        (
            r#"lora(rank=, targets="x")"#,
            err("at column 11: expected a value for argument \"rank\" (a number, true, false, a \"string\", a name or a [list]), found ','"),
        ),
        (
            r#"lora(rank=8 targets="x")"#,
            err("at column 13: expected ',' or ')' after the value of argument \"rank\", found 't'"),
        ),
        (
            r#"lora(targets="abc"#,
            err("at column 14: unterminated string: no closing '\"'"),
        ),
        (
            r#"lora(targets="a\qb")"#,
            err(r#"at column 16: unknown escape '\q' in a string; the escapes are \" \\ \n \t \r"#),
        ),
        (
            r#"lora(rank=8x, targets="a")"#,
            err("at column 11: malformed number \"8x\""),
        ),
        (
            r#"lora(rank=99999999999999999999, targets="a")"#,
            err("at column 11: integer 99999999999999999999 does not fit in 64 bits"),
        ),
        (
            r#"lora(alpha=1e999, targets="a")"#,
            err("at column 12: number 1e999 is too large"),
        ),
        (
            r#"lora(targets=[1, [2]])"#,
            err("at column 18: lists do not nest: an element of argument \"targets\" cannot be a list"),
        ),
        (
            r#"lora(targets="x") bias_only(targets="y")"#,
            err("at column 19: expected ';' or the end after patch \"lora\", found 'b'"),
        ),
        // --- registry errors ---
        (
            r#"lorra(targets="x")"#,
            err(&format!("at column 1: unknown patch \"lorra\" (did you mean \"lora\"?); registered patches: {KNOWN}")),
        ),
        (
            r#"lora(targets="x"); qlora(targets="y")"#,
            err(&format!("at column 20: unknown patch \"qlora\" (did you mean \"lora\"?); registered patches: {KNOWN}")),
        ),
        (
            r#"prune(targets="x")"#,
            err(&format!("at column 1: unknown patch \"prune\"; registered patches: {KNOWN}")),
        ),
        (
            r#"lora(rnak=4, targets="x")"#,
            err(&format!("at column 6: patch \"lora\" has no argument \"rnak\" (did you mean \"rank\"?); it accepts: {LORA_ARGS}")),
        ),
        (
            r#"lora(r=4, targets="x")"#,
            err(&format!("at column 6: patch \"lora\" has no argument \"r\"; it accepts: {LORA_ARGS}")),
        ),
        (
            "lora(rank=4)",
            err("at column 1: patch \"lora\" is missing its required argument \"targets\" (a string)"),
        ),
        (
            "bias_only",
            err("at column 1: patch \"bias_only\" is missing its required argument \"targets\" (a string)"),
        ),
        (
            r#"mostly_frozen_embedding(targets="emb")"#,
            err("at column 1: patch \"mostly_frozen_embedding\" is missing its required argument \"tokens\" (a list of integers)"),
        ),
        (
            r#"lora(rank=8.5, targets="x")"#,
            err("at column 11: argument \"rank\" of patch \"lora\" must be an integer, found the number 8.5"),
        ),
        (
            r#"lora(use_rslora=yes, targets="x")"#,
            err("at column 17: argument \"use_rslora\" of patch \"lora\" must be true or false, found the name `yes`"),
        ),
        (
            r#"lora(targets=5)"#,
            err("at column 14: argument \"targets\" of patch \"lora\" must be a string, found the integer 5"),
        ),
        (
            r#"mostly_frozen_embedding(tokens=[1, 2.5], targets="emb")"#,
            err("at column 32: argument \"tokens\" of patch \"mostly_frozen_embedding\" must be a list of integers, found the list [1, 2.5]"),
        ),
        (
            r#"lora(rank=0, targets="x")"#,
            err("at column 11: argument \"rank\" of patch \"lora\" is 0, but must be in 1..=4096"),
        ),
        (
            r#"lora(targets="ü", rank=5000)"#,
            err("at column 24: argument \"rank\" of patch \"lora\" is 5000, but must be in 1..=4096"),
        ),
        (
            r#"dropout_before(p=1.5, targets="x")"#,
            err("at column 18: argument \"p\" of patch \"dropout_before\" is 1.5, but must be in 0.0..=1.0"),
        ),
        (
            r#"scale_output(mode="pow", targets="x")"#,
            err("at column 19: argument \"mode\" of patch \"scale_output\" is \"pow\", but must be one of \"mul\", \"add\""),
        ),
        (
            r#"lora(rank=4, rank=8, targets="x")"#,
            err("at column 14: argument \"rank\" of patch \"lora\" is given twice"),
        ),
    ];
    assert!(table.len() >= 20);
    let mut failures = Vec::new();
    for (input, expected) in &table {
        let got = registry()
            .parse(input)
            .map(|specs| to_patch_string(&specs))
            .map_err(|error| error.to_string());
        if &got != expected {
            failures.push(format!(
                "{input:?}\n   expected {expected:?}\n   got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Each kind of mistake is its own `PatchError` variant, carrying what a program needs.
#[test]
fn errors_are_typed() {
    let error = registry().parse(r#"lorra(targets="x")"#).unwrap_err();
    let PatchStringError::UnknownPatch {
        name,
        known,
        nearest,
        column,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (name.as_str(), nearest.as_deref(), column),
        ("lorra", Some("lora"), Some(1))
    );
    assert!(known.contains(&"bias_only".to_owned()));

    let error = registry()
        .parse(r#"lora(rnak=4, targets="x")"#)
        .unwrap_err();
    assert!(
        matches!(error, PatchStringError::UnknownArgument { ref accepted, .. } if accepted.len() == 5)
    );
    let error = registry().parse("lora(rank=4)").unwrap_err();
    assert!(
        matches!(error, PatchStringError::MissingArgument { ref name, .. } if name == "targets")
    );
    let error = registry()
        .parse(r#"lora(rank=true, targets="x")"#)
        .unwrap_err();
    assert!(matches!(error, PatchStringError::ArgumentType { .. }));
    let error = registry()
        .parse(r#"lora(rank=0, targets="x")"#)
        .unwrap_err();
    assert!(
        matches!(error, PatchStringError::ArgumentOutOfRange { ref allowed, .. } if allowed == "in 1..=4096")
    );
    let error = registry()
        .parse(r#"lora(rank=1, rank=1, targets="x")"#)
        .unwrap_err();
    assert!(matches!(error, PatchStringError::DuplicateArgument { .. }));
    let error = registry().parse("lora(rank 8)").unwrap_err();
    let PatchStringError::PatchSyntax {
        offset,
        column,
        input,
        ..
    } = error
    else {
        panic!()
    };
    assert_eq!((offset, column, input.as_str()), (10, 11, "lora(rank 8)"));
    // Columns count characters; offsets count bytes.
    let error = registry().parse("lora(targets=\"ü\", rank 1)").unwrap_err();
    assert!(
        matches!(
            error,
            PatchStringError::PatchSyntax {
                offset: 24,
                column: 24,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn specs_give_typed_configs() {
    let specs = registry()
        .parse(r#"lora(rank=4, use_rslora=true, targets="*.attn.{q,v}"); mostly_frozen_embedding(tokens=[7, 9], targets="emb")"#)
        .unwrap();
    let lora: LoraConfig = specs[0].config().unwrap();
    assert_eq!(
        lora,
        LoraConfig {
            rank: 4,
            alpha: 16.0,
            dropout: 0.0,
            use_rslora: true
        }
    );
    assert_eq!(specs[0].targets, "*.attn.{q,v}");
    assert_eq!(specs[0].args.get_i64("rank").unwrap(), 4);
    assert!(specs[0].args.get_f64("rank").is_err());
    assert!(specs[0].args.get_i64("nope").is_err());
    let tokens: MostlyFrozenEmbeddingConfig = specs[1].config().unwrap();
    assert_eq!(tokens.tokens, [7, 9]);
    // A spec of one patch is not another patch's config.
    let wrong = specs[1].config::<LoraConfig>().unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "expected the arguments of patch \"lora\", found those of \"mostly_frozen_embedding\""
    );
    // A config built in Rust is checked against the same schema.
    let bad = LoraConfig {
        rank: 0,
        ..Default::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "argument \"rank\" of patch \"lora\" is 0, but must be in 1..=4096"
    );
    let nan = LoraConfig {
        alpha: f64::NAN,
        ..Default::default()
    };
    assert_eq!(
        nan.validate().unwrap_err().to_string(),
        "argument \"alpha\" of patch \"lora\" is NaN, but must be finite"
    );
    let spec = LoraConfig {
        rank: 2,
        ..Default::default()
    }
    .to_spec("fc")
    .unwrap();
    assert_eq!(
        spec,
        registry()
            .parse_one(r#"lora(rank=2, targets="fc")"#)
            .unwrap()
    );
    assert_eq!(
        ScaleOutput::default(),
        ScaleOutput {
            factor: 1.0,
            mode: "mul".into()
        }
    );
}

#[test]
fn parse_one_takes_exactly_one_patch() {
    let error = registry()
        .parse_one(r#"lora(targets="a"); bias_only(targets="b")"#)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "at column 20: expected one patch, found a second one"
    );
    let spec: PatchSpec = r#"bias_only(targets="b")"#.parse().unwrap();
    assert_eq!(spec.name, "bias_only");
}

#[test]
fn registries_built_by_hand_check_their_schemas() {
    let mut registry = Registry::new();
    let bad_default = PatchSchema::new("p", "").arg(
        ArgSpec::new("k", ArgType::Int)
            .default(Value::Int(0))
            .int_range(1..),
    );
    assert_eq!(
        registry.add(bad_default).unwrap_err().to_string(),
        "invalid schema of patch \"p\": argument \"k\": default 0 is not in 1.."
    );
    let range_on_string =
        PatchSchema::new("p", "").arg(ArgSpec::new("s", ArgType::Str).int_range(0..1));
    assert!(registry.add(range_on_string).is_err());
    let declares_targets = PatchSchema::new("p", "").arg(ArgSpec::new("targets", ArgType::Str));
    assert!(registry.add(declares_targets).is_err());
    registry.add(PatchSchema::new("p", "")).unwrap();
    assert_eq!(
        registry
            .add(PatchSchema::new("p", ""))
            .unwrap_err()
            .to_string(),
        "patch name \"p\" is registered more than once"
    );
    assert_eq!(registry.names().collect::<Vec<_>>(), ["p"]);
    let help = Registry::global().unwrap().help();
    assert!(
        help.contains("lora: LoRA: adds a trainable low-rank update"),
        "{help}"
    );
    assert!(
        help.contains("  rank: int = 8, in 1..=4096 (rank r of the update B @ A)"),
        "{help}"
    );
}

/// A value that prints and parses back exactly: finite floats, any string.
fn value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        any::<String>().prop_map(Value::Str),
        "[a-z_][a-z0-9_]{0,6}"
            .prop_filter("not a boolean", |s| s != "true" && s != "false")
            .prop_map(Value::Ident),
    ];
    prop_oneof![
        4 => scalar.clone(),
        1 => prop::collection::vec(scalar, 0..4).prop_map(Value::List),
    ]
}

fn lora_config() -> impl Strategy<Value = LoraConfig> {
    (1i64..=4096, any::<f64>(), 0.0f64..=1.0, any::<bool>()).prop_filter_map(
        "finite alpha",
        |(rank, alpha, dropout, use_rslora)| {
            alpha.is_finite().then_some(LoraConfig {
                rank,
                alpha,
                dropout,
                use_rslora,
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No string makes the parser (or the registry) panic.
    #[test]
    fn no_string_panics(input in any::<String>()) {
        let _ = parse_calls(&input);
        let _ = registry().parse(&input);
    }

    /// Strings made of the grammar's own characters reach deeper into the parser.
    #[test]
    fn no_near_miss_panics(input in r#"[a-z_ ()=,;"\\\[\]0-9.eE+\-ü]{0,40}"#) {
        let _ = parse_calls(&input);
        let _ = registry().parse(&input);
    }

    /// Printing parsed calls and parsing them again gives the same names and values.
    #[test]
    fn calls_round_trip(
        calls in prop::collection::vec(
            ("[a-z_][a-z0-9_]{0,8}", prop::collection::vec(("[a-z_][a-z0-9_]{0,8}", value()), 0..4)),
            1..4,
        )
    ) {
        let text = calls
            .iter()
            .map(|(name, args)| {
                let args: Vec<String> = args.iter().map(|(n, v)| format!("{n}={v}")).collect();
                format!("{name}({})", args.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let parsed = parse_calls(&text).unwrap();
        let reprinted = parsed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        prop_assert_eq!(&reprinted, &text);
        let got: Vec<(String, Vec<(String, Value)>)> = parsed
            .into_iter()
            .map(|call| (call.name, call.args.into_iter().map(|a| (a.name, a.value)).collect()))
            .collect();
        prop_assert_eq!(got, calls);
    }

    /// A checked spec prints as a patch string that parses back to the same spec.
    #[test]
    fn specs_round_trip(config in lora_config(), targets in any::<String>(), tokens in prop::collection::vec(any::<i64>(), 0..5)) {
        let lora = config.to_spec(targets.clone()).unwrap();
        let embedding = MostlyFrozenEmbeddingConfig { tokens }.to_spec(targets).unwrap();
        let specs = vec![lora, embedding];
        let text = to_patch_string(&specs);
        prop_assert_eq!(registry().parse(&text).unwrap(), specs.clone());
        prop_assert_eq!(specs[0].config::<LoraConfig>().unwrap(), config);
    }
}

#[test]
fn every_problem_of_a_patch_string_is_reported_at_once() {
    let text = r#"lorra(rnak=4, targets="x"); lora(alpha="x", targets="y")"#;
    let error = registry().parse(text).unwrap_err();
    let PatchStringError::Problems { input, problems } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(input, text);
    assert_eq!(problems.len(), 2, "{error}");
    assert!(
        matches!(&problems[0], PatchStringError::UnknownPatch { name, column: Some(1), .. } if name == "lorra"),
        "{error}"
    );
    assert!(
        matches!(&problems[1], PatchStringError::ArgumentType { name, column: Some(40), .. } if name == "alpha"),
        "{error}"
    );
    // Each problem keeps its own message; the whole error lists them.
    let message = error.to_string();
    assert!(
        message.starts_with("2 problems in patch string"),
        "{message}"
    );
    for problem in problems {
        assert!(message.contains(&problem.to_string()), "{message}");
    }
    // One problem alone is returned as itself.
    let error = registry()
        .parse(r#"lora(alpha="x", targets="y")"#)
        .unwrap_err();
    assert!(
        matches!(error, PatchStringError::ArgumentType { .. }),
        "{error}"
    );
}
