"""python -m dga_fast explore: the API over one loaded model, bad input as clear messages, and the page in a real
headless browser (Debian's chromium and chromedriver, installed by this test when missing and possible): clicking
one unit's anchor changes the displayed image and that unit's token only."""
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("starlette", reason="starlette is in requirements.txt; explore cannot run without it")
pytest.importorskip("uvicorn", reason="uvicorn is in requirements.txt; explore cannot run without it")

from dga_fast import AnchoredDiffusion  # noqa: E402
from dga_fast.data import SyntheticShapes  # noqa: E402
from dga_fast.explore import ExploreSession  # noqa: E402
from dga_fast.explore.app import make_app  # noqa: E402
from dga_fast.train import fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("explore_run")
    torch.manual_seed(0)
    model = AnchoredDiffusion(image_size=16, num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                              num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                              anchoring=dict(init_components=3, min_cluster_size=4))
    # the cross-attention outputs and the U-Net's last conv start at zero, so after 4 steps the tokens would
    # barely move a pixel: give them weights, as training does, so that an edit visibly changes the image
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "proj_x" in name or name.startswith("out."):
                p.normal_(0.0, 0.3)
    fit(model, SyntheticShapes(16), out, steps=4, batch_size=8, refit_warmup=2, refit_every=2, refit_samples=64,
        progress=False, run_info={"dataset": {"name": "synthetic-shapes", "data_dir": None, "image_size": 16}})
    return out


@pytest.fixture(scope="module")
def server(run_dir):
    import uvicorn
    session = ExploreSession(run_dir, steps=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(session), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", session
    srv.should_exit = True
    th.join(10)


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode() if not isinstance(body, bytes) else body,
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


def test_api_edits_and_bad_input(server):
    url, session = server
    info = json.loads(urllib.request.urlopen(url + "/api/info").read())
    assert info["units"] == 4 and info["anchored"] and all(info["anchors"])
    status, body, _ = post(url + "/api/image", {"index": 5})
    tokens = json.loads(body)["tokens"]
    u, a = 1, info["anchors"][1][0]
    status, body, _ = post(url + "/api/edit", {"op": "anchor", "tokens": tokens, "unit": u, "k": a["k"]})
    out = json.loads(body)
    assert status == 200 and out["tokens"][u] == pytest.approx(a["mean"], abs=0)
    assert [out["tokens"][v] for v in range(4) if v != u] == [tokens[v] for v in range(4) if v != u]
    assert len(out["attention"]) == 4 and out["image"].startswith("data:image/png;base64,")
    # the same tokens give the same image: one fixed noise draw
    again = json.loads(post(url + "/api/generate", {"tokens": out["tokens"]})[1])
    assert again["image"] == out["image"]
    if len(info["anchors"][u]) > 1:
        b = info["anchors"][u][1]
        half = json.loads(post(url + "/api/edit", {"op": "interpolate", "tokens": tokens, "unit": u, "a": a["k"],
                                                    "b": b["k"], "frac": 0.5})[1])
        mid = (torch.tensor(a["mean"]) + torch.tensor(b["mean"])) / 2
        assert torch.allclose(torch.tensor(half["tokens"][u]), mid, atol=1e-6)
    other = json.loads(post(url + "/api/image", {"index": 6})[1])["tokens"]
    swapped = json.loads(post(url + "/api/edit", {"op": "swap", "tokens": tokens, "tokens_b": other, "unit": 2})[1])
    assert swapped["tokens"][2] == other[2] and swapped["tokens"][0] == tokens[0]
    status, body, kind = post(url + "/api/grid", {"images": [out["image"], again["image"]]})
    assert status == 200 and kind == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    for bad, msg in ((("/api/edit", {"op": "anchor", "tokens": tokens, "unit": 4, "k": 0}), "unit must be an int in"),
                     (("/api/edit", {"op": "anchor", "tokens": tokens, "unit": 0, "k": 99}), "has anchors"),
                     (("/api/edit", {"op": "blur", "tokens": tokens}), "op must be"),
                     (("/api/edit", {"op": "swap", "tokens": tokens[:2], "tokens_b": other, "unit": 0}), "tokens must"),
                     (("/api/image", {"index": -1}), "image index"),
                     (("/api/image", {"upload": "not base64!"}), "base64"),
                     (("/api/image", {"upload": base64.b64encode(b"plain text").decode()}), "not an image"),
                     (("/api/image", b"{"), "not JSON")):
        status, body, _ = post(url + bad[0], bad[1])
        assert status == 400 and msg in json.loads(body)["error"], (bad, body)
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (20, 12)).save(buf, format="PNG")
    status, body, _ = post(url + "/api/image", {"upload": base64.b64encode(buf.getvalue()).decode()})
    assert status == 400 and "20x12; this model takes 16x16" in json.loads(body)["error"]
    assert urllib.request.urlopen(url + "/api/unit/3.png").read()[:4] == b"\x89PNG"
    try:
        urllib.request.urlopen(url + "/api/unit/9.png")
    except urllib.error.HTTPError as e:
        assert e.code == 400 and "unit must be" in json.loads(e.read())["error"]
    else:
        raise AssertionError("unit 9 of 4 was served")


def test_start_up_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ExploreSession(tmp_path)
    p = subprocess.run([sys.executable, "-m", "dga_fast", "explore", str(tmp_path / "nowhere")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no such directory" in p.stderr and "Traceback" not in p.stderr


def ensure_browser():
    """Debian's chromium and chromedriver; installed with apt-get when missing and this process may (root)."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    why = "not root" if os.geteuid() != 0 else ("no apt-get" if shutil.which("apt-get") is None else None)
    if why is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
            subprocess.run(cmd, env=env, capture_output=True, timeout=900)
        if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
            return
        why = "apt-get install chromium chromium-driver failed"
    print(f"test_explore: skipping the browser test: {why}", file=sys.stderr)
    pytest.skip(f"no headless browser: {why} (install Debian's chromium and chromium-driver)")


def test_page_in_a_headless_browser(server, tmp_path):
    pytest.importorskip("selenium", reason="selenium is in requirements.txt")
    ensure_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url, session = server
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1100", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 300)
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-ready") == "1",
                   "the page did not finish loading image A and B")
        info = driver.execute_script("return window.explorer.info")
        before = driver.execute_script("return window.explorer.tokens")
        src = driver.find_element(By.ID, "img-current").get_attribute("src")
        u = 2
        k = info["anchors"][u][0]["k"]
        driver.find_element(By.ID, f"anchor-{u}-{k}").click()
        wait.until(lambda d: d.find_element(By.ID, "img-current").get_attribute("src") != src
                   and d.execute_script("return window.explorer.pending") == 0,
                   "the displayed image did not change after the anchor click")
        after = driver.execute_script("return window.explorer.tokens")
        changed = [v for v in range(info["units"]) if after[v] != before[v]]
        assert changed == [u]
        assert after[u] == pytest.approx(info["anchors"][u][0]["mean"], abs=0)
        assert "edited" in driver.find_element(By.ID, f"unit-{u}").get_attribute("class")
        assert driver.find_element(By.ID, "error").text == ""
        driver.save_screenshot(str(tmp_path / "explore.png"))
        assert (tmp_path / "explore.png").stat().st_size > 10_000
        # bad input on the page: a clear message, the page stays usable
        box = driver.find_element(By.ID, "index-a")
        box.clear()
        box.send_keys("-3")
        driver.find_element(By.ID, "load-a").click()
        wait.until(lambda d: "image index must be" in d.find_element(By.ID, "error").text)
        assert driver.execute_script("return window.explorer.pending") == 0
    finally:
        driver.quit()
