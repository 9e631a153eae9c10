//! SPDX licence expressions, as SBOM components carry them.

/// An expression made of licence ids joined by AND/OR/WITH, optionally parenthesised.
pub fn is_spdx_expression(s: &str) -> bool {
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty()
        && words.iter().enumerate().all(|(i, w)| {
            if i % 2 == 1 {
                matches!(*w, "AND" | "OR" | "WITH")
            } else {
                w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
                    && !matches!(*w, "AND" | "OR" | "WITH")
            }
        })
        && words.len() % 2 == 1
}
