"""The explorer's web side: a Starlette (ASGI) app serving one plain page (``page.html``) and a small JSON API over
one ``ExploreSession``. Every request is answered in JSON; bad input is a 400 with the message the page shows,
anything else a 500 with a one-line message (the traceback goes to the server's log, never to the browser).

    GET  /                    the page
    GET  /api/info            units, anchors (per unit, heaviest first), image shape, dataset size
    GET  /api/unit/{u}.png    unit u's tokens (PCA) with its Gaussians, anchors labelled
    POST /api/image           {"index": i} or {"upload": base64 PNG/JPEG} -> {"tokens", "image"}
    POST /api/generate        {"tokens"} -> {"image", "attention": [per unit], "seconds"}
    POST /api/edit            {"op": "anchor" | "interpolate" | "swap", "tokens", "unit", ...} -> as generate, + "tokens"
    POST /api/grid            {"images": [data URLs]} -> PNG (one row)
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import traceback
from pathlib import Path

from .session import ExploreSession

PAGE = Path(__file__).with_name("page.html")
log = logging.getLogger("dga_fast.explore")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def from_data_url(s) -> bytes:
    if not isinstance(s, str):
        raise ValueError("an image must be sent as a base64 string (a data: URL or plain base64)")
    try:
        return base64.b64decode(s.split(",", 1)[1] if s.startswith("data:") else s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("the image is not valid base64") from e


def make_app(session: ExploreSession):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def generated(tokens) -> dict:
        img, att = session.generate(tokens)
        return {"tokens": tokens.tolist(), "image": data_url(session.png(img)),
                "attention": [data_url(session.heat_png(a)) for a in att], "seconds": round(session.last_seconds, 3)}

    def image(body) -> dict:
        if "upload" in body:
            img = session.decode_upload(from_data_url(body["upload"]))
        else:
            img = session.image(body.get("index"))
        return {"tokens": session.encode(img), "image": data_url(session.png(img))}

    def edit(body) -> dict:
        op = body.get("op")
        if op == "anchor":
            t = session.set_anchor(body.get("tokens"), body.get("unit"), body.get("k"))
        elif op == "interpolate":
            t = session.interpolate(body.get("tokens"), body.get("unit"), body.get("a"), body.get("b"), body.get("frac"))
        elif op == "swap":
            t = session.swap(body.get("tokens"), body.get("tokens_b"), body.get("unit"))
        else:
            raise ValueError(f"op must be 'anchor', 'interpolate' or 'swap', got {op!r}")
        return generated(t)

    def grid(body) -> bytes:
        from PIL import Image
        import io
        import numpy as np
        import torch
        urls = body.get("images")
        if not isinstance(urls, list) or not urls:
            raise ValueError("images must be a non-empty list of data URLs")
        imgs = []
        for u in urls:
            a = np.asarray(Image.open(io.BytesIO(from_data_url(u))).convert("RGB"), dtype=np.float32) / 255.0
            imgs.append(torch.from_numpy(a).permute(2, 0, 1))
        if len({tuple(i.shape) for i in imgs}) != 1:
            raise ValueError("the grid's images must all have the same size")
        return session.grid_png(imgs)

    def endpoint(work, kind="json"):
        async def handle(request: Request):
            try:
                body = await request.json() if request.method == "POST" else dict(request.path_params)
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                out = await run_in_threadpool(work, body)
            except json.JSONDecodeError:
                return JSONResponse({"error": "the request body is not JSON"}, status_code=400)
            except (ValueError, TypeError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            except Exception as e:  # noqa: BLE001  -- never a traceback to the browser
                log.error("explore: %s", traceback.format_exc())
                return JSONResponse({"error": f"internal error ({type(e).__name__}: {e})"}, status_code=500)
            if kind == "png":
                return Response(out, media_type="image/png")
            if kind == "download":
                return Response(out, media_type="image/png",
                                headers={"Content-Disposition": 'attachment; filename="dga_fast_explore.png"'})
            return JSONResponse(out)
        return handle

    def unit_png(params) -> bytes:
        try:
            u = int(params["u"])
        except ValueError as e:
            raise ValueError(f"unit must be an int, got {params['u']!r}") from e
        return session.unit_plot(u)

    async def page(request: Request):
        return HTMLResponse(PAGE.read_text())

    routes = [
        Route("/", page),
        Route("/api/info", endpoint(lambda body: session.info())),
        Route("/api/unit/{u}.png", endpoint(unit_png, "png")),
        Route("/api/image", endpoint(image), methods=["POST"]),
        Route("/api/generate", endpoint(lambda body: generated(session.check_tokens(body.get("tokens")))),
              methods=["POST"]),
        Route("/api/edit", endpoint(edit), methods=["POST"]),
        Route("/api/grid", endpoint(grid, "download"), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def serve(run_dir, host: str = "127.0.0.1", port: int = 7860, steps: int = 25, seed: int = 0, device: str = "cpu",
          ready=None) -> None:
    """Load the run and serve the page until interrupted (``ready()`` is called once the model is loaded)."""
    import uvicorn
    session = ExploreSession(run_dir, steps=steps, seed=seed, device=device)
    app = make_app(session)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"explore: serving on {host}, reachable from other machines: anyone who can reach the port can use "
              "the model")
    print(f"explore: {run_dir} ({session.U} units, {len(session.dataset)} images) on http://{host}:{port}/",
          flush=True)
    if ready is not None:
        ready()
    uvicorn.run(app, host=host, port=port, log_level="warning")
