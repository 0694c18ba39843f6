import { expect, test, type Page } from "@playwright/test";
import { hydrated, startChat } from "./helpers";

// The local-mode instance's servers file lists the reference server @modelcontextprotocol/server-everything
// over stdio as "everything" (see playwright.config.ts). Its local user is an administrator. These
// tests change what that one user is connected to, so they run in the desktop project only, one
// after another.
test.describe.configure({ mode: "serial" });

test("connect to server-everything on the Servers page and see its tools", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("sidebar-servers").click();
  await expect(page).toHaveURL(/\/servers$/);
  await hydrated(page);

  const server = page.locator('[data-testid="server"][data-server="everything"]');
  await expect(server).toContainText("Everything");
  await expect(server.getByTestId("server-status")).toHaveText("Not connected");
  await server.getByTestId("connect").click();
  await expect(server.getByTestId("server-status")).toHaveText("Connected", { timeout: 30_000 });

  // Its tools, with arguments from their schemas and their annotations.
  const tools = server.getByTestId("tools");
  await expect(tools).toContainText(/\d+ tools/);
  const echo = server.locator('[data-testid="tool"][data-tool="echo"]');
  await expect(echo).toBeVisible();
  await expect(echo.getByTestId("tool-argument")).toContainText("message: string");
  await expect(server.locator('[data-testid="tool"][data-tool="get-sum"]')).toBeVisible();
  await expect(server.getByTestId("tool-hint").first()).toBeVisible();

  // A reload shows the same connection: it is the server's, not the page's.
  await page.reload();
  await hydrated(page);
  await expect(server.getByTestId("server-status")).toHaveText("Connected");

  // In a chat, its tools can be switched off for that chat.
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("composer").fill("hello tools");
  await page.getByTestId("composer").press("Enter");
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
  await hydrated(page);
  // The answer's end reads the chat again, which closes an open panel: wait for it first.
  await expect(page.getByTestId("regenerate")).toBeVisible();
  await page.getByTestId("chat-tools").click();
  const echoSwitch = page.getByTestId("chat-tool").filter({ hasText: "echo" }).first().locator("input");
  await expect(echoSwitch).toBeChecked();
  // The switch is saved by its own request: reload once it has been answered (a reload before would
  // abort it, and the change it carries with it).
  const saved = page.waitForResponse((r) => r.url().endsWith("/api/chats/tool") && r.ok());
  await echoSwitch.uncheck();
  await saved;
  await page.reload();
  await hydrated(page);
  await page.getByTestId("chat-tools").click();
  await expect(page.getByTestId("chat-tool").filter({ hasText: "echo" }).first().locator("input")).not.toBeChecked();

  // Disconnecting ends it.
  await page.goto("/servers");
  await hydrated(page);
  await server.getByTestId("disconnect").click();
  await expect(server.getByTestId("server-status")).toHaveText("Not connected");
});

test("a personal server pointing inside the network is refused with the reason", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's servers: desktop only");
  await page.goto("/servers");
  await hydrated(page);
  const form = page.getByTestId("add-server-form");
  await form.locator('input[name="name"]').fill("Sneaky");
  await form.locator('input[name="url"]').fill("http://169.254.169.254/latest/meta-data/");
  await page.getByTestId("add-server").click();
  await expect(page.getByTestId("add-server-error")).toContainText("link-local");
  await expect(page.locator('[data-testid="server"][data-server^="my-"]')).toHaveCount(0);
});

test("an administrator adds a registry server whose secrets are never shown back", async ({ page, isMobile }) => {
  test.skip(isMobile, "the registry is shared: desktop only");
  await page.goto("/admin/servers");
  await hydrated(page);
  const file = page.locator('[data-testid="registry-server"][data-server="everything"]');
  await expect(file).toContainText("From the servers file");
  await expect(file.getByTestId("edit-server")).toHaveCount(0);

  const form = page.getByTestId("server-form");
  await form.locator('input[name="id"]').fill("remote-e2e");
  await form.locator('input[name="name"]').fill("Remote (e2e)");
  await form.locator('input[name="url"]').fill("https://mcp.example.com/mcp");
  await form.locator('input[name="bearer_token"]').fill("e2e-s3cret-token");
  await form.locator('textarea[name="headers"]').fill("X-Api-Key: e2e-s3cret-header");
  await page.getByTestId("save-server").click();

  const added = page.locator('[data-testid="registry-server"][data-server="remote-e2e"]');
  await expect(added).toContainText("Remote (e2e)");
  await expect(added.getByTestId("secret-names")).toContainText("X-Api-Key, bearer token");
  await page.reload();
  await hydrated(page);
  expect(await page.content()).not.toContain("s3cret");

  // Everyone sees it on their Servers page.
  await page.goto("/servers");
  await expect(page.locator('[data-testid="server"][data-server="remote-e2e"]')).toContainText("Remote (e2e)");

  await page.goto("/admin/servers");
  await hydrated(page);
  await added.getByTestId("delete-server").click();
  await expect(added).toHaveCount(0);
});

