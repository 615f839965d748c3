"""The participant page in a real headless Chromium (Debian's), driven by Playwright: a whole test by clicking and
typing, frame-exact switching on one playhead, the loop region, blinding, resume after reload, the crowd redirect.

Stimuli are the research notes' probe: channel 0 is a DC level naming the condition, channel 1 a ramp holding the
playhead position, so the audio the page renders (captured in the page by the engine's test tap) shows exactly when
a switch landed and whether the playhead stayed continuous.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from sqlalchemy import select

from testkit.net import free_port
from tests.mushra_web.conftest import RAMP_SCALE, fresh_postgres_db, wait_for, write_config

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (apt chromium; scripts/setup.sh installs it)",
                allow_module_level=True)

SR = 48000
SR22 = 22050
INSTRUCTIONS22 = "Listen closely.\nThen rate every sound."
CONDITIONS = ["codec_a", "codec_b"]
LEVEL = {"reference": 0.1, "codec_a": 0.2, "codec_b": 0.3}
XFADE = 240  # 5 ms at 48 kHz
DONE_URL = "https://crowd.invalid/complete?cc={code}"
SECRETS = ["codec_a", "codec_b", "lp3500", "lp7000", ".yaml", "reference.wav", "stimuli/"]
LONG_TITLE = "W" * 200
# Every sample the server sends is moved by at most 4 units in its last place (mushra_web.dither), a relative 2**-21:
# on the probe's ramp (n * 2**-20 at frame n) that is at most 96000 * 2**-21 = 0.046 frames at the end of a 2 s
# sound. Playhead checks allow 0.05 frames for it; a crossfade whose gains did not sum to 1, or a playhead off by one
# frame, is off by whole frames.
DITHER_FRAMES = 0.05
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def serving(db: str, tmp: Path, configs: list[Path]):
    """``mushra-web serve --test-mode`` on a free loopback port with the tests of ``configs`` created (in this
    process, as ``mushra-web create`` does: one import for them all)."""
    from mushra_web.db import init_db, make_engine, session_factory
    from mushra_web.ingest import create_experiment
    from mushra_web.schema import load_config

    engine = make_engine(db)
    init_db(engine)
    with session_factory(engine)() as session:
        for cfg in configs:
            create_experiment(session, load_config(cfg), tmp / "data")
        session.commit()
    engine.dispose()
    base = [sys.executable, "-m", "mushra_web.cli", "--db", db, "--data-dir", str(tmp / "data")]
    port = free_port()
    proc = subprocess.Popen([*base, "serve", "--port", str(port), "--test-mode", "--log-level", "warning"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/static/style.css", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_for(up, 30, "the server")
        yield {"url": url, "db": db}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def server():
    """A server on SQLite with a crowd test of 2 items x 2 conditions at 48 kHz ('bt'), a plain one of 1 item x 1
    condition at 22.05 kHz with its own instructions and the EnCodec paper's protocol ('bt22'), one that is closed
    ('bc'), one with a title of 200 characters and no space ('bl') and one whose trials take at least 5 s ('bw')."""
    tmp = Path(tempfile.mkdtemp(prefix="mushra-browser-"))
    configs = [
        write_config(tmp, test_id="bt", items=("i1", "i2"), conditions=tuple(CONDITIONS), sample_rate=SR,
                     seconds=2.0, stereo_probe=True, crowd={"platform": "prolific", "complete_url": DONE_URL}),
        write_config(tmp, test_id="bt22", items=("j1",), conditions=("codec_a",), sample_rate=SR22, seconds=1.0,
                     title="Second test", instructions=INSTRUCTIONS22, protocol="encodec_2022"),
        write_config(tmp, test_id="bc", items=("c1",), conditions=("codec_a",), sample_rate=SR22, seconds=1.0),
        write_config(tmp, test_id="bl", items=("l1",), conditions=("codec_a",), sample_rate=SR22, seconds=1.0,
                     title=LONG_TITLE),
        write_config(tmp, test_id="bw", items=("w1",), conditions=("codec_a",), sample_rate=SR22, seconds=1.0,
                     design={"min_trial_lengths": 5.0}),
    ]
    with serving(f"sqlite:///{tmp / 'db.sqlite'}", tmp, configs) as running:
        yield running
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_server(request):
    """For what the page stores: a server on SQLite, then on a real PostgreSQL, each with a crowd test of one item
    and one condition ('tt') whose trials may go on at once."""
    tmp = Path(tempfile.mkdtemp(prefix=f"mushra-browser-{request.param}-"))
    if request.param == "sqlite":
        db = f"sqlite:///{tmp / 'db.sqlite'}"
    else:
        db = fresh_postgres_db(request.getfixturevalue("postgres_server"))
    cfg = write_config(tmp, test_id="tt", items=("t1",), conditions=("codec_a",), sample_rate=SR22, seconds=1.0,
                       crowd={"platform": "prolific"}, design={"min_trial_lengths": 0})
    with serving(db, tmp, [cfg]) as running:
        yield running
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright):
    """Debian's Chromium; never a browser build downloaded by Playwright."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
    yield browser
    browser.close()


