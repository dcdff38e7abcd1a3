// Drives the installer's console (/cameras) like an installer, with mouse events on the
// camera's picture. Usage: node cameras.mjs URL PASSWORD STEP OUT_DIR, where STEP is
//   view     the cameras view: the camera online with its decoder and a picture;
//   invalid  draw a zone of two corners and save: the validation error beside the field;
//   valid    draw a four-corner parking zone (one corner dragged), name it, set its rule, save;
//   reviewer log in with a reviewer's password: the console refuses.
// Prints one JSON line of what it saw; exits non-zero on any failure.
import { chromium } from "playwright-core";

const [url, password, step, outDir] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (e) => { console.error("page error:", e.message); process.exitCode = 1; });
  await page.goto(url + "cameras");
  await page.fill("#login-password", password);
  await page.click("#login-submit");
  if (step === "reviewer") {
    await page.waitForSelector("#forbidden:not(.hidden)", { timeout: 20000 });
    seen.forbidden = await page.textContent("#forbidden");
    seen.editor = await page.isVisible("#editor");
  } else {
    await page.waitForSelector(".camera-card .tag.online", { timeout: 30000 });
    seen.card = await page.textContent(".camera-card");
    await page.click(".camera-card");
    await page.waitForFunction(() => {
      const img = document.getElementById("picture");
      return img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 30000 });
    seen.picture = await page.evaluate(() => {
      const img = document.getElementById("picture");
      return [img.naturalWidth, img.naturalHeight];
    });
    const box = await page.locator("#picture").boundingBox();
    const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
    const click = async (x, y) => { const [px, py] = at(x, y); await page.mouse.click(px, py); };
    if (step === "view") {
      await page.screenshot({ path: `${outDir}/cameras-view.png`, fullPage: true });
    } else if (step === "invalid") {
      await page.click("#btn-add");
      await click(0.1, 0.3);
      await click(0.3, 0.3);
      await page.click("#btn-finish");
      await page.click("#btn-save");
      await page.waitForFunction(() => {
        const slot = document.querySelector('.zone-row [data-error="polygon"]');
        return slot && slot.textContent.length > 0;
      }, null, { timeout: 20000 });
      seen.polygonError = await page.textContent('.zone-row [data-error="polygon"]');
      seen.saveResult = await page.textContent("#save-result");
    } else if (step === "valid") {
      await page.click("#btn-add");
      await click(0.005, 0.2);
      await click(0.4, 0.2);
      await click(0.36, 0.5);
      await click(0.005, 0.55);
      await page.click("#btn-finish");
      // Drag the third corner from (0.36, 0.5) to (0.4, 0.55).
      const [fromX, fromY] = at(0.36, 0.5);
      const [toX, toY] = at(0.4, 0.55);
      await page.mouse.move(fromX, fromY);
      await page.mouse.down();
      await page.mouse.move((fromX + toX) / 2, (fromY + toY) / 2, { steps: 4 });
      await page.mouse.move(toX, toY, { steps: 4 });
      await page.mouse.up();
      const row = page.locator(".zone-row").last();
      await row.locator('[data-field="name"]').fill("消防通道");
      await row.locator('[data-object="vehicle"]').check();
      await row.locator('[data-field="rule"]').selectOption("illegal_parking");
      const edited = page.locator(".zone-row").last();
      await edited.locator('[data-param="dwell"]').fill("5s");
      await edited.locator('[data-param="grace"]').fill("5s");
      await page.screenshot({ path: `${outDir}/zone-editor.png`, fullPage: true });
      await page.click("#btn-save");
      await page.waitForFunction(() => document.getElementById("save-result").textContent.includes("已保存"), null, { timeout: 20000 });
      seen.saveResult = await page.textContent("#save-result");
    }
  }
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
