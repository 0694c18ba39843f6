//! A small syntax highlighter for code blocks: comments, strings, numbers and keywords of the
//! common languages, as `<span class="tok-…">`. Small on purpose: it runs in the browser on every
//! streamed token, where a full grammar engine would be too heavy for the wasm bundle. Everything it
//! outputs is escaped text inside spans it writes itself.

/// Keywords of Rust, C-family, Go, Java, JavaScript/TypeScript, Python, shell and SQL.
const KEYWORDS: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "def",
    "default",
    "do",
    "elif",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "fi",
    "fn",
    "for",
    "from",
    "func",
    "function",
    "if",
    "impl",
    "import",
    "in",
    "interface",
    "let",
    "loop",
    "match",
    "mod",
    "mut",
    "new",
    "nil",
    "None",
    "null",
    "package",
    "pub",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "switch",
    "then",
    "this",
    "throw",
    "trait",
    "True",
    "False",
    "true",
    "try",
    "type",
    "undefined",
    "use",
    "var",
    "void",
    "where",
    "while",
    "with",
    "yield",
    "SELECT",
    "FROM",
    "WHERE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "JOIN",
    "ORDER",
    "BY",
    "GROUP",
    "CREATE",
    "TABLE",
    "select",
    "from",
    "where",
];

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn span(out: &mut String, class: &str, text: &str) {
    out.push_str("<span class=\"tok-");
    out.push_str(class);
    out.push_str("\">");
    escape_into(out, text);
    out.push_str("</span>");
}

/// The code as HTML with highlighting spans. `language` picks the comment style (`#` for Python,
/// shell, YAML, ...; `--` for SQL and Lua); `//` and `/* */` always count.
pub fn highlight(code: &str, language: &str) -> String {
    let hash_comments = matches!(
        language,
        "python"
            | "py"
            | "sh"
            | "bash"
            | "shell"
            | "zsh"
            | "yaml"
            | "yml"
            | "toml"
            | "ruby"
            | "rb"
            | "r"
    );
    let dash_comments = matches!(language, "sql" | "lua" | "haskell" | "hs");
    let mut out = String::with_capacity(code.len() * 2);
    let chars: Vec<char> = code.chars().collect();
    let text = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    // For each quote, where a line was found to hold no closing one for it from some point on:
    // a later quote of that kind before then has none either, and is not looked for again (or a
    // line of escaped quotes would be scanned once per quote).
    let mut unclosed_until = [0usize; 3];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let line_comment = (c == '/' && next == Some('/'))
            || (hash_comments && c == '#')
            || (dash_comments && c == '-' && next == Some('-'));
        if line_comment {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            span(&mut out, "c", &text(i, end));
            i = end;
        } else if c == '/' && next == Some('*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            span(&mut out, "c", &text(i, end));
            i = end;
        } else if c == '"' || c == '\'' || c == '`' {
            // A string, to its closing quote on the same line (a lone apostrophe, as in Rust's
            // lifetimes, stays plain text when no quote closes it).
            let kind = match c {
                '"' => 0,
                '\'' => 1,
                _ => 2,
            };
            let close = if i < unclosed_until[kind] {
                None
            } else {
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        Some(&q) if q == c && chars[j - 1] != '\\' => break Some(j),
                        Some('\n') | None => {
                            unclosed_until[kind] = j;
                            break None;
                        }
                        Some(_) => j += 1,
                    }
                }
            };
            match close {
                Some(end) => {
                    span(&mut out, "s", &text(i, end + 1));
                    i = end + 1;
                }
                None => {
                    escape_into(&mut out, &c.to_string());
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            let end = (i..chars.len())
                .find(|&j| {
                    !(chars[j].is_ascii_alphanumeric() || chars[j] == '.' || chars[j] == '_')
                })
                .unwrap_or(chars.len());
            span(&mut out, "n", &text(i, end));
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'))
                .unwrap_or(chars.len());
            let word = text(i, end);
            if KEYWORDS.contains(&word.as_str()) {
                span(&mut out, "k", &word);
            } else {
                escape_into(&mut out, &word);
            }
            i = end;
        } else {
            escape_into(&mut out, &c.to_string());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_strings_numbers_and_comments() {
        let html = highlight("fn main() { let x = \"hi\"; // done\n 42 }", "rust");
        assert!(html.contains(r#"<span class="tok-k">fn</span>"#), "{html}");
        assert!(html.contains(r#"<span class="tok-k">let</span>"#));
        assert!(html.contains(r#"<span class="tok-s">&quot;hi&quot;</span>"#));
        assert!(html.contains(r#"<span class="tok-c">// done</span>"#));
        assert!(html.contains(r#"<span class="tok-n">42</span>"#));
        let py = highlight("def f(): # note\n    return None", "python");
        assert!(py.contains(r#"<span class="tok-c"># note</span>"#), "{py}");
        assert!(
            !highlight("x = a # b", "rust").contains("tok-c"),
            "# is not a Rust comment"
        );
    }

    #[test]
    fn everything_is_escaped() {
        for code in [
            "<script>alert(1)</script>",
            "\"<img src=x onerror=alert(1)>\"",
            "// <b>x</b>",
            "'<svg onload=1>'",
        ] {
            let html = highlight(code, "js");
            let without_spans = html
                .replace("<span class=\"tok-s\">", "")
                .replace("<span class=\"tok-c\">", "")
                .replace("<span class=\"tok-k\">", "")
                .replace("<span class=\"tok-n\">", "")
                .replace("</span>", "");
            assert!(
                !without_spans.contains('<') && !without_spans.contains('>'),
                "{code} → {html}"
            );
        }
    }

    /// Highlights `code` on a thread of its own; None when it takes longer than `within`.
    fn highlight_within(code: String, within: std::time::Duration) -> Option<String> {
        let (done, result) = std::sync::mpsc::channel();
        // A highlighter that never finishes is left behind; the test process ends without it.
        std::thread::spawn(move || {
            let _ = done.send(highlight(&code, "json"));
        });
        result.recv_timeout(within).ok()
    }

    #[test]
    fn work_grows_linearly_with_any_input() {
        // 3 MB lines that defeat a scan-per-character: escaped quotes that never close (a JSON
        // string cut off mid-answer), an unclosed block comment, a run of digits and of letters.
        // Linear work takes well under a second here, even unoptimised; the old highlighter, which
        // looked for a closing quote from every quote, needed hours for the first (300 KB already
        // took it seconds).
        const SIZE: usize = 3_000_000;
        let inputs = [
            "\\\"".repeat(SIZE / 2),
            "\\'".repeat(SIZE / 2),
            "\\`".repeat(SIZE / 2),
            "{\"a\":\"b\\\"c".repeat(SIZE / 12),
            format!("/*{}", "*".repeat(SIZE)),
            "1".repeat(SIZE),
            "x".repeat(SIZE),
            "'\"`".repeat(SIZE / 3),
        ];
        for code in inputs {
            let start: String = code.chars().take(12).collect();
            let html = highlight_within(code, std::time::Duration::from_secs(20))
                .unwrap_or_else(|| panic!("not linear on {start}…: over 20 s"));
            assert!(html.len() >= SIZE, "{start}…");
        }
    }

    #[test]
    fn text_is_kept_exactly() {
        let code = "let s = 'a'; /* c */ x_1 = 3.5e2; fn f<'a>(x: &'a str) {}";
        let html = highlight(code, "rust");
        let text = html
            .split('<')
            .map(|part| part.split_once('>').map_or(part, |(_, t)| t))
            .collect::<String>()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        assert_eq!(text, code);
    }
}