def new_browser(chromium, **options):
    """A fresh browser profile (its own cookies and local storage), as a new participant's browser would be."""
    return chromium.new_context(bypass_csp=True, **options)


@pytest.fixture
def page(chromium):
    context = new_browser(chromium)
    yield context.new_page()
    context.close()


def button_conditions(db: str, pid: str, position: int) -> dict[int, str]:
    """The server's (secret) map from button index to condition, for checking what the page played."""
    from mushra_web.db import Participant, Rating, Stimulus, Trial, make_engine, session_factory

    engine = make_engine(db)
    with session_factory(engine)() as s:
        p = s.scalar(select(Participant).where(Participant.external_id == pid))
        trial = s.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position))
        rows = s.execute(select(Rating.button_index, Stimulus.condition).join(Stimulus)
                         .where(Rating.trial_id == trial.id)).all()
    engine.dispose()
    return {b: c for b, c in rows}


def completion_code(db: str, pid: str) -> str:
    from mushra_web.db import Participant, make_engine, session_factory

    engine = make_engine(db)
    with session_factory(engine)() as s:
        code = s.scalar(select(Participant.completion_code).where(Participant.external_id == pid))
    engine.dispose()
    return code


def start(page, server, pid: str, watch: list | None = None) -> None:
    if watch is not None:
        page.on("request", lambda r: watch.append(r.url))
        page.on("response", lambda r: watch.append(r.text()) if r.request.resource_type in
                ("document", "script", "fetch", "xhr", "stylesheet") and "audio" not in r.headers.get(
                    "content-type", "") else None)
    audio_requests: list[str] = []
    page.on("request", lambda r: audio_requests.append(r.url) if "/a/" in r.url else None)
    page.goto(f"{server['url']}/e/bt?PROLIFIC_PID={pid}&STUDY_ID=st&SESSION_ID=se")
    page.wait_for_load_state("networkidle")
    assert audio_requests == []  # nothing is fetched, and no participant exists, before the participant starts
    page.click("#start")
    page.wait_for_selector("#trial[data-loaded]")


def rate_all_by_keyboard(page, n: int) -> None:
    """Play every sound with its number key and set its slider with the arrow keys."""
    for i in range(n):
        page.keyboard.press(str(i + 1))  # plays sound i+1 and focuses its slider
        page.keyboard.press("End")
        for _ in range(i + 1):
            page.keyboard.press("ArrowDown")
    page.keyboard.press("r")


def test_whole_test_by_clicking_and_typing_then_crowd_redirect_and_blinding(page, server):
    seen: list = []
    redirected = []
    page.route("https://crowd.invalid/**", lambda route: (redirected.append(route.request.url),
                                                          route.fulfill(status=200, body="done")))
    start(page, server, "pw1", watch=seen)
    assert page.locator("#btn-ref").is_visible()
    assert page.locator("#save-status").text_content() == "Nothing rated yet"  # "Saved" only once something is
    for trial in range(2):
        page.wait_for_function(f"document.querySelector('#progress-text').textContent.startsWith('Trial {trial + 1} ')")
        n = page.locator("#rating input[type=range]").count()
        assert n == 5
        assert page.locator("#next").is_disabled()
        assert page.locator("#rating input.unset").count() == 5  # sliders start unset
        page.click("#btn-0")
        page.click("#slider-0", position={"x": 18, "y": 30})  # a click near the top: a high score
        assert page.locator("#next").is_disabled()
        rate_all_by_keyboard(page, n)
        assert page.locator("#rating input.unset").count() == 0
        sync_api.expect(page.locator("#next")).to_be_enabled(timeout=10_000)  # after 2 s: the sounds' length
        page.wait_for_function("document.querySelector('#save-status').textContent.includes('Saved')")
        page.click("#next")
    page.wait_for_url("https://crowd.invalid/**")
    code = completion_code(server["db"], "pw1")
    assert redirected and parse_qs(urlparse(redirected[0]).query)["cc"] == [code]
    blob = "\n".join(s for s in seen if isinstance(s, str))
    for secret in SECRETS:
        assert secret not in blob, secret
    # one participation per id: coming back with the same PROLIFIC_PID is refused
    page.goto(f"{server['url']}/e/bt?PROLIFIC_PID=pw1")
    page.context.clear_cookies()
    page.reload()
    page.click("#start")
    page.wait_for_selector("#error:not([hidden])")
    assert "already completed" in page.locator("#error-text").text_content()


