// Screenshot of a whole workflow in the real ComfyUI frontend, for docs/graph.png.
//
//   node tests/web/graph_shot.mjs BASE_URL workflow.json out.png
//
// Loads the workflow, fits every node and group into the canvas, hides the frontend's menus and
// the canvas' debug overlay, and saves the canvas area. tools/screenshot_graph.py starts the stub
// server (tests/comfy_stub.py) and calls this.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, wfPath, outPng] = process.argv.slice(2);
const wf = JSON.parse(readFileSync(wfPath, "utf8"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 2354, height: 1140 }, deviceScaleFactor: 1 });
  await page.route("**/*", (r) => {
    const url = r.request().url();
    return url.startsWith(base) || url.startsWith("data:") || url.startsWith("blob:") ? r.continue() : r.abort();
  });
  await page.goto(base + "/");
  await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.canvas, null,
    { timeout: 60000 });
  await page.waitForFunction(() => window.LiteGraph?.registered_node_types?.["LipSyncSyncScore"], null,
    { timeout: 60000 });
  await page.keyboard.press("Escape");
  await page.evaluate(async (wf) => {
    await window.comfyAPI.app.app.loadGraphData(structuredClone(wf), true, true, "graph");
  }, wf);
  await page.keyboard.press("Escape");
  const clip = await page.evaluate(() => {
    const app = window.comfyAPI.app.app, c = app.canvas, g = app.graph;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of g._nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    for (const gr of g._groups || []) {
      const b = gr._bounding || gr.bounding;
      if (!b) continue;
      x0 = Math.min(x0, b[0]); y0 = Math.min(y0, b[1]); x1 = Math.max(x1, b[0] + b[2]); y1 = Math.max(y1, b[1] + b[3]);
    }
    const el = c.canvas.getBoundingClientRect();
    const scale = Math.min(el.width / (x1 - x0 + 40), el.height / (y1 - y0 + 40));
    c.show_info = false;
    c.ds.scale = scale;
    c.ds.offset[0] = -x0 + 20;
    c.ds.offset[1] = -y0 + 20;
    c.setDirty(true, true);
    c.draw(true, true);
    return { x: el.x, y: el.y, width: Math.min(el.width, (x1 - x0 + 40) * scale),
      height: Math.min(el.height, (y1 - y0 + 40) * scale) };
  });
  await page.evaluate(() => {
    const hide = ".comfyui-menu, .p-panel, .minimap, .graph-canvas-menu, .side-tool-bar-container, "
      + ".comfyui-body-top, .workflow-tabs-container";
    for (const e of document.querySelectorAll(hide)) e.style.visibility = "hidden";
  });
  await page.waitForTimeout(1500);
  await page.screenshot({ path: outPng, clip });
} finally {
  await browser.close();
}
