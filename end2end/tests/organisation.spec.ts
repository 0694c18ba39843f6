import { expect, test, type Browser, type Page } from "@playwright/test";
import { hydrated, startChat } from "./helpers";

// Running Switchboard for a team, as an administrator does it in the browser: on the instance with
// single sign-on, Alice (an administrator by SWITCHBOARD_ADMIN_EMAILS) deactivates Carol (whom no
// other spec uses) and lets her back, puts her in a group with a budget, and limits a tool server
// to that group; on the
// local-mode instance (its one person is the administrator), the usage chart shows a chat's
// tokens.
const port = Number(process.env.E2E_PORT ?? 3100);
const sso = `http://127.0.0.1:${port + 2}`;
const guarded = `http://127.0.0.1:${port + 5}/mcp`;

async function signedIn(browser: Browser, user: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${sso}/login`);
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(`${user}-password`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(`${sso}/`);
  await hydrated(page);
  return page;
}

test("an administrator deactivates someone, groups them with a budget, and limits a server to the group", async ({ browser }) => {
  test.skip(test.info().project.name !== "desktop", "one run is enough: it changes shared state");
  const carol = await signedIn(browser, "carol");
  const alice = await signedIn(browser, "alice");
  const group = `e2e-team-${Date.now()}`;
  const id = `team-${Date.now() % 100000}`;
  const row = alice.locator('[data-testid="person"][data-email="carol@example.com"]');
  const card = alice.locator(`[data-testid="group"][data-group="${group}"]`);
  const added = alice.locator(`[data-testid="registry-server"][data-server="${id}"]`);
  try {
    // Deactivated: Carol's session ends, and she is told why at the login page.
    await alice.goto(`${sso}/admin/people`);
    await hydrated(alice);
    await expect(row).toHaveAttribute("data-status", "active");
    await row.getByTestId("set-access").click();
    await expect(row).toHaveAttribute("data-status", "deactivated");
    await carol.goto(`${sso}/settings`);
    await expect(carol).toHaveURL(/\/login/);
    await row.getByTestId("set-access").click();
    await expect(row).toHaveAttribute("data-status", "active");

    // A group of the app's, Carol put in it by address, with a budget of 0 tokens a day.
    await alice.goto(`${sso}/admin/groups`);
    await hydrated(alice);
    await alice.getByTestId("new-group").getByRole("textbox").fill(group);
    await alice.getByTestId("new-group").getByRole("button", { name: "Make group" }).click();
    await expect(card).toBeVisible();
    await card.getByTestId("add-member").getByRole("textbox").fill("carol@example.com");
    await card.getByTestId("add-member").getByRole("button", { name: "Add" }).click();
    await expect(card.getByTestId("members")).toContainText("carol@example.com");
    await card.getByLabel("Tokens a day").fill("0");
    // Saved before the reload (which would otherwise cut the request short).
    const saved = alice.waitForResponse((r) => r.url().endsWith("/api/admin/groups/save") && r.ok());
    await card.getByTestId("save-group").click();
    await saved;
    await alice.reload();
    await hydrated(alice);
    await expect(card.getByLabel("Tokens a day")).toHaveValue("0");

    // Carol, signed in again, sees the budget that now applies to her.
    await carol.getByRole("link", { name: "Sign in with Test IdP" }).click();
    await expect(carol).toHaveURL(/\/settings$/);
    await hydrated(carol);
    await expect(carol.getByTestId("my-limits")).toContainText(`At most 0 tokens a day (set for the group '${group}')`);

    // A registry server limited to the group: Carol (a member) sees it; taken out of the group,
    // she does not.
    await alice.goto(`${sso}/admin/servers`);
    await hydrated(alice);
    const form = alice.getByTestId("server-form");
    await form.locator('input[name="id"]').fill(id);
    await form.locator('input[name="name"]').fill("Team tools");
    await form.locator('input[name="url"]').fill(guarded);
    await form.getByTestId("server-groups").fill(group);
    await form.getByTestId("save-server").click();
    await expect(added.getByTestId("server-limited-to")).toHaveText(`Only for: ${group}`);
    await carol.goto(`${sso}/servers`);
    await hydrated(carol);
    await expect(carol.locator(`[data-testid="server"][data-server="${id}"]`)).toBeVisible();

    await alice.goto(`${sso}/admin/groups`);
    await hydrated(alice);
    await card.getByRole("button", { name: "Take Carol Clark out" }).click();
    await expect(card.getByTestId("members")).not.toContainText("carol@example.com");
    await carol.reload();
    await hydrated(carol);
    // (Loaded: the list, or the note that there is none.)
    await expect(carol.locator('[data-testid="server-list"], [data-testid="no-servers"]')).toBeVisible();
    await expect(carol.locator(`[data-testid="server"][data-server="${id}"]`)).toHaveCount(0);
  } finally {
    // Whatever happened: Carol active, the server and the group gone.
    await alice.goto(`${sso}/admin/people`);
    await hydrated(alice);
    if ((await row.getAttribute("data-status")) === "deactivated") await row.getByTestId("set-access").click();
    await alice.goto(`${sso}/admin/servers`);
    await hydrated(alice);
    if (await added.count()) await added.getByTestId("delete-server").click();
    await expect(added).toHaveCount(0);
    await alice.goto(`${sso}/admin/groups`);
    await hydrated(alice);
    if (await card.count()) await card.getByTestId("delete-group").click();
    await expect(card).toHaveCount(0);
  }
});

test("the usage page charts the tokens of today's answers", async ({ page }) => {
  test.skip(test.info().project.name !== "desktop", "the chart's width is the point, not the phone");
  await startChat(page, "Hello for the usage chart");
  await expect(page.getByTestId("send")).toBeVisible({ timeout: 15_000 });
  await page.goto("/admin/usage");
  await hydrated(page);
  const chart = page.getByTestId("usage-chart");
  await expect(chart).toBeVisible();
  await expect(chart.getByTestId("usage-bar")).toHaveCount(30);
  const today = new Date().toISOString().slice(0, 10);
  const bar = chart.locator(`[data-testid="usage-bar"][data-day="${today}"]`);
  expect(Number(await bar.getAttribute("data-tokens"))).toBeGreaterThan(0);
  await expect(page.getByTestId("usage-row").filter({ hasText: "Local user" })).toBeVisible();
  await page.getByTestId("usage-by").selectOption("model");
  await expect(page.getByTestId("usage-row").filter({ hasText: "fake/scripted" })).toBeVisible();
  // The CSV is the same rows, to download.
  const csv = await page.request.get("/admin/usage.csv");
  expect(csv.headers()["content-type"]).toContain("text/csv");
  expect(await csv.text()).toContain("fake/scripted");
});
