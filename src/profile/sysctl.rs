//! `[sysctl]`: kernel parameters the init writes at boot, as nested tables or dotted keys.

use std::collections::BTreeMap;

use super::{Ctx, ProfileError};

/// The JSON Schema of `[sysctl]` (for [`super::schema`]): dotted keys or nested tables, each
/// value a string, an integer or a boolean.
pub(super) fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Kernel parameters the init writes at boot: dotted keys (\"vm.swappiness\" = 100) or nested tables; each value a string, an integer or a boolean.",
        "type": "object",
        "additionalProperties": { "type": ["string", "integer", "boolean", "object"] }
    })
}

/// `[sysctl]`: nested tables flattened to dotted keys.
pub(super) fn validate_sysctl(
    cx: &Ctx,
    table: &toml::Table,
) -> Result<BTreeMap<String, String>, ProfileError> {
    let mut sysctl = BTreeMap::new();
    flatten_sysctl(cx, table, "", &mut sysctl)?;
    Ok(sysctl)
}

fn flatten_sysctl(
    cx: &Ctx,
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ProfileError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let ok = !key.is_empty()
            && key.split(['.', '/']).all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !ok {
            return Err(cx.near(
                k,
                format!("sysctl.{key}"),
                "not a sysctl key: use dotted names like vm.swappiness",
            ));
        }
        let value = match v {
            toml::Value::Table(t) => {
                flatten_sysctl(cx, t, &key, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => u8::from(*b).to_string(),
            _ => {
                return Err(cx.near(
                    k,
                    format!("sysctl.{key}"),
                    "value must be a string, an integer or a boolean",
                ));
            }
        };
        if value.contains(['\n', '\0']) {
            return Err(cx.near(k, format!("sysctl.{key}"), "value must be one line"));
        }
        let canonical = key.replace('/', ".");
        if out.insert(canonical.clone(), value).is_some() {
            return Err(cx.near(
                k,
                format!("sysctl.{key}"),
                format!("{canonical} is set twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn keys_are_dotted_names() {
        let f = Fixture::new();
        let e = f.err(&format!("{BASE}[sysctl]\n\"vm swappiness\" = 1\n"));
        assert!(e.contains("sysctl.vm swappiness"), "{e}");
    }
}
