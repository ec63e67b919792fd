"""A local web page that shows any model's masks: `python -m deepmask_jax.viewer`.

Upload, drop or pick an image; each --model's results are drawn over it in
its own panel, side by side, with the network's time: tinted masks with
contour lines in distinct colours, boxes, and on hover the rank, score and,
for EmbedMask, the class name. Top-K, the score threshold, masks, boxes and
opacity redraw in the browser from results it already holds; the network
runs once per image and model (the server caches it). The shown results
download as COCO results JSON, the records `propose` writes (segm and bbox).

Why not Gradio, the ecosystem's usual choice: it pulls in some hundred MB of
web stack (FastAPI, uvicorn, pandas, pydantic, httpx, huggingface_hub...)
whose APIs change between majors, it runs every control change through a
Python callback that re-encodes the annotated image on the server, and its
AnnotatedImage has no contour lines or opacity. Here the standard library's
threaded HTTP server answers a handful of routes (server.py) with no route
that takes a path, so it reads only the files named on its command line;
the page (static/index.html, static/viewer.js, no framework) decodes the
COCO RLEs and draws on a canvas, so a redraw takes milliseconds and nothing
needs installing beyond the core package.

  __main__.py     the command line (flags, loading, serving)
  server.py       routes and error answers
  predictions.py  images, network calls, their cache, the JSON the page draws
  static/         the page and its script (the drawing)
  driver.py       drives it from Python for tests and experiments (a server
                  thread, headless Chromium); the viewer never imports it
"""
