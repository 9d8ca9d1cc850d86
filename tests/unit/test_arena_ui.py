"""The arena's web UI parts and their FastChat shims (9-11), through FastChat's real UI modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from contract.errors import SpecError
from contract.spec import parse_model_item
from runtime import arena_ui, fastchat_compat
from stores.testing import InMemoryVotesStore
from tests.helpers import example_item

# gradio's Blocks leaves its own event loop unclosed; pytest reports that whenever it is collected, so
# it is collected here (see the fixture below), where the report is ignored.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_gradios_leftovers() -> Iterator[None]:
    import gc

    yield
    gc.collect()


LIVE = {
    "alpha": {
        "name": "alpha",
        "endpoint_name": "ep-a",
        "hash": "ha",
        "conv_template": "raw",
        "arena_weight": 1.0,
    },
    "bravo": {
        "name": "bravo",
        "endpoint_name": "ep-b",
        "hash": "hb",
        "conv_template": "raw",
        "arena_weight": 1.0,
    },
    "hidden": {
        "name": "hidden",
        "endpoint_name": "ep-h",
        "hash": "hh",
        "conv_template": "raw",
        "arena_weight": 0,
    },
}


@pytest.fixture(scope="module")
def ui() -> Iterator[ModuleType]:
    """FastChat's UI modules, imported as the web process does (torch-free, the web role's shims)."""
    return fastchat_compat.apply_for_web(lambda name: None)


def state(ui: ModuleType, model: str, answer: str = "an answer") -> Any:
    import sys

    s = sys.modules["fastchat.serve.gradio_web_server"].State(model)
    s.conv.append_message(s.conv.roles[0], "the prompt")
    s.conv.append_message(s.conv.roles[1], answer)
    return s


SETTINGS = arena_ui.VoteSettings(salt="pepper")


def test_build_vote_names_versions_and_hides_text(ui: ModuleType) -> None:
    """A battle vote names each model as the live set had it, hashes the session, keeps no text."""
    vote = arena_ui.build_vote(
        "battle", "leftvote", [state(ui, "alpha"), state(ui, "bravo")], ["", ""], "sess", LIVE, 7, SETTINGS
    )
    assert vote is not None
    assert [(m.name, m.version, m.endpoint, m.spec_hash, m.conv_template) for m in vote.models] == [
        ("alpha", 7, "ep-a", "ha", "raw"),
        ("bravo", 7, "ep-b", "hb", "raw"),
    ]
    assert (vote.turns, vote.revealed, vote.error) == (1, False, False)
    assert vote.voter
    assert vote.voter != "sess"
    assert "the prompt" not in json.dumps(vote.as_json())


def test_build_vote_revealed_error_kept_text_and_non_votes(ui: ModuleType) -> None:
    """Names shown before the vote: revealed; an error answer: error; text only when kept; share: no vote."""
    states = [state(ui, "alpha"), state(ui, "bravo", "oops\n\n(error_code: 50001)")]
    vote = arena_ui.build_vote(
        "battle",
        "tievote",
        states,
        ["### Model A: alpha", "### Model B: bravo"],
        "s",
        LIVE,
        1,
        arena_ui.VoteSettings("x", keep_text=True),
    )
    assert vote is not None
    assert vote.revealed
    assert vote.error
    assert "the prompt" in json.dumps(vote.as_json())
    assert arena_ui.build_vote("battle", "share", states, ["", ""], "s", LIVE, 1, SETTINGS) is None
    direct = arena_ui.build_vote("direct", "upvote", [state(ui, "alpha")], ["alpha"], "s", LIVE, 1, SETTINGS)
    assert direct is not None
    assert direct.tab == "direct"


def test_capture_votes_hands_each_vote_over_and_keeps_fastchats_reveal(ui: ModuleType) -> None:
    """Shim 6: the battle tab's handler calls back with the tab, type, states and selectors, then still
    yields FastChat's reveal of the names."""
    import sys

    seen: list[tuple[str, str, list[str]]] = []
    fastchat_compat._capture_votes(
        lambda tab, t, states, sel, req: seen.append((tab, t, [s.model_name for s in states]))
    )
    anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    named = sys.modules["fastchat.serve.gradio_block_arena_named"]
    direct = sys.modules["fastchat.serve.gradio_web_server"]
    request = type("Request", (), {"client": type("C", (), {"host": "1.2.3.4"})(), "headers": {}})()
    a, b = state(ui, "alpha"), state(ui, "bravo")
    reveal = list(anony.leftvote_last_response(a, b, "", "", request))
    named.tievote_last_response(a, b, "alpha", "bravo", request)
    direct.upvote_last_response(a, "alpha", request)
    assert seen == [
        ("battle", "leftvote", ["alpha", "bravo"]),
        ("side_by_side", "tievote", ["alpha", "bravo"]),
        ("direct", "upvote", ["alpha"]),
    ]
    assert reveal[0][0] == "### Model A: alpha"
    fastchat_compat._capture_votes(lambda *a: None)  # wrapping again replaces, never stacks
    assert anony.vote_last_response._fastchat_original.__module__ == anony.__name__


