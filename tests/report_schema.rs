//! `reports/summary.schema.json` documents `summary.json`: the demo's summary validates against
//! it, it rejects drift (unknown, missing or mistyped fields), and every property is described.

mod report_common;

use serde_json::{Value, json};

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/reports/summary.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn errors(instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft202012::new(&schema()).expect("the schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::meta::validate(&schema).expect("valid against the meta-schema");
    assert_eq!(
        schema["properties"]["schema_version"]["const"],
        judge_audit::report::SCHEMA_VERSION,
        "the schema documents the current version"
    );
}

#[test]
fn demo_summary_validates() {
    let summary = report_common::demo_json(42);
    let errors = errors(&summary);
    assert!(errors.is_empty(), "{errors:#?}");
    // The demo exercises the optional parts too, so they are checked rather than skipped.
    assert!(summary["judges"][0]["artifacts"][0]["planted"].is_object());
    assert!(!summary["examples"].as_array().unwrap().is_empty());
}

/// A named change to a valid summary.
type Mutation = Box<dyn Fn(&mut Value)>;

#[test]
fn schema_rejects_drift() {
    let valid = report_common::demo_json(42);
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "unknown top-level field",
            Box::new(|v| v["extra"] = json!(1)),
        ),
        (
            "unknown judge field",
            Box::new(|v| v["judges"][0]["colour"] = json!("red")),
        ),
        (
            "unknown field next to an embedded estimate",
            Box::new(|v| v["judges"][0]["artifacts"][0]["tie_detection"]["bogus"] = json!(1)),
        ),
        (
            "unknown field in a plain estimate",
            Box::new(|v| v["judges"][0]["baseline"]["gold_accuracy"]["bogus"] = json!(1)),
        ),
        (
            "missing required count",
            Box::new(|v| {
                v["judges"][0]["artifacts"][0]["flip_rate"]
                    .as_object_mut()
                    .unwrap()
                    .remove("toward");
            }),
        ),
        (
            "missing estimate field",
            Box::new(|v| {
                v["judges"][0]["baseline"]["noise_flip_rate"]
                    .as_object_mut()
                    .unwrap()
                    .remove("ci_method");
            }),
        ),
        (
            "unknown verdict",
            Box::new(|v| v["judges"][0]["trust"]["verdict"] = json!("MAYBE")),
        ),
        (
            "future schema version",
            Box::new(|v| v["schema_version"] = json!(2)),
        ),
        (
            "negative count",
            Box::new(|v| v["judges"][0]["calls"]["planned"] = json!(-1)),
        ),
        (
            "p-value above 1",
            Box::new(|v| v["judges"][0]["artifacts"][0]["winrate_shift"]["p_value"] = json!(1.5)),
        ),
        (
            "unknown fault kind",
            Box::new(|v| v["judges"][0]["faults"] = json!({"gremlins": 1})),
        ),
        (
            "bad dataset hash",
            Box::new(|v| v["dataset"]["hash"] = json!("not-a-hash")),
        ),
        (
            "string where a number belongs",
            Box::new(|v| {
                v["judges"][0]["artifacts"][0]["tie_detection"]["estimate"] = json!("0.5")
            }),
        ),
        (
            "unknown example side",
            Box::new(|v| v["examples"][0]["side"] = json!("c")),
        ),
        (
            "unknown small-sample reason",
            Box::new(|v| {
                v["judges"][0]["artifacts"][0]["tie_detection"]["ci_small_sample"] =
                    json!({"reason": "felt like it", "pairs": 10, "n_eff": 10.0})
            }),
        ),
        (
            "small-audit flag without the pairs needed",
            Box::new(|v| {
                v["judges"][0]["small_audit"] =
                    json!({"pairs": 10, "min_pairs": 15, "message": "x"})
            }),
        ),
    ];
    for (name, mutate) in cases {
        let mut v = valid.clone();
        mutate(&mut v);
        assert!(!errors(&v).is_empty(), "the schema accepted: {name}");
    }
    // Optional fields the analysis may add are documented and accepted.
    let mut v = valid.clone();
    v["judges"][0]["artifacts"][0]["tie_detection"]["q_value"] = json!(0.03);
    v["judges"][0]["kind"] = json!("jury");
    v["judges"][0]["stopped"] = json!("HTTP 401");
    v["judges"][0]["artifacts"][0]["excess_flip_rate"]["estimate"] = Value::Null;
    v["judges"][0]["artifacts"][0]["tie_detection"]["ci_small_sample"] = json!({
        "reason": "few pairs", "pairs": 10, "n_eff": 10.0,
        "bootstrap_low": 1.0, "bootstrap_high": 1.0
    });
    v["judges"][0]["small_audit"] = json!({
        "pairs": 10, "min_pairs": 15, "reject_abs_t": 0.2, "pairs_needed_t": 199,
        "pairs_needed_t_family": 400, "family_size": 126, "reject_excess_flip": 0.1,
        "pairs_needed_excess_flip": null, "message": "only 10 pairs"
    });
    assert!(errors(&v).is_empty(), "{:#?}", errors(&v));
}

/// Walk every `properties` map and `$defs` entry: each must carry a description.
fn undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        if let Some(list) = node.as_array() {
            for (i, item) in list.iter().enumerate() {
                undocumented(item, &format!("{path}/{i}"), out);
            }
        }
        return;
    };
    for key in ["properties", "$defs"] {
        if let Some(props) = map.get(key).and_then(Value::as_object) {
            for (name, sub) in props {
                if sub.get("description").and_then(Value::as_str).is_none() {
                    out.push(format!("{path}/{key}/{name}"));
                }
            }
        }
    }
    for (k, v) in map {
        undocumented(v, &format!("{path}/{k}"), out);
    }
}

#[test]
fn every_property_is_described() {
    let mut missing = Vec::new();
    undocumented(&schema(), "", &mut missing);
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
    // The walker itself notices a missing description.
    let mut probe = Vec::new();
    undocumented(
        &json!({"properties": {"a": {"type": "string"}}}),
        "",
        &mut probe,
    );
    assert_eq!(probe, vec!["/properties/a".to_string()]);
}