def captured(page) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The rendered audio indexed by context frame (gaps stay NaN), and the engine's scheduled commands."""
    taps = page.evaluate("window.__mushraTest.taps.map(t => [t.frame, Array.from(t.ch[0]), Array.from(t.ch[1])])")
    sched = page.evaluate("window.__mushraTest.scheduled")
    first = taps[0][0]
    last = taps[-1][0] + len(taps[-1][1])
    ch0 = np.full(last - first, np.nan)
    ch1 = np.full(last - first, np.nan)
    for frame, a, b in taps:
        ch0[frame - first: frame - first + len(a)] = a
        ch1[frame - first: frame - first + len(b)] = b
    return ch0, ch1, [{**s, "index": s["frame"] - first} for s in sched]


def test_switching_lands_on_the_scheduled_frame_and_keeps_the_playhead(page, server):
    start(page, server, "pw2")
    buttons = button_conditions(server["db"], "pw2", 0)
    codecs = [b for b, c in sorted(buttons.items()) if c in CONDITIONS]
    page.evaluate("window.__mushraTest.tap(true)")
    page.click("#btn-ref")
    order = [codecs[0] + 1, 0, codecs[1] + 1, codecs[0] + 1]  # engine sources: 0 = reference, k = button k-1
    for source in order:
        page.wait_for_timeout(300)
        page.click("#btn-ref" if source == 0 else f"#btn-{source - 1}")
    page.wait_for_timeout(250)
    page.evaluate("window.__mushraTest.tap(false)")
    ch0, ch1, sched = captured(page)
    switches = [s for s in sched if s["cmd"] == "play"]
    assert len(switches) == 1 + len(order)

    def level(source: int) -> float:
        return LEVEL["reference"] if source == 0 else LEVEL[buttons[source - 1]]

    frames = [s["frame"] for s in switches]
    assert min(np.diff(frames)) > 2 * XFADE, "clicks bunched up: switches overlapped"
    prev = 0
    for s in switches[1:]:
        a, b = level(prev), level(s["source"])
        mid = (a + b) / 2
        seg = ch0[s["index"]: s["index"] + XFADE + 10]
        assert not np.isnan(seg).any(), "render quanta missing around a switch"
        crossing = int(np.argmax((seg - mid) * np.sign(b - a) >= 0))
        assert abs(crossing - XFADE // 2) <= 1, (crossing, s)
        assert abs(seg[XFADE + 2] - b) < 1e-6 and abs(ch0[s["index"] - 1] - a) < 1e-6
        prev = s["source"]
    # the playhead (ramp on channel 1) advances by one frame per frame through every switch, wraps aside
    start_i = switches[0]["index"] + XFADE
    pos = np.round(ch1[start_i:] / RAMP_SCALE)
    ok = ~np.isnan(pos)
    steps = np.diff(pos[ok])
    assert ok.mean() > 0.98, "too many render quanta missing"
    assert np.all((steps == 1) | (steps < 0)), np.unique(steps)
    # up to the loop seam, if a slow run of clicks reached the end of the sound (the seam blends two positions)
    wraps = np.nonzero(steps < 0)[0]
    end = wraps[0] - XFADE if wraps.size else len(steps) + 1
    ramp_err = np.abs(ch1[start_i:][ok][:end] - pos[ok][:end] * RAMP_SCALE).max() / RAMP_SCALE
    assert ramp_err < DITHER_FRAMES  # in frames: the crossfade gains sum to 1


def test_loop_region_chosen_on_the_waveform_repeats(page, server):
    start(page, server, "pw3")
    box = page.locator("#wave").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=5)
    page.mouse.up()
    loop = page.evaluate("window.__mushraTest.state.loop")
    assert loop["enabled"] and loop["end"] - loop["start"] >= SR * 0.5
    page.evaluate("window.__mushraTest.tap(true)")
    page.click("#btn-ref")
    page.wait_for_timeout(int(1000 * 2.4 * (loop["end"] - loop["start"]) / SR))
    page.evaluate("window.__mushraTest.tap(false)")
    _, ch1, sched = captured(page)
    start_i = [s for s in sched if s["cmd"] == "play"][0]["index"] + XFADE
    got = ch1[start_i:]
    # the engine as a model: one step per frame, the last XFADE frames of the region crossfaded (raised cosine)
    # into its first XFADE frames, then on from start + XFADE: seams recur every (region - XFADE) frames
    lo, hi = loop["start"], loop["end"]
    p = int(round(got[0] / RAMP_SCALE))
    assert lo <= p < hi - XFADE
    want = np.empty(len(got))
    wraps = 0
    for i in range(len(got)):
        seam = p - (hi - XFADE)
        if seam >= 0:
            a = 0.5 - 0.5 * np.cos(np.pi * seam / XFADE)
            want[i] = ((1 - a) * p + a * (lo + seam)) * RAMP_SCALE
        else:
            want[i] = p * RAMP_SCALE
        p += 1
        if p >= hi:
            p, wraps = lo + XFADE, wraps + 1
    ok = ~np.isnan(got)
    assert ok.mean() > 0.98, "too many render quanta missing"
    assert wraps >= 2
    assert np.abs(got[ok] - want[ok]).max() / RAMP_SCALE < DITHER_FRAMES  # in frames: exact up to the dither
    # the loop region is saved with the trial
    page.wait_for_function("document.querySelector('#save-status').textContent.includes('Saved')")


