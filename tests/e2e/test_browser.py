"""FastChat's web UI in a real browser (Debian's chromium, headless): direct chat and arena stream text,
model output holding HTML never executes while markdown still renders, and a model's conv_template
applies in the UI path too. Screenshots are saved under test-output/."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from telemetry.collector import read_segments
from tests.local_stack import OUTPUT, LocalStack

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # fail, never skip: CI installs Debian's chromium
        pytest.fail("Debian's chromium is not installed (apt-get install chromium); browser tests cannot run")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, local_stack: LocalStack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    pg.goto(local_stack.web_url, wait_until="domcontentloaded")
    pg.get_by_role("tab", name="Direct Chat").wait_for(timeout=60_000)
    yield pg
    context.close()


def open_tab(page: Page, name: str) -> None:
    """Select a tab and make sure it stays selected (FastChat's page-load handler selects a tab itself)."""
    tab = page.get_by_role("tab", name=name)
    for _ in range(20):
        tab.click()
        page.wait_for_timeout(500)
        if tab.get_attribute("aria-selected") == "true":
            page.wait_for_timeout(500)
            if tab.get_attribute("aria-selected") == "true":
                return
    pytest.fail(f"tab {name!r} could not be selected")


def chatbots(page: Page) -> Locator:
    return page.get_by_role("log", name="chatbot conversation").filter(visible=True)


def send(page: Page, text: str) -> None:
    box = page.get_by_placeholder("👉 Enter your prompt and press ENTER").filter(visible=True).first
    box.fill(text)
    box.press("Enter")


def shot(page: Page, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def choose_model(page: Page, name: str) -> None:
    """Pick a model in Direct Chat and make sure the choice took (the page's load handler may reset it)."""
    dropdown = page.get_by_role("listbox", name="Dropdown").filter(visible=True).first
    for _ in range(10):
        dropdown.click()
        page.get_by_role("option", name=name, exact=True).click()
        page.wait_for_timeout(500)
        if dropdown.input_value() == name:
            return
    pytest.fail(f"could not select {name}")


def test_direct_chat_streams(page: Page) -> None:
    """Direct chat: the reply appears token by token (the text grows while streaming)."""
    open_tab(page, "Direct Chat")
    send(page, "[[tokens:30]] [[rate:10]] hello")
    chatbot = chatbots(page).first
    expect(chatbot).to_contain_text("Demo model", timeout=30_000)
    lengths = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(lengths) < 3:
        lengths.add(len(chatbot.inner_text()))
        page.wait_for_timeout(250)
    assert len(lengths) >= 3, "the reply did not stream"
    shot(page, "direct-chat")


def test_html_in_model_output_never_executes(page: Page) -> None:
    """`<img src=x onerror=alert(1)>` and `<script>` from a model do nothing; **markdown** still renders."""
    open_tab(page, "Direct Chat")
    send(page, "[[html]]")
    chatbot = chatbots(page).first
    expect(chatbot).to_contain_text("done.", timeout=30_000)
    page.wait_for_timeout(1000)
    assert chatbot.locator("strong", has_text="bold markdown").count() >= 1
    assert chatbot.locator("img[onerror]").count() == 0
    assert chatbot.locator("script").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]
    shot(page, "xss-sanitized")


def web_segments(stack: LocalStack) -> list[dict[str, Any]]:
    return [s for s in read_segments(stack.traces_file) if s["name"] == "sagemaker-fastchat-web"]


def test_arena_battle_streams_two_answers(page: Page, local_stack: LocalStack) -> None:
    """Arena (battle): two anonymous models answer the same prompt, each answer its own trace."""
    before = len(web_segments(local_stack))
    open_tab(page, "Arena (battle)")
    send(page, "[[say:arena answer here]]")
    bots = chatbots(page)
    expect(bots.nth(0)).to_contain_text("arena answer here", timeout=30_000)
    expect(bots.nth(1)).to_contain_text("arena answer here", timeout=30_000)
    shot(page, "arena-battle")
    deadline = time.monotonic() + 15
    while len(web_segments(local_stack)) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    new = web_segments(local_stack)[before:]
    assert len({s["trace_id"] for s in new}) == 2, new
    assert all(s["annotations"]["model_name"].startswith("demo-") for s in new)
    # The UI's calls to the controller and the worker carried the trace: each answer's trace holds the
    # worker's segment, a child of the UI's.
    for web in new:
        in_trace = [s for s in read_segments(local_stack.traces_file) if s["trace_id"] == web["trace_id"]]
        assert any(
            s["name"] == "sagemaker-fastchat-worker" and s.get("parent_id") == web["id"] for s in in_trace
        )


def test_arena_battle_started_with_send_warns_nothing(page: Page, local_stack: LocalStack) -> None:
    """A battle started with the Send button (not Enter): both answers stream, and gradio no longer warns
    that add_text returned too many output values (FastChat wires Send with one output less; shim 5)."""
    open_tab(page, "Arena (battle)")
    box = page.get_by_placeholder("👉 Enter your prompt and press ENTER").filter(visible=True).first
    box.fill("[[say:sent with the button]]")
    page.get_by_role("button", name="Send").filter(visible=True).first.click()
    bots = chatbots(page)
    expect(bots.nth(0)).to_contain_text("sent with the button", timeout=30_000)
    expect(bots.nth(1)).to_contain_text("sent with the button", timeout=30_000)
    warned = [line for line in local_stack.lines if "too many output values" in line]
    assert warned == []


def test_conv_template_applies_in_the_ui(page: Page, local_stack: LocalStack) -> None:
    """The UI builds the prompt with the model's conv_template (demo-openai: raw) as the API path does."""
    open_tab(page, "Direct Chat")
    choose_model(page, "demo-openai")
    send(page, "[[say:ui template]] check")
    expect(chatbots(page).first).to_contain_text("ui template", timeout=30_000)
    # The chatbot shows the prompt itself at once, so the model's request may not have arrived yet.
    for _ in range(60):
        bodies = httpx.get(
            f"{local_stack.standin_url}/_standin/requests", params={"endpoint": "demo-openai"}
        ).json()
        if bodies:
            break
        page.wait_for_timeout(500)
    prompt = json.loads(bodies[-1]["body"])["messages"][0]["content"]
    assert prompt == "[[say:ui template]] check"


def test_a_battle_vote_lands_in_the_votes_table(page: Page, local_stack: LocalStack) -> None:
    """Arena (battle): answers do not name their models; a vote cast in the page is stored with both
    models' versions, endpoints, spec hashes and templates, hidden names (it counts), and no prompt text;
    the Leaderboard tab shows it."""
    from stores.votes import DynamoVotesStore

    open_tab(page, "Arena (battle)")
    send(page, "[[tokens:8]] vote for me")
    bots = chatbots(page)
    # The demo models begin their answers with their endpoint's name: hidden in a battle.
    expect(bots.nth(0)).to_contain_text("Demo model [name hidden]", timeout=30_000)
    expect(bots.nth(1)).to_contain_text("Demo model [name hidden]", timeout=30_000)
    for n in (0, 1):
        assert "demo-" not in bots.nth(n).inner_text()
    # FastChat's Share button needs a CDN script the page no longer loads: hidden, not left doing nothing.
    expect(page.get_by_role("button", name="📷  Share").filter(visible=True)).to_have_count(0)
    page.get_by_role("button", name="👈  A is better").filter(visible=True).first.click()
    expect(page.get_by_text("Model A:").filter(visible=True).first).to_be_visible(timeout=10_000)
    store = DynamoVotesStore(local_stack.dynamodb())
    deadline = time.monotonic() + 20
    votes = []
    while time.monotonic() < deadline and not votes:
        votes = [v for v in store.votes() if v.tab == "battle" and v.type == "leftvote"]
        time.sleep(0.3)
    assert votes, "the vote did not reach the votes table"
    vote = votes[-1]
    live = {m["name"]: m for m in httpx.get(f"{local_stack.worker_url}/model-set").json()["models"]}
    assert len(vote.models) == 2
    for ref in vote.models:
        assert ref.name in live
        assert (ref.endpoint, ref.spec_hash) == (live[ref.name]["endpoint_name"], live[ref.name]["hash"])
        assert ref.version is not None
        assert ref.version >= 1
    assert not vote.revealed
    assert not vote.error
    assert vote.counts()
    assert vote.voter
    assert vote.turns == 1
    assert "vote for me" not in json.dumps(vote.as_json())
    # The Leaderboard reads the counters on page load, cached 5 s (runtime/arena_ui.py): the page this test
    # opened may have cached the board before the vote, so reload until the vote shows.
    table = page.locator("#leaderboard_table")
    for _ in range(6):
        page.reload(wait_until="domcontentloaded")
        page.get_by_role("tab", name="Leaderboard").wait_for(timeout=60_000)
        open_tab(page, "Leaderboard")
        table.wait_for(timeout=20_000)
        page.wait_for_timeout(1_000)
        if vote.models[0].name in table.inner_text():
            break
        page.wait_for_timeout(5_000)
    expect(table).to_contain_text(vote.models[0].name, timeout=20_000)
    shot(page, "leaderboard")


def test_the_page_is_the_operators_own(browser: Browser, local_stack: LocalStack) -> None:
    """No LMSYS texts, nothing requested from another host than the page's own, the operator's intro."""
    context = browser.new_context()
    pg = context.new_page()
    hosts: set[str] = set()
    pg.on("request", lambda r: hosts.add(r.url.split("/")[2] if "://" in r.url else r.url))
    pg.goto(local_stack.web_url, wait_until="domcontentloaded")
    pg.get_by_role("tab", name="Direct Chat").wait_for(timeout=60_000)
    pg.wait_for_timeout(3000)  # the page's own requests after load (fonts, the load event's data)
    body = pg.locator("body").inner_text()
    context.close()
    assert hosts <= {local_stack.web_url.split("/")[2]}, hosts
    assert "LMSYS" not in body
    assert "lmsys" not in body
    assert "Model arena" in body
