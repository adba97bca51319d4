/* Colorizer films: a video chosen or dropped on the page becomes a job on the server (DESIGN.md, POST /videos).
 * Its card follows the job by polling its status_url: progress, Cancel (DELETE), the failed job's sentence, and
 * the MP4 once done, with the job's warnings (frames that did not decode and were filled, sound skipped or
 * re-encoded). A reference photo, when set, goes with each film added after it and colours every frame. */
(() => {
  "use strict";

  const page = window.Colorizer;
  if (!page) return;

  const POLL_MS = 800; // how often a queued or running job is asked for its progress
  const FILM_NAME = /\.(mp4|m4v|mov|mkv|avi|webm)$/i; // the server's VIDEO_SUFFIXES
  const FILM_ACCEPT = "video/*,.mp4,.m4v,.mov,.mkv,.avi,.webm";
  const ACTIVE = new Set(["uploading", "waiting", "queued", "running"]);

  const $ = (selector, root = document) => root.querySelector(selector);
  const ui = {
    choose: $("#film-choose"),
    referenceButton: $("#film-reference"),
    referenceBox: $("#film-reference-box"),
    referenceThumb: $("#film-reference-thumb"),
    referenceText: $("#film-reference-text"),
    referenceRemove: $("#film-reference-remove"),
    referenceHelp: $("#film-reference-help"),
    list: $("#film-list"),
    template: $("#film-template"),
  };
  if (!ui.list || !ui.template) return;

  const films = [];
  let reference = null; // { file, url } while a reference photo is set

  const isFilm = (file) => String(file.type).startsWith("video/") || FILM_NAME.test(file.name || "");

  function headers() {
    const key = page.apiKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** The system file chooser, from an input made for this one choice: the page's permanent file input is the
   * photos' (accept="image/*"), and a film or a reference photo each needs its own filter. */
  function choose(accept, multiple, onFiles) {
    const input = document.createElement("input");
    Object.assign(input, { type: "file", accept, multiple, className: "visually-hidden", tabIndex: -1 });
    input.addEventListener("change", () => {
      const files = Array.from(input.files || []);
      input.remove();
      if (files.length) onFiles(files);
    });
    input.addEventListener("cancel", () => input.remove());
    document.body.append(input);
    input.click();
  }

  // ---------------------------------------------------------------- reference photo

  function setReference(file) {
    if (reference) URL.revokeObjectURL(reference.url);
    reference = file ? { file, url: URL.createObjectURL(file) } : null;
    ui.referenceBox.hidden = !reference;
    ui.referenceButton.textContent = reference ? "Change reference…" : "Reference photo…";
    if (!reference) {
      ui.referenceThumb.removeAttribute("src");
      return;
    }
    ui.referenceThumb.hidden = false;
    ui.referenceThumb.src = reference.url;
    ui.referenceText.textContent = `Films added now borrow the colours of ${file.name}.`;
    page.announce(`Reference photo ${file.name} set for the next films.`);
  }

  ui.referenceThumb.addEventListener("error", () => {
    ui.referenceThumb.hidden = true;
  });

  /** A model without global hints takes no reference photo (the server would answer 422 hints_unsupported). */
  function applyKinds() {
    const kinds = page.hintKinds();
    const global = kinds === null || kinds.includes("global");
    ui.referenceButton.hidden = !global;
    ui.referenceHelp.hidden = !global;
    if (!global && reference) setReference(null);
  }
  document.addEventListener("colorizer:model", applyKinds);
  applyKinds();

  // ---------------------------------------------------------------- film cards

  function add(file) {
    const card = ui.template.content.firstElementChild.cloneNode(true);
    const name = file.name || "film";
    const film = {
      file,
      name,
      reference: reference && reference.file,
      card,
      state: "",
      statusUrl: "", // the job's URL once the server has accepted it
      xhr: null,
      uploaded: false,
      cancelRequested: false,
      cancelling: false,
      controller: null,
      timer: 0,
      retries: 0,
      resultUrl: "",
      removed: false,
      el: {
        video: $(".film-video", card),
        name: $(".file-name", card),
        meta: $(".meta", card),
        progress: $(".progress", card),
        status: $(".status", card),
        error: $(".error", card),
        download: $(".download", card),
        cancel: $(".cancel", card),
        remove: $(".remove", card),
      },
    };
    const { el } = film;
    el.name.textContent = name;
    el.name.title = name;
    const meta = [page.formatBytes(file.size)];
    if (film.reference) meta.push(`colours of ${film.reference.name}`);
    el.meta.textContent = meta.join(" · ");
    el.progress.setAttribute("aria-label", `Progress for ${name}`);
    el.cancel.setAttribute("aria-label", `Cancel ${name}`);
    el.remove.setAttribute("aria-label", `Remove ${name}`);
    el.video.setAttribute("aria-label", `Colour film: ${name}`);
    el.video.addEventListener("error", () => {
      el.video.hidden = true; // a browser that cannot play it can still download it
    });
    el.cancel.addEventListener("click", () => cancel(film));
    el.remove.addEventListener("click", () => remove(film));
    el.warnings = document.createElement("ul"); // what the server skipped, filled or re-encoded: said, not hidden
    el.warnings.className = "film-warnings";
    el.warnings.hidden = true;
    el.status.after(el.warnings);
    films.push(film);
    ui.list.append(card);
    page.announce(`Added the film ${name}.`);
    submit(film);
  }

  function setState(film, state, text, fraction = null) {
    const { card, el } = film;
    const active = ACTIVE.has(state);
    const cancelHadFocus = document.activeElement === el.cancel;
    film.state = state;
    card.dataset.state = state;
    card.setAttribute("aria-busy", String(active));
    el.status.textContent = text;
    el.status.hidden = !text;
    el.progress.hidden = !active;
    if (fraction === null) el.progress.removeAttribute("value");
    else el.progress.value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    el.cancel.hidden = !active;
    el.download.hidden = state !== "done";
    if (state !== "failed") {
      el.error.hidden = true;
      el.error.textContent = "";
    }
    if (cancelHadFocus && !active) (state === "done" ? el.download : el.remove).focus();
  }

  function fail(film, detail) {
    if (film.removed) return;
    setState(film, "failed", "");
    film.el.error.textContent = detail;
    film.el.error.hidden = false;
    page.announce(`${film.name}: ${detail}`);
  }

  // ---------------------------------------------------------------- the job: submit, follow, fetch

  function submit(film) {
    const xhr = new XMLHttpRequest();
    film.xhr = xhr;
    film.uploaded = false;
    xhr.open("POST", "/videos");
    const key = page.apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable || !event.total || film.cancelRequested) return;
      const fraction = event.loaded / event.total;
      setState(film, "uploading", `Uploading… ${Math.round(fraction * 100)}%`, fraction);
    });
    xhr.upload.addEventListener("load", () => {
      film.uploaded = true;
    });
    xhr.addEventListener("load", () => {
      film.xhr = null;
      accepted(film, xhr);
    });
    xhr.addEventListener("error", () => {
      film.xhr = null;
      fail(film, "The server could not be reached. Check the connection and add the film again.");
    });
    const form = new FormData();
    form.append("file", film.file, film.name);
    if (film.reference) form.append("reference", film.reference, film.reference.name);
    setState(film, "uploading", "Uploading… 0%", 0);
    xhr.send(form);
  }

  function accepted(film, xhr) {
    if (film.removed) return;
    if (xhr.status === 202) {
      let job = null;
      try {
        job = JSON.parse(xhr.responseText);
      } catch (_) {
        // handled below
      }
      if (!job || !job.id) {
        fail(film, "The server accepted the film but named no job to follow. Add it again.");
        return;
      }
      film.statusUrl = job.status_url || `/videos/${encodeURIComponent(job.id)}`;
      film.card.dataset.job = String(job.id);
      setState(film, "queued", "Waiting for its turn…");
      if (film.cancelRequested) cancel(film);
      else poll(film);
      return;
    }
    const detail = page.detailOf(xhr.status, xhr.statusText, xhr.responseText);
    if (film.cancelRequested) {
      setState(film, "cancelled", "Cancelled.");
      return;
    }
    if (xhr.status === 503 && film.retries < page.maxAutoRetries) {
      film.retries += 1;
      const wait = page.retryAfterFrom(xhr.getResponseHeader("Retry-After"));
      setState(film, "waiting", `${detail} Trying again in ${wait}\u00a0s…`);
      film.timer = setTimeout(() => submit(film), wait * 1000);
      return;
    }
    if (xhr.status === 401 || xhr.status === 403) page.openSettings();
    fail(film, detail);
  }

  async function poll(film) {
    film.controller = new AbortController();
    const { signal } = film.controller; // aborted by cancel and remove: then this poll ends without a word
    let wait = POLL_MS;
    try {
      const response = await fetch(film.statusUrl, { headers: headers(), cache: "no-store", signal });
      const body = await response.text();
      if (signal.aborted) return;
      if (response.status === 503) {
        wait = page.retryAfterFrom(response.headers.get("Retry-After")) * 1000; // busy: ask again when told to
      } else if (!response.ok) {
        fail(film, page.detailOf(response.status, response.statusText, body));
        return;
      } else {
        const job = JSON.parse(body);
        if (job.status === "done") {
          fetchResult(film, job);
          return;
        }
        if (job.status === "failed") {
          fail(film, job.error || "The server could not colour this film.");
          return;
        }
        showProgress(film, job);
      }
    } catch (error) {
      if (error.name === "AbortError") return;
      film.el.status.textContent = "The server could not be reached; still trying…"; // the job runs on regardless
      wait = POLL_MS * 4;
    }
    if (!signal.aborted && ACTIVE.has(film.state)) film.timer = setTimeout(() => poll(film), wait);
  }

  function showProgress(film, job) {
    const total = Number(job.frames_total) || 0;
    const done = Number(job.frames_done) || 0;
    if (job.status !== "running") {
      setState(film, "queued", total ? `Waiting for its turn (${total} frames)…` : "Waiting for its turn…");
      return;
    }
    const progress = Number(job.progress) || 0;
    const frames = total ? `frame ${done} of ${total}` : `${done} frames`;
    setState(film, "running", `Colourising… ${frames} (${Math.round(progress * 100)}%)`, progress);
  }

  /** The job's warnings as a list under the status line; a done film with warnings says so to screen readers. */
  function showWarnings(film, job) {
    const warnings = Array.isArray(job.warnings) ? job.warnings.map(String) : [];
    const { warnings: list } = film.el;
    list.replaceChildren(
      ...warnings.map((text) => {
        const item = document.createElement("li");
        item.textContent = text.charAt(0).toUpperCase() + text.slice(1) + ".";
        return item;
      }),
    );
    list.hidden = warnings.length === 0;
    return warnings;
  }

  async function fetchResult(film, job) {
    const frames = Number(job.frames_total) || Number(job.frames_done) || 0;
    setState(film, "running", "Fetching the colour film…", 1);
    let blob;
    try {
      const response = await fetch(`${film.statusUrl}/result`, { headers: headers(), signal: film.controller.signal });
      if (!response.ok) {
        fail(film, page.detailOf(response.status, response.statusText, await response.text()));
        return;
      }
      blob = await response.blob();
    } catch (error) {
      if (error.name !== "AbortError") fail(film, "The colour film could not be fetched. Check the connection.");
      return;
    }
    if (film.controller.signal.aborted) return;
    const { el } = film;
    const filename = `${page.stemOf(film.name)}-color.mp4`;
    film.resultUrl = URL.createObjectURL(blob);
    el.download.href = film.resultUrl;
    el.download.download = filename;
    el.download.setAttribute("aria-label", `Download MP4: ${filename}`);
    el.video.src = film.resultUrl;
    el.video.hidden = false;
    el.meta.textContent = `${frames} frames · ${page.formatBytes(blob.size)} MP4`;
    const filled = Number(job.frames_filled) || 0;
    setState(film, "done", `Ready: ${frames} frames in colour${filled ? `, ${filled} of them filled` : ""}.`);
    const warnings = showWarnings(film, job);
    page.announce(`${film.name} is ready${warnings.length ? ` with ${warnings.length} warnings: ${warnings.join("; ")}` : ""}.`);
  }

  // ---------------------------------------------------------------- cancel and remove

  /** Stop following the job, then DELETE it; on failure the card says why and follows the job again. */
  async function cancel(film) {
    if (!ACTIVE.has(film.state) || film.cancelling) return;
    clearTimeout(film.timer);
    if (film.controller) film.controller.abort();
    film.el.status.textContent = "Cancelling…";
    if (!film.statusUrl) {
      if (film.xhr && film.uploaded) {
        film.cancelRequested = true; // the upload is in: cancel the job as soon as it has an id
        return;
      }
      if (film.xhr) film.xhr.abort(); // nothing reached the server yet
      film.xhr = null;
      setState(film, "cancelled", "Cancelled.");
      return;
    }
    film.cancelling = true; // a second press waits for this one (the button keeps its focus: not disabled)
    let detail = "";
    try {
      const response = await fetch(film.statusUrl, { method: "DELETE", headers: headers() });
      if (!response.ok && response.status !== 404) {
        detail = page.detailOf(response.status, response.statusText, await response.text());
      }
    } catch (_) {
      detail = "The server could not be reached, so the film was not cancelled. Try again.";
    }
    film.cancelling = false;
    if (film.removed) return;
    if (detail) {
      film.el.error.textContent = detail;
      film.el.error.hidden = false;
      page.announce(`${film.name}: ${detail}`);
      poll(film);
      return;
    }
    setState(film, "cancelled", "Cancelled. The server has deleted the film.");
    page.announce(`${film.name} is cancelled.`);
  }

  /** Take the card off the page; a job still on the server is deleted too, which also frees its files. */
  function remove(film) {
    const index = films.indexOf(film);
    if (index < 0) return;
    film.removed = true;
    clearTimeout(film.timer);
    if (film.xhr) film.xhr.abort();
    if (film.controller) film.controller.abort();
    if (film.statusUrl && film.state !== "cancelled") {
      fetch(film.statusUrl, { method: "DELETE", headers: headers() }).catch(() => {});
    }
    if (film.resultUrl) URL.revokeObjectURL(film.resultUrl);
    films.splice(index, 1);
    film.card.remove();
    const neighbour = films[index] || films[index - 1];
    (neighbour ? neighbour.el.remove : ui.choose).focus();
    page.announce(`Removed ${film.name}.`);
  }

  // ---------------------------------------------------------------- input

  ui.choose.addEventListener("click", () => choose(FILM_ACCEPT, true, (files) => files.forEach(add)));
  ui.referenceButton.addEventListener("click", () => choose("image/*", false, ([file]) => setReference(file)));
  ui.referenceRemove.addEventListener("click", () => {
    setReference(null);
    ui.referenceButton.focus();
    page.announce("The reference photo is removed; films added now are coloured automatically.");
  });

  page.films = { isFilm, add }; // app.js hands films dropped, pasted or picked among photos to add()
})();
