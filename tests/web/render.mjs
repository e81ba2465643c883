// Drives the real ComfyUI frontend in headless Chromium for tests/test_web.py.
//
//   node tests/web/render.mjs spec.json
//
// spec: {base, chromium, outdir, roundtrip: [{name, workflow}], scenes: [{name, workflow,
//        executed: [{node, output}], focus: [node ids]}]}
// Prints one JSON object: the extensions the page loaded, each workflow as the frontend
// re-serialises it, per focused node its widgets and preview state, the screenshot files
// (before/after the executed event, same clip), and any page errors.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const base = spec.base.replace(/\/$/, "");
const out = { extensions: [], roundtrip: {}, scenes: {}, pageErrors: [], consoleErrors: [], blocked: [] };

const browser = await chromium.launch({
  executablePath: spec.chromium || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 });
  // Only the server under test is reached (the frontend also asks a release feed on the internet).
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(base) || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
    out.blocked.push(url);
    return route.abort();
  });
  page.on("pageerror", (e) => out.pageErrors.push(String(e.stack || e.message || e).slice(0, 1500)));
  page.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(m.text().slice(0, 300)); });

  await page.goto(base + "/");
  await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.canvas
    && window.comfyAPI.app.app.extensions?.length, null, { timeout: 60000 });
  await page.waitForFunction(() => window.comfyAPI.app.app.extensions.some((e) => e.name === "ComfyUI-LipSync.previews"),
    null, { timeout: 20000 }).catch(() => {});
  // node types are registered after the extensions load (object_info may come later): wait for ours
  const types = spec.waitTypes || [];
  await page.waitForFunction((types) => types.every((t) => window.LiteGraph?.registered_node_types?.[t]),
    types, { timeout: 60000 }).catch(() => {});
  out.registered = await page.evaluate((types) => types.filter((t) => window.LiteGraph?.registered_node_types?.[t]), types);
  out.extensions = await page.evaluate(() => window.comfyAPI.app.app.extensions.map((e) => e.name));
  // close any dialog the first start may open
  await page.keyboard.press("Escape");

  for (const { name, workflow } of spec.roundtrip || []) {
    out.roundtrip[name] = await page.evaluate(async (wf) => {
      const app = window.comfyAPI.app.app;
      await app.loadGraphData(structuredClone(wf), true, true, "roundtrip");
      const s = app.graph.serialize();
      return {
        nodes: s.nodes.map((n) => ({ id: n.id, type: n.type, widgets_values: n.widgets_values ?? null,
          inputs: n.inputs || [], outputs: (n.outputs || []).map((o) => ({ name: o.name, type: o.type, links: o.links ?? null })) })),
        links: s.links,
        known: app.graph.nodes.map((n) => ({ id: n.id, type: n.type,
          registered: !!window.LiteGraph?.registered_node_types?.[n.type] })),
      };
    }, workflow);
  }

  for (const scene of spec.scenes || []) {
    const res = { nodes: {} };
    await page.evaluate(async (wf) => {
      await window.comfyAPI.app.app.loadGraphData(structuredClone(wf), true, true, "scene");
    }, scene.workflow);
    await page.keyboard.press("Escape");
    const shoot = async (id, tag) => {
      const box = await page.evaluate((id) => {
        const app = window.comfyAPI.app.app;
        const node = app.graph.getNodeById(id);
        const canvas = app.canvas;
        canvas.ds.scale = 1;
        canvas.ds.offset[0] = 140 - node.pos[0];
        canvas.ds.offset[1] = 100 - node.pos[1];
        canvas.setDirty(true, true);
        canvas.draw(true, true);
        const r = canvas.canvas.getBoundingClientRect();
        const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
        return { x: r.left + 140 - 10, y: r.top + 100 - title - 10, title };
      }, id);
      await page.waitForTimeout(150);
      await page.evaluate(() => window.comfyAPI.app.app.canvas.draw(true, true));
      const file = join(spec.outdir, `${scene.name}_${id}_${tag}.png`);
      await page.screenshot({ path: file, clip: { x: box.x, y: box.y, width: 560, height: 760 } });
      return { file, title: box.title };
    };
    const before = {};
    for (const id of scene.focus) before[id] = await shoot(id, "before");
    if (scene.queue) {
      // a real run: queue the graph on the server, the previews come from its websocket messages
      const t0 = Date.now();
      await page.evaluate(() => window.comfyAPI.app.app.queuePrompt(0, 1));
      await page.waitForFunction((ids) => ids.every((id) => window.comfyAPI.app.app.graph.getNodeById(id).lipsyncData),
        scene.queue.waitFor, { timeout: scene.queue.timeoutMs, polling: 500 }).catch(() => {});
      res.runSeconds = (Date.now() - t0) / 1000;
    } else {
      await page.evaluate((events) => {
        const api = window.comfyAPI.api.api;
        for (const e of events) {
          api.dispatchCustomEvent("executed", { node: String(e.node), display_node: String(e.node),
            output: e.output, prompt_id: "test" });
        }
      }, scene.executed);
    }
    if (scene.upload) {
      // pick a file with the LoadAudioDriver upload button's file input, as a user would
      const chooser = page.waitForEvent("filechooser");
      await page.evaluate((id) => {
        const node = window.comfyAPI.app.app.graph.getNodeById(id);
        node.widgets.find((w) => w.name === "upload_audio").callback();
      }, scene.upload.node);
      await (await chooser).setFiles(scene.upload.file);
      await page.waitForFunction(([id, name]) => window.comfyAPI.app.app.graph.getNodeById(id)
        .widgets.find((w) => w.name === "audio_file").value === name,
      [scene.upload.node, scene.upload.file.split("/").pop()], { timeout: 10000 }).catch(() => {});
      res.upload = await page.evaluate((id) => {
        const w = window.comfyAPI.app.app.graph.getNodeById(id).widgets.find((w) => w.name === "audio_file");
        return { value: w.value, values: [...(w.options.values || [])] };
      }, scene.upload.node);
    }
    for (const id of scene.focus) {
      const after = await shoot(id, "after");
      const state = await page.evaluate((id) => {
        const n = window.comfyAPI.app.app.graph.getNodeById(id);
        return { type: n.type, size: [n.size[0], n.size[1]], drawn: n.lipsyncDrawn || 0, data: n.lipsyncData ?? null,
          rect: n.lipsyncRect || null, widgets: (n.widgets || []).map((w) => w.name),
          serialized: n.serialize().widgets_values ?? null };
      }, id);
      res.nodes[id] = { ...state, before: before[id].file, after: after.file, title: after.title };
    }
    out.scenes[scene.name] = res;
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
