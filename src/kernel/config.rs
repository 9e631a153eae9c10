//! Kernel `.config` files and config fragments: `CONFIG_X=y|m|"string"|123|0x1f` and
//! `# CONFIG_X is not set`.

use std::collections::BTreeMap;
use std::fmt;

/// One option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Yes,
    Module,
    /// `# CONFIG_X is not set` (or `CONFIG_X=n` in a fragment).
    No,
    /// A string, with the quotes removed and escapes resolved.
    Str(String),
    /// A decimal or hex number, as written.
    Num(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Yes => f.write_str("y"),
            Value::Module => f.write_str("m"),
            Value::No => f.write_str("n"),
            Value::Str(s) => write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            Value::Num(n) => f.write_str(n),
        }
    }
}

/// A parsed config: option name (without `CONFIG_`) → value, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub options: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ConfigError {
    pub line: usize,
    pub why: String,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut options = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |why: &str| ConfigError {
                line: i + 1,
                why: format!("{why}: {raw:?}"),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim();
                if let Some(name) = rest
                    .strip_prefix("CONFIG_")
                    .and_then(|r| r.strip_suffix(" is not set"))
                {
                    if !is_symbol(name) {
                        return Err(err("bad option name"));
                    }
                    options.insert(name.to_owned(), Value::No);
                }
                continue;
            }
            // Trailing comments after a value are allowed in fragments: `CONFIG_X=y # why`.
            let (name, value) = line
                .strip_prefix("CONFIG_")
                .and_then(|l| l.split_once('='))
                .ok_or_else(|| err("expected CONFIG_NAME=value or a # comment"))?;
            if !is_symbol(name) {
                return Err(err("bad option name"));
            }
            let value = parse_value(value.trim()).ok_or_else(|| err("bad value"))?;
            options.insert(name.to_owned(), value);
        }
        Ok(Config { options })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.options
            .get(name.strip_prefix("CONFIG_").unwrap_or(name))
    }

    /// `y` (built in).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.get(name) == Some(&Value::Yes)
    }

    /// `y` or `m`.
    pub fn is_enabled(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Yes | Value::Module))
    }
}

fn is_symbol(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(v: &str) -> Option<Value> {
    if let Some(body) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        loop {
            match chars.next()? {
                '\\' => out.push(chars.next()?),
                '"' => {
                    let rest = chars.as_str().trim();
                    return (rest.is_empty() || rest.starts_with('#')).then_some(Value::Str(out));
                }
                c => out.push(c),
            }
        }
    }
    let v = v.split('#').next().unwrap_or("").trim();
    match v {
        "y" => Some(Value::Yes),
        "m" => Some(Value::Module),
        "n" => Some(Value::No),
        _ if v.starts_with("0x")
            && v.len() > 2
            && v[2..].chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Some(Value::Num(v.to_owned()))
        }
        _ if !v.is_empty()
            && v.trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit())
            && v != "-" =>
        {
            Some(Value::Num(v.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let c = Config::parse(
            "# comment\n\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"a \\\"q\\\" b\"\nCONFIG_E=0x1f\nCONFIG_F=-3\nCONFIG_G=y # why\nCONFIG_H=n\n",
        )
        .unwrap();
        assert_eq!(c.get("A"), Some(&Value::Yes));
        assert_eq!(c.get("CONFIG_B"), Some(&Value::Module));
        assert_eq!(c.get("C"), Some(&Value::No));
        assert_eq!(c.get("D"), Some(&Value::Str("a \"q\" b".into())));
        assert_eq!(c.get("E"), Some(&Value::Num("0x1f".into())));
        assert_eq!(c.get("F"), Some(&Value::Num("-3".into())));
        assert_eq!(c.get("G"), Some(&Value::Yes));
        assert_eq!(c.get("H"), Some(&Value::No));
        assert!(c.is_enabled("B") && !c.is_builtin("B"));
        assert_eq!(Value::Str("x\"y".into()).to_string(), "\"x\\\"y\"");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Config::parse("CONFIG_A=y\nFOO\n").unwrap_err().line, 2);
        assert!(Config::parse("CONFIG_A=maybe\n").is_err());
        assert!(Config::parse("CONFIG_A=\"unterminated\n").is_err());
        assert!(Config::parse("CONFIG_A B=y\n").is_err());
    }
}