def test_reload_resumes_the_trial_with_its_ratings(page, server):
    start(page, server, "pw4")
    page.keyboard.press("1")
    page.keyboard.press("Home")
    for _ in range(7):
        page.keyboard.press("ArrowUp")
    page.keyboard.press("2")
    page.keyboard.press("PageUp")
    page.wait_for_function("document.querySelector('#save-status').textContent.includes('Saved')")
    page.wait_for_timeout(400)
    page.reload()
    expect = sync_api.expect
    expect(page.locator("#welcome-status")).to_contain_text("at trial 1 of 2")
    page.click("#start")
    expect(page.locator("#slider-0")).to_have_value("7")
    expect(page.locator("#slider-1")).to_have_value("60")  # PageUp from an unset slider at 50
    expect(page.locator("#slider-2")).to_have_class("unset")
    expect(page.locator("#btn-0")).to_have_class(re.compile(r"\bplayed\b"))


def test_phone_layout_is_usable_by_touch(chromium, server):
    phone = new_browser(chromium, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                        device_scale_factor=3)
    page = phone.new_page()
    try:
        page.goto(f"{server['url']}/e/bt?PROLIFIC_PID=phone1")
        page.tap("#start")
        page.wait_for_selector("#trial:not([hidden])")
        width = page.evaluate("document.documentElement.clientWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing runs off the side
        for i in range(5):
            box = page.locator(f"#slider-{i}").bounding_box()
            assert box["width"] > 3 * box["height"] and box["x"] + box["width"] <= width  # horizontal sliders
            btn = page.locator(f"#btn-{i}").bounding_box()
            assert btn["height"] >= 44  # touch-sized targets
        # the scale labels stay, each fitting its band between the band lines, which run across every slider
        scale = line_positions(page, "#scale", "x")
        assert all(scale[v] < scale[v + 20] for v in range(0, 100, 20))  # 100 at the right
        for v in range(0, 100, 20):
            label = page.locator(f"#scale .label[data-v='{v}']")
            box = label.bounding_box()
            assert abs(box["x"] - scale[v]) <= 1 and abs(box["x"] + box["width"] - scale[v + 20]) <= 1
            assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), label.text_content()  # not cut off
        for i in range(5):
            assert line_positions(page, f"#track-{i}", "x") == scale
        ref, first = page.locator("#btn-ref").bounding_box(), page.locator("#btn-0").bounding_box()
        assert ref["x"] == first["x"] and ref["width"] == first["width"]  # in line with the numbered buttons
        page.tap("#btn-0")
        slider = page.locator("#slider-0").bounding_box()
        page.touchscreen.tap(slider["x"] + slider["width"] * 0.9, slider["y"] + slider["height"] / 2)
        page.wait_for_function("!document.querySelector('#slider-0').classList.contains('unset')")
        assert int(page.locator("#slider-0").input_value()) >= 80
        page.touchscreen.tap(scale[60], slider["y"] + slider["height"] / 2)  # a tap on a line rates its value
        sync_api.expect(page.locator("#slider-0")).to_have_value("60")
    finally:
        phone.close()