def test_vote_buttons_are_enabled_once_when_the_answers_end(ui: ModuleType) -> None:
    """Shim 11: FastChat flashed the vote buttons off and on after the answers, dropping a click that
    landed in an off phase; both arena tabs now only enable them (all six: votes, regenerate, clear)."""
    import sys

    fastchat_compat._steady_vote_buttons()
    for name in ("fastchat.serve.gradio_block_arena_named", "fastchat.serve.gradio_block_arena_anony"):
        updates = sys.modules[name].flash_buttons()
        steps = [updates] if isinstance(updates, list) else [list(step) for step in updates]
        assert steps
        for step in steps:
            assert len(step) == 6
            assert all(button.interactive for button in step)


def test_battles_follow_arena_weight_and_health(ui: ModuleType) -> None:
    """Shim 7: a model with arena_weight 0, or paused for failing, is never drawn; unknown names neither."""
    import sys

    anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    now = [0.0]
    health = arena_ui.ModelHealth(clock=lambda: now[0])
    fastchat_compat._replace_battle_sampling(arena_ui.battle_weight(lambda: LIVE, health))
    anony.models = ["alpha", "bravo", "hidden", "gone"]
    pairs = {anony.get_battle_pair() for _ in range(200)}
    assert pairs == {("alpha", "bravo"), ("bravo", "alpha")}
    for _ in range(arena_ui.FAILURES_TO_PAUSE):
        health.answered("bravo", ok=False)
    assert health.failing("bravo")
    # Fewer than two eligible: FastChat's behaviour, any two live models.
    assert len(set(anony.get_battle_pair())) == 2
    now[0] += arena_ui.PAUSE_SECONDS + 1
    assert not health.failing("bravo")
    health.answered("bravo", ok=True)
    assert anony.BATTLE_TARGETS == {}


def test_the_page_keeps_none_of_lmsys(ui: ModuleType) -> None:
    """Shim 8: FastChat's notices are emptied and hidden; the description blocks are handed back; the
    Share button, which needs the removed CDN script, is hidden."""
    import gradio as gr

    with gr.Blocks() as demo:
        share = gr.Button(value="📷  Share")  # as FastChat's arena tabs build it
        regenerate = gr.Button(value="🔄  Regenerate")
        gr.Markdown("LMSYS notice", elem_id="notice_markdown")
        gr.Markdown("", elem_id="notice_markdown")
        described = gr.Markdown("old list", elem_id="model_description_markdown")
    demo.head = "<script src='https://cdn.example/x.js'></script>"  # as FastChat's build_demo sets it
    blocks = fastchat_compat.finish_arena_page(demo, "My arena")
    assert blocks == [described]
    assert demo.head == ""
    assert demo.title == "My arena"
    notices = [
        b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.elem_id == "notice_markdown"
    ]
    assert [n.value for n in notices] == ["", ""]
    assert demo.stylesheets == []  # system fonts: no Google-hosted stylesheet
    assert not share.visible
    assert regenerate.visible


