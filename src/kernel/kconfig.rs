//! Just enough of the Kconfig language to explain why an option did not take the value a
//! fragment asked for: each symbol's type, prompt, `depends on` (including the enclosing
//! `if`/`menu`/`choice` blocks, across `source`d files), `select`s, and expression evaluation
//! against a final `.config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::{Config, Value};
use crate::arch::Arch;

/// What Kconfig says about one symbol (merged over all its definitions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbol {
    /// `bool`, `tristate`, `string`, `int`, `hex` (empty if never typed).
    pub kind: String,
    /// Whether any definition has a prompt (a user can set it).
    pub has_prompt: bool,
    /// One entry per definition: the full dependency expression (own `depends on` and the
    /// enclosing blocks), joined with `&&`.
    pub depends: Vec<String>,
    /// Symbols that `select` this one.
    pub selected_by: Vec<String>,
    /// The choice block it belongs to, if any (the first prompt of the choice).
    pub choice: Option<String>,
    /// Where it is defined (`drivers/block/zram/Kconfig`).
    pub defined_in: Vec<String>,
}

/// All symbols of a source tree.
#[derive(Debug, Clone, Default)]
pub struct Kconfig {
    pub symbols: BTreeMap<String, Symbol>,
}

enum Block {
    If(String),
    Menu(Vec<String>),
    Choice(Vec<String>, String),
}

struct Parser<'a> {
    root: &'a Path,
    /// `SRCARCH`: the architecture's directory under `arch/`.
    arch: &'static str,
    syms: BTreeMap<String, Symbol>,
    depth: usize,
}

impl Kconfig {
    /// Parses the tree from `<root>/Kconfig`, substituting `$(SRCARCH)`/`$SRCARCH` with
    /// `arch`'s source directory.
    pub fn load(root: &Path, arch: Arch) -> std::io::Result<Kconfig> {
        let mut p = Parser {
            root,
            arch: arch.kernel_src_arch(),
            syms: BTreeMap::new(),
            depth: 0,
        };
        p.file(&root.join("Kconfig"), &[])?;
        Ok(Kconfig { symbols: p.syms })
    }

    /// Parses Kconfig text given directly (tests).
    #[cfg(test)]
    pub fn parse_text(text: &str, arch: Arch) -> Kconfig {
        let mut p = Parser {
            root: Path::new("/nonexistent"),
            arch: arch.kernel_src_arch(),
            syms: BTreeMap::new(),
            depth: 0,
        };
        p.text(text, "Kconfig", &[], Path::new("/nonexistent"))
            .expect("no file is read");
        Kconfig { symbols: p.syms }
    }
}

fn join_conds(conds: &[String]) -> String {
    conds
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| {
            if c.contains("||") {
                format!("({c})")
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Strips a trailing `# comment` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut in_q = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_q = !in_q,
            '#' if !in_q => return &line[..i],
            _ => {}
        }
    }
    line
}