def test_admin_page_logs_in_and_shows_progress(page, server):
    from mushra_web import auth
    from mushra_web.db import make_engine, session_factory

    engine = make_engine(server["db"])
    with session_factory(engine)() as s:
        auth.add_user(s, "root", "browser test password")
        s.commit()
    engine.dispose()
    start(page, server, "pw-admin")  # at least one active participant
    page.goto(f"{server['url']}/admin")
    page.fill("#user", "root")
    page.fill("#password", "wrong password!")
    page.click("#login button")
    sync_api.expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
    page.fill("#password", "browser test password")
    page.click("#login button")
    sync_api.expect(page.locator("#tests")).to_contain_text("(bt)")
    sync_api.expect(page.locator("#tests")).to_contain_text("config sha256")
    with page.expect_download() as download:
        page.click("text=CSV")
    assert download.value.suggested_filename.startswith("bt-") and download.value.suggested_filename.endswith(".csv")
    # a participant's session can be handed to another browser (a crowd id alone cannot take it)
    page.click("#tests summary")
    page.locator("#tests li", has_text="active").first.locator("button").click()
    sync_api.expect(page.locator("#tests")).to_contain_text("the next browser with this id may continue")
    page.click("text=Close test")
    sync_api.expect(page.locator("#tests")).to_contain_text("status closed")
    page.click("text=Open test")
    sync_api.expect(page.locator("#tests")).to_contain_text("status open")


def test_ratings_made_during_an_outage_reach_the_server_whatever_was_clicked(page, server):
    start(page, server, "pw5")
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))  # the server goes down
    rate_all_by_keyboard(page, 5)
    sync_api.expect(page.locator("#save-status")).to_contain_text("retrying")
    status = page.locator("#save-status").text_content()
    assert "the server cannot be reached" in status and "Failed to fetch" not in status  # words a listener reads
    page.click("#next")
    sync_api.expect(page.locator("#need")).to_contain_text("Your ratings are kept")
    sync_api.expect(page.locator("#save-status")).to_contain_text("retrying")
    assert page.locator("#trial").is_visible()
    page.unroute("**/api/**")  # the server is back
    sync_api.expect(page.locator("#save-status")).to_have_text("Saved ✓", timeout=15000)
    page.reload()
    page.click("#start")
    for i in range(5):
        sync_api.expect(page.locator(f"#slider-{i}")).to_have_value(str(99 - i))
    page.click("#next")
    sync_api.expect(page.locator("#progress-text")).to_contain_text("Trial 2 of 2")


def participant_of(db: str, slug: str):
    """The single participant of test ``slug``, and its export rows."""
    from mushra_web.db import Experiment, Participant, make_engine, session_factory
    from mushra_web.export import export_rows

    engine = make_engine(db)
    with session_factory(engine)() as s:
        exp = s.scalar(select(Experiment).where(Experiment.slug == slug))
        p = s.scalar(select(Participant).where(Participant.experiment_id == exp.id))
        rows = export_rows(s, exp)
    engine.dispose()
    return p, rows


def test_newcomers_read_title_and_instructions_first_and_the_real_rate_is_reported(page, server):
    page.goto(f"{server['url']}/e/bt?PROLIFIC_PID=newcomer")
    sync_api.expect(page.locator("#title")).to_have_text("Test title")
    text = page.locator("#instructions").inner_text()
    assert "hidden" in text and "rate it 100" in text and "Excellent (80-100)" in text and "Bad (0-20)" in text
    assert page.locator("#welcome").is_visible() and not page.locator("#trial").is_visible()
    page.goto(f"{server['url']}/e/bt22")
    sync_api.expect(page.locator("#title")).to_have_text("Second test")
    assert page.title() == "Second test"
    assert page.locator("#instructions").inner_text() == INSTRUCTIONS22  # its line break kept
    page.click("#start")
    page.wait_for_selector("#trial:not([hidden])")
    assert page.evaluate("window.__mushraTest.ctx.sampleRate") == SR22
    p, rows = participant_of(server["db"], "bt22")
    assert p.audio_env["sampleRate"] == SR22 and {r["audio_sample_rate"] for r in rows} == {float(SR22)}


def test_an_unknown_test_link_shows_a_page(page, server):
    res = page.goto(f"{server['url']}/e/no-such-test?PROLIFIC_PID=x")
    assert res.status == 404 and res.headers["content-type"].startswith("text/html")
    sync_api.expect(page.locator("h1")).to_have_text("No such listening test")


def line_positions(page, box: str, axis: str) -> dict[int, float]:
    """Where each band line of ``box`` is drawn: the centre of its pixel, along ``axis`` ('y' or 'x')."""
    out = {}
    for v in range(0, 101, 20):
        b = page.locator(f"{box} .line[data-v='{v}']").bounding_box()
        out[v] = b[axis] + (b["height"] if axis == "y" else b["width"]) / 2
    return out


