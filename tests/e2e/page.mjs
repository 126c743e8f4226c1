// Loads the page at / in headless Chromium, submits a prompt, and checks what a person
// would: the streams filling, the scores, the waterfall drawn. Saves a screenshot.
// Usage: node page.mjs BASE_URL SCREENSHOT_PATH [GRAPH TEXT]
// Without GRAPH: the default graph, with its three generator columns. With GRAPH: picks it
// in the page's graph list, runs TEXT through it, and reports its columns, notes and rows.
import { chromium } from "playwright-core";

const [base, screenshot, graph, text] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", e => errors.push(e.message));
  await page.goto(base + "/");
  let report;
  if (!graph) {
    await page.waitForFunction(() => document.querySelectorAll(".model").length === 3);
    await page.fill("#text", "I have an idea!");
    await page.fill("#max_new_tokens", "12");
    await page.click("#run");
    // Three streams fill, three scores land, the waterfall is drawn.
    await page.waitForFunction(() => [...document.querySelectorAll(".stream")]
      .every(s => s.textContent.length > "I have an idea!".length), null, { timeout: 30000 });
    await page.waitForFunction(() => [...document.querySelectorAll(".score b")].length === 3, null, { timeout: 30000 });
    await page.waitForFunction(() => document.querySelectorAll("#waterfall svg .bar").length >= 8, null, { timeout: 30000 });
    report = await page.evaluate(() => ({
      models: [...document.querySelectorAll(".model")].map(m => m.dataset.model),
      scores: [...document.querySelectorAll(".score b")].map(b => Number(b.textContent)),
      queueBars: document.querySelectorAll("#waterfall .bar.queue").length,
      computeBars: document.querySelectorAll("#waterfall .bar.compute").length,
      status: document.getElementById("status").textContent,
    }));
  } else {
    await page.waitForFunction(g => [...document.querySelectorAll("#graph option")].some(o => o.value === g), graph);
    await page.selectOption("#graph", graph);
    await page.fill("#text", text);
    await page.fill("#max_new_tokens", "8");
    await page.click("#run");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Done")
      || document.getElementById("status").textContent.startsWith("Error"), null, { timeout: 30000 });
    await page.waitForFunction(() => document.querySelectorAll("#waterfall svg .bar.step").length > 0, null, { timeout: 30000 });
    report = await page.evaluate(() => ({
      models: [...document.querySelectorAll(".model")].map(m => m.dataset.model),
      filled: [...document.querySelectorAll(".model")].filter(m => m.querySelector(".stream").textContent.length > document.getElementById("text").value.length).map(m => m.dataset.model),
      scores: [...document.querySelectorAll(".score b")].map(b => Number(b.textContent)),
      diagram: document.getElementById("diagram").textContent,
      notes: [...document.querySelectorAll("#notes li")].map(li => li.textContent),
      rows: [...document.querySelectorAll("#waterfall svg > text")].map(t => t.textContent),
      stepBars: document.querySelectorAll("#waterfall .bar.step").length,
      computeBars: document.querySelectorAll("#waterfall .bar.compute").length,
      status: document.getElementById("status").textContent,
    }));
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  // A narrow screen still shows everything, one column at a time.
  await page.setViewportSize({ width: 390, height: 844 });
  const narrow = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-narrow.png"), fullPage: true });
  console.log(JSON.stringify({ ...report, narrow, errors }));
} finally {
  await browser.close();
}