impl Parser<'_> {
    fn file(&mut self, path: &Path, outer: &[String]) -> std::io::Result<()> {
        if self.depth > 64 {
            return Ok(());
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let rel = path
            .strip_prefix(self.root)
            .unwrap_or(path)
            .display()
            .to_string();
        self.depth += 1;
        let dir = path.parent().unwrap_or(self.root).to_owned();
        let r = self.text(&text, &rel, outer, &dir);
        self.depth -= 1;
        r
    }

    fn subst(&self, s: &str) -> String {
        s.replace("$(SRCARCH)", self.arch)
            .replace("$SRCARCH", self.arch)
            .replace("$(ARCH)", self.arch)
    }

    /// One Kconfig file: its logical lines, each dispatched on its keyword.
    fn text(&mut self, text: &str, rel: &str, outer: &[String], dir: &Path) -> std::io::Result<()> {
        let mut st = FileState {
            rel,
            outer,
            blocks: Vec::new(),
            current: None,
        };
        let lines = logical_lines(text);
        for (i, line) in lines.iter().enumerate() {
            let t = strip_comment(line).trim();
            if t.is_empty() {
                continue;
            }
            let (kw, rest) = t
                .split_once(char::is_whitespace)
                .map_or((t, ""), |(a, b)| (a, b.trim()));
            self.keyword(&mut st, kw, rest, &lines[i + 1..], dir)?;
        }
        st.finish(&mut self.syms);
        Ok(())
    }

    /// What one keyword line does to the symbols and the open blocks.
    fn keyword(
        &mut self,
        st: &mut FileState,
        kw: &str,
        rest: &str,
        following: &[String],
        dir: &Path,
    ) -> std::io::Result<()> {
        match kw {
            "config" | "menuconfig" => {
                st.finish(&mut self.syms);
                st.current = Some((rest.to_owned(), Vec::new()));
            }
            "depends" => {
                let e = rest.strip_prefix("on").unwrap_or(rest).trim().to_owned();
                if let Some((_, own)) = &mut st.current {
                    own.push(e);
                } else if let Some(Block::Menu(d) | Block::Choice(d, _)) = st.blocks.last_mut() {
                    d.push(e);
                }
            }
            "bool" | "tristate" | "string" | "int" | "hex" | "def_bool" | "def_tristate" => {
                if let Some((name, _)) = &st.current {
                    let s = self.syms.entry(name.clone()).or_default();
                    s.kind = kw.trim_start_matches("def_").to_owned();
                    if !kw.starts_with("def_") && rest.starts_with('"') {
                        s.has_prompt = true;
                    }
                }
            }
            "prompt" => {
                if let Some((name, _)) = &st.current {
                    self.syms.entry(name.clone()).or_default().has_prompt = true;
                }
            }
            "select" => {
                if let Some((name, _)) = &st.current {
                    let target = rest.split_whitespace().next().unwrap_or("").to_owned();
                    if !target.is_empty() {
                        let sel = self.syms.entry(target).or_default();
                        if !sel.selected_by.contains(name) {
                            sel.selected_by.push(name.clone());
                        }
                    }
                }
            }
            "if" | "menu" | "choice" => {
                st.finish(&mut self.syms);
                st.blocks.push(match kw {
                    "if" => Block::If(rest.to_owned()),
                    "menu" => Block::Menu(Vec::new()),
                    _ => Block::Choice(Vec::new(), choice_prompt(following)),
                });
            }
            "endif" | "endmenu" | "endchoice" => {
                st.finish(&mut self.syms);
                st.close(kw);
            }
            "source" | "osource" | "rsource" | "orsource" => {
                st.finish(&mut self.syms);
                let target = self.subst(rest.trim_matches('"'));
                // Globs (`source "arch/*/Kconfig"`) are not followed: other architectures.
                if !target.contains('*') {
                    let path: PathBuf = if kw.starts_with('r') || kw == "orsource" {
                        dir.join(&target)
                    } else {
                        self.root.join(&target)
                    };
                    self.file(&path, &st.context())?;
                }
            }
            "comment" | "mainmenu" => st.finish(&mut self.syms),
            _ => {}
        }
        Ok(())
    }
}

/// The blocks open in one Kconfig file and the symbol being defined.
struct FileState<'a> {
    rel: &'a str,
    /// Conditions of the sourcing context.
    outer: &'a [String],
    blocks: Vec<Block>,
    /// The symbol being defined and its own `depends on`.
    current: Option<(String, Vec<String>)>,
}

impl FileState<'_> {
    /// Conditions from the enclosing blocks and the outer (sourcing) context.
    fn context(&self) -> Vec<String> {
        let mut c: Vec<String> = self.outer.to_vec();
        for b in &self.blocks {
            match b {
                Block::If(e) => c.push(e.clone()),
                Block::Menu(d) | Block::Choice(d, _) => c.extend(d.iter().cloned()),
            }
        }
        c
    }

    /// Ends the symbol being defined: its dependencies are its own and its context's.
    fn finish(&mut self, syms: &mut BTreeMap<String, Symbol>) {
        let Some((name, own)) = self.current.take() else {
            return;
        };
        let mut all = self.context();
        all.extend(own);
        let s = syms.entry(name).or_default();
        s.depends.push(join_conds(&all));
        s.defined_in.push(self.rel.to_owned());
        if let Some(Block::Choice(_, prompt)) = self
            .blocks
            .iter()
            .rev()
            .find(|b| matches!(b, Block::Choice(..)))
        {
            s.choice = Some(prompt.clone());
        }
    }

    /// `endif`, `endmenu`, `endchoice`: closes the innermost block of that kind.
    fn close(&mut self, kw: &str) {
        let pos = self.blocks.iter().rposition(|b| {
            matches!(
                (kw, b),
                ("endif", Block::If(_))
                    | ("endmenu", Block::Menu(_))
                    | ("endchoice", Block::Choice(..))
            )
        });
        if let Some(pos) = pos {
            self.blocks.truncate(pos);
        }
    }
}