async function connectEverything(page: Page) {
  await page.goto("/servers");
  await hydrated(page);
  const server = page.locator('[data-testid="server"][data-server="everything"]');
  if ((await server.getByTestId("server-status").textContent()) !== "Connected") {
    await server.getByTestId("connect").click();
  }
  await expect(server.getByTestId("server-status")).toHaveText("Connected", { timeout: 30_000 });
}

test("a tool call waits for approval: the card survives a reload, an edit is checked, then runs", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await connectEverything(page);
  await startChat(page, 'Please tool:everything__echo {"message": "from the model"}');

  const card = page.getByTestId("approval-card");
  await expect(card).toContainText("echo");
  await expect(card).toContainText("on everything");
  await expect(card.getByTestId("call-arguments")).toContainText('"message": "from the model"');
  await expect(page.getByTestId("message-notice")).toContainText("Waiting for your decision");

  // The pause is the server's: a reload shows the same card.
  await page.reload();
  await hydrated(page);
  await expect(card).toBeVisible();

  // An edit that does not fit the tool's schema is refused, with where it is wrong.
  await card.getByTestId("edit").click();
  await card.getByTestId("edit-arguments").fill('{"message": 5}');
  await card.getByTestId("approve").click();
  await expect(page.getByTestId("decide-error")).toContainText("do not fit");
  await expect(card).toBeVisible();

  await card.getByTestId("edit-arguments").fill('{"message": "edited in the browser"}');
  await card.getByTestId("approve").click();
  const ran = page.locator('[data-testid="tool-call"][data-state="ok"]');
  await expect(ran).toBeVisible();
  await expect(page.locator('[data-role="assistant"]').last()).toContainText("The tool said: Echo: edited in the browser.");
  await ran.locator("summary").click();
  await expect(ran.getByTestId("tool-result")).toContainText("Echo: edited in the browser");
  await expect(ran).toContainText("arguments edited");

  // The activity page has the call, approved by the person.
  await page.goto("/activity");
  await hydrated(page);
  const entry = page.getByTestId("audit-entry").first();
  await expect(entry).toHaveAttribute("data-outcome", "ok");
  await expect(entry).toContainText("echo");
  await expect(entry).toContainText("approved by you");
});

test("several calls of one turn are shown together and approved at once", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await connectEverything(page);
  // The page follows the turn from its events alone: it reads the chat once, when it loads.
  const reads: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/api/chats/get")) reads.push(request.url());
  });
  await startChat(page, 'tool:everything__echo {"message": "first"} tool:everything__get-sum {"a": 2, "b": 40}');

  const cards = page.getByTestId("approval-card");
  await expect(cards).toHaveCount(2);
  const loaded = reads.length;
  expect(loaded).toBeLessThanOrEqual(1);
  await expect(page.getByTestId("decide-all")).toContainText("2 tool calls wait for you");
  await page.getByTestId("approve-all").click();

  // Both ran, and the model was given both results in one turn.
  await expect(page.locator('[data-testid="tool-call"][data-state="ok"]')).toHaveCount(2);
  const answer = page.locator('[data-role="assistant"]').last();
  await expect(answer).toContainText("The tool said: Echo: first |");
  await expect(answer).toContainText("42");
  await expect(cards).toHaveCount(0);
  await expect(page.getByTestId("regenerate")).toBeVisible();
  expect(reads.length - loaded, `chats/get after the first load: ${reads.join(", ")}`).toBe(0);
});

test("several calls of one turn decided one by one: the run waits for the last decision", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await connectEverything(page);
  await startChat(page, 'tool:everything__echo {"message": "kept"} tool:everything__get-sum {"a": 1, "b": 2}');

  const cards = page.getByTestId("approval-card");
  await expect(cards).toHaveCount(2);
  await cards.filter({ hasText: "kept" }).getByTestId("approve").click();
  // One call decided, one not: nothing runs yet, and the other card still waits.
  await expect(cards).toHaveCount(1);
  await expect(page.locator('[data-testid="tool-call"][data-state="approved"]')).toHaveCount(1);
  await expect(page.locator('[data-testid="tool-call"][data-state="ok"]')).toHaveCount(0);

  await cards.getByTestId("reject").click();
  await cards.getByTestId("reject-reason").fill("no sums today");
  await cards.getByTestId("confirm-reject").click();

  await expect(page.locator('[data-testid="tool-call"][data-state="ok"]')).toHaveCount(1);
  await expect(page.locator('[data-testid="tool-call"][data-state="rejected"]')).toHaveCount(1);
  const answer = page.locator('[data-role="assistant"]').last();
  await expect(answer).toContainText("Echo: kept");
  await expect(answer).toContainText("The person declined this tool call: no sums today");
});

