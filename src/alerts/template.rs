//! Message templates for chat webhooks (SPEC 18): a small text format with
//! `{{variable}}`, `{{#if variable}} … {{else}} … {{/if}}` and
//! `{{#each alerts}} … {{/each}}`.
//!
//! A template is parsed once, when the configuration loads, and every
//! variable it names is checked there: an unknown one is an error with its
//! line and column, so `kpi check` finds it. Rendering never fails.
//!
//! A line that holds nothing but a block tag (`{{#if x}}`, `{{else}}`,
//! `{{/if}}`, `{{#each alerts}}`, `{{/each}}`) disappears with its line
//! break, so templates can put tags on lines of their own without leaving
//! blank lines behind.

/// The variables of one alert transition (inside `{{#each alerts}}`, and
/// outside it those of the message's first transition).
pub const ALERT_VARS: &[&str] = &[
    "id",
    "kind",
    "state",
    "kpi",
    "kpi_name",
    "kpi_label",
    "team",
    "team_name",
    "period",
    "value",
    "target",
    "projected",
    "direction",
    "fired_at",
    "resolved_at",
    "value_raw",
    "target_raw",
    "projected_raw",
    "kind_label",
    "state_label",
    "icon",
    "time",
    "link",
    "children",
    "firing",
    "resolved",
];

/// The variables of the whole message.
pub const MESSAGE_VARS: &[&str] = &["count", "group", "digest", "dashboard"];

/// The one list a template can loop over.
pub const LIST: &str = "alerts";

/// A template problem at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A parsed, checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Var(String),
    If {
        var: String,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Each(Vec<Node>),
}

/// What a template reads while rendering.
pub trait Scope {
    /// The text of a variable; None or "" is false for `{{#if}}`.
    fn var(&self, name: &str) -> Option<String>;
    /// The scopes of `{{#each alerts}}`.
    fn items(&self) -> Vec<&dyn Scope>;
}

impl Template {
    /// Parses and checks `text`; every problem found is returned.
    pub fn parse(text: &str) -> Result<Template, Vec<TemplateError>> {
        let tokens = tokenize(&strip_standalone_tags(text))?;
        let mut p = Parser {
            tokens,
            at: 0,
            errors: Vec::new(),
            text,
        };
        let nodes = p.block(None, false);
        if p.errors.is_empty() {
            Ok(Template { nodes })
        } else {
            Err(p.errors)
        }
    }

    /// Renders the template in `scope`.
    pub fn render(&self, scope: &dyn Scope) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, scope, &mut out);
        out
    }
}

fn render_nodes(nodes: &[Node], scope: &dyn Scope, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Var(v) => out.push_str(&scope.var(v).unwrap_or_default()),
            Node::If {
                var,
                then,
                otherwise,
            } => {
                let truthy = scope.var(var).is_some_and(|s| !s.is_empty());
                render_nodes(if truthy { then } else { otherwise }, scope, out);
            }
            Node::Each(body) => {
                for item in scope.items() {
                    render_nodes(body, item, out);
                }
            }
        }
    }
}

/// Drops lines that hold only a block tag (and blanks around it). Offsets of
/// the other text are kept by replacing the removed characters in place
/// with a marker the tokenizer skips, so errors still point at the file.
fn strip_standalone_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']).trim();
        let standalone =
            body.starts_with("{{") && body.ends_with("}}") && body.matches("{{").count() == 1 && {
                let inner = body[2..body.len() - 2].trim();
                inner.starts_with('#') || inner.starts_with('/') || inner == "else"
            };
        if standalone {
            // Keep the tag, drop the indentation and the line break.
            let lead = line.len() - line.trim_start().len();
            out.extend(std::iter::repeat_n(SKIP, lead));
            out.push_str(body);
            out.extend(std::iter::repeat_n(SKIP, line.len() - lead - body.len()));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A placeholder byte for removed whitespace (never in a template: a NUL).
const SKIP: char = '\0';

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(String),
    /// The tag's inner text, trimmed, with its byte offset in the file.
    Tag(String, usize),
}

fn tokenize(text: &str) -> Result<Vec<Token>, Vec<TemplateError>> {
    let mut tokens = Vec::new();
    let mut rest = 0;
    while let Some(open) = text[rest..].find("{{").map(|i| rest + i) {
        push_text(&mut tokens, &text[rest..open]);
        let Some(close) = text[open + 2..].find("}}").map(|i| open + 2 + i) else {
            let (line, col) = line_col(text, open);
            return Err(vec![TemplateError {
                line,
                col,
                message: "`{{` is never closed with `}}`".into(),
            }]);
        };
        let inner = &text[open + 2..close];
        let lead = inner.len() - inner.trim_start().len();
        tokens.push(Token::Tag(inner.trim().to_string(), open + 2 + lead));
        rest = close + 2;
    }
    push_text(&mut tokens, &text[rest..]);
    Ok(tokens)
}

