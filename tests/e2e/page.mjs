// Loads the page at / in headless Chromium, submits a prompt, and checks what a person
// would: the streams filling, the scores, the waterfall drawn. Saves a screenshot.
// Usage: [PAGE_KEY=KEY] node page.mjs BASE_URL SCREENSHOT_PATH [GRAPH TEXT]
// Without GRAPH: the default graph, with its three generator columns. With GRAPH: picks it
// in the page's graph list, runs TEXT through it, and reports its columns, notes and rows.
// With PAGE_KEY (a server with API keys): the page must first ask for a key, refuse a wrong
// one, and take KEY; the report says what it showed and which calls carried the key.
import { chromium } from "playwright-core";

const [base, screenshot, graph, text] = process.argv.slice(2);
const key = process.env.PAGE_KEY;

// Answers the key form: a wrong key first, which must be refused with the form shown again,
// then `key`. Returns what the form showed at each turn.
async function giveKey(page, key) {
  const form = page.locator("#key-form");
  await form.waitFor({ state: "visible" });
  // Found by its label, as a screen reader would announce it.
  const input = page.getByLabel("API key");
  const asked = await page.locator("#key-message").textContent();
  const seen = {
    asked,
    type: await input.getAttribute("type"),
    graphsBefore: await page.locator("#graph option").count(),
    // A character no key may hold is stopped in the form, before any call.
    checksCharacters: await input.evaluate(i => {
      i.value = "bad key";
      const refused = !i.checkValidity();
      i.value = "k-good";
      const taken = i.checkValidity();
      i.value = "";
      return refused && taken;
    }),
  };
  // The form fits a phone-sized screen.
  await page.setViewportSize({ width: 390, height: 844 });
  seen.narrow = await input.evaluate(i => document.documentElement.scrollWidth <= window.innerWidth + 1
    && i.getBoundingClientRect().right <= window.innerWidth);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-form.png") });
  await page.setViewportSize({ width: 1100, height: 900 });
  await input.fill(key + "-wrong");
  await form.getByRole("button").click();
  await page.waitForFunction(asked => !document.getElementById("key-form").hidden
    && document.getElementById("key-message").textContent !== asked, asked);
  seen.refused = await page.locator("#key-message").textContent();
  seen.emptied = (await input.inputValue()) === "";
  await input.fill(key);
  await form.getByRole("button").click();
  await form.waitFor({ state: "hidden" });
  return seen;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", e => errors.push(e.message));
  // Each API call and what it sent: no key, the key, or another one.
  const requests = [];
  page.on("request", r => {
    const path = new URL(r.url()).pathname;
    const auth = r.headers().authorization;
    if (path.startsWith("/v1/")) requests.push([path, !auth ? "none" : auth === "Bearer " + key ? "key" : "other"]);
  });
  await page.goto(base + "/");
  const keyForm = key ? await giveKey(page, key) : undefined;
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
    // Drawn, or (for a key that may not read traces) said why not.
    await page.waitForFunction(() => document.querySelectorAll("#waterfall svg .bar").length >= 8
      || document.getElementById("waterfall").textContent.startsWith("No waterfall"), null, { timeout: 30000 });
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
  const seen = await page.evaluate(item => ({
    waterfall: document.querySelector("#waterfall svg") ? "drawn" : document.getElementById("waterfall").textContent,
    keyFormHidden: document.getElementById("key-form").hidden,
    wsProtocol: socket ? socket.protocol : null,
    keyInSession: sessionStorage.getItem(item),
    localItems: localStorage.length,
  }), "infergraph.key");
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-narrow.png"), fullPage: true });
  console.log(JSON.stringify({ ...report, ...seen, keyForm, requests, narrow, errors }));
} finally {
  await browser.close();
}
