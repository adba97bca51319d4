/* Colorizer colour editor: colour points, a palette and a reference photo guide the model (DESIGN.md, "Hints").
 *
 * The preview re-runs the model on a copy of the photo made small in the browser, so each change costs one small
 * request; at most one is in flight and the newest state is always the last one sent. The preview's colour is laid
 * over the full-resolution original (CSS mix-blend-mode: color), so it stays sharp at any display size. The
 * download sends the original file with the same hints in the original's pixels. */
(() => {
  "use strict";

  const page = window.Colorizer;
  if (!page) return;

  const PREVIEW_MIN_SIDE = 256; // longer side of the preview photo, px: the model's input size, within these bounds
  const PREVIEW_MAX_SIDE = 384;
  const REFERENCE_SIDE = 256; // the reference only lends its colour distribution; a small copy is enough
  const MAX_POINTS = 64;
  const MAX_PALETTE = 8;
  const MAX_UNDO = 200;
  const NUDGE = 0.01; // arrow-key step, as a fraction of the photo (Shift: five times that)
  const COLOR_RE = /^#[0-9a-f]{6}$/i;

  const $ = (selector) => document.querySelector(selector);

  /** The editor's markup lives in a <template> until first used, so the page without it is unchanged. */
  function build() {
    const template = $("#editor-template");
    if (!template) return null;
    document.body.append(template.content.cloneNode(true));
    const ui = {
      dialog: $("#editor"),
      name: $("#editor-name"),
      close: $("#editor-close"),
      off: $("#editor-off"),
      stage: $("#editor-stage"),
      base: $("#editor-base"),
      preview: $("#editor-preview"),
      points: $("#editor-points"),
      busy: $("#editor-busy"),
      status: $("#editor-status"),
      error: $("#editor-error"),
      toolsPoints: $("#tools-points"),
      toolsGlobal: $("#tools-global"),
      pointColor: $("#point-color"),
      pointSize: $("#point-size"),
      pointInfo: $("#point-info"),
      pointAdd: $("#point-add"),
      pointRemove: $("#point-remove"),
      palette: $("#palette"),
      paletteColor: $("#palette-color"),
      paletteAdd: $("#palette-add"),
      referenceDrop: $("#reference-drop"),
      referenceThumb: $("#reference-thumb"),
      referenceText: $("#reference-text"),
      referenceInput: $("#reference-input"),
      referenceRemove: $("#reference-remove"),
      referenceNote: $("#reference-note"),
      undo: $("#editor-undo"),
      reset: $("#editor-reset"),
      save: $("#hints-save"),
      load: $("#hints-input"),
      download: $("#editor-download"),
    };
    if (!ui.dialog || typeof ui.dialog.showModal !== "function") return null;

    /** The photo being edited and everything about its preview requests. */
    const ed = {
      item: null,
      selected: 0, // id of the selected point, 0 for none
      version: 0, // bumped by every change of the hints
      shown: 0, // the version whose preview is on screen
      busy: false, // a preview request is in flight, or waiting out a 503
      pending: false, // the hints changed while busy: send again when it ends
      timer: 0,
      retryTimer: 0,
      retries: 0,
      controller: null,
      previewUrl: "",
      lastKey: null, // the undo step being extended (one colour-picker session, one arrow-key run)
      drag: null,
      downloading: false,
    };
    let nextPointId = 1;
    const markers = new Map(); // point id -> its button on the stage

    // ---------------------------------------------------------------- model capabilities

    function kinds() {
      const known = page.hintKinds();
      return known === null ? ["local", "global"] : known; // unknown yet: let the server say no
    }
    const takesPoints = () => kinds().includes("local");
    const takesGlobal = () => kinds().includes("global");

    function applyKinds() {
      const local = takesPoints();
      const global = takesGlobal();
      ui.toolsPoints.disabled = !local;
      ui.toolsGlobal.disabled = !global;
      ui.stage.classList.toggle("takes-points", local);
      let off = "";
      if (!local && !global) off = "The model on this server takes no colour hints, so there is nothing to edit here.";
      else if (!local) off = "This model takes no colour points; the palette and the reference photo still guide it.";
      else if (!global) off = "This model takes no palette or reference photo; colour points still guide it.";
      ui.off.textContent = off;
      ui.off.hidden = !off;
    }
    document.addEventListener("colorizer:model", () => {
      applyKinds();
      if (isOpen()) render();
    });

    // ---------------------------------------------------------------- hints state

    function hintsOf(item) {
      if (!item.hints) item.hints = { points: [], palette: [], reference: null, undo: [] };
      return item.hints;
    }

    function snapshot(h) {
      return {
        points: h.points.map((p) => ({ ...p })),
        palette: h.palette.slice(),
        reference: h.reference,
        selected: ed.selected,
      };
    }

    /** Remember the state before a change, for undo; changes with the same key (one drag of a picker) share a step. */
    function checkpoint(key = null) {
      const h = hintsOf(ed.item);
      if (key !== null && key === ed.lastKey) return;
      h.undo.push(snapshot(h));
      if (h.undo.length > MAX_UNDO) h.undo.shift();
      ed.lastKey = key;
    }

    function undo() {
      const h = hintsOf(ed.item);
      const previous = h.undo.pop();
      if (!previous) return;
      h.points = previous.points;
      h.palette = previous.palette;
      h.reference = previous.reference;
      ed.selected = h.points.some((p) => p.id === previous.selected) ? previous.selected : 0;
      ed.lastKey = null;
      changed();
      page.announce("Undone.");
    }

    function hasHints(h) {
      const local = takesPoints() && h.points.length > 0;
      return local || (takesGlobal() && (h.palette.length > 0 || Boolean(h.reference)));
    }

    /** The API's hints JSON for a photo of width × height pixels (DESIGN.md, "Hints"); null when there are none. */
    function hintsJson(h, width, height) {
      const out = {};
      if (takesPoints() && h.points.length) {
        const longer = Math.max(width, height);
        out.points = h.points.map((p) => ({
          x: Math.min(width - 1, Math.max(0, Math.floor(p.x * width))),
          y: Math.min(height - 1, Math.max(0, Math.floor(p.y * height))),
          color: p.color,
          radius: Math.max(1, Math.round((p.size / 100) * longer)),
        }));
      }
      if (takesGlobal() && h.palette.length) out.palette = h.palette.slice();
      return Object.keys(out).length ? out : null;
    }

    function selectedPoint() {
      return ed.item ? hintsOf(ed.item).points.find((p) => p.id === ed.selected) || null : null;
    }

    // ---------------------------------------------------------------- drawing the editor

    function render() {
      if (!ed.item) return;
      const h = hintsOf(ed.item);
      renderMarkers(h);
      const point = selectedPoint();
      ui.pointRemove.disabled = !point;
      if (point) {
        ui.pointColor.value = point.color;
        ui.pointSize.value = String(point.size);
        const index = h.points.indexOf(point) + 1;
        ui.pointInfo.textContent = `Point ${index} of ${h.points.length} selected.`;
      } else {
        ui.pointInfo.textContent = h.points.length
          ? `${h.points.length} point${h.points.length === 1 ? "" : "s"}; none selected: the colour is for the next.`
          : "No points yet: click the photo to drop one in this colour.";
      }
      renderPalette(h);
      const ref = h.reference;
      ui.referenceThumb.hidden = !ref;
      if (ref) {
        ui.referenceThumb.src = ref.url;
        ui.referenceThumb.alt = `Reference photo: ${ref.name}`;
      } else {
        ui.referenceThumb.removeAttribute("src");
      }
      ui.referenceText.textContent = ref ? ref.name : "Drop a reference photo here to borrow its colours.";
      ui.referenceRemove.hidden = !ref;
      ui.referenceDrop.classList.toggle("has-reference", Boolean(ref));
      ui.referenceNote.hidden = !(ref && h.palette.length);
      ui.undo.disabled = h.undo.length === 0;
      ui.reset.disabled = !(h.points.length || h.palette.length || ref);
      ui.paletteAdd.disabled = h.palette.length >= MAX_PALETTE;
      ui.pointAdd.disabled = h.points.length >= MAX_POINTS;
      ui.download.disabled = ed.downloading;
    }

    function renderMarkers(h) {
      const rect = ui.stage.getBoundingClientRect();
      const longer = Math.max(rect.width, rect.height);
      const ids = new Set(h.points.map((p) => p.id));
      for (const [id, marker] of markers) {
        if (!ids.has(id)) {
          marker.remove();
          markers.delete(id);
        }
      }
      h.points.forEach((p, index) => {
        let marker = markers.get(p.id);
        if (!marker) {
          marker = document.createElement("button");
          marker.type = "button";
          marker.className = "point";
          marker.dataset.id = String(p.id);
          ui.points.append(marker);
          markers.set(p.id, marker);
        }
        marker.style.left = `${p.x * 100}%`;
        marker.style.top = `${p.y * 100}%`;
        marker.style.setProperty("--c", p.color);
        marker.style.setProperty("--r", `${((p.size / 100) * longer).toFixed(1)}px`);
        marker.classList.toggle("is-selected", p.id === ed.selected);
        marker.setAttribute("aria-pressed", String(p.id === ed.selected));
        marker.setAttribute(
          "aria-label",
          `Colour point ${index + 1}, ${p.color}, ${Math.round(p.x * 100)}% across, ${Math.round(p.y * 100)}% down`,
        );
      });
    }

    function renderPalette(h) {
      const existing = Array.from(ui.palette.children);
      existing.slice(h.palette.length).forEach((li) => li.remove());
      h.palette.forEach((color, index) => {
        let li = ui.palette.children[index];
        if (!li) {
          li = document.createElement("li");
          li.className = "swatch";
          const chip = document.createElement("span");
          chip.className = "swatch-chip";
          const remove = document.createElement("button");
          remove.type = "button";
          remove.className = "swatch-remove";
          remove.textContent = "×";
          remove.addEventListener("click", () => removeSwatch(Number(li.dataset.index)));
          li.append(chip, remove);
          ui.palette.append(li);
        }
        li.dataset.index = String(index);
        li.dataset.color = color;
        li.querySelector(".swatch-chip").style.background = color;
        li.querySelector(".swatch-chip").title = color;
        li.querySelector(".swatch-remove").setAttribute("aria-label", `Remove ${color} from the palette`);
      });
    }

    /** Every change of the hints goes through here: redraw, then recolour. */
    function changed() {
      render();
      schedulePreview();
    }

    // ---------------------------------------------------------------- preview requests

    function schedulePreview() {
      ed.version += 1;
      ui.stage.dataset.version = String(ed.version);
      // Coalesce the changes of one event turn (a drag's pointer events, a picker's input events) into one request.
      if (!ed.timer) ed.timer = setTimeout(flushPreview, 0);
    }

    function flushPreview() {
      ed.timer = 0;
      if (ed.busy) {
        ed.pending = true; // sent when the request in flight comes back: the newest state always goes last
        return;
      }
      sendPreview();
    }

    function authHeaders() {
      const key = page.apiKey();
      return key ? { Authorization: `Bearer ${key}` } : {};
    }

    function setBusy(busy) {
      ed.busy = busy;
      ui.busy.hidden = !busy;
      ui.stage.setAttribute("aria-busy", String(busy));
    }

    async function sendPreview() {
      const item = ed.item;
      if (!item) return;
      const version = ed.version;
      const h = hintsOf(item);
      ed.pending = false;
      if (!hasHints(h)) {
        showPreview(item.resultUrl, version, false); // no hints: the automatic result the card already has
        return;
      }
      setBusy(true);
      const controller = new AbortController();
      ed.controller = controller;
      let retryIn = 0;
      try {
        const small = await previewPhoto(item);
        const form = new FormData();
        form.append("file", small.blob, "preview.png");
        const hints = hintsJson(h, small.width, small.height);
        if (hints) form.append("hints", JSON.stringify(hints));
        if (h.reference && takesGlobal()) form.append("reference", h.reference.small, h.reference.name);
        const response = await fetch("/colorize", {
          method: "POST",
          body: form,
          headers: authHeaders(),
          signal: controller.signal,
        });
        if (ed.item !== item) return; // the editor moved on to another photo
        if (response.ok) {
          const blob = await response.blob();
          if (ed.item !== item) return;
          ed.retries = 0;
          showError("");
          if (version > ed.shown) showPreview(URL.createObjectURL(blob), version, true); // older answers are dropped
        } else {
          const detail = page.detailOf(response.status, response.statusText, await response.text());
          if (ed.item !== item) return;
          if (response.status === 503 && ed.retries < page.maxAutoRetries) {
            ed.retries += 1;
            retryIn = page.retryAfterFrom(response.headers.get("Retry-After"));
            setStatus(`${detail} Trying again in ${retryIn}\u00a0s…`);
          } else {
            ed.retries = 0;
            if (response.status === 401 || response.status === 403) page.openSettings();
            showError(detail);
          }
        }
      } catch (error) {
        if (controller.signal.aborted || ed.item !== item) return;
        showError(
          error instanceof TypeError
            ? "The server could not be reached. Check the connection and try again."
            : `The preview could not be made (${error}).`,
        );
      } finally {
        if (ed.controller === controller) ed.controller = null;
      }
      if (ed.item !== item) return;
      if (retryIn) {
        // Still busy while waiting: changes made meanwhile ride along with the retry.
        ed.retryTimer = setTimeout(() => {
          ed.retryTimer = 0;
          sendPreview();
        }, retryIn * 1000);
        return;
      }
      setBusy(false);
      if (ed.pending) sendPreview();
    }

    function showPreview(url, version, owned) {
      const old = ed.previewUrl;
      ed.previewUrl = owned ? url : "";
      ed.shown = version;
      ui.preview.dataset.version = String(version);
      ui.preview.src = url;
      if (old) setTimeout(() => URL.revokeObjectURL(old), 1000);
      if (version !== ed.version) return;
      setStatus(hasHints(hintsOf(ed.item)) ? "Preview up to date." : "No hints: automatic colours.");
    }

    function setStatus(text) {
      ui.status.textContent = text;
    }

    function showError(text) {
      ui.error.textContent = text;
      ui.error.hidden = !text;
      if (text) {
        setStatus("");
        page.announce(text);
      }
    }

    /** The photo drawn small on a canvas, once per photo: what every preview request sends. */
    function previewPhoto(item) {
      if (!item.previewPhoto) {
        const img = item.el.before;
        const width = img.naturalWidth;
        const height = img.naturalHeight;
        const size = page.modelInputSize();
        const side = Math.min(PREVIEW_MAX_SIDE, Math.max(PREVIEW_MIN_SIDE, size));
        const scale = Math.min(1, side / Math.max(width, height));
        item.previewPhoto = drawSmall(img, width, height, scale);
        item.previewPhoto.catch(() => {
          item.previewPhoto = null;
        });
      }
      return item.previewPhoto;
    }

    function drawSmall(source, width, height, scale) {
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(width * scale));
      canvas.height = Math.max(1, Math.round(height * scale));
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
      return new Promise((resolve, reject) => {
        canvas.toBlob((blob) => {
          if (blob) resolve({ blob, width: canvas.width, height: canvas.height });
          else reject(new Error("the browser could not draw the photo small"));
        }, "image/png");
      });
    }

    // ---------------------------------------------------------------- points: click, drag, keys

    function stageFraction(event) {
      const rect = ui.stage.getBoundingClientRect();
      return {
        x: Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
        y: Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height)),
      };
    }

    function addPoint(x, y) {
      const h = hintsOf(ed.item);
      if (h.points.length >= MAX_POINTS) {
        showError(`A photo takes at most ${MAX_POINTS} colour points. Remove one to add another.`);
        return null;
      }
      checkpoint();
      const point = { id: nextPointId++, x, y, color: ui.pointColor.value, size: Number(ui.pointSize.value) };
      h.points.push(point);
      ed.selected = point.id;
      changed();
      return point;
    }

    function removePoint(id) {
      const h = hintsOf(ed.item);
      const index = h.points.findIndex((p) => p.id === id);
      if (index < 0) return;
      checkpoint();
      h.points.splice(index, 1);
      if (ed.selected === id) ed.selected = 0;
      changed();
      const next = h.points[index] || h.points[index - 1];
      if (next) {
        ed.selected = next.id;
        render();
        markers.get(next.id).focus();
      } else {
        ui.pointAdd.focus();
      }
      page.announce(`Colour point removed. ${h.points.length} left.`);
    }

    function select(id) {
      if (ed.selected !== id) ed.lastKey = null;
      ed.selected = id;
      render();
    }

    ui.stage.addEventListener("pointerdown", (event) => {
      if (!ed.item || !takesPoints() || event.button !== 0) return;
      event.preventDefault(); // no image drag, no text selection
      const marker = event.target.closest(".point");
      let point;
      if (marker) {
        point = hintsOf(ed.item).points.find((p) => p.id === Number(marker.dataset.id));
        select(point.id);
        ed.drag = { id: point.id, pointerId: event.pointerId, x: event.clientX, y: event.clientY, moved: false };
      } else {
        const at = stageFraction(event);
        point = addPoint(at.x, at.y);
        if (!point) return;
        ed.drag = { id: point.id, pointerId: event.pointerId, x: event.clientX, y: event.clientY, moved: true };
      }
      ui.stage.setPointerCapture(event.pointerId);
      markers.get(point.id).focus({ preventScroll: true });
    });

    ui.stage.addEventListener("pointermove", (event) => {
      const drag = ed.drag;
      if (!drag || drag.pointerId !== event.pointerId) return;
      if (!drag.moved) {
        if (Math.hypot(event.clientX - drag.x, event.clientY - drag.y) < 3) return; // a click, not a drag
        drag.moved = true;
        checkpoint();
      }
      const point = hintsOf(ed.item).points.find((p) => p.id === drag.id);
      if (!point) return;
      const at = stageFraction(event);
      point.x = at.x;
      point.y = at.y;
      changed();
    });

    const endDrag = (event) => {
      if (ed.drag && ed.drag.pointerId === event.pointerId) {
        ed.drag = null;
        ed.lastKey = null;
      }
    };
    ui.stage.addEventListener("pointerup", endDrag);
    ui.stage.addEventListener("pointercancel", endDrag);

    ui.points.addEventListener("keydown", (event) => {
      const marker = event.target.closest(".point");
      if (!marker) return;
      const id = Number(marker.dataset.id);
      const point = hintsOf(ed.item).points.find((p) => p.id === id);
      if (!point) return;
      const step = event.shiftKey ? 5 * NUDGE : NUDGE;
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
      if (moves[event.key]) {
        event.preventDefault();
        if (ed.selected !== id) select(id);
        checkpoint(`move:${id}`);
        point.x = Math.min(1, Math.max(0, point.x + moves[event.key][0]));
        point.y = Math.min(1, Math.max(0, point.y + moves[event.key][1]));
        changed();
      } else if (event.key === "Delete" || event.key === "Backspace") {
        event.preventDefault();
        removePoint(id);
      }
    });
    ui.points.addEventListener("click", (event) => {
      // A keyboard "click" (Enter or Space) selects; pointer clicks were handled on pointerdown.
      const marker = event.target.closest(".point");
      if (marker && event.detail === 0) select(Number(marker.dataset.id));
    });
    ui.points.addEventListener("focusout", () => {
      ed.lastKey = null;
    });

    ui.pointAdd.addEventListener("click", () => {
      const point = addPoint(0.5, 0.5);
      if (point) {
        markers.get(point.id).focus();
        page.announce("Colour point added in the middle. Move it with the arrow keys.");
      }
    });
    ui.pointRemove.addEventListener("click", () => {
      if (ed.selected) removePoint(ed.selected);
    });

    ui.pointColor.addEventListener("input", () => {
      const point = selectedPoint();
      if (!point || point.color === ui.pointColor.value) return;
      checkpoint(`color:${point.id}`);
      point.color = ui.pointColor.value;
      changed();
    });
    ui.pointSize.addEventListener("input", () => {
      const point = selectedPoint();
      if (!point) return;
      checkpoint(`size:${point.id}`);
      point.size = Number(ui.pointSize.value);
      changed();
    });
    for (const control of [ui.pointColor, ui.pointSize]) {
      control.addEventListener("change", () => {
        ed.lastKey = null; // the picker closed: the next change is a new undo step
      });
    }

    // ---------------------------------------------------------------- palette and reference

    ui.paletteAdd.addEventListener("click", () => {
      const h = hintsOf(ed.item);
      const color = ui.paletteColor.value.toLowerCase();
      if (h.palette.includes(color)) {
        setStatus(`${color} is already in the palette.`);
        return;
      }
      if (h.palette.length >= MAX_PALETTE) return;
      checkpoint();
      h.palette.push(color);
      changed();
      page.announce(`${color} added to the palette.`);
    });

    function removeSwatch(index) {
      const h = hintsOf(ed.item);
      const color = h.palette[index];
      if (color === undefined) return;
      checkpoint();
      h.palette.splice(index, 1);
      changed();
      const next = ui.palette.children[index] || ui.palette.children[index - 1];
      (next ? next.querySelector(".swatch-remove") : ui.paletteAdd).focus();
      page.announce(`${color} removed from the palette.`);
    }

    async function setReference(file) {
      if (!file) return;
      if (!takesGlobal()) return;
      const item = ed.item;
      let small;
      try {
        const bitmap = await createImageBitmap(file);
        const scale = Math.min(1, REFERENCE_SIDE / Math.max(bitmap.width, bitmap.height));
        small = await drawSmall(bitmap, bitmap.width, bitmap.height, scale);
        bitmap.close();
      } catch (_) {
        showError(`${file.name || "That file"} could not be read as an image, so it cannot be the reference photo.`);
        return;
      }
      if (ed.item !== item) return;
      checkpoint();
      const name = file.name || "reference";
      hintsOf(item).reference = { name, url: URL.createObjectURL(small.blob), small: small.blob };
      changed();
      page.announce(`${name} is the reference photo.`);
    }

    ui.referenceInput.addEventListener("change", () => {
      setReference(ui.referenceInput.files[0]);
      ui.referenceInput.value = "";
    });
    ui.referenceRemove.addEventListener("click", () => {
      checkpoint();
      hintsOf(ed.item).reference = null;
      changed();
      ui.referenceInput.focus();
      page.announce("Reference photo removed.");
    });
    ui.referenceDrop.addEventListener("dragover", () => ui.referenceDrop.classList.add("is-over"));
    for (const type of ["dragleave", "drop"]) {
      ui.referenceDrop.addEventListener(type, () => ui.referenceDrop.classList.remove("is-over"));
    }

    // ---------------------------------------------------------------- undo, reset, save, load

    ui.undo.addEventListener("click", undo);
    ui.dialog.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "z") {
        event.preventDefault();
        undo();
      }
    });

    ui.reset.addEventListener("click", () => {
      const h = hintsOf(ed.item);
      checkpoint();
      h.points = [];
      h.palette = [];
      h.reference = null;
      ed.selected = 0;
      changed();
      page.announce("All hints cleared. Undo brings them back.");
    });

    function originalSize(item) {
      return { width: item.el.before.naturalWidth, height: item.el.before.naturalHeight };
    }

    function saveFile(blob, filename) {
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = filename;
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    }

    ui.save.addEventListener("click", () => {
      const item = ed.item;
      const { width, height } = originalSize(item);
      const hints = hintsJson(hintsOf(item), width, height) || {};
      saveFile(new Blob([JSON.stringify(hints, null, 2)], { type: "application/json" }), `${item.stem}-hints.json`);
      setStatus(`Saved ${item.stem}-hints.json: the JSON that POST /colorize takes as "hints".`);
    });

    /** Hints JSON (the API's own shape) in the original's pixels, checked the way the server checks it. */
    function parseHints(text, width, height) {
      let data;
      try {
        data = JSON.parse(text);
      } catch (_) {
        throw new Error("The file is not JSON.");
      }
      if (!data || typeof data !== "object" || Array.isArray(data)) throw new Error("The hints must be a JSON object.");
      const unknown = Object.keys(data).filter((k) => k !== "points" && k !== "palette");
      if (unknown.length) throw new Error(`Unknown key "${unknown[0]}": hints have "points" and "palette".`);
      const points = data.points || [];
      const palette = data.palette || [];
      if (!Array.isArray(points) || !Array.isArray(palette)) throw new Error('"points" and "palette" must be lists.');
      if (points.length > MAX_POINTS) {
        throw new Error(`${points.length} points; the editor takes ${MAX_POINTS} at most.`);
      }
      const longer = Math.max(width, height);
      const loaded = points.map((p, i) => {
        const n = i + 1;
        if (!p || typeof p !== "object") throw new Error(`Point ${n} is not an object.`);
        const { x, y, color } = p;
        if (!Number.isFinite(x) || !Number.isFinite(y) || x < 0 || y < 0 || x >= width || y >= height) {
          throw new Error(`Point ${n} (${x}, ${y}) is outside this ${width} × ${height} photo.`);
        }
        if (typeof color !== "string" || !COLOR_RE.test(color)) throw new Error(`Point ${n}'s colour is not #rrggbb.`);
        const radius = p.radius === undefined ? (Number(ui.pointSize.value) / 100) * longer : p.radius;
        if (!Number.isFinite(radius) || radius <= 0) throw new Error(`Point ${n}'s radius is not a positive number.`);
        return {
          id: nextPointId++,
          x: (x + 0.5) / width,
          y: (y + 0.5) / height,
          color: color.toLowerCase(),
          size: (radius / longer) * 100,
        };
      });
      for (const color of palette) {
        if (typeof color !== "string" || !COLOR_RE.test(color)) {
          throw new Error(`Palette colour ${color} is not #rrggbb.`);
        }
      }
      return { points: loaded, palette: palette.map((c) => c.toLowerCase()).slice(0, MAX_PALETTE) };
    }

    ui.load.addEventListener("change", async () => {
      const file = ui.load.files[0];
      ui.load.value = "";
      if (!file) return;
      const item = ed.item;
      const { width, height } = originalSize(item);
      let loaded;
      try {
        loaded = parseHints(await file.text(), width, height);
      } catch (error) {
        showError(`${file.name} could not be loaded: ${error.message}`);
        return;
      }
      if (ed.item !== item) return;
      checkpoint();
      const h = hintsOf(item);
      h.points = loaded.points;
      h.palette = loaded.palette;
      ed.selected = 0;
      showError("");
      changed();
      page.announce(`Loaded ${loaded.points.length} points and ${loaded.palette.length} palette colours.`);
    });

    // ---------------------------------------------------------------- full-resolution download

    async function download() {
      const item = ed.item;
      if (!item || ed.downloading) return;
      const h = hintsOf(item);
      const filename = `${item.stem}-color.png`;
      if (!hasHints(h)) {
        saveFile(await (await fetch(item.resultUrl)).blob(), filename);
        return;
      }
      ed.downloading = true;
      render();
      const { width, height } = originalSize(item);
      const hints = hintsJson(h, width, height);
      try {
        for (let attempt = 0; ; attempt += 1) {
          setStatus("Colourising the full-resolution photo…");
          const form = new FormData();
          form.append("file", item.file, item.name);
          if (hints) form.append("hints", JSON.stringify(hints));
          if (h.reference && takesGlobal()) form.append("reference", h.reference.small, h.reference.name);
          const response = await fetch("/colorize", { method: "POST", body: form, headers: authHeaders() });
          if (response.ok) {
            saveFile(await response.blob(), filename);
            setStatus(`${filename} is downloading.`);
            page.announce(`${filename} is ready.`);
            return;
          }
          const detail = page.detailOf(response.status, response.statusText, await response.text());
          if (response.status === 503 && attempt < page.maxAutoRetries) {
            const wait = page.retryAfterFrom(response.headers.get("Retry-After"));
            setStatus(`${detail} Trying again in ${wait}\u00a0s…`);
            await new Promise((resolve) => setTimeout(resolve, wait * 1000));
            continue;
          }
          if (response.status === 401 || response.status === 403) page.openSettings();
          showError(`The download could not be made: ${detail}`);
          return;
        }
      } catch (_) {
        showError("The download could not be made: the server could not be reached.");
      } finally {
        ed.downloading = false;
        if (ed.item === item) render();
      }
    }
    ui.download.addEventListener("click", download);

    // ---------------------------------------------------------------- open and close

    function isOpen() {
      return ui.dialog.open && Boolean(ed.item);
    }

    function open(item) {
      if (ed.item && ed.item !== item) stop();
      ed.item = item;
      ed.selected = 0;
      ed.lastKey = null;
      ed.retries = 0;
      ed.version += 1;
      ed.shown = ed.version;
      for (const marker of markers.values()) marker.remove();
      markers.clear();
      const { width, height } = originalSize(item);
      ui.stage.style.setProperty("--ar", String(width / height || 1.5));
      ui.stage.dataset.version = String(ed.version);
      ui.name.textContent = item.name;
      ui.base.src = item.originalUrl;
      ui.base.alt = `Original: ${item.name}`;
      ui.preview.alt = `Colour preview: ${item.name}`;
      ui.preview.dataset.version = String(ed.version);
      ui.preview.src = item.resultUrl;
      showError("");
      setStatus("");
      applyKinds();
      if (!ui.dialog.open) ui.dialog.showModal();
      render();
      if (hasHints(hintsOf(item))) schedulePreview();
      previewPhoto(item).catch(() => {
        showError("This browser could not draw the photo, so its colours cannot be edited here.");
      });
    }

    /** Abandon the preview in flight and any retry; its answer, if it comes, is dropped. */
    function stop() {
      if (ed.controller) ed.controller.abort();
      ed.controller = null;
      clearTimeout(ed.retryTimer);
      clearTimeout(ed.timer);
      ed.retryTimer = 0;
      ed.timer = 0;
      ed.pending = false;
      ed.drag = null;
      setBusy(false);
    }

    ui.dialog.addEventListener("close", () => {
      stop();
      const item = ed.item;
      ed.item = null;
      if (item && !item.removed) item.el.edit.focus();
    });
    ui.close.addEventListener("click", () => ui.dialog.close());
    ui.dialog.addEventListener("click", (event) => {
      if (event.target !== ui.dialog || event.detail === 0) return;
      const r = ui.dialog.getBoundingClientRect();
      const inside =
        event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
      if (!inside) ui.dialog.close(); // a click on the backdrop
    });
    new ResizeObserver(() => {
      if (ed.item) renderMarkers(hintsOf(ed.item));
    }).observe(ui.stage);

    return {
      open,
      isOpen,
      /** A removed photo closes its editor. */
      forget(item) {
        if (ed.item === item) ui.dialog.close();
      },
      /** Images dropped while the editor is open: the first becomes the reference photo. */
      dropped(files) {
        const file = Array.from(files || []).find((f) => f.type.startsWith("image/"));
        if (file && takesGlobal()) setReference(file);
      },
    };
  }

  let editor;
  const built = () => {
    if (editor === undefined) editor = build();
    return editor;
  };
  page.editor = {
    open: (item) => built() && built().open(item),
    isOpen: () => Boolean(editor && editor.isOpen()),
    forget: (item) => editor && editor.forget(item),
    dropped: (files) => editor && editor.dropped(files),
  };
})();