/// The prompt of a `choice`, from the lines that follow it.
fn choice_prompt(following: &[String]) -> String {
    following
        .iter()
        .take(4)
        .find_map(|l| {
            l.trim()
                .strip_prefix("prompt ")
                .or_else(|| l.trim().strip_prefix("bool "))
        })
        .unwrap_or("(choice)")
        .trim_matches('"')
        .to_owned()
}

/// The file's lines with continuations (`\` at the end) joined and `help` texts removed.
fn logical_lines(text: &str) -> Vec<String> {
    let raw: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut help: Option<usize> = None; // the help text's indent, once known (0: not yet)
    while i < raw.len() {
        let mut line = raw[i].to_owned();
        i += 1;
        while line.ends_with('\\') && i < raw.len() {
            line.pop();
            line.push(' ');
            line.push_str(raw[i].trim());
            i += 1;
        }
        if let Some(indent) = help {
            let this = line.len() - line.trim_start().len();
            if line.trim().is_empty() || this >= indent.max(1) {
                if indent == 0 && !line.trim().is_empty() {
                    help = Some(this);
                }
                continue;
            }
            help = None;
        }
        let t = strip_comment(&line).trim();
        if t == "help" || t == "---help---" {
            help = Some(0);
            continue;
        }
        out.push(line);
    }
    out
}

/// A tristate value: n = 0, m = 1, y = 2.
fn tri(v: Option<&Value>) -> u8 {
    match v {
        Some(Value::Yes) => 2,
        Some(Value::Module) => 1,
        _ => 0,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Sym(String),
    And,
    Or,
    Not,
    L,
    R,
    Cmp(&'static str),
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two: String = b[i..(i + 2).min(b.len())].iter().collect();
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::L);
                i += 1
            }
            ')' => {
                out.push(Tok::R);
                i += 1
            }
            _ if two == "&&" => {
                out.push(Tok::And);
                i += 2
            }
            _ if two == "||" => {
                out.push(Tok::Or);
                i += 2
            }
            _ if two == "!=" => {
                out.push(Tok::Cmp("!="));
                i += 2
            }
            _ if two == "<=" || two == ">=" => {
                out.push(Tok::Cmp(if two == "<=" { "<=" } else { ">=" }));
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '=' => {
                out.push(Tok::Cmp("="));
                i += 1
            }
            '<' | '>' => {
                out.push(Tok::Cmp(if c == '<' { "<" } else { ">" }));
                i += 1
            }
            '"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != '"' {
                    j += 1;
                }
                out.push(Tok::Sym(format!(
                    "\"{}\"",
                    b[i + 1..j.min(b.len())].iter().collect::<String>()
                )));
                i = j + 1;
            }
            _ => {
                let mut j = i;
                while j < b.len() && !" \t()!=<>&|\"".contains(b[j]) {
                    j += 1;
                }
                if j == i {
                    i += 1;
                    continue;
                }
                out.push(Tok::Sym(b[i..j].iter().collect()));
                i = j;
            }
        }
    }
    out
}

struct Eval<'a> {
    toks: Vec<Tok>,
    pos: usize,
    config: &'a Config,
}

