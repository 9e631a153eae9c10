//! The profile's JSON Schema (draft 7, what Taplo / Even Better TOML read from a `#:schema`
//! comment), derived from the types that parse a profile: [`RawProfile`] and its sections'
//! tables, with their `deny_unknown_fields`, kebab-case names and defaults. It says which keys
//! exist and what type each value has; what the validator checks beyond that (a name's
//! characters, a path that must exist, one of `prebuilt` or `source`) is still only checked by
//! `stratos build`.
//!
//! `docs/profile.schema.json` is [`json_schema_text`]; the golden test
//! `schema::profile_schema_is_current` compares them, so the published schema cannot drift
//! from the parser (`stratos schema profile --out docs/profile.schema.json` rewrites it).

use schemars::generate::SchemaSettings;
use serde_json::Value;

use super::RawProfile;

/// The schema as JSON.
pub fn json_schema() -> Value {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawProfile>();
    let mut v = schema.to_value();
    strip_null(&mut v);
    if let Value::Object(root) = &mut v {
        root.insert("title".into(), "StratOS profile".into());
        root.insert(
            "description".into(),
            format!(
                "A StratOS image profile (schema = {}). The reference, with every default, is docs/profile.md.",
                super::SCHEMA
            )
            .into(),
        );
    }
    v
}

/// The schema as the file `docs/profile.schema.json` holds it: pretty, with a final newline.
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).expect("a JSON value serialises");
    s.push('\n');
    s
}

/// TOML has no null: an optional key is one that may be left out (not in `required`), never
/// one whose value may be null, which is how the derived schema says `Option`.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                let Some(Value::Array(list)) = map.get_mut(key) else {
                    continue;
                };
                list.retain(|s| *s != serde_json::json!({ "type": "null" }));
                if let [only] = list.as_slice() {
                    let only = only.clone();
                    map.remove(key);
                    match only {
                        // Draft 7 ignores the keywords next to a `$ref`: keep it apart.
                        Value::Object(inner) if inner.contains_key("$ref") && !map.is_empty() => {
                            map.insert("allOf".into(), Value::Array(vec![Value::Object(inner)]));
                        }
                        Value::Object(inner) => {
                            for (k, x) in inner {
                                map.entry(k).or_insert(x);
                            }
                        }
                        other => {
                            map.insert(key.into(), Value::Array(vec![other]));
                        }
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(list) => list.iter_mut().for_each(strip_null),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn optional_keys_are_left_out_not_null() {
        let mut v = json!({
            "properties": {
                "a": { "type": ["string", "null"] },
                "b": { "anyOf": [{ "$ref": "#/definitions/X" }, { "type": "null" }], "description": "d" }
            }
        });
        super::strip_null(&mut v);
        assert_eq!(
            v,
            json!({
                "properties": {
                    "a": { "type": "string" },
                    "b": { "allOf": [{ "$ref": "#/definitions/X" }], "description": "d" }
                }
            })
        );
    }

    #[test]
    fn the_schema_names_every_section_and_forbids_unknown_keys() {
        let v = super::json_schema();
        assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(v["additionalProperties"], false);
        for section in [
            "schema", "image", "kernel", "init", "overlay", "packages", "network",
        ] {
            assert!(v["properties"].get(section).is_some(), "{section}");
        }
        assert_eq!(v["required"], json!(["schema", "image", "kernel", "init"]));
        assert!(!super::json_schema_text().contains("\"null\""));
    }
}
