import { expect, test } from "@playwright/test";

test("on a phone the chat list is a drawer opened from the header", async ({ page, isMobile }) => {
  test.skip(!isMobile, "phone layout only");
  await page.goto("/");
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  const sidebar = page.getByTestId("sidebar");
  const newChat = page.getByTestId("new-chat");

  await expect(newChat).not.toBeInViewport();
  await page.getByTestId("open-sidebar").click();
  await expect(newChat).toBeInViewport();
  await page.getByRole("button", { name: "Close the chat list" }).click();
  await expect(newChat).not.toBeInViewport();
  await expect(sidebar).toBeAttached();

  // Nothing overflows sideways.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
});

test("on a desktop the chat list is always shown", async ({ page, isMobile }) => {
  test.skip(isMobile, "desktop layout only");
  await page.goto("/");
  await expect(page.getByTestId("new-chat")).toBeInViewport();
  await expect(page.getByTestId("open-sidebar")).toBeHidden();
});