def test_third_party_tags_are_stripped_from_the_page_only() -> None:
    """Gradio's page loses its CDN script and font preconnects; other responses are untouched."""
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, PlainTextResponse
    from starlette.routing import Route

    page = (
        '<head><link rel="preconnect" href="https://fonts.googleapis.com" />\n<link\n rel="preconnect"\n'
        ' href="https://fonts.gstatic.com"\n crossorigin="anonymous"\n/>\n<script\n src="https://cdnjs.cloudflare.com/x.js"\n'
        " async\n></script><script>local()</script></head>"
    )
    app = Starlette(
        routes=[Route("/", lambda r: HTMLResponse(page)), Route("/other", lambda r: PlainTextResponse(page))],
        middleware=[Middleware(fastchat_compat.StripThirdPartyTags)],
    )

    async def fetch() -> tuple[str, str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://page") as client:
            return (await client.get("/")).text, (await client.get("/other")).text

    html, other = asyncio.run(fetch())
    assert "https://" not in html
    assert "<script>local()</script>" in html
    assert other == page


def test_page_texts_from_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Title, intro and terms come from the environment, or from files; defaults name nobody."""
    from sagemaker_fastchat.settings import WebSettings
    from sagemaker_fastchat.web import page_texts

    terms = tmp_path / "terms.md"
    terms.write_text("Our **terms**.")
    monkeypatch.setenv("ARENA_TITLE", "Acme arena")
    monkeypatch.setenv("ARENA_TERMS_FILE", str(terms))
    texts = page_texts(WebSettings())
    assert (texts.title, texts.terms, texts.intro) == ("Acme arena", "Our **terms**.", arena_ui.DEFAULT_INTRO)
    assert "LMSYS" not in arena_ui.DEFAULT_INTRO + arena_ui.DEFAULT_TERMS


def test_leaderboard_view_reads_counters_and_plots() -> None:
    """The tab's refresh: a summary, the ranking rows, two plotly figures and both tallies."""
    from arena.votes import ModelRef, Vote

    store = InMemoryVotesStore()
    a, b = ModelRef("alpha", 1, "ep-a", "ha"), ModelRef("bravo", 1, "ep-b", "hb")
    for n in range(6):
        store.put(Vote(f"v{n}", "leftvote" if n % 3 else "rightvote", "battle", (a, b), 1_764_460_800.0 + n))
    store.put(Vote("d1", "upvote", "direct", (a,), 1_764_460_800.0))
    page = arena_ui.ArenaPage(
        arena_ui.LeaderboardView(store, min_votes=5), arena_ui.PageTexts(), lambda: LIVE
    )
    summary, ranking, win_rate, battles, side, direct = page.refresh("name")
    assert "**6**" in summary
    assert [row[1] for row in ranking] == ["alpha", "bravo"]
    assert win_rate.data[0].z[0][1] == pytest.approx(4 / 6)
    assert battles.data[0].z[0][1] == 6
    assert side == []
    assert direct == [["alpha", 1, 0, 0]]
    assert "| hidden |" in page.descriptions()


def test_arena_weight_is_an_optional_registry_attribute() -> None:
    """arena_weight: default 1, 0..100 accepted, anything else refused with the field named."""
    item = example_item("tgi")
    assert parse_model_item(item).arena_weight == 1.0
    assert parse_model_item({**item, "arena_weight": 0}).arena_weight == 0.0
    with pytest.raises(SpecError, match="arena_weight"):
        parse_model_item({**item, "arena_weight": -1})
    with pytest.raises(SpecError, match="arena_weight"):
        parse_model_item({**item, "arena_weight": "high"})


def test_leaderboard_tab_time_window_and_unreachable_store() -> None:
    """'last 7 days' leaves older votes out; an unreachable store shows an empty board and says so."""
    import time

    from arena.votes import ModelRef, Vote

    store = InMemoryVotesStore()
    a, b = ModelRef("alpha"), ModelRef("bravo")
    now = time.time()
    store.put(Vote("old", "leftvote", "battle", (a, b), now - 20 * 86_400))
    store.put(Vote("new", "rightvote", "battle", (a, b), now))
    page = arena_ui.ArenaPage(arena_ui.LeaderboardView(store, ttl=0), arena_ui.PageTexts(), dict)
    assert "**2**" in page.refresh("name", "all time")[0]
    assert "**1**" in page.refresh("name", "last 7 days")[0]
    store.available = False
    summary, ranking, *_ = page.refresh("name", "all time")
    assert "cannot be reached" in summary
    assert ranking == []


def test_lines_fastchat_itself_writes_import_as_votes(
    ui: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastChat's own vote handlers write its conversation log (battle, side by side, direct chat); each
    line imports as the vote it records."""
    import sys

    from arena.votes import fastchat_vote

    monkeypatch.setattr(fastchat_compat, "_conv_log_dir", str(tmp_path))  # the web's FASTCHAT_CONV_LOG_DIR
    request = type("Request", (), {"client": type("C", (), {"host": "1.2.3.4"})(), "headers": {}})()
    a, b = state(ui, "alpha"), state(ui, "bravo")
    anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    list(anony.vote_last_response([a, b], "bothbad_vote", ["", ""], request))
    sys.modules["fastchat.serve.gradio_block_arena_named"].vote_last_response(
        [a, b], "rightvote", ["alpha", "bravo"], request
    )
    sys.modules["fastchat.serve.gradio_web_server"].vote_last_response(a, "downvote", "alpha", request)
    (log,) = tmp_path.glob("*-conv.json")
    votes = [fastchat_vote(line) for line in log.read_text().splitlines()]
    got = [(v.tab, v.type, [m.name for m in v.models]) for v in votes if not isinstance(v, str | None)]
    assert got == [
        ("battle", "bothbad_vote", ["alpha", "bravo"]),
        ("side_by_side", "rightvote", ["alpha", "bravo"]),
        ("direct", "downvote", ["alpha"]),
    ]


def test_battle_answers_hide_their_models_names(ui: ModuleType) -> None:
    """Shim 9: in the battle tab a model's own name and endpoint are hidden in its streamed answer (the
    demo models begin with theirs); other text, and the other tabs, are untouched."""
    import sys

    anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    direct = sys.modules["fastchat.serve.gradio_web_server"]

    def fake_bot_response(s: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for text in ("Demo model ep-a", "Demo model ep-a (not a real LLM): Alpha says hi"):
            s.conv.update_last_message(text)
            yield (s, s.to_gradio_chatbot(), "button")

    saved = anony.bot_response
    anony.bot_response = fake_bot_response
    try:
        fastchat_compat._hide_names_in_battles(lambda name: [name, LIVE[name]["endpoint_name"]])
        s = state(ui, "alpha")
        s.conv.update_last_message(None)
        items = list(anony.bot_response(s))
    finally:
        anony.bot_response = saved
    hidden = fastchat_compat.HIDDEN_NAME
    assert s.conv.messages[-1][1] == f"Demo model {hidden} (not a real LLM): {hidden} says hi"
    assert hidden in str(items[-1][1])
    assert items[-1][2] == "button"
    assert getattr(direct.bot_response, "_unmasked", None) is None


def test_the_arena_entry_point_applies_every_arena_shim(ui: ModuleType) -> None:
    """`apply_for_arena` (after `apply_for_web`, as the web process does) wires each hook: votes (6),
    battle weights (7), the About and Leaderboard tabs (8), hidden names (9), the answering variant (10),
    steady vote buttons (11), conversation ids (12); applied twice, nothing stacks."""
    import sys

    anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    multi = sys.modules["fastchat.serve.gradio_web_server_multi"]
    seen: list[str] = []

    def about() -> None:
        return None

    def leaderboard(*args: Any) -> None:
        return None

    hooks = fastchat_compat.ArenaHooks(
        on_vote=lambda tab, vote_type, *_: seen.append(f"{tab}:{vote_type}"),
        battle_weight=lambda name: 1.0 if name in ("alpha", "bravo") else 0.0,
        build_about=about,
        build_leaderboard_tab=leaderboard,
        battle_names=lambda name: [name],
    )
    web = sys.modules["fastchat.serve.gradio_web_server"]
    named = sys.modules["fastchat.serve.gradio_block_arena_named"]
    saved = anony.bot_response
    saved_web = web.model_worker_stream_iter, web.State.__init__
    try:
        fastchat_compat.apply_for_arena(hooks)
        fastchat_compat.apply_for_arena(hooks)
        assert anony.bot_response._unmasked is saved
        assert not hasattr(web.model_worker_stream_iter._unnoted, "_unnoted")  # shim 10, once
        assert not hasattr(web.State.__init__._unstamped, "_unstamped")  # shim 12, once
        assert web.model_worker_stream_iter._unnoted.__module__ == fastchat_compat.__name__
        assert anony.flash_buttons is named.flash_buttons  # shim 11 in both tabs
        assert anony.flash_buttons.__module__ == fastchat_compat.__name__
        anony.models = ["alpha", "bravo", "charlie"]
        assert {anony.get_battle_pair() for _ in range(50)} <= {("alpha", "bravo"), ("bravo", "alpha")}
        assert multi.build_about is about
        assert multi.build_leaderboard_tab is leaderboard
        request = type("Request", (), {"client": type("C", (), {"host": "1.2.3.4"})(), "headers": {}})()
        list(anony.leftvote_last_response(state(ui, "alpha"), state(ui, "bravo"), "", "", request))
        assert seen == ["battle:leftvote"]
    finally:
        anony.bot_response = saved
        web.model_worker_stream_iter, web.State.__init__ = saved_web


@pytest.fixture
def two_variants(
    ui: ModuleType, tmp_path: Path, standin_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Our real worker serving model "m" from two variants 50/50 on the stand-in (whose demo answers name
    their endpoint), with FastChat's real stream iterator under shims 12 and 10: (worker url, live set)."""
    import sys

    import httpx

    from sagemaker_fastchat.launch import build_worker
    from tests.helpers import serve_in_thread, worker_args

    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", standin_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", standin_url)
    item = {
        **example_item("tgi"),
        "model_name": "m",
        "endpoint_name": "demo-tgi-vote-a",
        "variants": [{"endpoint_name": "demo-tgi-vote-b", "weight": 50}],
    }
    (tmp_path / "models.json").write_text(json.dumps([item]))
    web = sys.modules["fastchat.serve.gradio_web_server"]
    saved, saved_init = web.model_worker_stream_iter, web.State.__init__
    _, app = build_worker(worker_args(str(tmp_path / "models.json"), endpoint_check=False))
    try:
        fastchat_compat._send_conversation_ids()
        fastchat_compat._note_answering_endpoint()
        fastchat_compat._note_answering_endpoint()  # idempotent
        with serve_in_thread(app) as url:
            while httpx.get(f"{url}/ready").status_code != 200:
                pass
            yield url, {m["name"]: m for m in httpx.get(f"{url}/model-set").json()["models"]}
    finally:
        web.model_worker_stream_iter, web.State.__init__ = saved, saved_init


