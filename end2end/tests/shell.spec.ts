import { expect, test, type Page } from "@playwright/test";
import { hydrated } from "./helpers";

function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  return errors;
}

test("the shell is server-rendered before any script runs", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const response = await page.goto("/");
  expect(response?.status()).toBe(200);
  await expect(page).toHaveTitle("Switchboard");
  await expect(page.getByRole("heading", { name: "What can I help with?" })).toBeVisible();
  await expect(page.getByTestId("new-chat")).toHaveText(/New chat/);
  await expect(page.getByTestId("theme-toggle")).toBeVisible();
  // Tailwind's CSS is loaded: the sidebar link is styled, not a default blue underlined link.
  const radius = await page.getByTestId("new-chat").evaluate((el) => getComputedStyle(el).borderRadius);
  expect(radius).not.toBe("0px");
  await context.close();
});

test("the page hydrates without errors", async ({ page }) => {
  const errors = collectPageErrors(page);
  await page.goto("/");
  await hydrated(page);
  expect(errors).toEqual([]);
});

test("the theme toggle switches at once and is remembered", async ({ page }) => {
  await page.emulateMedia({ colorScheme: "light" });
  await page.goto("/");
  await hydrated(page);
  const html = page.locator("html");
  const toggle = page.getByTestId("theme-toggle");
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);

  // No choice yet: follows the system (light here).
  await expect(toggle).toHaveAttribute("data-theme", "system");
  const light = await background();

  await toggle.click(); // → light
  await expect(toggle).toHaveAttribute("data-theme", "light");
  await expect(html).toHaveClass("light");

  await toggle.click(); // → dark
  await expect(toggle).toHaveAttribute("data-theme", "dark");
  await expect(html).toHaveClass("dark");
  const dark = await background();
  expect(dark).not.toBe(light);

  // Remembered: the server renders the next page dark, before any script runs.
  await page.reload();
  await expect(html).toHaveClass("dark");
  expect(await background()).toBe(dark);
  await hydrated(page);
  await expect(toggle).toHaveAttribute("data-theme", "dark");

  await toggle.click(); // → back to the system's
  await expect(toggle).toHaveAttribute("data-theme", "system");
  await expect(html).not.toHaveClass(/dark|light/);
  expect(await background()).toBe(light);
});

test("with no choice the theme follows the system", async ({ page }) => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto("/");
  const darkBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: "light" });
  const lightBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(darkBg).not.toBe(lightBg);
});

test("an unknown address shows a styled 404 inside the shell", async ({ page }) => {
  const response = await page.goto("/no/such/page");
  expect(response?.status()).toBe(404);
  await expect(page).toHaveTitle("Page not found · Switchboard");
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  await expect(page.getByTestId("sidebar")).toBeAttached();
  await page.getByRole("link", { name: "Back to Switchboard" }).click();
  await expect(page.getByRole("heading", { name: "What can I help with?" })).toBeVisible();
});

test("health and readiness endpoints answer", async ({ request }) => {
  const health = await request.get("/healthz");
  expect(health.status()).toBe(200);
  const ready = await request.get("/readyz");
  expect(ready.status()).toBe(200);
  expect((await ready.json()).status).toBe("ready");
});

test("in local mode everyone is the local admin, with nothing to sign out of", async ({ page }) => {
  await page.goto("/login");
  await expect(page).toHaveURL(/\/$/);
  await hydrated(page);
  await page.getByTestId("user-menu").click();
  await expect(page.getByTestId("user-name")).toHaveText("Local user");
  await expect(page.getByTestId("user-menu-panel")).toContainText("Admin");
  await expect(page.getByTestId("user-menu-panel")).toContainText("Local mode");
  await expect(page.getByTestId("sign-out")).toHaveCount(0);
  await page.getByTestId("settings-link").click();
  await expect(page).toHaveURL(/\/settings$/);
  await expect(page.getByRole("heading", { name: "API tokens" })).toBeVisible();
});

test("pages hydrate, stream and navigate under their Content-Security-Policy", async ({ page }) => {
  const errors = collectPageErrors(page);
  // Playwright's own init scripts are not subject to the page's policy; this one records every
  // violation the page reports.
  await page.addInitScript(() => {
    (window as any).__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      (window as any).__violations.push(`${e.violatedDirective}: ${e.blockedURI}`);
    });
  });
  const response = await page.goto("/");
  const csp = response?.headers()["content-security-policy"] ?? "";
  expect(csp).toContain("script-src 'self' 'nonce-");
  expect(csp).toContain("frame-ancestors 'none'");
  await hydrated(page);
  // An answer streams in over the event stream (connect-src) and renders as Markdown.
  await page.getByTestId("composer").fill("Hello there");
  await page.getByTestId("composer").press("Enter");
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await expect(page.getByTestId("send")).toBeVisible({ timeout: 15_000 });
  for (const path of ["/settings", "/servers", "/activity"]) {
    await page.goto(path);
    await hydrated(page);
  }
  expect(await page.evaluate(() => (window as any).__violations)).toEqual([]);
  expect(errors).toEqual([]);
});

test("a chat downloads no other page's code; Settings fetches its own, by link and by address", async ({ page }) => {
  const errors = collectPageErrors(page);
  const wasm: string[] = [];
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith("/pkg/") && path.endsWith(".wasm")) wasm.push(path);
  });
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("composer").fill("Hello there");
  await page.getByTestId("composer").press("Enter");
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
  await expect(page.getByTestId("send")).toBeVisible({ timeout: 15_000 });
  // The page and a whole answer needed the main file only (app/src/pages/lazy.rs).
  expect(wasm).toEqual(["/pkg/switchboard.wasm"]);

  // Opened from the menu: its part is fetched, then the page works (it loads its tokens).
  await page.getByTestId("user-menu").click();
  await page.getByTestId("settings-link").click();
  await expect(page).toHaveURL(/\/settings$/);
  await expect(page.getByRole("heading", { name: "API tokens" })).toBeVisible();
  expect(wasm.some((p) => p.includes("settings_view"))).toBe(true);

  // Opened by its address: rendered by the server, then hydrated with its part.
  wasm.length = 0;
  await page.goto("/activity");
  await hydrated(page);
  expect(wasm.some((p) => p.includes("activity_view"))).toBe(true);
  expect(wasm.some((p) => p.includes("settings_view"))).toBe(false);
  expect(errors).toEqual([]);
});

test("the People page lists everyone, and an administrator cannot deactivate themselves", async ({ page }) => {
  const errors = collectPageErrors(page);
  await page.goto("/admin/people");
  await hydrated(page);
  const everyone = page.getByTestId("everyone");
  const me = everyone.getByTestId("person").filter({ hasText: "local" }).first();
  await expect(me).toBeVisible();
  await expect(me).toHaveAttribute("data-status", "active");
  await expect(me).toContainText("tokens this month");
  await me.getByTestId("set-access").click();
  await expect(page.getByTestId("access-error")).toContainText("cannot deactivate yourself");
  await expect(me).toHaveAttribute("data-status", "active");
  expect(errors.filter((e) => !e.includes("422"))).toEqual([]);
});