impl Eval<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn sym_value(&self, s: &str) -> (u8, String) {
        match s {
            "y" => (2, "y".into()),
            "m" => (1, "m".into()),
            "n" => (0, "n".into()),
            _ if s.starts_with('"') => (0, s.trim_matches('"').to_owned()),
            _ if s.chars().all(|c| c.is_ascii_digit() || c == '-') || s.starts_with("0x") => {
                (0, s.to_owned())
            }
            _ => {
                let v = self.config.get(s);
                let text = match v {
                    Some(Value::Str(x)) | Some(Value::Num(x)) => x.clone(),
                    Some(other) => other.to_string(),
                    None => "n".into(),
                };
                (tri(v), text)
            }
        }
    }
    fn or(&mut self) -> u8 {
        let mut v = self.and();
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            v = v.max(self.and());
        }
        v
    }
    fn and(&mut self) -> u8 {
        let mut v = self.not();
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            v = v.min(self.not());
        }
        v
    }
    fn not(&mut self) -> u8 {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return 2 - self.not();
        }
        self.primary()
    }
    fn primary(&mut self) -> u8 {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::L) => {
                self.pos += 1;
                let v = self.or();
                if self.peek() == Some(&Tok::R) {
                    self.pos += 1;
                }
                v
            }
            Some(Tok::Sym(a)) => {
                self.pos += 1;
                if let Some(Tok::Cmp(op)) = self.peek().cloned() {
                    self.pos += 1;
                    let b = match self.toks.get(self.pos).cloned() {
                        Some(Tok::Sym(b)) => {
                            self.pos += 1;
                            b
                        }
                        _ => String::new(),
                    };
                    let (_, av) = self.sym_value(&a);
                    let (_, bv) = self.sym_value(&b);
                    let num = |s: &str| {
                        s.strip_prefix("0x")
                            .map(|h| i64::from_str_radix(h, 16).ok())
                            .unwrap_or_else(|| s.parse::<i64>().ok())
                    };
                    let ord = match (num(&av), num(&bv)) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        _ => av.cmp(&bv),
                    };
                    let r = match op {
                        "=" => ord.is_eq(),
                        "!=" => !ord.is_eq(),
                        "<" => ord.is_lt(),
                        ">" => ord.is_gt(),
                        "<=" => ord.is_le(),
                        _ => ord.is_ge(),
                    };
                    return if r { 2 } else { 0 };
                }
                self.sym_value(&a).0
            }
            _ => {
                self.pos += 1;
                0
            }
        }
    }
}

/// Evaluates a Kconfig expression against a config: 0 (n), 1 (m) or 2 (y).
pub fn eval(expr: &str, config: &Config) -> u8 {
    if expr.trim().is_empty() {
        return 2;
    }
    let mut e = Eval {
        toks: lex(expr),
        pos: 0,
        config,
    };
    e.or()
}

/// Splits an expression at its top-level `&&`s.
pub fn conjuncts(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth -= 1;
        }
        if depth == 0 && c == '&' && chars.get(i + 1) == Some(&'&') {
            out.push(cur.trim().to_owned());
            cur.clear();
            i += 2;
            continue;
        }
        cur.push(c);
        i += 1;
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Strips one pair of parentheses that wraps the whole expression.
fn unwrap_parens(s: &str) -> &str {
    let t = s.trim();
    if t.starts_with('(') && t.ends_with(')') {
        let inner = &t[1..t.len() - 1];
        let mut depth = 0i32;
        for c in inner.chars() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return t;
                    }
                }
                _ => {}
            }
        }
        if depth == 0 {
            return inner;
        }
    }
    t
}