def conversation(key: str) -> Any:
    """A FastChat state for model "m" with a fixed conversation id (FastChat's is random: fixed ids make
    which variant each conversation gets the same on every run)."""
    import sys

    s = sys.modules["fastchat.serve.gradio_web_server"].State("m")
    assert getattr(s.conv, fastchat_compat.CONVERSATION_ID) == s.conv_id  # shim 12 stamped it
    s.conv_id = key
    setattr(s.conv, fastchat_compat.CONVERSATION_ID, key)
    return s


def ask(url: str, s: Any, text: str | None = None) -> str:
    """Stream one answer for FastChat state `s` (a new user turn `text`, or the last one again, as a
    regeneration does) through FastChat's stream iterator: the endpoint that answered."""
    import sys

    web = sys.modules["fastchat.serve.gradio_web_server"]
    if text is not None:
        s.conv.append_message(s.conv.roles[0], text)
        s.conv.append_message(s.conv.roles[1], None)
    prompt = s.conv.get_prompt()
    frames = list(web.model_worker_stream_iter(s.conv, "m", url, prompt, 0.7, 1.0, 1.0, 8, []))
    return str(frames[-1]["text"].split()[2])  # "Demo model <endpoint> ..."


def test_a_vote_on_a_model_with_two_variants_names_the_variant_that_answered(
    ui: ModuleType, two_variants: tuple[str, dict[str, Any]]
) -> None:
    """Shim 10: each vote names the endpoint that answered the last turn, and that variant's config hash."""
    import sys

    web = sys.modules["fastchat.serve.gradio_web_server"]
    url, live = two_variants
    hashes = {v["endpoint_name"]: v["hash"] for v in live["m"]["variants"]}
    assert len(set(hashes.values())) == 2
    seen = set()
    for i in range(12):
        s = conversation(f"vote {i}")
        answered = ask(url, s, f"question {i}")
        vote = arena_ui.build_vote("direct", "upvote", [s], ["m"], "sess", live, 1, SETTINGS)
        assert vote is not None
        assert vote.models[0].variant == answered
        assert vote.models[0].endpoint == "demo-tgi-vote-a"  # the model's primary
        # the answering variant's config hash: a rollout's weight steps leave it alone
        assert vote.models[0].spec_hash == hashes[answered]
        seen.add(answered)
    assert seen == {"demo-tgi-vote-a", "demo-tgi-vote-b"}
    unknown = web.State("m")  # an answer no variant was noted for (an older worker)
    vote = arena_ui.build_vote("direct", "upvote", [unknown], ["m"], "sess", live, 1, SETTINGS)
    assert vote is not None
    assert (vote.models[0].variant, vote.models[0].spec_hash) == ("", "")
    # a promotion between the answer and the vote: the model has one endpoint now, not the one that
    # answered, so the vote names no config rather than the new one
    promoted = {"m": {**live["m"], "endpoint_name": "demo-tgi-vote-b", "variants": live["m"]["variants"][1:]}}
    s = conversation("before the promotion")
    s.conv.append_message(s.conv.roles[0], "hi")
    s.conv.append_message(s.conv.roles[1], "an answer")
    setattr(s.conv, fastchat_compat.ANSWERED_BY, "demo-tgi-vote-a")
    vote = arena_ui.build_vote("direct", "upvote", [s], ["m"], "sess", promoted, 2, SETTINGS)
    assert vote is not None
    assert (vote.models[0].variant, vote.models[0].spec_hash) == ("demo-tgi-vote-a", "")
    single = state(ui, "alpha")  # one endpoint, nothing noted (an older worker): its endpoint
    vote = arena_ui.build_vote("direct", "upvote", [single], ["alpha"], "s", LIVE, 1, SETTINGS)
    assert vote is not None
    assert vote.models[0].variant == "ep-a"


