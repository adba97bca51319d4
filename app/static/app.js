/* Colorizer web page: upload photos, show progress, compare before/after, download.
 * Plain browser JavaScript, no build step and no third-party code, so the page works offline. */
(() => {
  "use strict";

  const MAX_PARALLEL = 2; // uploads in flight at once; the server batches them anyway
  const MAX_AUTO_RETRIES = 3; // automatic retries of a 503 (busy) answer, honouring Retry-After
  const KEY_STORAGE = "colorizer.apiKey";

  const $ = (selector, root = document) => root.querySelector(selector);

  const ui = {
    fileInput: $("#file-input"),
    dropzone: $("#dropzone"),
    section: $("#results-section"),
    list: $("#results"),
    count: $("#results-count"),
    downloadAll: $("#download-all"),
    clearAll: $("#clear-all"),
    zipStatus: $("#zip-status"),
    announcer: $("#announcer"),
    template: $("#card-template"),
    settings: $("#settings"),
    apiKey: $("#api-key"),
    modelInfo: $("#model-info"),
    hintsOff: $("#hints-off"),
  };

  /** @type {Array<object>} one entry per added file, in the order shown */
  const items = [];
  const queue = [];
  let inFlight = 0;
  let nextId = 1;
  let zipBusy = false;

  // ---------------------------------------------------------------- helpers

  function stemOf(name) {
    const base = String(name || "").replace(/^.*[\\/]/, "");
    const dot = base.lastIndexOf(".");
    const stem = dot > 0 ? base.slice(0, dot) : base;
    return stem || "image";
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  }

  let announceTimer = 0;
  function announce(message) {
    // Clear first so that repeating the same sentence is announced again.
    ui.announcer.textContent = "";
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => {
      ui.announcer.textContent = message;
    }, 60);
  }

  function apiKey() {
    return ui.apiKey.value.trim();
  }

  function authorize(xhr) {
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
  }

  /** The API's own sentence from a JSON error body, or a plain description of the status. */
  function detailOf(status, statusText, body) {
    try {
      const data = JSON.parse(body);
      if (data && typeof data.detail === "string" && data.detail) return data.detail;
      if (data && Array.isArray(data.detail) && data.detail.length) {
        return data.detail.map((d) => (d && d.msg) || String(d)).join(" ");
      }
    } catch (_) {
      // Not JSON (a proxy's HTML page, for instance): fall through to the status line.
    }
    const text = statusText ? ` (${statusText})` : "";
    return `The server answered with status ${status}${text}. Try again later.`;
  }

  async function errorDetail(xhr) {
    let body = "";
    try {
      body = xhr.response instanceof Blob ? await xhr.response.text() : String(xhr.response || "");
    } catch (_) {
      // An unreadable body gets the status line.
    }
    return detailOf(xhr.status, xhr.statusText, body);
  }

  /** Seconds to wait before retrying a 503, from its Retry-After header (seconds or a date). */
  function retryAfterFrom(header) {
    const seconds = Number.parseInt(header || "", 10);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 60) || 1;
    const date = Date.parse(header || "");
    if (!Number.isNaN(date)) return Math.min(60, Math.max(1, Math.ceil((date - Date.now()) / 1000)));
    return 3;
  }

  function retryAfterSeconds(xhr) {
    return retryAfterFrom(xhr.getResponseHeader("Retry-After"));
  }

  // ---------------------------------------------------------------- API key

  try {
    ui.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  } catch (_) {
    // Storage can be unavailable (private modes); the field still works for this visit.
  }
  const markKey = () => ui.settings.classList.toggle("has-key", Boolean(apiKey()));
  markKey();

  let modelTimer = 0;
  ui.apiKey.addEventListener("input", () => {
    try {
      if (apiKey()) localStorage.setItem(KEY_STORAGE, apiKey());
      else localStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* see above */
    }
    markKey();
    clearTimeout(modelTimer);
    modelTimer = setTimeout(loadModelInfo, 500);
  });

  // ---------------------------------------------------------------- model footer

  async function loadModelInfo() {
    const headers = {};
    if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
    try {
      const response = await fetch("/model", { headers, cache: "no-store" });
      if (!response.ok) return;
      const info = await response.json();
      modelInputSize = Number(info.input_size) || 0;
      setHintKinds(Array.isArray(info.hints) ? info.hints.map(String) : []);
      const parts = [];
      const name = [info.architecture, info.version && `v${String(info.version).replace(/^v/, "")}`]
        .filter(Boolean)
        .join(" ");
      if (name) parts.push(`Model ${name}`);
      if (info.input_size) parts.push(`${info.input_size} px colour resolution`);
      const providers = Array.isArray(info.providers) ? info.providers : info.providers ? [info.providers] : [];
      if (providers.length) {
        parts.push(`runs on ${providers.map((p) => String(p).replace(/ExecutionProvider$/, "")).join(", ")}`);
      }
      if (!parts.length) return;
      ui.modelInfo.textContent = parts.join(" · ");
      ui.modelInfo.hidden = false;
    } catch (_) {
      // The footer is optional; the page works without it.
    }
  }

  /** The hint kinds the model takes ("local", "global"); null until GET /model has answered. */
  let hintKinds = null;
  let modelInputSize = 0;

  function setHintKinds(kinds) {
    hintKinds = kinds;
    for (const item of items) updateEditButton(item);
    document.dispatchEvent(new CustomEvent("colorizer:model", { detail: { hints: kinds } }));
  }

  function editable(item) {
    return item.state === "done" && !item.card.classList.contains("no-before") && (!hintKinds || hintKinds.length > 0);
  }

  function updateEditButton(item) {
    item.el.edit.hidden = !editable(item);
    ui.hintsOff.hidden = !(hintKinds && hintKinds.length === 0 && items.some((i) => i.state === "done"));
  }

  // ---------------------------------------------------------------- cards

  function addFiles(fileList) {
    let files = Array.from(fileList || []);
    const films = window.Colorizer.films; // video.js: a film becomes a video job, not a photo
    if (films) {
      for (const file of files.filter(films.isFilm)) films.add(file);
      files = files.filter((file) => !films.isFilm(file));
    }
    if (!files.length) return;
    const first = items.length;
    for (const file of files) {
      const item = createItem(file);
      items.push(item);
      ui.list.append(item.card);
      enqueue(item);
    }
    ui.section.hidden = false;
    updateSummary();
    announce(files.length === 1 ? `Added ${files[0].name}.` : `Added ${files.length} photos.`);
    if (first === 0) ui.section.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function createItem(file) {
    const card = ui.template.content.firstElementChild.cloneNode(true);
    const name = file.name || "image";
    const item = {
      id: nextId++,
      file,
      name,
      stem: stemOf(name),
      card,
      state: "queued",
      xhr: null,
      autoRetries: 0,
      retryTimer: 0,
      originalUrl: URL.createObjectURL(file),
      resultUrl: "",
      el: {
        compare: $(".compare", card),
        before: $(".img-before", card),
        after: $(".img-after", card),
        noPreview: $(".no-preview", card),
        slider: $(".slider", card),
        name: $(".file-name", card),
        meta: $(".meta", card),
        progress: $(".progress", card),
        status: $(".status", card),
        error: $(".error", card),
        download: $(".download", card),
        retry: $(".retry", card),
        edit: $(".edit", card),
        remove: $(".remove", card),
      },
    };
    const { el } = item;
    el.name.textContent = name;
    el.name.title = name;
    el.meta.textContent = formatBytes(file.size);
    el.progress.setAttribute("aria-label", `Progress for ${name}`);
    el.remove.setAttribute("aria-label", `Remove ${name}`);
    el.retry.setAttribute("aria-label", `Try again: ${name}`);
    el.edit.setAttribute("aria-label", `Edit colours: ${name}`);
    el.slider.setAttribute("aria-label", `Compare original and colour of ${name}`);
    el.before.alt = `Original: ${name}`;

    el.before.addEventListener("load", () => {
      setAspect(item, el.before.naturalWidth, el.before.naturalHeight);
      if (!item.resultUrl) el.meta.textContent = describe(item, el.before.naturalWidth, el.before.naturalHeight);
    });
    el.before.addEventListener("error", () => {
      card.classList.add("no-before");
      el.noPreview.hidden = false;
      updateEditButton(item);
    });
    el.before.src = item.originalUrl;

    el.slider.addEventListener("input", () => setSlider(item, Number(el.slider.value)));
    setSlider(item, 50);
    el.retry.addEventListener("click", () => {
      item.autoRetries = 0;
      enqueue(item);
    });
    el.remove.addEventListener("click", () => removeItem(item, true));
    el.edit.addEventListener("click", () => {
      if (window.Colorizer.editor && editable(item)) window.Colorizer.editor.open(item);
    });
    return item;
  }

  function describe(item, width, height) {
    return `${width} × ${height} · ${formatBytes(item.file.size)}`;
  }

  function setAspect(item, width, height) {
    if (!width || !height) return;
    item.el.compare.style.setProperty("--ar", String(width / height));
  }

  function setSlider(item, value) {
    item.el.compare.style.setProperty("--pos", `${value}%`);
    item.el.slider.setAttribute("aria-valuetext", `${value}% original, ${100 - value}% colour`);
  }

  function setState(item, state, statusText) {
    item.state = state;
    const { card, el } = item;
    card.dataset.state = state;
    card.setAttribute("aria-busy", String(state === "uploading" || state === "processing"));
    el.status.textContent = statusText || "";
    el.status.hidden = !statusText;
    const busy = state === "queued" || state === "uploading" || state === "processing" || state === "waiting";
    el.progress.hidden = !busy;
    el.retry.hidden = state !== "error";
    el.download.hidden = state !== "done";
    updateEditButton(item);
    if (state !== "error") {
      el.error.hidden = true;
      el.error.textContent = "";
    }
    updateSummary();
  }

  function setProgress(item, fraction) {
    const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    item.el.progress.value = pct;
    item.el.status.textContent = `Uploading… ${pct}%`;
  }

  function setIndeterminate(item) {
    item.el.progress.removeAttribute("value");
  }

  function updateSummary() {
    const live = items.length;
    const done = items.filter((i) => i.state === "done").length;
    const failed = items.filter((i) => i.state === "error").length;
    let text = "";
    if (live) {
      text = `${done} of ${live} ready`;
      if (failed) text += `, ${failed} failed`;
    }
    ui.count.textContent = text ? `(${text})` : "";
    document.body.classList.toggle("has-items", live > 0);
    ui.downloadAll.disabled = zipBusy || done === 0;
  }

  function removeItem(item, moveFocus) {
    const index = items.indexOf(item);
    if (index < 0) return;
    item.removed = true;
    if (window.Colorizer.editor) window.Colorizer.editor.forget(item);
    clearTimeout(item.retryTimer);
    if (item.xhr) item.xhr.abort();
    URL.revokeObjectURL(item.originalUrl);
    if (item.resultUrl) URL.revokeObjectURL(item.resultUrl);
    items.splice(index, 1);
    item.card.remove();
    if (!items.length) {
      ui.section.hidden = true;
      ui.zipStatus.hidden = true;
    }
    updateSummary();
    if (moveFocus) {
      const neighbour = items[index] || items[index - 1];
      (neighbour ? neighbour.el.remove : ui.fileInput).focus();
      announce(`Removed ${item.name}.`);
    }
  }

  // ---------------------------------------------------------------- uploads

  function enqueue(item) {
    if (item.removed) return;
    clearTimeout(item.retryTimer);
    item.el.progress.value = 0;
    setState(item, "queued", "Waiting…");
    queue.push(item);
    pump();
  }

  function pump() {
    while (inFlight < MAX_PARALLEL && queue.length) {
      const item = queue.shift();
      if (item.removed) continue;
      inFlight += 1;
      colorize(item).finally(() => {
        inFlight -= 1;
        pump();
      });
    }
  }

  function colorize(item) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      item.xhr = xhr;
      const started = performance.now();
      xhr.open("POST", "/colorize");
      xhr.responseType = "blob";
      authorize(xhr);

      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && event.total > 0) setProgress(item, event.loaded / event.total);
      });
      xhr.upload.addEventListener("load", () => {
        if (item.state === "uploading") {
          setState(item, "processing", "Colourising…");
          setIndeterminate(item);
        }
      });
      xhr.addEventListener("load", () => {
        item.xhr = null;
        finish(item, xhr, (performance.now() - started) / 1000).then(resolve, (error) => {
          fail(item, `Something went wrong while showing the result (${error}).`);
          resolve();
        });
      });
      xhr.addEventListener("error", () => {
        item.xhr = null;
        fail(item, "The server could not be reached. Check the connection and try again.");
        resolve();
      });
      xhr.addEventListener("abort", () => {
        item.xhr = null;
        resolve();
      });

      const form = new FormData();
      form.append("file", item.file, item.name);
      setState(item, "uploading", "Uploading… 0%");
      xhr.send(form);
    });
  }

  async function finish(item, xhr, seconds) {
    if (item.removed) return;
    if (xhr.status === 200 && xhr.response instanceof Blob && xhr.response.size > 0) {
      await showResult(item, xhr.response, seconds);
      return;
    }
    const detail = await errorDetail(xhr);
    if (item.removed) return;
    if (xhr.status === 503 && item.autoRetries < MAX_AUTO_RETRIES) {
      const wait = retryAfterSeconds(xhr);
      item.autoRetries += 1;
      setState(item, "waiting", `${detail} Trying again in ${wait}\u00a0s…`);
      setIndeterminate(item);
      item.retryTimer = setTimeout(() => enqueue(item), wait * 1000);
      return;
    }
    if (xhr.status === 401 || xhr.status === 403) {
      ui.settings.open = true;
    }
    const retryable = xhr.status >= 500 || [401, 403, 408, 429].includes(xhr.status);
    fail(item, detail, retryable);
  }

  async function showResult(item, blob, seconds) {
    const { el } = item;
    item.resultUrl = URL.createObjectURL(blob);
    el.after.alt = `Colourised: ${item.name}`;
    el.after.src = item.resultUrl;
    try {
      await el.after.decode();
    } catch (_) {
      URL.revokeObjectURL(item.resultUrl);
      item.resultUrl = "";
      el.after.removeAttribute("src");
      fail(item, "The server's answer could not be shown as an image.", false);
      return;
    }
    if (item.removed) return;
    setAspect(item, el.after.naturalWidth, el.after.naturalHeight);
    el.meta.textContent = describe(item, el.after.naturalWidth, el.after.naturalHeight);
    const filename = `${item.stem}-color.png`;
    el.download.href = item.resultUrl;
    el.download.download = filename;
    el.download.setAttribute("aria-label", `Download PNG: ${filename}`);
    setState(item, "done", `Ready in ${seconds.toFixed(1)}\u00a0s`);
    announce(`${item.name} is ready.`);
  }

  /** Show the error on the file's card; "Try again" only where trying again can help. */
  function fail(item, detail, retryable = true) {
    if (item.removed) return;
    setState(item, "error", "");
    item.el.error.textContent = detail;
    item.el.error.hidden = false;
    item.el.retry.hidden = !retryable;
    announce(`${item.name}: ${detail}`);
  }

  // ---------------------------------------------------------------- zip of the whole set

  function setZipStatus(text, isError) {
    ui.zipStatus.textContent = text;
    ui.zipStatus.hidden = !text;
    ui.zipStatus.classList.toggle("is-error", Boolean(isError));
  }

  function downloadAll() {
    const ready = items.filter((i) => i.state === "done");
    if (!ready.length || zipBusy) return;
    zipBusy = true;
    updateSummary();
    const label = ready.length === 1 ? "1 photo" : `${ready.length} photos`;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/colorize/batch");
    xhr.responseType = "blob";
    authorize(xhr);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) {
        setZipStatus(`Uploading ${label} for the zip… ${Math.round((event.loaded / event.total) * 100)}%`);
      }
    });
    xhr.upload.addEventListener("load", () => setZipStatus(`Colourising ${label} into a zip…`));
    const done = () => {
      zipBusy = false;
      updateSummary();
    };
    xhr.addEventListener("load", async () => {
      if (xhr.status === 200 && xhr.response instanceof Blob) {
        const url = URL.createObjectURL(xhr.response);
        const link = document.createElement("a");
        link.href = url;
        link.download = "colorized.zip";
        link.hidden = true;
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
        setZipStatus(`colorized.zip with ${label} is downloading.`);
        announce(`The zip with ${label} is ready.`);
      } else {
        const detail = await errorDetail(xhr);
        if (xhr.status === 401 || xhr.status === 403) ui.settings.open = true;
        setZipStatus(`The zip could not be made: ${detail}`, true);
        announce(`The zip could not be made: ${detail}`);
      }
      done();
    });
    xhr.addEventListener("error", () => {
      setZipStatus("The zip could not be made: the server could not be reached.", true);
      announce("The zip could not be made: the server could not be reached.");
      done();
    });
    const form = new FormData();
    for (const item of ready) form.append("files", item.file, item.name);
    setZipStatus(`Uploading ${label} for the zip…`);
    xhr.send(form);
  }

  // ---------------------------------------------------------------- input: picker, drop, paste

  ui.fileInput.addEventListener("change", () => {
    addFiles(ui.fileInput.files);
    ui.fileInput.value = ""; // picking the same file again should add it again
  });

  ui.dropzone.addEventListener("click", (event) => {
    if (event.target === ui.dropzone || event.target.closest(".dropzone-icon, .dropzone-text")) {
      ui.fileInput.click();
    }
  });

  const hasFiles = (event) => Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types).includes("Files");
  let dragDepth = 0;
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    document.body.classList.add("is-dragging");
  });
  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (event) => {
    if (!hasFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) document.body.classList.remove("is-dragging");
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // keep the browser from opening the file instead
    dragDepth = 0;
    document.body.classList.remove("is-dragging");
    const editor = window.Colorizer.editor;
    if (editor && editor.isOpen()) {
      // Behind the open colour editor the photo list is out of reach: a photo dropped on it is a reference.
      editor.dropped(event.dataTransfer.files);
      return;
    }
    addFiles(event.dataTransfer.files);
  });

  let pasteCount = 0;
  document.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    if (!data) return;
    let files = Array.from(data.files || []);
    if (!files.length) {
      files = Array.from(data.items || [])
        .filter((entry) => entry.kind === "file")
        .map((entry) => entry.getAsFile())
        .filter(Boolean);
    }
    if (!files.length) return; // ordinary text paste, e.g. into the API key field
    if (window.Colorizer.editor && window.Colorizer.editor.isOpen()) return;
    event.preventDefault();
    const named = files.map((file) => {
      // Screenshots arrive as "image.png"; give each a distinct name for its download.
      if (file.name && file.name !== "image.png") return file;
      pasteCount += 1;
      const ext = (file.type.split("/")[1] || "png").replace("jpeg", "jpg");
      return new File([file], `pasted-${pasteCount}.${ext}`, { type: file.type, lastModified: Date.now() });
    });
    addFiles(named);
  });

  ui.downloadAll.addEventListener("click", downloadAll);
  ui.clearAll.addEventListener("click", () => {
    for (const item of items.slice()) removeItem(item, false);
    queue.length = 0;
    setZipStatus("");
    announce("Cleared all photos.");
    ui.fileInput.focus();
  });

  // What the colour editor (editor.js) shares with this page.
  window.Colorizer = {
    apiKey,
    announce,
    detailOf,
    retryAfterFrom,
    formatBytes,
    stemOf,
    openSettings: () => {
      ui.settings.open = true;
    },
    hintKinds: () => hintKinds,
    modelInputSize: () => modelInputSize,
    maxAutoRetries: MAX_AUTO_RETRIES,
    editor: null,
    films: null,
  };

  loadModelInfo();
})();