impl Kconfig {
    /// Why `name` did not come out as `asked` in `config` (which holds `got`).
    pub fn explain(&self, name: &str, asked: &Value, got: &Value, config: &Config) -> String {
        let Some(sym) = self.symbols.get(name) else {
            return "this kernel has no such option (misspelt, or removed in this version)".into();
        };
        if sym.kind.is_empty() && sym.depends.is_empty() {
            return "this kernel has no such option (misspelt, or removed in this version)".into();
        }
        let asked_on = matches!(asked, Value::Yes | Value::Module);
        let got_on = matches!(got, Value::Yes | Value::Module);
        if asked_on && !got_on {
            // Which definition could have been enabled, and which of its conditions fail?
            let mut unmet_all = Vec::new();
            for deps in &sym.depends {
                let unmet: Vec<String> = conjuncts(deps)
                    .into_iter()
                    .flat_map(|c| {
                        let c = unwrap_parens(&c).to_owned();
                        if c.contains("||") || c.contains('(') {
                            vec![c]
                        } else {
                            conjuncts(&c)
                        }
                    })
                    .filter(|c| eval(c, config) == 0)
                    .map(|c| describe_term(&c, config))
                    .collect();
                if unmet.is_empty() {
                    continue;
                }
                unmet_all.push(format!("depends on {deps}; unmet: {}", unmet.join(", ")));
            }
            if !unmet_all.is_empty() {
                return unmet_all.join(" | ");
            }
            if !sym.has_prompt {
                return format!(
                    "it has no prompt: only other options can turn it on (selected by: {})",
                    if sym.selected_by.is_empty() {
                        "nothing".into()
                    } else {
                        sym.selected_by.join(", ")
                    }
                );
            }
            if let Some(c) = &sym.choice {
                return format!("it is one option of the choice \"{c}\" and another member of that choice was picked (set the others to n)");
            }
        }
        if matches!(asked, Value::Module) && matches!(got, Value::Yes) && sym.kind == "bool" {
            return "it is a bool: m is not possible, it becomes y".into();
        }
        if matches!(asked, Value::Module) && config.get("MODULES") != Some(&Value::Yes) {
            return "m needs CONFIG_MODULES=y".into();
        }
        if !asked_on && got_on {
            let sel: Vec<String> = sym
                .selected_by
                .iter()
                .filter(|s| tri(config.get(s)) > 0)
                .cloned()
                .collect();
            if !sel.is_empty() {
                return format!(
                    "it is selected by {} (enabled), which forces it on",
                    sel.join(", ")
                );
            }
            if let Some(c) = &sym.choice {
                return format!("it is one option of the choice \"{c}\", which needs a member; pick another one explicitly");
            }
            if !sym.has_prompt {
                return "it has no prompt: its default applies and cannot be overridden".into();
            }
        }
        if let Some(c) = &sym.choice {
            return format!("it is one option of the choice \"{c}\"");
        }
        "Kconfig chose another value (check its range and default)".into()
    }
}

