import { expect, test } from "@playwright/test";
import { hydrated, startChat } from "./helpers";

// The local-mode instance, whose model is the scripted server in end2end/fake-llm: "slow" makes it
// write 60 words 100 ms apart, "xss" an answer full of HTML that must stay inert.

test("an answer streams in, survives a reload mid-answer, and is kept", async ({ page }) => {
  await startChat(page, "slow answer please");
  const live = page.getByTestId("live-answer");
  await expect(live).toContainText("word3");
  const early = (await live.textContent())!.length;
  await expect.poll(async () => (await live.textContent())!.length).toBeGreaterThan(early);

  // Reload mid-answer: the text so far is there at once, and it goes on growing.
  await page.reload();
  await hydrated(page);
  const resumed = page.getByTestId("live-answer");
  await expect(resumed).toContainText("word1 ");
  const afterReload = (await resumed.textContent())!.length;
  await expect.poll(async () => (await resumed.textContent())?.length ?? 0).toBeGreaterThan(afterReload);

  // The end: the whole answer is a stored message.
  const answer = page.locator('[data-testid="message"][data-role="assistant"]').last();
  await expect(answer).toContainText("word60", { timeout: 15_000 });
  await expect(page.getByTestId("live-answer")).toHaveCount(0);
  await page.reload();
  await expect(page.locator('[data-testid="message"][data-role="assistant"]').last()).toContainText("word1 word2");
});

test("Markdown renders, and nothing in an answer can run", async ({ page }) => {
  await startChat(page, "show me some xss");
  const answer = page.locator('[data-testid="message"][data-role="assistant"]').last();
  await expect(answer).toContainText("and bold text.");
  await expect(answer.locator("strong")).toHaveText("bold");
  await expect(answer.locator("img")).toHaveCount(0);
  await expect(answer.locator("script")).toHaveCount(0);
  for (const href of await answer.locator("a").evaluateAll((as) => as.map((a) => a.getAttribute("href")))) {
    expect(href).toBe("#");
  }
  await answer.getByRole("link", { name: "click me" }).click();
  expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  // The markup is shown as text.
  await expect(answer).toContainText("<script>");
});

test("the composer: Shift+Enter is a new line, Esc stops, edit and regenerate continue", async ({ page }) => {
  await startChat(page, "hello composer");
  const answer = page.locator('[data-testid="message"][data-role="assistant"]').last();
  await expect(answer).toContainText("You said: hello composer.");
  await expect(answer.locator(".code-block code")).toHaveText("fn main() {}");

  const composer = page.getByTestId("composer");
  await composer.fill("slow line one");
  await composer.press("Shift+Enter");
  await composer.pressSequentially("line two");
  await expect(composer).toHaveValue("slow line one\nline two");
  await composer.press("Enter");
  await expect(page.getByTestId("live-answer")).toContainText("word2");
  await composer.press("Escape");
  await expect(page.getByTestId("message-notice").last()).toHaveText("Stopped.");

  // Edit the first question: what came after it is replaced.
  const first = page.locator('[data-testid="message"][data-role="user"]').first();
  await first.hover();
  await first.getByTestId("edit-message").click();
  await page.getByTestId("edit-box").fill("hello edited");
  await page.getByTestId("save-edit").click();
  await expect(page.locator('[data-testid="message"][data-role="assistant"]').last()).toContainText("You said: hello edited.");
  await expect(page.locator('[data-testid="message"]')).toHaveCount(2);

  await page.getByTestId("regenerate").click();
  await expect(page.locator('[data-testid="message"][data-role="assistant"]').last()).toContainText("You said: hello edited.");
  await expect(page.locator('[data-testid="message"]')).toHaveCount(2);
});

