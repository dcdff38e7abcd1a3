// Drives the review page like a station worker: log in, open the newest incident, play its
// clip, dismiss it as a false alarm (误报). Prints the video state as JSON; exits non-zero on
// any failure. Usage: node review.mjs URL PASSWORD SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, password, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(url);
  await page.fill("#login-password", password);
  await page.click("#login-submit");
  await page.waitForSelector(".incident-row", { timeout: 20000 });
  await page.click(".incident-row");
  await page.waitForSelector("#clip", { timeout: 20000 });
  await page.evaluate(() => document.getElementById("clip").play());
  await page.waitForFunction(() => {
    const v = document.getElementById("clip");
    return v && v.readyState >= 2 && v.currentTime > 0;
  }, null, { timeout: 30000 });
  const video = await page.evaluate(() => {
    const v = document.getElementById("clip");
    return { readyState: v.readyState, currentTime: v.currentTime, duration: v.duration };
  });
  await page.fill("#reviewer", "王网格员");
  await page.fill("#review-note", "浏览器测试：业主车辆");
  await page.click("#btn-dismiss");
  await page.waitForFunction(() => document.getElementById("review-state").textContent.includes("误报"), null, { timeout: 20000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(video));
} finally {
  await browser.close();
}