def test_band_lines_labels_and_clicks_agree_on_every_slider(page, server):
    page.set_viewport_size({"width": 1280, "height": 1300})
    start(page, server, "pw6")
    scale = line_positions(page, "#scale", "y")
    assert all(scale[v] > scale[v + 20] for v in range(0, 100, 20))  # 100 at the top
    for v in range(0, 100, 20):  # each label fills its band, between its two lines
        label = page.locator(f"#scale .label[data-v='{v}']").bounding_box()
        assert abs(label["y"] - scale[v + 20]) <= 1 and abs(label["y"] + label["height"] - scale[v]) <= 1
    for i in range(5):
        lines = line_positions(page, f"#track-{i}", "y")
        assert lines == scale  # the same lines across every slider, to the pixel
        track = page.locator(f"#track-{i}").bounding_box()
        x = track["x"] + track["width"] / 2
        for v, y in lines.items():  # a click on a line rates exactly the line's value
            page.mouse.click(x, y)
            assert page.locator(f"#slider-{i}").input_value() == str(v), (i, v)
        for v, name in [(80, "Excellent"), (60, "Good"), (40, "Fair"), (20, "Poor"), (0, "Bad")]:
            for y in (lines[v] - 3, (lines[v] + lines[v + 20]) / 2, lines[v + 20] + 3):  # anywhere inside the band
                page.mouse.click(x, y)
                score = int(page.locator(f"#slider-{i}").input_value())
                assert v <= score <= v + 20, (i, v, score)
                assert page.locator(f"#value-{i} .band").text_content() == name


def screenshot(page, selector: str) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")).astype(int)


def accent_rows(page, selector: str, axis: int = 1) -> np.ndarray:
    """Rows (``axis`` 0: columns), in CSS pixels from the element's top (left), of a screenshot of ``selector``
    holding blue pixels: the page's accent colour for a thumb, as blue as a browser's own slider fill."""
    shot = screenshot(page, selector)
    blue = shot[..., 2] - shot[..., 0] > 80
    return np.nonzero(blue.any(axis=axis))[0]


def test_unrated_sliders_look_unrated_and_a_rating_is_drawn_at_its_value(page, server):
    page.set_viewport_size({"width": 1280, "height": 1300})
    start(page, server, "pw7")
    for i in range(5):  # no thumb and no fill anywhere on an unrated slider
        assert accent_rows(page, f"#track-{i}").size == 0, i
        assert page.locator(f"#value-{i}").inner_text().split() == ["–", "not", "rated"]
    page.keyboard.press("1")
    page.keyboard.press("Home")
    for _ in range(36):
        page.keyboard.press("ArrowUp")
    assert page.locator("#slider-0").input_value() == "36"
    rows = accent_rows(page, "#track-0")
    top = page.locator("#track-0").bounding_box()["y"]
    lines = {v: y - top for v, y in line_positions(page, "#track-0", "y").items()}
    centre = (rows.min() + rows.max() + 1) / 2
    want = lines[40] + (lines[20] - lines[40]) * 4 / 20  # 36 is 4/20 of the way down from the 40 line to the 20 line
    assert lines[40] < centre < lines[20]  # drawn inside the Poor band
    assert abs(centre - want) <= 1, (centre, want)
    # and across, the thumb sits centred on its track line (#666, 4 px wide)
    shot = screenshot(page, "#track-0")
    line = np.nonzero((np.abs(shot - 0x66).max(axis=2) < 8).sum(axis=0) > 100)[0]
    thumb = accent_rows(page, "#track-0", axis=0)
    assert line.size == 4 and abs((thumb.min() + thumb.max() + 1) / 2 - (line.min() + line.max() + 1) / 2) <= 0.5
    for i in range(1, 5):
        assert accent_rows(page, f"#track-{i}").size == 0


def test_columns_stay_put_while_rating_and_the_reference_button_is_in_line(page, server):
    page.set_viewport_size({"width": 1280, "height": 1300})
    start(page, server, "pw8")

    def layout() -> list:
        return [page.locator(sel).bounding_box() for sel in
                ["#btn-ref", "#scale", *[f"#{k}-{i}" for i in range(5) for k in ("track", "btn", "value")]]]

    before = layout()
    # the rating area spans the page's width, not a strip at its left
    main, last = page.locator("main").bounding_box(), page.locator("#btn-4").bounding_box()
    assert last["x"] + last["width"] - main["x"] >= 0.9 * main["width"]
    ref, first = page.locator("#btn-ref").bounding_box(), page.locator("#btn-0").bounding_box()
    assert ref["y"] == first["y"] and ref["height"] == first["height"]
    for i, keys in enumerate([["End"], ["Home"], ["Home", "ArrowUp"], ["End", "ArrowDown"], ["PageUp"]]):
        page.keyboard.press(str(i + 1))
        for key in keys:
            page.keyboard.press(key)
    assert [page.locator(f"#value-{i} .num").text_content() for i in range(5)] == ["100", "0", "1", "99", "60"]
    assert layout() == before


