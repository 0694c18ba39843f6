import { expect, type Page } from "@playwright/test";

// Steps the specs share.

/** Waits until the page has hydrated: the app's first effect has run in the browser (the body says so). */
export async function hydrated(page: Page) {
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
}

/** Starts a new chat from the home page with `text` and waits for its page. */
export async function startChat(page: Page, text: string) {
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("composer").fill(text);
  await page.getByTestId("composer").press("Enter");
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
  await hydrated(page);
}
