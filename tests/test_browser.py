"""Real browser: Playwright drives Debian's chromium against `streamlit run app.py` on a free port.

Screenshots go to the test's temporary folder (printed with -s); look at them.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS, demo_env
from benchmarks.browser import streamlit_server as start_server
from detviz.data import read_voc

WAIT_MS = 90_000  # the first page of a fresh server imports torch and torchvision

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def streamlit_server(demo_root: Path, logs: Path) -> Iterator[str]:
    """A fresh `streamlit run app.py` on a free port, on the demo data; yields its URL."""
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium (`make test` installs it when run as root)"
        )
    with start_server(demo_env(demo_root, logs), logs / "streamlit.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(demo_root, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    """One Chromium for the module (Playwright's sync API allows one instance at a time)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(server: str, chromium) -> Iterator:
    tab = chromium.new_page(viewport={"width": 1400, "height": 1000})
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


def _settled(page, timeout: int = WAIT_MS) -> None:
    """Waits until Streamlit has finished running the script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelector('[data-testid=\"stMain\"] h1')",
        timeout=timeout,
    )
    time.sleep(0.3)


def _no_exception(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_deep_link_on_a_fresh_server_opens_the_image_with_its_boxes(
    page, server: str, demo_root: Path, shots: Path
) -> None:
    record = read_voc(demo_root, "train")[2]
    page.goto(f"{server}/browse?image={record.image_id}")
    page.get_by_text(f"{record.image_id} · {record.width}x{record.height} px").wait_for(timeout=WAIT_MS)
    _settled(page)
    _no_exception(page)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("Source").count() == 1
    expect(page.locator(".js-plotly-plot .shapelayer path")).to_have_count(record.num_objects, timeout=WAIT_MS)
    page.screenshot(path=str(shots / "01-deep-link.png"))


CLASS_AT_ONCE = 8  # browser contexts following one deep link together on a fresh server


def test_a_class_following_one_deep_link_on_a_fresh_server_all_land_inside_the_app(
    chromium, demo_root: Path, tmp_path: Path
) -> None:
    """Every first visit, however many at once, ends inside app.py's navigation.

    Kills: deciding "outside the app?" from Streamlit's process-wide pages-directory flag. The
    first session to reach st.navigation flips it while the others are already running their
    page file alone; those tabs kept the raw file list (app, anchors, browse, ...) as their
    navigation and no dataset picker, for good.
    """
    record = read_voc(demo_root, "val")[3]  # not the page's default image, so the link must carry it
    with streamlit_server(demo_root, tmp_path) as url:
        contexts = [chromium.new_context(viewport={"width": 1200, "height": 900}) for _ in range(CLASS_AT_ONCE)]
        tabs = [c.new_page() for c in contexts]
        for tab in tabs:  # all sessions open while the first run still imports torch
            tab.goto(f"{url}/predictions?image={record.image_id}", wait_until="commit")
        for i, tab in enumerate(tabs):
            _settled(tab, timeout=3 * WAIT_MS)  # eight first runs share the cores and one live-set build
            _no_exception(tab)
            nav = tab.locator('[data-testid="stSidebarNav"]')
            expect(nav.get_by_text("Predictions & NMS")).to_have_count(1, timeout=WAIT_MS)
            assert nav.get_by_text("app", exact=True).count() == 0, f"tab {i} got the raw pages-directory list"
            expect(tab.locator('[data-testid="stSidebar"]').get_by_text("Source")).to_have_count(1, timeout=WAIT_MS)
            picker = tab.get_by_role("combobox", name="Image", exact=True)
            expect(picker).to_have_value(record.image_id, timeout=WAIT_MS)
            expect(tab).to_have_url(re.compile(rf"/predictions\?image={record.image_id}$"))
        for context in contexts:
            context.close()


def test_overview_then_browse_then_open_an_image(page, server: str, demo_root: Path, shots: Path) -> None:
    page.goto(server)
    page.get_by_role("heading", name="Dataset overview").wait_for(timeout=WAIT_MS)
    _settled(page)
    _no_exception(page)
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Images").first
    assert metric.locator('[data-testid="stMetricValue"]').inner_text() == "24"
    expect(page.locator(".js-plotly-plot")).to_have_count(4, timeout=WAIT_MS)
    page.screenshot(path=str(shots / "02-overview.png"))

    page.locator('[data-testid="stSidebarNav"]').get_by_text("Browse").click()
    page.get_by_role("heading", name="Browse").wait_for(timeout=WAIT_MS)
    _settled(page)
    open_buttons = page.get_by_role("button", name=re.compile(r"^\d{6} · \d+ obj\.$"))
    expect(open_buttons).to_have_count(24, timeout=WAIT_MS)  # waits while the grid streams in
    expect(page.locator('[data-testid="stImage"] img')).to_have_count(24, timeout=WAIT_MS)
    page.screenshot(path=str(shots / "03-browse-grid.png"))
    _no_exception(page)

    record = read_voc(demo_root, "train")[0]
    open_buttons.first.click()
    page.get_by_text(f"{record.image_id} · {record.width}x{record.height} px").wait_for(timeout=WAIT_MS)
    _settled(page)
    expect(page.locator(".js-plotly-plot .shapelayer path")).to_have_count(record.num_objects, timeout=WAIT_MS)
    assert "image=000001" in page.url
    page.get_by_text("Largest object (lesson stage 1").click()
    page.get_by_text("Largest object:").wait_for(timeout=WAIT_MS)
    _settled(page)
    _no_exception(page)
    page.screenshot(path=str(shots / "04-browse-detail.png"))


def _open_page(page, title: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=WAIT_MS)
    _settled(page)
    _no_exception(page)


def _metric(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def test_teaching_pages_and_clicking_an_anchor(page, server: str, shots: Path) -> None:
    page.goto(server)
    page.get_by_role("heading", name="Dataset overview").wait_for(timeout=WAIT_MS)
    _settled(page)

    _open_page(page, "Lesson walkthrough", "Lesson walkthrough")
    for _ in range(2):
        page.get_by_role("button", name="Next").click()
        _settled(page)
    expect(page.get_by_text("Numbers the head predicts")).to_be_visible(timeout=WAIT_MS)
    assert "stage=3" in page.url
    _no_exception(page)
    page.screenshot(path=str(shots / "05-lesson-grid.png"))

    _open_page(page, "Anchors", "Anchors")
    assert _metric(page, "Anchors") == "189"
    expect(page.get_by_text("How well the anchors cover the dataset")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=WAIT_MS)
    page.screenshot(path=str(shots / "06-anchors.png"), full_page=True)

    _open_page(page, "Matching", "Matching")  # shows the image chosen on the Lesson page
    image_select = page.locator('[data-testid="stSelectbox"]').filter(has_text="Image")
    image_select.click()
    page.keyboard.type("lesson example")
    page.keyboard.press("Enter")
    expect(page.get_by_text("The same as the lesson.")).to_be_visible(timeout=WAIT_MS)
    _settled(page)
    image_chart = page.locator(".js-plotly-plot").first
    points = image_chart.locator(".scatterlayer .points path")
    expect(points).to_have_count(7, timeout=WAIT_MS)  # the 7 anchors that overlap an object (step 1)
    box = points.nth(0).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    story = page.get_by_text(re.compile(r"^Anchor \d+: level 0 \(4x4\)"))
    story.wait_for(timeout=WAIT_MS)
    _settled(page)
    anchor = int(re.search(r"Anchor (\d+):", story.inner_text()).group(1))
    assert f"anchor={anchor}" in page.url
    assert anchor in (8, 9, 10, 11, 12, 13, 14)  # the lesson's anchors that overlap something
    expect(page.get_by_text(re.compile(r"^(Positive|Negative)"))).to_have_count(1, timeout=WAIT_MS)
    _no_exception(page)
    page.screenshot(path=str(shots / "07-matching-clicked.png"), full_page=True)

    # a click on the Jaccard matrix picks that cell's anchor
    heatmap = page.locator(".js-plotly-plot").nth(1)
    heatmap.scroll_into_view_if_needed()
    cells = heatmap.locator(".scatterlayer .points path")
    expect(cells).to_have_count(3 * 16, timeout=WAIT_MS)
    box = cells.nth(13).bounding_box()  # row 0 (the chair), anchor 13
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.get_by_text(re.compile(r"^Anchor 13: level 0")).wait_for(timeout=WAIT_MS)
    _settled(page)
    expect(page.get_by_text(re.compile(r"^Positive by force: it is the best anchor of object 2"))).to_be_visible()
    _no_exception(page)

    _open_page(page, "Losses", "Losses")
    expect(page.locator(".js-plotly-plot")).to_have_count(5, timeout=WAIT_MS)
    _no_exception(page)
    page.screenshot(path=str(shots / "08-losses.png"), full_page=True)


def test_train_a_run_then_open_it_and_move_nms(page, server: str, shots: Path) -> None:
    """Issue 8's path: launch a tiny CPU run from the Train page, watch it finish, open its best
    checkpoint in Predictions, move the NMS slider and see the live mAP change."""
    tiny = "train_epochs=2&train_size=64&train_batch=4&train_lr=0.002&train_augment=false&train_name=browser-run"
    page.goto(f"{server}/train?{tiny}")
    page.get_by_role("heading", name="Train").wait_for(timeout=WAIT_MS)
    _settled(page)
    _no_exception(page)
    page.screenshot(path=str(shots / "10-train-form.png"), full_page=True)
    page.get_by_role("button", name="Launch").click()
    link = page.get_by_role("link", name=re.compile("best checkpoint in Predictions"))
    link.wait_for(timeout=300_000)  # the run's own process: start, 2 epochs, validation
    expect(page.get_by_text("finished").first).to_be_visible(timeout=WAIT_MS)
    _no_exception(page)
    page.screenshot(path=str(shots / "11-train-finished.png"), full_page=True)

    # scrub the epoch snapshots: the figure's title follows the slider
    title = page.get_by_text(re.compile(r"^Epoch 2"))
    expect(title.first).to_be_visible(timeout=WAIT_MS)  # the newest epoch by default
    epoch = page.locator('[data-testid="stSlider"]').filter(has_text="Epoch").get_by_role("slider")
    epoch.focus()
    page.keyboard.press("Home")
    expect(page.get_by_text(re.compile(r"^Epoch 1")).first).to_be_visible(timeout=WAIT_MS)
    _settled(page)
    _no_exception(page)
    page.screenshot(path=str(shots / "11b-train-scrubbed.png"), full_page=True)

    link.click()
    page.get_by_role("heading", name="Predictions & NMS").wait_for(timeout=WAIT_MS)
    assert "ckpt=run%3Abrowser-run" in page.url or "ckpt=run:browser-run" in page.url
    # two epochs on 24 images find nothing on the 8 val images (mAP 0 at any NMS): score the
    # training images, which the page says loudly
    page.goto(page.url + "&split=train")
    page.get_by_role("heading", name="Predictions & NMS").wait_for(timeout=WAIT_MS)
    expect(page.get_by_text("training images the model saw").first).to_be_visible(timeout=WAIT_MS)
    live = page.locator('[data-testid="stMetric"]').filter(has_text="Live mAP@")
    live.wait_for(timeout=WAIT_MS)
    _settled(page)
    before = live.locator('[data-testid="stMetricValue"]').inner_text()
    page.screenshot(path=str(shots / "12-predictions-before.png"), full_page=True)

    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="NMS IoU").get_by_role("slider")
    thumb.focus()
    page.keyboard.press("End")  # NMS IoU 1: nothing is suppressed
    expect(live.locator('[data-testid="stMetricValue"]')).not_to_have_text(before, timeout=WAIT_MS)
    _settled(page)
    assert "nms=1" in page.url
    _no_exception(page)
    page.screenshot(path=str(shots / "13-predictions-after.png"), full_page=True)

    # A/B: the run's model against the shipped focal one, side by side, both in the link
    compare = page.locator('[data-testid="stSelectbox"]').filter(has_text="Compare with")
    compare.click()
    page.keyboard.type("demo_focal.pt")
    page.keyboard.press("Enter")
    _settled(page)
    expect(page.get_by_text("demo_focal.pt").first).to_be_visible(timeout=WAIT_MS)
    assert "ckpt_b=demo_focal.pt" in page.url
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Live mAP@")).to_have_count(2, timeout=WAIT_MS)
    _no_exception(page)
    page.screenshot(path=str(shots / "14-predictions-ab.png"), full_page=True)


LESSON_SIGNS = (  # what each stage shows once its shipped model ran (stage 4 needs no model)
    "The model says",
    "Micro F1 on",
    "cells fired",
    "positive anchors",
    "lesson_multiscale_bce.pt: mAP@0.5 on",
    "of its class loss on this image",
    "NMS keeps",
    "The lesson (Pascal VOC",
)


def test_lesson_walk_through_every_stage_and_the_ladder(page, server: str, shots: Path) -> None:
    """The walkthrough on the shipped ladder in a real browser: Next through the seven stages and
    the ladder summary, each showing its trained model's numbers, none raising."""
    page.goto(f"{server}/lesson?image=000001")
    page.get_by_role("heading", name="Lesson walkthrough").wait_for(timeout=WAIT_MS)
    _settled(page)
    for k, sign in enumerate(LESSON_SIGNS):
        expect(page.get_by_text(sign).first).to_be_visible(timeout=WAIT_MS)
        _settled(page)
        _no_exception(page)
        assert f"stage={k + 1}" in page.url or k in (0, len(LESSON_SIGNS) - 1)  # the first is the default
        page.screenshot(path=str(shots / f"20-lesson-{k + 1}.png"), full_page=True)
        if k < len(LESSON_SIGNS) - 1:
            page.get_by_role("button", name="Next").click()
            _settled(page)
    assert "stage=The+ladder" in page.url or "stage=The%20ladder" in page.url


def test_faults_under_load_leave_every_other_session_its_own(chromium, server: str, demo_root: Path) -> None:
    """A tab closed in the middle of a rerun and a broken checkpoint uploaded by another student
    while a third moves a slider: the server keeps serving everyone and no session's choices
    leak into another's.

    Kills: module-level state standing for "the" session (an upload or image choice showing up
    in another tab), a failed upload or a dropped connection taking the script runner or the
    shared live set down (the others' reruns would never finish, or show an exception).
    """
    ids = read_voc(demo_root, "val").image_ids
    contexts = [chromium.new_context(viewport={"width": 1200, "height": 900}) for _ in range(3)]
    mover, uploader, leaver = (c.new_page() for c in contexts)
    for tab, image in ((mover, ids[1]), (uploader, ids[2]), (leaver, ids[3])):
        tab.goto(f"{server}/predictions?image={image}")
    for tab in (mover, uploader, leaver):
        _settled(tab, timeout=3 * WAIT_MS)
        tab.get_by_text("Live mAP@").first.wait_for(timeout=3 * WAIT_MS)

    leaver.get_by_role("slider", name="Score threshold").focus()
    leaver.keyboard.press("ArrowRight")
    contexts[2].close()  # the student leaves while the rerun runs

    uploader.get_by_role("combobox", name="Checkpoint", exact=True).click()
    uploader.get_by_role("option", name="upload a checkpoint…").click()
    uploader.locator('[data-testid="stFileUploader"]').filter(has_text="Checkpoint file").locator(
        "input[type=file]"
    ).set_input_files(files=[{"name": "broken.pt", "mimeType": "application/octet-stream", "buffer": b"\x00" * 64}])
    expect(uploader.get_by_text("broken.pt: not a PyTorch checkpoint")).to_have_count(1, timeout=WAIT_MS)

    mover.get_by_role("slider", name="Score threshold").focus()
    mover.keyboard.press("ArrowRight")
    expect(mover).to_have_url(re.compile(r"score=0\.26"), timeout=WAIT_MS)
    _settled(mover)
    for tab, image in ((mover, ids[1]), (uploader, ids[2])):
        _no_exception(tab)
        expect(tab.get_by_role("combobox", name="Image", exact=True)).to_have_value(image)
    expect(mover.get_by_role("combobox", name="Checkpoint", exact=True)).to_have_value("demo_focal.pt")
    assert "score=" not in uploader.url  # the mover's threshold stayed the mover's
    late = contexts[0].browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    late.goto(f"{server}/predictions?image={ids[4]}")
    _settled(late, timeout=3 * WAIT_MS)
    _no_exception(late)
    expect(late.get_by_text("Live mAP@").first).to_be_visible(timeout=WAIT_MS)
    for context in (contexts[0], contexts[1], late.context):
        context.close()