def test_next_waits_for_a_100_when_the_protocol_asks(page, server):
    page.goto(f"{server['url']}/e/bt22")
    page.click("#start")
    page.wait_for_selector("#trial[data-loaded]")
    n = page.locator("#rating input[type=range]").count()
    assert n == 4  # one condition, two anchors, the hidden reference
    for i in range(n):
        page.keyboard.press(str(i + 1))
        page.keyboard.press("End")
        page.keyboard.press("ArrowDown")  # 99
    sync_api.expect(page.locator("#need")).to_contain_text("rate at least one sound 100")
    assert page.locator("#next").is_disabled()
    page.keyboard.press("End")  # the last one to 100
    sync_api.expect(page.locator("#next")).to_be_enabled()
    assert page.locator("#need").text_content() == ""
    page.click("#next")
    sync_api.expect(page.locator("#done")).to_be_visible()
    # no crowd platform: the end page says what the code is for and that nothing more is needed
    text = page.locator("#done-text").text_content()
    assert "completion code" in text and "give them this one" in text and "close this page" in text
    assert len(page.locator("#code").text_content()) == 10


def stored_scores(db: str, pid: str, position: int = 0) -> list:
    """What the server has stored for participant ``pid``'s trial at ``position``, by button."""
    from mushra_web.db import Participant, Rating, Trial, make_engine, session_factory

    engine = make_engine(db)
    with session_factory(engine)() as s:
        trial = s.scalar(select(Trial).join(Participant).where(Participant.external_id == pid,
                                                               Trial.position == position))
        scores = s.scalars(select(Rating.score).where(Rating.trial_id == trial.id).order_by(Rating.button_index)).all()
    engine.dispose()
    return [None if v is None else int(v) for v in scores]


def shown_scores(page) -> list:
    n = page.locator("#rating input[type=range]").count()
    return [None if "unset" in (page.locator(f"#slider-{i}").get_attribute("class") or "")
            else int(page.locator(f"#slider-{i}").input_value()) for i in range(n)]


def test_two_tabs_never_say_saved_for_ratings_that_were_not_stored(chromium, db_server):
    context = new_browser(chromium)
    tab_a, tab_b = context.new_page(), context.new_page()
    try:
        for tab in (tab_a, tab_b):  # the same participant (one cookie) in two tabs
            tab.goto(f"{db_server['url']}/e/tt?PROLIFIC_PID=tabs&SESSION_ID=s1")
            tab.click("#start")
            tab.wait_for_selector("#trial[data-loaded]")
        tab_a.locator("#slider-0").fill("40")
        sync_api.expect(tab_a.locator("#save-status")).to_have_text("Saved ✓")
        assert stored_scores(db_server["db"], "tabs") == shown_scores(tab_a) == [40, None, None, None]
        # tab B still shows the ratings as they were before A's save: its rating is not stored, and it says so
        tab_b.locator("#slider-1").fill("10")
        sync_api.expect(tab_b.locator("#save-status")).to_contain_text("Changed in another tab")
        sync_api.expect(tab_b.locator("#slider-0")).to_have_value("40")
        assert shown_scores(tab_b) == stored_scores(db_server["db"], "tabs") == [40, None, None, None]
        # from what is stored, B's next rating is saved; then A is the one behind
        tab_b.locator("#slider-1").fill("10")
        sync_api.expect(tab_b.locator("#save-status")).to_have_text("Saved ✓")
        assert stored_scores(db_server["db"], "tabs") == shown_scores(tab_b) == [40, 10, None, None]
        tab_a.locator("#slider-2").fill("20")
        sync_api.expect(tab_a.locator("#save-status")).to_contain_text("Changed in another tab")
        sync_api.expect(tab_a.locator("#slider-1")).to_have_value("10")
        assert shown_scores(tab_a) == stored_scores(db_server["db"], "tabs") == [40, 10, None, None]
    finally:
        context.close()


