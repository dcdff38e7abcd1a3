// Opens the review page's statistics (统计) like station staff: log in, switch to the tab,
// choose the days, group by camera, zone and kind, and read back what the page shows: the
// chart (uPlot's canvas and its legend), the summary cards and the table. Prints it as JSON;
// exits non-zero on any failure. Usage: node stats.mjs URL PASSWORD FROM TO SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, password, from, to, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await page.fill("#login-password", password);
  await page.click("#login-submit");
  await page.waitForSelector("#tab-stats:visible", { timeout: 20000 });
  await page.click("#tab-stats");
  await page.fill("#s-from", from);
  await page.fill("#s-to", to);
  await page.selectOption("#s-group", "camera,zone,kind");
  await page.click("#s-run");
  await page.waitForFunction(() => document.querySelectorAll("#stats-table tbody tr td.n").length > 0, null, { timeout: 20000 });
  await page.waitForSelector("#stats-chart canvas", { timeout: 20000 });
  const shown = await page.evaluate(() => {
    const canvas = document.querySelector("#stats-chart canvas");
    const cards = Object.fromEntries([...document.querySelectorAll("#s-cards .card")].map((c) => [c.querySelector("span").textContent, c.querySelector("b").textContent]));
    const rows = [...document.querySelectorAll("#stats-table tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent));
    const crossings = [...document.querySelectorAll("#crossings-table tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent));
    const legend = [...document.querySelectorAll("#stats-chart .u-legend .u-label")].map((l) => l.textContent);
    return { canvas: canvas ? { width: canvas.width, height: canvas.height } : null, cards, rows, crossings, legend, csv: document.getElementById("s-csv").href };
  });
  await page.screenshot({ path: screenshot, fullPage: true });
  shown.errors = errors;
  console.log(JSON.stringify(shown));
} finally {
  await browser.close();
}