test("chats are renamed, searched and deleted from the sidebar", async ({ page, isMobile }) => {
  test.skip(isMobile, "the sidebar is a drawer on phones; the desktop run covers it");
  const word = `zebra${Date.now()}`;
  // A slow answer: the row is opened for renaming while it is written.
  await startChat(page, `slow Recipe with ${word}`);
  // The answer being written (live), then the stored one.
  const answer = page.locator('[data-role="assistant"]').last();
  await expect(page.getByTestId("live-answer")).toContainText("word1");
  const item = page.getByTestId("chat-item").filter({ hasText: `slow Recipe with ${word}` });
  await expect(item).toBeVisible();

  await item.hover();
  await item.getByTestId("rename-chat").click();
  // In rename mode the row holds an input (its text is a value, so the row is found by test id).
  const input = page.getByTestId("rename-input");
  await expect(input).toHaveValue(`slow Recipe with ${word}`);
  await input.fill(`Renamed ${word}`);
  // The answer's end reloads the list under the open row: it stays open, with what was typed.
  const reloaded = page.waitForResponse((r) => r.url().endsWith("/api/chats/list"));
  await expect(answer).toContainText("word60");
  await expect(page.getByTestId("regenerate")).toBeVisible();
  await reloaded;
  // Two frames: the page has drawn the reloaded list.
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  await expect(input).toHaveValue(`Renamed ${word}`);
  await input.press("Enter");
  const renamed = page.getByTestId("chat-item").filter({ hasText: `Renamed ${word}` });
  await expect(renamed).toBeVisible();

  await page.getByTestId("chat-search").fill(word);
  await expect(page.getByTestId("chat-item")).toHaveCount(1);
  await page.getByTestId("chat-search").fill("word60"); // message text: the end of the slow answer
  await expect(page.getByTestId("chat-item").filter({ hasText: `Renamed ${word}` })).toBeVisible();
  await page.getByTestId("chat-search").fill(`nothing${word}`);
  await expect(page.getByTestId("chat-item")).toHaveCount(0);
  await page.getByTestId("chat-search").fill("");

  await renamed.hover();
  await renamed.getByTestId("delete-chat").click();
  await renamed.getByTestId("confirm-delete").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId("chat-item").filter({ hasText: word })).toHaveCount(0);
});

test("a message that cannot be sent stays in the box, with the reason", async ({ page }) => {
  await startChat(page, "Hello there");
  await expect(page.getByTestId("send")).toBeVisible({ timeout: 15_000 });
  // One character over the most the server takes (SWITCHBOARD_MAX_MESSAGE_CHARS, 100,000).
  const long = "x".repeat(100_001);
  await page.getByTestId("composer").fill(long);
  await page.getByTestId("composer").press("Enter");
  await expect(page.getByTestId("chat-error")).toContainText("100001 characters");
  await expect(page.getByTestId("composer")).toHaveValue(long);
});

test("a reasoning model's thinking streams folded above its answer, is kept, and the answer says what it used", async ({ page }) => {
  // "think" makes the scripted model stream `reasoning_content` before its answer.
  await startChat(page, "think about it");
  const answer = page.locator('[data-testid="message"][data-role="assistant"]').last();
  await expect(answer).toContainText("You said: think about it.");
  const thinking = answer.getByTestId("thinking");
  await expect(thinking).toHaveCount(1);
  // Folded: only its title shows until it is opened.
  const thought = thinking.getByText("The person wants me to think. I will answer plainly.");
  await expect(thought).toBeHidden();
  await expect(answer.locator(".prose-chat")).not.toContainText("I will answer plainly");
  await thinking.getByText("Thinking", { exact: true }).click();
  await expect(thought).toBeVisible();

  // On hover: the model that wrote it, the tokens and the time.
  const meta = answer.getByTestId("answer-meta");
  await answer.hover();
  await expect(meta).toBeVisible();
  await expect(meta).toContainText("Written by fake/scripted");
  await expect(meta).toHaveText(/\d+ tokens in, \d+ out · first token \d+ ms · [\d.]+ (ms|s) writing/);

  // Stored with the answer.
  await page.reload();
  const stored = page.locator('[data-testid="message"][data-role="assistant"]').last();
  await expect(stored.getByTestId("thinking")).toHaveCount(1);
  await expect(stored.getByTestId("thinking")).not.toHaveAttribute("open");
  await expect(stored.getByTestId("answer-meta")).toContainText("Written by fake/scripted");
});
