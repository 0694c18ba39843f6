import { expect, test } from "@playwright/test";
import { hydrated, startChat } from "./helpers";

// The Models page on the local-mode instance (whose one person is its administrator): the
// environment's provider is listed read-only; a provider speaking Anthropic's Messages API (the
// scripted model server, end2end/fake-llm, which speaks both formats) is added, its models
// discovered and tried, and a chat then answers with it, its thinking folded above the answer.

const llmUrl = `http://127.0.0.1:${Number(process.env.E2E_PORT ?? 3100) + 3}/v1`;

test("an administrator adds a provider on the Models page, tests it, and a chat answers with it", async ({ page }, info) => {
  // Each project (desktop, phone) adds its own, on the same server.
  const id = `claude-${info.project.name}`;
  await page.goto("/admin/models");
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "Models", level: 1 })).toBeVisible();
  const fake = page.locator('[data-testid="provider"][data-provider="fake"]');
  await expect(fake).toContainText("From the environment");
  await expect(fake.getByTestId("edit-provider")).toHaveCount(0);

  const form = page.getByTestId("provider-form");
  await form.getByLabel(/^Id/).fill(id);
  await form.locator("select[name=kind]").selectOption("anthropic");
  await form.getByLabel(/^Base URL/).fill(llmUrl);
  await form.getByLabel(/^API key/).fill("test-key");
  await form.getByLabel(/^Thinking budget/).fill("1024");
  await form.getByTestId("discover-models").click();
  await expect(form.getByLabel(/^Models/)).toHaveValue("scripted");
  await form.getByTestId("save-provider").click();

  const added = page.locator(`[data-testid="provider"][data-provider="${id}"]`);
  await expect(added).toContainText("Anthropic Messages API");
  await expect(added).toContainText("API key stored encrypted");
  // The key is never shown back.
  await expect(page.locator("body")).not.toContainText("test-key");
  await added.getByRole("button", { name: `Test ${id}/scripted` }).click();
  const result = page.getByTestId("test-result");
  await expect(result).toHaveAttribute("data-ok", "true");
  await expect(result).toContainText("It answered: You said: Reply with one word");

  // A chat chooses its model and answers with it.
  await startChat(page, "hello first");
  await expect(page.locator('[data-testid="message"][data-role="assistant"]').last()).toContainText("You said: hello first.");
  await expect(page.getByTestId("live-answer")).toHaveCount(0);
  const chosen = page.waitForResponse((r) => r.url().endsWith("/api/chats/model") && r.ok());
  await page.getByTestId("model-picker").selectOption(`${id}/scripted`);
  await chosen;
  await page.getByTestId("composer").fill("hello claude");
  await page.getByTestId("composer").press("Enter");
  const answer = page.locator('[data-testid="message"][data-role="assistant"]').last();
  await expect(answer).toContainText("You said: hello claude.");
  const thinking = answer.getByTestId("thinking");
  await expect(thinking).toHaveCount(1);
  await thinking.getByText("Thinking", { exact: true }).click();
  await expect(thinking).toContainText("The person asked something. I can answer.");
  await answer.hover();
  await expect(answer.getByTestId("answer-meta")).toContainText(`Written by ${id}/scripted`);

  // Removed: no longer offered.
  await page.goto("/admin/models");
  await hydrated(page);
  await page.locator(`[data-testid="provider"][data-provider="${id}"]`).getByTestId("remove-provider").click();
  await expect(page.locator(`[data-testid="provider"][data-provider="${id}"]`)).toHaveCount(0);
});
