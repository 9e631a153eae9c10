//! [`Spanned`]: a profile value and the byte range it was written at, for messages that point
//! at the line and column. It is `toml::Spanned` (read by the same deserializer) plus the one
//! thing that type lacks: its JSON Schema is the schema of the value, so the profile's schema
//! ([`super::schema`]) is derived from the very types that parse a profile.

use std::borrow::Cow;
use std::ops::Range;

use schemars::{JsonSchema, Schema, SchemaGenerator};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned<T>(toml::Spanned<T>);

impl<T> Spanned<T> {
    pub fn new(span: Range<usize>, value: T) -> Self {
        Spanned(toml::Spanned::new(span, value))
    }

    /// The byte range of the value in the profile's text.
    pub fn span(&self) -> Range<usize> {
        self.0.span()
    }

    pub fn get_ref(&self) -> &T {
        self.0.get_ref()
    }

    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Spanned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml::Spanned::<T>::deserialize(d).map(Spanned)
    }
}

/// Where a value was written is not part of what may be written: the schema is `T`'s.
impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::Spanned;

    #[derive(serde::Deserialize)]
    struct T {
        a: Spanned<i64>,
    }

    #[test]
    fn keeps_the_span_toml_gives() {
        let text = "a = 42\n";
        let t: T = toml::from_str(text).unwrap();
        assert_eq!(*t.a.get_ref(), 42);
        assert_eq!(&text[t.a.span()], "42");
    }
}