fn push_text(tokens: &mut Vec<Token>, t: &str) {
    let t: String = t.chars().filter(|c| *c != SKIP).collect();
    if !t.is_empty() {
        tokens.push(Token::Text(t));
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    errors: Vec<TemplateError>,
    text: &'a str,
}

/// How a block ended.
enum End {
    Close,
    Else,
    Eof,
}

impl Parser<'_> {
    fn error(&mut self, offset: usize, message: String) {
        let (line, col) = line_col(self.text, offset);
        self.errors.push(TemplateError { line, col, message });
    }

    /// Parses nodes until the closing tag of `open` ("if" or "each"), or the end.
    fn block(&mut self, open: Option<(&str, usize)>, in_each: bool) -> Vec<Node> {
        self.block_until(open, in_each).0
    }

    fn block_until(&mut self, open: Option<(&str, usize)>, in_each: bool) -> (Vec<Node>, End) {
        let mut nodes = Vec::new();
        while self.at < self.tokens.len() {
            let token = self.tokens[self.at].clone();
            self.at += 1;
            let (tag, offset) = match token {
                Token::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Token::Tag(tag, offset) => (tag, offset),
            };
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim();
                match open {
                    Some((o, _)) if o == name => return (nodes, End::Close),
                    Some((o, _)) => self.error(
                        offset,
                        format!("`{{{{/{name}}}}}` closes nothing here: expected `{{{{/{o}}}}}`"),
                    ),
                    None => self.error(offset, format!("`{{{{/{name}}}}}` closes nothing")),
                }
                continue;
            }
            if tag == "else" {
                if matches!(open, Some(("if", _))) {
                    return (nodes, End::Else);
                }
                self.error(offset, "`{{else}}` outside `{{#if …}}`".into());
                continue;
            }
            if let Some(rest) = tag.strip_prefix('#') {
                nodes.extend(self.open_block(rest.trim(), offset, in_each));
                continue;
            }
            self.check_var(&tag, offset, in_each);
            nodes.push(Node::Var(tag));
        }
        if let Some((o, at)) = open {
            self.error(
                at,
                format!("`{{{{#{o} …}}}}` is never closed with `{{{{/{o}}}}}`"),
            );
        }
        (nodes, End::Eof)
    }

    fn open_block(&mut self, rest: &str, offset: usize, in_each: bool) -> Option<Node> {
        let (word, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let arg = arg.trim();
        let arg_offset = offset + 1 + rest.find(arg).unwrap_or(0);
        match word {
            "if" => {
                if arg.is_empty() {
                    self.error(
                        offset,
                        "`{{#if}}` needs a variable: `{{#if projected}}`".into(),
                    );
                } else {
                    self.check_var(arg, arg_offset, in_each);
                }
                let (then, end) = self.block_until(Some(("if", offset)), in_each);
                let otherwise = match end {
                    End::Else => self.block(Some(("if", offset)), in_each),
                    _ => Vec::new(),
                };
                Some(Node::If {
                    var: arg.to_string(),
                    then,
                    otherwise,
                })
            }
            "each" => {
                if arg != LIST {
                    self.error(
                        arg_offset,
                        format!("`{{{{#each}}}}` loops over `{LIST}` only, got `{arg}`"),
                    );
                }
                if in_each {
                    self.error(offset, "`{{#each alerts}}` inside another one".into());
                }
                Some(Node::Each(self.block(Some(("each", offset)), true)))
            }
            other => {
                self.error(
                    offset,
                    format!("unknown block `{{{{#{other}}}}}`: use `#if` or `#each`"),
                );
                None
            }
        }
    }

    fn check_var(&mut self, name: &str, offset: usize, in_each: bool) {
        let known = ALERT_VARS.contains(&name) || (!in_each && MESSAGE_VARS.contains(&name));
        if known {
            return;
        }
        let candidates: Vec<&str> = if in_each {
            ALERT_VARS.to_vec()
        } else {
            ALERT_VARS.iter().chain(MESSAGE_VARS).copied().collect()
        };
        let message = if in_each && MESSAGE_VARS.contains(&name) {
            format!("`{name}` is a message variable: use it outside `{{{{#each alerts}}}}`")
        } else {
            format!(
                "unknown template variable `{name}`{}",
                crate::diag::hint(name, candidates)
            )
        };
        self.error(offset, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, &'static str>, Vec<Vars>);

    impl Scope for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
        fn items(&self) -> Vec<&dyn Scope> {
            self.1.iter().map(|v| v as &dyn Scope).collect()
        }
    }

    fn vars(pairs: &[(&'static str, &'static str)]) -> Vars {
        Vars(pairs.iter().copied().collect(), Vec::new())
    }

    #[test]
    fn renders_variables_ifs_and_each_without_blank_lines() {
        let t = Template::parse(
            "# {{count}} alerts\n{{#each alerts}}\n- {{team_name}}: {{value}}\n  {{#if projected}}\n  pace {{projected}}\n  {{else}}\n  closed\n  {{/if}}\n{{/each}}\nend\n",
        )
        .unwrap();
        let mut top = vars(&[("count", "2")]);
        top.1 = vec![
            vars(&[
                ("team_name", "北区"),
                ("value", "¥200"),
                ("projected", "¥409"),
            ]),
            vars(&[("team_name", "南区"), ("value", "¥2,000")]),
        ];
        assert_eq!(
            t.render(&top),
            "# 2 alerts\n- 北区: ¥200\n  pace ¥409\n- 南区: ¥2,000\n  closed\nend\n"
        );
    }

    #[test]
    fn unknown_variables_and_unclosed_blocks_are_errors_with_line_and_col() {
        let e = Template::parse("ok {{team_name}}\n  x {{tean_name}} {{#if valu}}\n").unwrap_err();
        assert_eq!(e[0].line, 2);
        assert_eq!(e[0].col, 7);
        assert!(e[0].message.contains("`tean_name`"), "{}", e[0].message);
        assert!(
            e[0].message.contains("team_name"),
            "a hint: {}",
            e[0].message
        );
        assert!(e[1].message.contains("`valu`"), "{e:?}");
        assert!(e[2].message.contains("never closed"), "{e:?}");
        let e = Template::parse("{{#each alerts}}{{count}}{{/each}}").unwrap_err();
        assert!(e[0].message.contains("message variable"), "{e:?}");
        let e = Template::parse("a {{team").unwrap_err();
        assert_eq!((e[0].line, e[0].col), (1, 3));
        assert!(Template::parse("{{/if}}").is_err());
        assert!(Template::parse("{{#each teams}}{{/each}}").is_err());
    }
}