impl Kconfig {
    /// The symbols whose being off keeps `name` off in `config`: every symbol of an unmet
    /// `depends on` term that is not negated there and is off (`VIRTIO_NET` depending on
    /// `NETDEVICES && VIRTIO` with `NETDEVICES=n` gives `NETDEVICES`). For a term such as
    /// `(A || B)`, each of its symbols that is off. Sorted, each once.
    pub fn unmet_symbols(&self, name: &str, config: &Config) -> Vec<String> {
        let Some(sym) = self.symbols.get(name) else {
            return Vec::new();
        };
        let mut out = std::collections::BTreeSet::new();
        for deps in &sym.depends {
            for term in conjuncts(deps) {
                if eval(&term, config) != 0 {
                    continue;
                }
                let toks = lex(&term);
                for (i, t) in toks.iter().enumerate() {
                    let Tok::Sym(s) = t else { continue };
                    let negated = i > 0 && toks[i - 1] == Tok::Not;
                    let compared = matches!(toks.get(i + 1), Some(Tok::Cmp(_)))
                        || (i > 0 && matches!(toks[i - 1], Tok::Cmp(_)));
                    let is_symbol = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && s.chars().any(|c| c.is_ascii_uppercase())
                        && !s.chars().all(|c| c.is_ascii_digit());
                    if is_symbol && !negated && !compared && tri(config.get(s)) == 0 {
                        out.insert(s.clone());
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

fn describe_term(term: &str, config: &Config) -> String {
    let t = term.trim();
    let bare = t.trim_start_matches('!').trim();
    if !bare.is_empty()
        && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["y", "m", "n"].contains(&bare)
    {
        let v = config.get(bare).map_or("n".to_owned(), |v| v.to_string());
        format!("{t} (CONFIG_{bare}={v})")
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KCONFIG: &str = r#"
menuconfig NETDEVICES
	bool "Network device support"
	depends on NET

if NETDEVICES
config VIRTIO_NET
	tristate "Virtio network driver"
	depends on VIRTIO
	select NET_FAILOVER
	help
	  This is the virtual network driver.
	  depends on SOMETHING_IN_HELP

endif

config ZRAM
	tristate "Compressed RAM block device support"
	depends on BLOCK && SYSFS && MMU
	depends on CRYPTO_LZO || CRYPTO_ZSTD || CRYPTO_LZ4
	select ZSMALLOC

config ZSMALLOC
	tristate

config NET_FAILOVER
	tristate "Failover driver"

choice
	prompt "Kernel compression mode"
config KERNEL_XZ
	bool "XZ"
config KERNEL_LZ4
	bool "LZ4"
endchoice
"#;

    fn cfg(s: &str) -> Config {
        Config::parse(s).unwrap()
    }

    #[test]
    fn parses_blocks_and_attributes() {
        let k = Kconfig::parse_text(KCONFIG, Arch::X86_64);
        let v = &k.symbols["VIRTIO_NET"];
        assert_eq!(v.kind, "tristate");
        assert!(v.has_prompt);
        assert_eq!(v.depends, ["NETDEVICES && VIRTIO"]);
        assert_eq!(k.symbols["NET_FAILOVER"].selected_by, ["VIRTIO_NET"]);
        assert_eq!(
            k.symbols["ZRAM"].depends,
            ["BLOCK && SYSFS && MMU && (CRYPTO_LZO || CRYPTO_ZSTD || CRYPTO_LZ4)"]
        );
        assert!(!k.symbols["ZSMALLOC"].has_prompt);
        assert_eq!(
            k.symbols["KERNEL_LZ4"].choice.as_deref(),
            Some("Kernel compression mode")
        );
    }

    #[test]
    fn evaluates_expressions() {
        let c = cfg("CONFIG_A=y\nCONFIG_B=m\nCONFIG_N=5\nCONFIG_S=\"x\"\n");
        assert_eq!(eval("A && B", &c), 1);
        assert_eq!(eval("A && !B", &c), 1);
        assert_eq!(eval("!A || C", &c), 0);
        assert_eq!(eval("(A || C) && N > 3", &c), 2);
        assert_eq!(eval("S = \"x\"", &c), 2);
        assert_eq!(eval("N != 5", &c), 0);
        assert_eq!(eval("", &c), 2);
    }

    #[test]
    fn explains_an_unmet_dependency() {
        let k = Kconfig::parse_text(KCONFIG, Arch::X86_64);
        let c =
            cfg("CONFIG_SYSFS=y\nCONFIG_MMU=y\nCONFIG_CRYPTO_LZ4=y\n# CONFIG_BLOCK is not set\n");
        let why = k.explain("ZRAM", &Value::Yes, &Value::No, &c);
        assert!(why.contains("unmet: BLOCK (CONFIG_BLOCK=n)"), "{why}");
        assert!(!why.contains("SYSFS ("), "{why}");
    }

    #[test]
    fn explains_other_cases() {
        let k = Kconfig::parse_text(KCONFIG, Arch::X86_64);
        let c = cfg("CONFIG_VIRTIO_NET=y\nCONFIG_NET_FAILOVER=y\n");
        assert!(k
            .explain("NO_SUCH", &Value::Yes, &Value::No, &c)
            .contains("no such option"));
        assert!(k
            .explain("ZSMALLOC", &Value::Yes, &Value::No, &c)
            .contains("no prompt"));
        assert!(k
            .explain("NET_FAILOVER", &Value::No, &Value::Yes, &c)
            .contains("selected by VIRTIO_NET"));
        assert!(k
            .explain(
                "KERNEL_LZ4",
                &Value::Yes,
                &Value::No,
                &cfg("CONFIG_KERNEL_XZ=y\n")
            )
            .contains("choice"));
    }

    #[test]
    fn names_the_symbols_an_option_waits_for() {
        let k = Kconfig::parse_text(KCONFIG, Arch::X86_64);
        // VIRTIO_NET depends on NETDEVICES (its `if` block) && VIRTIO.
        let c = cfg("CONFIG_VIRTIO=y\n# CONFIG_NETDEVICES is not set\n");
        assert_eq!(k.unmet_symbols("VIRTIO_NET", &c), ["NETDEVICES"]);
        // Both off: both named; an `||` group names each of its symbols that is off.
        let c = cfg("CONFIG_SYSFS=y\nCONFIG_MMU=y\n");
        assert_eq!(
            k.unmet_symbols("ZRAM", &c),
            ["BLOCK", "CRYPTO_LZ4", "CRYPTO_LZO", "CRYPTO_ZSTD"]
        );
        assert!(k.unmet_symbols("NO_SUCH", &c).is_empty());
    }

    #[test]
    fn conjuncts_respect_parentheses() {
        assert_eq!(conjuncts("A && (B || C) && !D"), ["A", "(B || C)", "!D"]);
    }
}
