import { expect, test, type Page } from "@playwright/test";
import { hydrated } from "./helpers";

// The instance with single sign-on (see playwright.config.ts): a real OpenID provider's login form.
const port = Number(process.env.E2E_PORT ?? 3100);
const sso = `http://127.0.0.1:${port + 2}`;

async function signIn(page: Page, user: string, password: string) {
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

test("a new user signs in through the provider, sees their name, and signs out", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));

  // A private page sends us to the login page, and sign-in brings us back to it.
  await page.goto(`${sso}/settings`);
  await expect(page).toHaveURL(`${sso}/login?next=%2Fsettings`);
  await expect(page).toHaveTitle("Sign in · Switchboard");

  // A wrong password is the provider's business: it says so and we stay there.
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await page.getByLabel("Username").fill("alice");
  await page.getByLabel("Password").fill("wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByText("Invalid username or password.")).toBeVisible();
  await page.getByLabel("Password").fill("alice-password");
  await page.getByRole("button", { name: "Sign in" }).click();

  await expect(page).toHaveURL(`${sso}/settings`);
  await hydrated(page);
  await expect(page.getByTestId("account-name")).toHaveText("Alice Anderson");

  // The user menu says who is signed in.
  await page.getByTestId("user-menu").click();
  await expect(page.getByTestId("user-name")).toHaveText("Alice Anderson");
  await expect(page.getByTestId("user-menu-panel")).toContainText("alice@example.com");
  await expect(page.getByTestId("user-menu-panel")).toContainText("Admin");

  // Sign out: through the provider's end-session endpoint and back to the login page.
  await page.getByTestId("sign-out").click();
  await expect(page).toHaveURL(`${sso}/login?signed_out=1`);
  await expect(page.getByTestId("login-notice")).toHaveText("You have signed out.");

  // Signed out here and at the provider: the next sign-in asks for the password again.
  await page.goto(`${sso}/`);
  await expect(page).toHaveURL(`${sso}/login`);
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await expect(page.getByLabel("Password")).toBeVisible();
  expect(errors).toEqual([]);
});

test("cancelling at the provider is explained on the login page", async ({ page }) => {
  await page.goto(`${sso}/login`);
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await page.getByRole("link", { name: "Cancel" }).click();
  await expect(page).toHaveURL(/\/login\?error=denied/);
  await expect(page.getByRole("alert")).toContainText("Sign-in was cancelled at Test IdP");
  // ... and signing in from there works.
  await signIn(page, "bob", "bob-password");
  await expect(page).toHaveURL(`${sso}/`);
  await hydrated(page);
  await page.getByTestId("user-menu").click();
  await expect(page.getByTestId("user-name")).toHaveText("Bob Brown");
  await expect(page.getByTestId("user-menu-panel")).toContainText("Member");
  // This instance has no model: the composer says how to add one.
  await expect(page.getByTestId("composer-blocked")).toContainText("SWITCHBOARD_LLM_PROVIDERS");
});

test("API tokens are created, shown once, used and revoked in Settings", async ({ page, request }) => {
  await page.goto(`${sso}/settings`);
  await signIn(page, "bob", "bob-password");
  await expect(page).toHaveURL(`${sso}/settings`);
  await hydrated(page);

  await page.getByPlaceholder(/What is it for/).fill(`e2e ${test.info().project.name}`);
  await page.getByTestId("create-token").click();
  const secret = (await page.getByTestId("new-token").textContent())!.trim();
  expect(secret).toMatch(/^sb_/);
  await expect(page.getByPlaceholder(/What is it for/)).toHaveValue("");
  const row = page.getByTestId("token-row").filter({ hasText: `e2e ${test.info().project.name}` });
  await expect(row).toBeVisible();

  // The token acts as Bob on the API.
  const me = await request.post(`${sso}/api/auth/me`, { headers: { authorization: `Bearer ${secret}` } });
  expect(me.status()).toBe(200);
  expect((await me.json()).name).toBe("Bob Brown");

  // Revoke (with a confirmation step); the token stops working at once.
  await row.getByTestId("revoke-token").click();
  await row.getByTestId("confirm-revoke").click();
  await expect(row).toHaveCount(0);
  const after = await request.post(`${sso}/api/auth/me`, { headers: { authorization: `Bearer ${secret}` } });
  expect(after.status()).toBe(401);
  expect((await after.json()).error).toBe("invalid_token");
});

test("an API call without a session or token gets a JSON 401", async ({ request }) => {
  const response = await request.post(`${sso}/api/tokens/list`);
  expect(response.status()).toBe(401);
  expect(await response.json()).toMatchObject({ error: "unauthenticated" });
});
