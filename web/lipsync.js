// ComfyUI-LipSync web extension: draws what our nodes report after a run.
//
// - ExtractPhonemes: the waveform with a labelled band per phoneme   (ui "lipsync_phonemes", "lipsync_wave")
// - MapVisemes:      the viseme timeline and the jaw-open curve      (ui "lipsync_cues", "lipsync_visemes")
// - SyncScore:       an offset badge and the score-against-lag plot  (ui "lipsync_sync")
// - LoadAudioDriver: an upload button for the audio_file list
//
// The ui keys are documented in docs/UI_KEYS.md. The nodes work the same without this file;
// it only reads their ui output (the `executed` message) and never changes what is saved:
// its widgets are not serialised, so widgets_values stay as the Python definitions say.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREVIEW = "lipsync_preview";

const RHUBARB_COLOURS = {
  X: "#3b4252", A: "#bf616a", B: "#d08770", C: "#ebcb8b", D: "#a3be8c",
  E: "#88c0d0", F: "#5e81ac", G: "#b48ead", H: "#8fbcbb",
};

function colourFor(name) {
  if (RHUBARB_COLOURS[name]) return RHUBARB_COLOURS[name];
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h}, 45%, 55%)`;
}

function panel(ctx, x, y, w, h) {
  ctx.fillStyle = "#15171c";
  ctx.strokeStyle = "#3a3f4b";
  ctx.lineWidth = 1;
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, w, h, 4);
  else ctx.rect(x, y, w, h);
  ctx.fill();
  ctx.stroke();
}

function timeTicks(ctx, x, y, w, duration) {
  if (!(duration > 0)) return;
  const step = duration > 20 ? 5 : duration > 6 ? 2 : duration > 2 ? 0.5 : 0.25;
  ctx.fillStyle = "#8a909c";
  ctx.font = "9px sans-serif";
  ctx.textAlign = "center";
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const px = x + (t / duration) * w;
    ctx.fillRect(px, y, 1, 3);
    ctx.fillText(`${+t.toFixed(2)}s`, Math.min(Math.max(px, x + 10), x + w - 10), y + 12);
  }
}

// --- ExtractPhonemes -----------------------------------------------------------------------

export function drawPhonemes(ctx, data, x, y, w, h) {
  panel(ctx, x, y, w, h);
  const wave = data.wave || {};
  const phones = data.phonemes || [];
  const duration = wave.duration || (phones.length ? phones[phones.length - 1].end : 0) || 1;
  const top = y + 16, bottom = y + h - 16, mid = (top + bottom) / 2, half = (bottom - top) / 2;
  // phoneme bands
  phones.forEach((p, i) => {
    const x0 = x + (p.start / duration) * w, x1 = x + (p.end / duration) * w;
    const silent = p.label === "SIL" || p.label === "sil";
    const breath = p.label === "BREATH";  // an audible in-breath: the lips part a little
    ctx.fillStyle = silent ? "rgba(255,255,255,0.03)" : breath ? "rgba(235,203,139,0.16)"
      : i % 2 ? "rgba(94,129,172,0.30)" : "rgba(136,192,208,0.22)";
    ctx.fillRect(x0, top, Math.max(1, x1 - x0), bottom - top);
  });
  // waveform peaks, mirrored around the middle
  const peaks = wave.peaks || [];
  if (peaks.length) {
    ctx.fillStyle = "#a3be8c";
    const bw = w / peaks.length;
    for (let i = 0; i < peaks.length; i++) {
      const a = Math.min(1, Math.max(0, peaks[i])) * half;
      ctx.fillRect(x + i * bw, mid - a, Math.max(1, bw - 0.2), Math.max(1, 2 * a));
    }
  }
  // labels over the bands that are wide enough
  ctx.font = "10px monospace";
  ctx.textAlign = "center";
  ctx.fillStyle = "#eceff4";
  for (const p of phones) {
    if (p.label === "SIL" || p.label === "sil") continue;
    const x0 = x + (p.start / duration) * w, x1 = x + (p.end / duration) * w;
    const text = p.label === "BREATH" ? "breath" : p.label;
    if (x1 - x0 >= ctx.measureText(text).width + 2) ctx.fillText(text, (x0 + x1) / 2, y + 12);
  }
  timeTicks(ctx, x, bottom + 1, w, duration);
}

// --- MapVisemes ----------------------------------------------------------------------------

export function drawCues(ctx, data, x, y, w, h) {
  panel(ctx, x, y, w, h);
  const cues = data.cues || [];
  const info = data.visemes || {};
  const duration = info.duration || (cues.length ? cues[cues.length - 1].end : 0) || 1;
  const barTop = y + 6, barH = Math.min(34, h * 0.35);
  ctx.font = "bold 11px sans-serif";
  ctx.textAlign = "center";
  for (const c of cues) {
    const x0 = x + (c.start / duration) * w, x1 = x + (c.end / duration) * w;
    ctx.fillStyle = colourFor(c.value);
    ctx.fillRect(x0, barTop, Math.max(1, x1 - x0), barH);
    if (x1 - x0 >= ctx.measureText(c.value).width + 2) {
      ctx.fillStyle = "#101215";
      ctx.fillText(c.value, (x0 + x1) / 2, barTop + barH / 2 + 4);
    }
  }
  // jaw-open curve below the bar
  const jaw = info.jaw_open || [];
  const cTop = barTop + barH + 6, cBottom = y + h - 16;
  ctx.strokeStyle = "#3a3f4b";
  ctx.beginPath();
  ctx.moveTo(x, cBottom + 0.5);
  ctx.lineTo(x + w, cBottom + 0.5);
  ctx.stroke();
  if (jaw.length > 1) {
    ctx.strokeStyle = "#ebcb8b";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    jaw.forEach((v, i) => {
      const px = x + (i / (jaw.length - 1)) * w;
      const py = cBottom - Math.min(1, Math.max(0, v)) * (cBottom - cTop);
      i ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
    ctx.lineWidth = 1;
    ctx.fillStyle = "#8a909c";
    ctx.font = "9px sans-serif";
    ctx.textAlign = "left";
    ctx.fillText("jaw open", x + 4, cTop + 8);
  }
  timeTicks(ctx, x, cBottom + 1, w, duration);
}

// --- SyncScore -----------------------------------------------------------------------------

export function verdictColour(offsetFrames) {
  const a = Math.abs(offsetFrames);
  return a === 0 ? "#2e9e5b" : a === 1 ? "#d4a017" : "#c0392b";
}

export function badgeText(s) {
  const sign = s.offset_frames > 0 ? "+" : "";
  const text = `offset ${sign}${s.offset_frames} fr (${sign}${Math.round(s.offset_ms)} ms) · in sync ${Number(s.confidence).toFixed(2)}`;
  // the clip's own evidence does not agree on the offset: say so first, with the offset certainty
  return s.uncertain ? `uncertain (certainty ${Number(s.certainty ?? 0).toFixed(2)}) · ${text}` : text;
}

export function drawSync(ctx, s, x, y, w, h) {
  panel(ctx, x, y, w, h);
  // badge
  ctx.font = "bold 12px sans-serif";
  const text = badgeText(s);
  const bw = Math.min(w - 8, ctx.measureText(text).width + 16);
  ctx.fillStyle = s.uncertain ? "#7f8c8d" : verdictColour(s.offset_frames);
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x + 4, y + 4, bw, 20, 10);
  else ctx.rect(x + 4, y + 4, bw, 20);
  ctx.fill();
  ctx.fillStyle = "#ffffff";
  ctx.textAlign = "left";
  ctx.fillText(text, x + 12, y + 18);
  // score against lag
  const lags = s.lags || [], curve = s.curve || [];
  const n = Math.min(lags.length, curve.length);
  const pTop = y + 32, pBottom = y + h - 16, pLeft = x + 6, pW = w - 12;
  if (n < 2) return;
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) { lo = Math.min(lo, curve[i]); hi = Math.max(hi, curve[i]); }
  if (hi - lo < 1e-9) { hi = lo + 1; }
  const lx = (lag) => pLeft + ((lag - lags[0]) / (lags[n - 1] - lags[0] || 1)) * pW;
  const ly = (v) => pBottom - ((v - lo) / (hi - lo)) * (pBottom - pTop);
  // zero-lag line
  ctx.fillStyle = "#4c566a";
  if (lags[0] <= 0 && lags[n - 1] >= 0) ctx.fillRect(Math.round(lx(0)), pTop, 1, pBottom - pTop);
  // best-lag marker
  ctx.fillStyle = verdictColour(s.offset_frames);
  ctx.fillRect(Math.round(lx(s.offset_frames)) - 1, pTop, 3, pBottom - pTop);
  // the curve
  ctx.strokeStyle = "#88c0d0";
  ctx.lineWidth = 2;
  ctx.beginPath();
  for (let i = 0; i < n; i++) {
    i ? ctx.lineTo(lx(lags[i]), ly(curve[i])) : ctx.moveTo(lx(lags[i]), ly(curve[i]));
  }
  ctx.stroke();
  ctx.lineWidth = 1;
  ctx.fillStyle = "#8a909c";
  ctx.font = "9px sans-serif";
  ctx.textAlign = "left";
  ctx.fillText(`${lags[0]}`, pLeft, pBottom + 11);
  ctx.textAlign = "right";
  ctx.fillText(`${lags[n - 1]} fr`, pLeft + pW, pBottom + 11);
  ctx.textAlign = "center";
  ctx.fillText("audio lag (frames)", pLeft + pW / 2, pBottom + 11);
}

// --- wiring --------------------------------------------------------------------------------

export const VIEWS = {
  LipSyncExtractPhonemes: {
    height: 130,
    pick: (o) => (o?.lipsync_phonemes || o?.lipsync_wave)
      ? { phonemes: o.lipsync_phonemes || [], wave: (o.lipsync_wave || [])[0] || {} } : null,
    draw: drawPhonemes,
  },
  LipSyncMapVisemes: {
    height: 120,
    pick: (o) => (o?.lipsync_cues || o?.lipsync_visemes)
      ? { cues: o.lipsync_cues || [], visemes: (o.lipsync_visemes || [])[0] || {} } : null,
    draw: drawCues,
  },
  LipSyncSyncScore: {
    height: 150,
    pick: (o) => (o?.lipsync_sync && o.lipsync_sync.length ? o.lipsync_sync[o.lipsync_sync.length - 1] : null),
    draw: drawSync,
  },
};

function previewWidget(node, view) {
  let widget = node.widgets?.find((w) => w.name === PREVIEW);
  if (widget) return widget;
  widget = {
    name: PREVIEW,
    type: PREVIEW,
    value: "",
    serialize: false,
    options: { serialize: false },
    computeSize(width) {
      return [width ?? node.size[0], view.height];
    },
    draw(ctx, n, width, y) {
      const data = n.lipsyncData;
      if (!data) return;
      const rect = [8, y + 2, Math.max(40, width - 16), view.height - 6];
      ctx.save();
      try {
        view.draw(ctx, data, ...rect);
      } finally {
        ctx.restore();
      }
      n.lipsyncDrawn = (n.lipsyncDrawn || 0) + 1;
      n.lipsyncRect = rect;
    },
  };
  node.addCustomWidget(widget);
  return widget;
}

export function showPreview(node, output) {
  const view = VIEWS[node.comfyClass ?? node.type];
  if (!view) return false;
  const data = view.pick(output);
  if (!data) return false;
  node.lipsyncData = data;
  previewWidget(node, view);
  const min = node.computeSize();
  node.setSize([Math.max(node.size[0], 380, min[0]), Math.max(node.size[1], min[1])]);
  node.setDirtyCanvas?.(true, true);
  app.graph?.setDirtyCanvas(true, true);
  return true;
}

function addAudioUpload(node) {
  const combo = node.widgets?.find((w) => w.name === "audio_file");
  if (!combo || node.widgets.find((w) => w.name === "upload_audio")) return;
  const input = document.createElement("input");
  input.type = "file";
  input.accept = "audio/*,video/*,.wav,.mp3,.flac,.ogg,.m4a,.aac,.mp4,.mov,.mkv,.webm,.mpg";
  input.style.display = "none";
  input.onchange = async () => {
    const file = input.files?.[0];
    if (!file) return;
    const body = new FormData();
    body.append("image", file); // ComfyUI's upload route takes any file under this field name
    const resp = await api.fetchApi("/upload/image", { method: "POST", body });
    if (resp.status !== 200) {
      alert(`ComfyUI-LipSync: upload of ${file.name} failed: ${resp.status} ${resp.statusText}`);
      return;
    }
    const data = await resp.json();
    const path = data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
    const values = combo.options.values;
    if (Array.isArray(values) && !values.includes(path)) values.push(path);
    combo.value = path;
    combo.callback?.(path);
    node.setDirtyCanvas?.(true, true);
  };
  document.body.append(input);
  const button = node.addWidget("button", "upload_audio", "", () => input.click(), { serialize: false });
  button.label = "choose audio file to upload";
  button.serialize = false;
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    input.remove();
    return onRemoved?.apply(this, arguments);
  };
}

app.registerExtension({
  name: "ComfyUI-LipSync.previews",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!VIEWS[nodeData.name]) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const r = onExecuted?.apply(this, arguments);
      showPreview(this, output);
      return r;
    };
  },
  nodeCreated(node) {
    if ((node.comfyClass ?? node.type) === "LipSyncLoadAudioDriver") addAudioUpload(node);
  },
});