def test_a_join_whose_answer_is_lost_is_retried_into_the_same_participant(chromium, db_server):
    from mushra_web.db import Participant, make_engine, session_factory

    context = new_browser(chromium)
    page = context.new_page()
    lost = []

    def lose_the_first_answer(route):
        if lost:
            route.continue_()
            return
        lost.append(route.fetch().status)  # the join reaches the server and is stored ...
        context.clear_cookies()  # ... but neither its answer nor its cookie reach the page
        route.abort("connectionreset")

    try:
        page.route("**/api/join", lose_the_first_answer)
        page.goto(f"{db_server['url']}/e/tt?PROLIFIC_PID=lost1")  # a worker id alone: someone else may know it
        page.click("#start")
        page.wait_for_selector("#trial[data-loaded]")  # the page's own retry, after a pause
        assert lost == [200]
        engine = make_engine(db_server["db"])
        with session_factory(engine)() as s:
            assert len(s.scalars(select(Participant).where(Participant.external_id == "lost1")).all()) == 1
        engine.dispose()
        page.locator("#slider-0").fill("70")
        sync_api.expect(page.locator("#save-status")).to_have_text("Saved ✓")
        assert stored_scores(db_server["db"], "lost1")[0] == 70
    finally:
        context.close()


def set_status(db: str, slug: str, status: str) -> None:
    from mushra_web.db import Experiment, make_engine, session_factory

    engine = make_engine(db)
    with session_factory(engine)() as s:
        s.scalar(select(Experiment).where(Experiment.slug == slug)).status = status
        s.commit()
    engine.dispose()


def test_a_closed_test_says_so_first_with_nothing_to_click(chromium, server):
    returning, newcomer = new_browser(chromium), new_browser(chromium)
    try:
        page = returning.new_page()
        page.goto(f"{server['url']}/e/bc")
        page.click("#start")
        page.wait_for_selector("#trial[data-loaded]")
        page.locator("#slider-0").fill("30")
        sync_api.expect(page.locator("#save-status")).to_have_text("Saved ✓")
        set_status(server["db"], "bc", "closed")
        for who, says in ((page, "This test has closed"), (newcomer.new_page(), "This test is closed")):
            who.goto(f"{server['url']}/e/bc")
            sync_api.expect(who.locator("#welcome-status")).to_contain_text(says)
            sync_api.expect(who.locator("#start")).to_be_hidden()
            assert not who.locator("#trial").is_visible() and "Saved" not in who.locator("body").inner_text()
    finally:
        set_status(server["db"], "bc", "open")
        returning.close()
        newcomer.close()


def test_a_start_click_before_the_server_has_answered_counts(page, server):
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 600, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    page.goto(f"{server['url']}/e/bt22", wait_until="domcontentloaded")
    page.click("#start")  # /api/info and /api/state are still on their way
    page.wait_for_selector("#trial[data-loaded]", timeout=30_000)
    assert page.locator("#save-status").text_content() == "Nothing rated yet"  # nothing is stored yet


def test_the_focus_ring_and_the_now_playing_mark_look_different(page, server):
    start(page, server, "pw-focus")
    page.keyboard.press("2")  # plays sound 2 and moves the keyboard focus to its slider
    page.keyboard.press("Shift+Tab")  # the focus goes back to sound 1's button, which is not playing
    focused = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                            "return [document.activeElement.id, s.outlineStyle, s.outlineColor]; })()")
    playing = page.evaluate("(() => { const s = getComputedStyle(document.querySelector('#btn-1')); "
                            "return [s.outlineStyle, s.backgroundColor, s.boxShadow]; })()")
    assert focused == ["btn-0", "solid", "rgb(17, 17, 17)"]
    assert playing[0] == "none" and playing[1] == "rgb(255, 210, 122)" and "rgb(163, 82, 0)" in playing[2]
    assert focused[2] not in (playing[1], playing[2])


def test_a_long_unbroken_title_stays_on_the_page(page, server):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{server['url']}/e/bl")
    sync_api.expect(page.locator("#title")).to_have_text(LONG_TITLE)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.locator("#title").bounding_box()["width"] <= 1280


def test_next_waits_for_the_minimum_listening_time(page, server):
    page.goto(f"{server['url']}/e/bw")
    page.click("#start")
    page.wait_for_selector("#trial[data-loaded]")
    n = page.locator("#rating input[type=range]").count()
    for i in range(n):  # everything played and rated at once
        page.keyboard.press(str(i + 1))
        page.keyboard.press("End")
    sync_api.expect(page.locator("#need")).to_contain_text("keep listening for")
    assert page.locator("#next").is_disabled()
    sync_api.expect(page.locator("#next")).to_be_enabled(timeout=15_000)  # 5 s after the sounds were sent
    page.click("#next")
    sync_api.expect(page.locator("#done")).to_be_visible()