test("a rejected tool call gets a humane answer that takes the reason into account", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await connectEverything(page);
  await startChat(page, 'tool:everything__echo {"message": "should not run"}');
  const card = page.getByTestId("approval-card");
  await card.getByTestId("reject").click();
  await card.getByTestId("reject-reason").fill("not today, thanks");
  await card.getByTestId("confirm-reject").click();

  const answer = page.locator('[data-role="assistant"]').last();
  await expect(answer).toContainText("Understood, I did not use it.");
  await expect(answer).toContainText("not today, thanks");
  await expect(page.locator('[data-testid="tool-call"][data-state="rejected"]')).toContainText("Rejected");
  await expect(page.getByTestId("approval-card")).toHaveCount(0);

  await page.goto("/activity");
  await hydrated(page);
  const entry = page.getByTestId("audit-entry").first();
  await expect(entry).toHaveAttribute("data-outcome", "not_run");
  await expect(entry).toContainText("Rejected");
  await expect(entry).toContainText("not today, thanks");

  await page.goto("/servers");
  await hydrated(page);
  await page.locator('[data-testid="server"][data-server="everything"]').getByTestId("disconnect").click();
});

test("what a tool returns shows as it is: a picture inline and structured content, under the page's policy", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await page.addInitScript(() => {
    (window as any).__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      (window as any).__violations.push(`${e.violatedDirective}: ${e.blockedURI}`);
    });
  });
  await connectEverything(page);
  await startChat(page, 'tool:everything__get-tiny-image {} tool:everything__get-structured-content {"location": "Chicago"}');
  await expect(page.getByTestId("approval-card")).toHaveCount(2);
  await page.getByTestId("approve-all").click();
  const ran = page.locator('[data-testid="tool-call"][data-state="ok"]');
  await expect(ran).toHaveCount(2);
  // The answer ends first: the stored answer then takes the live one's place, and a fold opened
  // before would be closed again with it.
  await expect(page.getByTestId("send")).toBeVisible({ timeout: 15_000 });
  await expect(page.getByTestId("live-answer")).toHaveCount(0);

  // The picture, inline and decoded by the browser.
  const picture = ran.filter({ hasText: "get-tiny-image" });
  await picture.locator("summary").click();
  const image = picture.getByTestId("tool-image");
  await expect(image).toBeVisible();
  expect(await image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);

  // Structured content, pretty-printed.
  const weather = ran.filter({ hasText: "get-structured-content" });
  await weather.locator("summary").click();
  await expect(weather.getByTestId("tool-structured")).toContainText('"temperature":');

  // The model was told of the picture in words.
  await expect(page.locator('[data-role="assistant"]').last()).toContainText("[The tool returned an image (image/png");
  expect(await page.evaluate(() => (window as any).__violations)).toEqual([]);
});

test("the composer runs a server's prompt with its argument and attaches its resource, which the model gets", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await connectEverything(page);
  const server = page.locator('[data-testid="server"][data-server="everything"]');
  await expect(server.getByTestId("prompts")).toContainText("prompts");
  await expect(server.getByTestId("resources")).toContainText("resources");
  await page.goto("/");
  await hydrated(page);

  // `/` opens the prompts; one with an argument asks for it.
  await page.getByTestId("composer").fill("/args");
  await expect(page.getByTestId("offerings")).toBeVisible();
  await page.locator('[data-testid="prompt"][data-prompt="args-prompt"]').click();
  await page.getByTestId("use-prompt").click();
  await expect(page.getByTestId("prompt-form")).toContainText("Fill in 'city'");
  await page.locator('[data-argument="city"]').fill("Oslo");
  await page.getByTestId("use-prompt").click();
  await expect(page.getByTestId("composer")).toHaveValue("What's weather in Oslo?");

  // A resource, attached as a chip.
  await page.getByTestId("add-to-message").click();
  await page.locator('[data-testid="resource"][data-uri="demo://resource/static/document/architecture.md"]').click();
  await expect(page.getByTestId("attachment")).toContainText("architecture.md");
  await page.getByTestId("composer").press("Enter");
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);

  // The question shows the resource folded; the scripted model repeats all it was sent.
  await expect(page.getByTestId("attached-resource")).toContainText("Attached: architecture.md");
  const answer = page.locator('[data-role="assistant"]').last();
  await expect(answer).toContainText("You said: What's weather in Oslo?");
  await expect(answer).toContainText('uri="demo://resource/static/document/architecture.md"');
  await expect(page.getByTestId("attachment")).toHaveCount(0);
});