def test_each_web_conversation_keeps_its_own_variant(two_variants: tuple[str, dict[str, Any]]) -> None:
    """Shim 12: the sticky key is the conversation, not its first turn: conversations that open alike
    ("hi") still split by weight; a regeneration and a later turn keep the conversation's variant."""
    url, _ = two_variants
    chosen = set()
    for i in range(16):
        s = conversation(f"alike {i}")
        first = ask(url, s, "hi")
        assert ask(url, s) == first  # regenerated
        assert ask(url, s, "and then?") == first  # the next turn
        chosen.add(first)
    assert chosen == {"demo-tgi-vote-a", "demo-tgi-vote-b"}


def test_battles_hide_the_endpoint_names_of_every_variant() -> None:
    """A candidate variant's answers must not name it in a battle either (the demo models begin with
    their endpoint's name)."""
    from runtime.web_ui import battle_names

    entry = {
        "endpoint_name": "live",
        "variants": [{"endpoint_name": "live"}, {"endpoint_name": "cand"}, "junk"],
    }
    assert set(battle_names(entry, "m")) == {"m", "live", "cand"}
    assert battle_names({}, "m") == ["m", ""]


def test_no_ui_module_says_high_traffic(ui: ModuleType) -> None:
    """Shim 13: FastChat's UI answered "NETWORK ERROR DUE TO HIGH TRAFFIC..." when no worker served the
    model or the worker could not be reached; every FastChat UI module holding the message has ours."""
    import sys

    web = sys.modules["fastchat.serve.gradio_web_server"]
    assert web.SERVER_ERROR_MSG == fastchat_compat.NO_SERVER_MSG  # the one bot_response reads
    held = {
        name: module.SERVER_ERROR_MSG
        for name, module in sys.modules.items()
        if name.startswith("fastchat.serve.") and hasattr(module, "SERVER_ERROR_MSG")
    }
    assert "fastchat.serve.gradio_web_server" in held
    assert not [name for name, text in held.items() if "HIGH TRAFFIC" in str(text)], held