test("a server's question is answered in its card: the form is checked, survives a reload, then the call goes on", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await connectEverything(page);
  await startChat(page, "tool:everything__trigger-elicitation-request {}");
  await page.getByTestId("approval-card").getByTestId("approve").click();
  const question = page.getByTestId("question");
  await expect(question.getByTestId("question-message")).toContainText("Please provide inputs");

  // The question is the server's to keep: a reload shows it.
  await page.reload();
  await hydrated(page);
  await expect(question).toBeVisible();

  // What the form does not take is refused, with why; the rest is kept.
  await question.locator('[data-field="name"]').fill("Ada Lovelace");
  await question.locator('[data-field="integer"]').fill("500");
  await question.getByTestId("question-accept").click();
  await expect(question.getByTestId("question-error")).toContainText("at most 100");
  await question.locator('[data-field="integer"]').fill("7");
  await question.getByTestId("question-accept").click();

  await expect(question).toHaveCount(0);
  await expect(page.locator('[data-testid="tool-call"][data-state="ok"]')).toBeVisible();
  const answer = page.locator('[data-role="assistant"]').last();
  await expect(answer).toContainText("Name: Ada Lovelace");
  await expect(answer).toContainText("Favorite Integer: 7");
});

test("a remote server's question waits with the answer: the card survives a reload, and the reply makes the call again", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await page.goto("/servers");
  await hydrated(page);
  const server = page.locator('[data-testid="server"][data-server="later"]');
  await server.getByTestId("connect").click();
  await expect(server.getByTestId("server-status")).toHaveText("Connected", { timeout: 30_000 });
  try {
    await startChat(page, "tool:later__greet {}");
    await page.getByTestId("approval-card").getByTestId("approve").click();
    // The server answers the call with its question (MCP 2026-07-28): the answer waits for the
    // reply, the call approved, with nothing held open.
    const question = page.getByTestId("question");
    await expect(question.getByTestId("question-message")).toContainText("What is your name?");
    await expect(page.locator('[data-testid="tool-call"][data-state="approved"]')).toBeVisible();
    await page.reload();
    await hydrated(page);
    await expect(question).toBeVisible();

    await question.locator('[data-field="name"]').fill("A");
    await question.getByTestId("question-accept").click();
    await expect(question.getByTestId("question-error")).toContainText("too short");
    await question.locator('[data-field="name"]').fill("Ada");
    await question.getByTestId("question-accept").click();

    await expect(question).toHaveCount(0);
    await expect(page.locator('[data-testid="tool-call"][data-state="ok"]')).toBeVisible();
    await expect(page.locator('[data-role="assistant"]').last()).toContainText("Hello, Ada!");
  } finally {
    // Its tool is offered in every chat of the local user while it is connected.
    await page.goto("/servers");
    await hydrated(page);
    await server.getByTestId("disconnect").click();
    await expect(server.getByTestId("server-status")).not.toHaveText("Connected");
  }
});

test("a server that asks people to sign in: signed in from the Servers page, its tools appear, signing out asks again", async ({ page, isMobile }) => {
  test.skip(isMobile, "one user's connections: desktop only");
  await page.goto("/servers");
  await hydrated(page);
  const server = page.locator('[data-testid="server"][data-server="guarded"]');
  await server.getByTestId("connect").click();
  await expect(server.getByTestId("server-status")).toHaveText("Sign-in needed", { timeout: 30_000 });
  await expect(server.getByTestId("server-sign-in-reason")).toContainText("Guarded asks you to sign in");

  // The server's sign-in service (the test provider), then back.
  await server.getByTestId("sign-in").click();
  await expect(page.locator('input[name="login"]')).toBeVisible();
  await page.locator('input[name="login"]').fill("alice");
  await page.locator('input[name="password"]').fill("alice-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/servers$/);
  await hydrated(page);
  await expect(server.getByTestId("server-status")).toHaveText("Connected", { timeout: 30_000 });
  await expect(server.locator('[data-testid="tool"][data-tool="whoami"]')).toBeVisible();
  await expect(server.getByTestId("sign-out")).toHaveText("Sign out of Guarded");

  await server.getByTestId("sign-out").click();
  await expect(server.getByTestId("server-status")).toHaveText("Sign-in needed", { timeout: 30_000 });
  await server.getByTestId("disconnect").click();
  await expect(server.getByTestId("server-status")).toHaveText("Not connected");
});
